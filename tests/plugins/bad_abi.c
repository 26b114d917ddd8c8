/* A plugin built for another ABI version: the loader must refuse it. */
#include <serve_plugin.h>

static int init(serve_context *ctx, const char *args, void **state)
{
    return 0;
}

static int handle(void *state, const serve_request *req, serve_response *res)
{
    return 0;
}

static const serve_deployment deployments[] = {{.name = "Old", .init = init, .handle = handle}};

__attribute__((visibility("default")))
const serve_plugin_desc serve_plugin = {SERVE_PLUGIN_ABI_VERSION + 98, 1, deployments};
