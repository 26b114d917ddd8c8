/*
 * item.c - one request's trip through the plugin, whoever runs it (a
 * worker with `handle`, the batcher with `handle_batch`): decode the
 * REQUEST frame, decode and check the tensors of a v2 infer request, and
 * after the plugin ran, turn its outcome into the answer: a 500 for a
 * failure, or the output tensors in the protocol's form.
 */
#include "replica/internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ITEM_HEADER_LEN_MAX 20 /* digits of an Inference-Header-Content-Length */

/* The JSON part's length from Inference-Header-Content-Length: -1 when
   absent, -2 when not a plain decimal number. */
static long header_len(const serve_request *req)
{
    const char *v = serve_request_header(req, "inference-header-content-length");
    if (!v) return -1;
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (end == v || *end || n < 0 || errno || strlen(v) > ITEM_HEADER_LEN_MAX) return -2;
    return n;
}

/* Decode the tensors of a v2 infer request into ireq and req.inputs, or
   answer 400 (bad request) / 500 (out of memory) with the reason. */
static void open_infer(item *it, const serve_deployment *dep)
{
    char err[512];
    long hl = header_len(&it->req);
    if (hl == -2) {
        serve_response_error(&it->res, 400,
                             "Inference-Header-Content-Length: must be a number of bytes");
        return;
    }
    int rc =
        infer_request_decode(it->req.body, it->req.body_len, hl, dep, &it->ireq, err, sizeof(err));
    if (rc != 0) {
        serve_response_error(&it->res, rc == -ENOMEM ? 500 : 400, "%s",
                             rc == -ENOMEM ? "out of memory decoding the tensors" : err);
        return;
    }
    it->req.inputs = it->ireq.inputs;
    it->req.n_inputs = it->ireq.n_inputs;
    it->runnable = 1;
}

void item_open(item *it, uint64_t id, uint8_t flags, const char *payload, size_t len,
               const serve_deployment *dep)
{
    memset(it, 0, sizeof(*it));
    it->id = id;
    it->infer = (flags & IPC_FLAG_INFER) != 0;
    api_response_init(&it->res, dep);
    if (ipc_request_decode(payload, len, &it->req) != 0) {
        serve_response_error(&it->res, 500, "malformed request frame");
        return;
    }
    if (it->infer && dep->n_inputs)
        open_infer(it, dep);
    else if (it->infer) /* the router only sends these to models: a stale plugin */
        serve_response_error(&it->res, 404, "this deployment declares no input tensors");
    else
        it->runnable = 1;
}

/* Replace the body with the outputs as a v2 response: JSON, or JSON then
   binary data with the length of the JSON in a header. */
static void render_outputs(item *it, const char *model)
{
    serve_response *res = &it->res;
    char err[256], num[24];
    size_t json_len;
    res->body.len = 0;
    int rc = infer_response_encode(&res->body, model, it->infer ? &it->ireq : NULL, res->outputs,
                                   res->n_outputs, &json_len, err, sizeof(err));
    if (rc != 0) {
        res->body.oom = 0;
        serve_response_error(res, 500, "%s",
                             rc == -ENOMEM ? "out of memory encoding outputs" : err);
        return;
    }
    int binary = json_len < res->body.len;
    api_response_drop_header(res, "content-type"); /* the body is ours now */
    serve_response_set_header(res, "content-type",
                              binary ? "application/octet-stream" : "application/json");
    if (binary) {
        snprintf(num, sizeof(num), "%zu", json_len);
        serve_response_set_header(res, "inference-header-content-length", num);
    }
}

void item_finish(item *it, int rc, const char *why, const char *model)
{
    serve_response *res = &it->res;
    if (res->streamed) return; /* what was sent stands; a failure aborts the stream */
    if (rc != 0) {
        serve_response_error(res, 500, "%s", why);
        return;
    }
    int v2 = it->infer || (res->body.len == 0 && res->n_outputs > 0);
    if (v2 && res->status < 400) render_outputs(it, model);
}

void item_close(item *it)
{
    free((void *)it->req.headers);
    infer_request_free(&it->ireq);
    api_response_release(&it->res);
}
