/*
 * loader.c - open a plugin and find a deployment in it, with errors that
 * say which plugin, which deployment and what to do.
 */
#include "replica/internal.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

static const serve_deployment *find_deployment(const serve_plugin_desc *desc, const char *name)
{
    for (uint32_t i = 0; i < desc->n_deployments; i++)
        if (desc->deployments[i].name && strcmp(desc->deployments[i].name, name) == 0)
            return &desc->deployments[i];
    return NULL;
}

/* List the deployment names a plugin exports, for "did you mean" errors. */
static void list_names(const serve_plugin_desc *desc, char *buf, size_t size)
{
    size_t n = 0;
    buf[0] = '\0';
    for (uint32_t i = 0; i < desc->n_deployments && n < size; i++)
        n += (size_t)snprintf(buf + n, size - n, "%s%s", i ? ", " : "",
                              desc->deployments[i].name ? desc->deployments[i].name : "?");
}

int loader_open(const char *path, const char *name, loader_plugin *out, char *err, size_t errlen)
{
    int rc;
    memset(out, 0, sizeof(*out));
    void *dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!dl) {
        snprintf(err, errlen, "plugin %s (deployment %s): cannot load: %s", path, name, dlerror());
        return -ENOENT;
    }
    const serve_plugin_desc *desc = dlsym(dl, "serve_plugin");
    if (!desc) {
        snprintf(err, errlen,
                 "plugin %s (deployment %s): no 'serve_plugin' symbol; "
                 "export one with SERVE_PLUGIN(...) from serve_plugin.h",
                 path, name);
        rc = -EINVAL;
        goto fail;
    }
    if (desc->abi_version != SERVE_PLUGIN_ABI_VERSION) {
        snprintf(err, errlen,
                 "plugin %s (deployment %s): built for plugin ABI %u, this serve has ABI %u; "
                 "rebuild the plugin against this serve_plugin.h",
                 path, name, desc->abi_version, SERVE_PLUGIN_ABI_VERSION);
        rc = -ENOTSUP;
        goto fail;
    }
    const serve_deployment *dep = find_deployment(desc, name);
    if (!dep) {
        char names[256];
        list_names(desc, names, sizeof(names));
        snprintf(err, errlen, "plugin %s: no deployment named '%s' (it exports: %s)", path, name,
                 names);
        rc = -EINVAL;
        goto fail;
    }
    if (!dep->init || !dep->handle) {
        snprintf(err, errlen, "plugin %s (deployment %s): missing required callback '%s'", path,
                 name, dep->init ? "handle" : "init");
        rc = -EINVAL;
        goto fail;
    }
    out->dl = dl;
    out->dep = dep;
    return 0;
fail:
    dlclose(dl);
    return rc;
}

void loader_close(loader_plugin *p)
{
    if (p->dl) dlclose(p->dl);
    memset(p, 0, sizeof(*p));
}
