/*
 * logger - a deployment that logs through the framework, for the logging
 * tests.
 *
 *   Logger  init logs "init: <init_args>" at INFO; handle logs
 *           "handled <path>" at ?level=debug|info|warn|error (default
 *           info) and answers "logged".
 */
#include <serve_plugin.h>
#include <string.h>

static int init_logger(serve_context *ctx, const char *args, void **state)
{
    serve_log(ctx, SERVE_LOG_INFO, "init: %s", args);
    *state = ctx;
    return 0;
}

static int handle_logger(void *state, const serve_request *req, serve_response *res)
{
    static const char *const names[] = {"debug", "info", "warn", "error"};
    char level[16] = "info";
    serve_request_query(req, "level", level, sizeof(level));
    for (int i = 0; i < 4; i++)
        if (strcmp(level, names[i]) == 0)
            serve_log(state, (serve_log_level)i, "handled %s", req->path);
    return serve_response_printf(res, "logged\n");
}

static const serve_deployment deployments[] = {
    {.name = "Logger", .init = init_logger, .handle = handle_logger},
};

SERVE_PLUGIN(deployments)
