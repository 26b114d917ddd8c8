/*
 * caller - a deployment that calls another through its handle "target",
 * for the handle tests (tests/e2e/test_handles.c).
 *
 *   init_args: {"target": {"deployment": "..."}}
 *
 *   GET /?n=N&q=QUERY&path=PATH&call_timeout=S&wait=S&sync=1
 *     makes N calls to the target (default 1) with query QUERY and route
 *     path PATH; call_timeout is the calls' own timeout (408 from serve);
 *     wait bounds the wait (default none). Without sync the calls start
 *     together and are waited for with serve_future_wait_all; with sync=1
 *     they are made one after another with serve_call. Answers
 *     {"answers": [{"status", "error", "body"}...], "waited": 0|-1}:
 *     "waited" is wait_all's result; status 0 means no answer yet.
 *
 * InitCaller's init tries a call, which must be refused: init fails with
 * serve_call_async's message.
 */
#include <jansson.h>
#include <serve_plugin.h>
#include <stdlib.h>
#include <string.h>

#define CALLER_MAX 64

static int caller_init(serve_context *ctx, const char *args_json, void **state)
{
    return (*state = serve_get_handle(ctx, "target")) ? 0 : -1;
}

static double query_num(const serve_request *req, const char *name, double def)
{
    char buf[32];
    return serve_request_query(req, name, buf, sizeof(buf)) > 0 ? atof(buf) : def;
}

static json_t *describe(const serve_future *f)
{
    const char *err = serve_future_error(f);
    const char *body = serve_future_body(f, NULL);
    return json_pack("{s:i, s:s?, s:s?}", "status", serve_future_status(f), "error", err, "body",
                     body);
}

static int caller_handle(void *state, const serve_request *req, serve_response *res)
{
    char query[256] = "", path[128] = "/";
    int n = (int)query_num(req, "n", 1);
    double wait = query_num(req, "wait", -1);
    if (n < 1 || n > CALLER_MAX) return serve_set_error("n: 1 to %d", CALLER_MAX);
    serve_request_query(req, "q", query, sizeof(query));
    serve_request_query(req, "path", path, sizeof(path));
    serve_call_options call = {
        .query = query, .path = path, .timeout_s = query_num(req, "call_timeout", 0)};
    serve_future *fs[CALLER_MAX];
    int waited = 0;
    for (int i = 0; i < n; i++) {
        fs[i] = query_num(req, "sync", 0) ? serve_call(state, req, &call, wait)
                                          : serve_call_async(state, req, &call);
        if (!fs[i]) {
            while (i--) serve_future_free(fs[i]);
            return -1;
        }
    }
    if (!query_num(req, "sync", 0)) waited = serve_future_wait_all(fs, (size_t)n, wait);
    json_t *answers = json_array();
    for (int i = 0; i < n; i++) {
        json_array_append_new(answers, describe(fs[i]));
        serve_future_free(fs[i]);
    }
    json_t *out = json_pack("{s:o, s:i}", "answers", answers, "waited", waited);
    char *text = json_dumps(out, JSON_COMPACT);
    json_decref(out);
    serve_response_set_header(res, "content-type", "application/json");
    int rc = text ? serve_response_printf(res, "%s\n", text) : -1;
    free(text);
    return rc;
}

static int init_caller_init(serve_context *ctx, const char *args_json, void **state)
{
    serve_handle *h = serve_get_handle(ctx, "target");
    serve_future *f = h ? serve_call_async(h, NULL, NULL) : NULL;
    serve_future_free(f);
    return f ? 0 : -1;
}

static int never_handle(void *state, const serve_request *req, serve_response *res)
{
    return 0;
}

static const serve_deployment deployments[] = {
    {.name = "Caller", .init = caller_init, .handle = caller_handle},
    {.name = "InitCaller", .init = init_caller_init, .handle = never_handle},
};

SERVE_PLUGIN(deployments)
