/*
 * batcher.c - deployments for the batching and v2 tests.
 *
 * "Batcher" answers every request with the size of the batch it came in
 * and its place there: {"batch_size": n, "index": i, "body": "..."}. A
 * body "fail" fails that item alone (422); a body "fail-all" fails the
 * whole batch (500). init_args {"delay_ms": N} makes each batch take N ms.
 *
 * "Tensors" is an identity model: it declares one optional input per
 * datatype, named after it in lower case ("fp32", "bytes", ...), each of
 * any shape of rank 1 or 2, and outputs of the same names, and answers
 * every input it gets as the output of the same name. An input "status"
 * (INT32 [1]) makes it answer serve_response_error with that status.
 * init_args {"init_delay_ms": N} makes its init take N ms.
 */
#include <serve_plugin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The integer init_args member `key` ("\"key\""), or 0. */
static long int_arg(const char *args_json, const char *key)
{
    const char *p = strstr(args_json, key);
    return p && (p = strchr(p, ':')) ? strtol(p + 1, NULL, 10) : 0;
}

static void sleep_ms(long ms)
{
    nanosleep(&(struct timespec){ms / 1000, ms % 1000 * 1000000}, NULL);
}

/* ---- Batcher ----------------------------------------------------------- */

static int batcher_init(serve_context *ctx, const char *args_json, void **state)
{
    long *delay_ms = calloc(1, sizeof(*delay_ms));
    if (!delay_ms) return serve_set_error("out of memory");
    *delay_ms = int_arg(args_json, "\"delay_ms\"");
    *state = delay_ms;
    return 0;
}

static int body_is(const serve_request *req, const char *text)
{
    return req->body_len == strlen(text) && memcmp(req->body, text, req->body_len) == 0;
}

static int batcher_batch(void *state, const serve_request *const *reqs, serve_response *const *res,
                         size_t n)
{
    long delay_ms = *(long *)state;
    if (delay_ms > 0) sleep_ms(delay_ms);
    for (size_t i = 0; i < n; i++)
        if (body_is(reqs[i], "fail-all")) return serve_set_error("item %zu failed the batch", i);
    for (size_t i = 0; i < n; i++) {
        if (body_is(reqs[i], "fail")) {
            serve_response_error(res[i], 422, "item %zu failed on its own", i);
            continue;
        }
        serve_response_set_header(res[i], "content-type", "application/json");
        serve_response_printf(res[i], "{\"batch_size\": %zu, \"index\": %zu, \"body\": \"%.*s\"}",
                              n, i, (int)(reqs[i]->body_len > 64 ? 64 : reqs[i]->body_len),
                              (const char *)reqs[i]->body);
    }
    return 0;
}

static int batcher_handle(void *state, const serve_request *req, serve_response *res)
{
    return batcher_batch(state, &req, &res, 1);
}

static void batcher_finalize(void *state)
{
    free(state);
}

/* ---- Tensors ----------------------------------------------------------- */

/* One tensor per datatype, of rank 2 and any size; inputs are optional. */
#define TENSOR(lower, dt, opt)                                                                     \
    {                                                                                              \
        .name = lower, .datatype = dt, .ndim = 2, .shape = {-1, -1}, .optional = opt               \
    }
#define ALL_TENSORS(opt)                                                                           \
    TENSOR("bool", SERVE_BOOL, opt), TENSOR("uint8", SERVE_UINT8, opt),                            \
        TENSOR("uint16", SERVE_UINT16, opt), TENSOR("uint32", SERVE_UINT32, opt),                  \
        TENSOR("uint64", SERVE_UINT64, opt), TENSOR("int8", SERVE_INT8, opt),                      \
        TENSOR("int16", SERVE_INT16, opt), TENSOR("int32", SERVE_INT32, opt),                      \
        TENSOR("int64", SERVE_INT64, opt), TENSOR("fp32", SERVE_FP32, opt),                        \
        TENSOR("fp64", SERVE_FP64, opt), TENSOR("bytes", SERVE_BYTES, opt)

static const serve_tensor_spec tensor_inputs[] = {
    ALL_TENSORS(1),
    {.name = "status", .datatype = SERVE_INT32, .ndim = 1, .shape = {1}, .optional = 1},
};
static const serve_tensor_spec tensor_outputs[] = {ALL_TENSORS(0)};

static int tensors_init(serve_context *ctx, const char *args_json, void **state)
{
    sleep_ms(int_arg(args_json, "\"init_delay_ms\""));
    *state = NULL;
    return 0;
}

static int tensors_handle(void *state, const serve_request *req, serve_response *res)
{
    const serve_tensor *status = serve_request_input(req, "status");
    if (status) {
        int32_t code;
        memcpy(&code, status->data, sizeof(code));
        return serve_response_error(res, code, "asked for status %d", (int)code);
    }
    /* the framework's v2 answer replaces this */
    serve_response_set_header(res, "content-type", "text/plain");
    for (size_t i = 0; i < req->n_inputs; i++) {
        const serve_tensor *t = &req->inputs[i];
        if (serve_response_add_output(res, t->name, t->datatype, t->shape, t->ndim, t->data,
                                      t->size) != 0)
            return -1;
    }
    return 0;
}

static int tensors_batch(void *state, const serve_request *const *reqs, serve_response *const *res,
                         size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (tensors_handle(state, reqs[i], res[i]) != 0) return -1;
    return 0;
}

static const serve_deployment deployments[] = {
    {.name = "Batcher",
     .init = batcher_init,
     .handle = batcher_handle,
     .handle_batch = batcher_batch,
     .finalize = batcher_finalize},
    {.name = "Tensors",
     .init = tensors_init,
     .handle = tensors_handle,
     .handle_batch = tensors_batch,
     .inputs = tensor_inputs,
     .n_inputs = sizeof(tensor_inputs) / sizeof(tensor_inputs[0]),
     .outputs = tensor_outputs,
     .n_outputs = sizeof(tensor_outputs) / sizeof(tensor_outputs[0])},
};
SERVE_PLUGIN(deployments)
