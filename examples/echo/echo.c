/*
 * echo - answers, as JSON, what it received and who answered: method, path,
 * route path, query, headers, the body's length and FNV-1a 64 checksum, and
 * the replica's id and pid. Useful to see routing and load balancing at work:
 *
 *   curl -s localhost:8000/echo/a/b?x=1 -d 'hi'
 *
 * Query parameter `status` sets the response status (e.g. ?status=418).
 */
#include <jansson.h>
#include <serve_plugin.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

typedef struct echo {
    serve_context *ctx;
} echo;

static int echo_init(serve_context *ctx, const char *args_json, void **state)
{
    echo *e = malloc(sizeof(*e));
    if (!e) return serve_set_error("out of memory");
    e->ctx = ctx;
    *state = e;
    return 0;
}

/* FNV-1a, 64 bits: a checksum clients can recompute in a few lines. */
static uint64_t fnv1a64(const unsigned char *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

static json_t *headers_json(const serve_request *req)
{
    json_t *obj = json_object();
    for (size_t i = 0; i < req->n_headers; i++)
        json_object_set_new(obj, req->headers[i].name, json_string(req->headers[i].value));
    return obj;
}

static int echo_handle(void *state, const serve_request *req, serve_response *res)
{
    echo *e = state;
    char sum[17], status[8];
    snprintf(sum, sizeof(sum), "%016llx", (unsigned long long)fnv1a64(req->body, req->body_len));
    if (serve_request_query(req, "status", status, sizeof(status)) > 0 &&
        serve_response_set_status(res, atoi(status)) != 0)
        return serve_set_error("status: must be an HTTP status between 100 and 599");
    json_t *out =
        json_pack("{s:s, s:s, s:s, s:s, s:s, s:o, s:I, s:s, s:s, s:s, s:s, s:i}", "method",
                  req->method, "path", req->path, "route_path", req->route_path, "query",
                  req->query, "request_id", req->request_id, "headers", headers_json(req),
                  "body_length", (json_int_t)req->body_len, "body_fnv1a64", sum, "app",
                  serve_context_app(e->ctx), "deployment", serve_context_deployment(e->ctx),
                  "replica_id", serve_context_replica_id(e->ctx), "pid", (int)getpid());
    char *text = out ? json_dumps(out, JSON_COMPACT) : NULL;
    json_decref(out);
    if (!text) return serve_set_error("cannot encode the answer (invalid UTF-8 in a header?)");
    serve_response_set_header(res, "content-type", "application/json");
    int rc = serve_response_printf(res, "%s\n", text);
    free(text);
    return rc;
}

static void echo_finalize(void *state)
{
    free(state);
}

static const serve_deployment deployments[] = {
    {.name = "Echo", .init = echo_init, .handle = echo_handle, .finalize = echo_finalize},
};

SERVE_PLUGIN(deployments)
