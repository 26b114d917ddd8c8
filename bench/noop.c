/*
 * noop - the no-op deployment of the proxy benchmark (bench/proxy.sh).
 *
 * Answers every request with 200, content-type text/plain and the 2-byte body
 * "ok": the same bytes as bench/mhd_noop.c and bench/fastapi_noop.py, so that
 * what is measured is the cost of the path in front of the handler.
 * No state and no work: init sets a NULL state, handle writes two bytes.
 */
#include <serve_plugin.h>

static int noop_init(serve_context *ctx, const char *args_json, void **state)
{
    *state = NULL;
    return 0;
}

static int noop_handle(void *state, const serve_request *req, serve_response *res)
{
    if (serve_response_set_header(res, "content-type", "text/plain") != 0) return -1;
    return serve_response_write(res, "ok", 2);
}

static const serve_deployment deployments[] = {
    {.name = "Noop", .init = noop_init, .handle = noop_handle},
};
SERVE_PLUGIN(deployments)
