/*
 * fuzz_tensor.c - libFuzzer target for the Open Inference Protocol v2
 * request decoder (infer/infer.h), which every model replica runs on the
 * body of POST /v2/models/{name}/infer, before the plugin sees it.
 *
 * The model is fixed: two required inputs (FP32 [-1,3], INT64 [-1]) and an
 * optional one of every other datatype, with ranks 1 to 3. An input that
 * starts with '{' is a JSON-only body (no Inference-Header-Content-Length);
 * any other input is the binary tensor extension: its first two bytes are
 * the header length (little-endian, so that the fuzzer reaches lengths
 * past the body as well as inside it) and the rest is the body, JSON and
 * then binary data.
 *
 * A request that decodes must hold what the plugin is promised (plugin
 * API): declared names, datatypes and ranks; no -1 left in a shape; data
 * exactly the shape's element count (BYTES: well-formed elements); and
 * echoing the inputs back as outputs must encode, with a JSON part that
 * jansson reads. A refusal must leave a message and nothing allocated.
 */
#include <errno.h>
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "fuzz/fuzz.h"
#include "infer/infer.h"

static const serve_tensor_spec inputs[] = {
    {.name = "x", .datatype = SERVE_FP32, .ndim = 2, .shape = {-1, 3}},
    {.name = "ids", .datatype = SERVE_INT64, .ndim = 1, .shape = {-1}},
    {.name = "mask", .datatype = SERVE_BOOL, .ndim = 1, .shape = {-1}, .optional = 1},
    {.name = "text", .datatype = SERVE_BYTES, .ndim = 1, .shape = {-1}, .optional = 1},
    {.name = "pixels", .datatype = SERVE_UINT8, .ndim = 3, .shape = {-1, 2, 2}, .optional = 1},
    {.name = "u16", .datatype = SERVE_UINT16, .ndim = 1, .shape = {4}, .optional = 1},
    {.name = "u32", .datatype = SERVE_UINT32, .ndim = 1, .shape = {-1}, .optional = 1},
    {.name = "u64", .datatype = SERVE_UINT64, .ndim = 1, .shape = {-1}, .optional = 1},
    {.name = "i8", .datatype = SERVE_INT8, .ndim = 2, .shape = {-1, -1}, .optional = 1},
    {.name = "i16", .datatype = SERVE_INT16, .ndim = 1, .shape = {-1}, .optional = 1},
    {.name = "i32", .datatype = SERVE_INT32, .ndim = 1, .shape = {-1}, .optional = 1},
    {.name = "f64", .datatype = SERVE_FP64, .ndim = 1, .shape = {-1}, .optional = 1},
};
static const serve_tensor_spec outputs[] = {
    {.name = "y", .datatype = SERVE_FP32, .ndim = 2, .shape = {-1, 3}},
};
static const serve_deployment model = {
    .name = "Model",
    .inputs = inputs,
    .n_inputs = sizeof(inputs) / sizeof(inputs[0]),
    .outputs = outputs,
    .n_outputs = 1,
};

/* What the plugin API promises about a decoded input. */
static void check_input(const serve_tensor *t)
{
    const serve_tensor_spec *spec = infer_spec_find(inputs, model.n_inputs, t->name);
    FUZZ_CHECK(spec && spec->datatype == t->datatype && spec->ndim == t->ndim);
    size_t count;
    FUZZ_CHECK(infer_shape_elements(t->shape, t->ndim, &count) == 0);
    for (int i = 0; i < t->ndim; i++)
        FUZZ_CHECK(t->shape[i] >= 0 && (spec->shape[i] == -1 || spec->shape[i] == t->shape[i]));
    if (t->datatype == SERVE_BYTES)
        FUZZ_CHECK(infer_bytes_elements(t->data, t->size) == (long)count);
    else
        FUZZ_CHECK(t->size == count * serve_datatype_size(t->datatype));
    FUZZ_CHECK(t->size == 0 || t->data != NULL);
}

static int has_input(const infer_request *req, const char *name)
{
    for (size_t i = 0; i < req->n_inputs; i++)
        if (strcmp(req->inputs[i].name, name) == 0) return 1;
    return 0;
}

/* Echo the inputs as outputs: the encoder takes whatever the decoder gave. */
static void check_echo(const infer_request *req)
{
    ipc_buf out = {0};
    size_t json_len;
    char err[256];
    int rc = infer_response_encode(&out, "m", req, req->inputs, req->n_inputs, &json_len, err,
                                   sizeof(err));
    FUZZ_CHECK(rc == 0 || rc == -ENOENT); /* -ENOENT: asked for an output not produced */
    if (rc == 0) {                        /* the JSON part, before any binary outputs */
        json_error_t jerr;
        /* Integers as reals (jansson refuses UINT64 values past INT64_MAX),
           and escaped NULs, which JSON allows. */
        json_t *doc =
            json_loadb(out.data, json_len, JSON_DECODE_INT_AS_REAL | JSON_ALLOW_NUL, &jerr);
        if (!doc) fprintf(stderr, "not JSON (%s): %.*s\n", jerr.text, (int)json_len, out.data);
        FUZZ_CHECK(doc != NULL);
        json_decref(doc);
    }
    ipc_buf_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    long header_len = -1;
    if (size > 0 && data[0] != '{') {
        if (size < 2) return 0;
        header_len = data[0] | data[1] << 8;
        data += 2;
        size -= 2;
    }
    infer_request req;
    char err[512] = "";
    int rc = infer_request_decode(data, size, header_len, &model, &req, err, sizeof(err));
    if (rc != 0) {
        static const infer_request zero;
        FUZZ_CHECK(rc == -EINVAL && err[0] != '\0');
        FUZZ_CHECK(memcmp(&req, &zero, sizeof(req)) == 0);
        return 0;
    }
    /* Each input once, the required ones ("x", "ids") among them. */
    FUZZ_CHECK(req.n_inputs >= 2 && req.n_inputs <= model.n_inputs);
    for (size_t i = 0; i < req.n_inputs; i++) {
        check_input(&req.inputs[i]);
        for (size_t j = 0; j < i; j++)
            FUZZ_CHECK(strcmp(req.inputs[i].name, req.inputs[j].name) != 0);
    }
    FUZZ_CHECK(has_input(&req, "x") && has_input(&req, "ids"));
    check_echo(&req);
    infer_request_free(&req);
    return 0;
}
