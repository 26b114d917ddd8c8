/* A deployment without the required `handle` callback. */
#include <serve_plugin.h>

static int init(serve_context *ctx, const char *args, void **state)
{
    return 0;
}

static const serve_deployment deployments[] = {{.name = "NoHandle", .init = init}};

SERVE_PLUGIN(deployments)
