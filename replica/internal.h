/*
 * internal.h - what the replica's files share: the plugin loader and the
 * framework side of the plugin API (context and response objects).
 */
#ifndef SERVE_REPLICA_INTERNAL_H
#define SERVE_REPLICA_INTERNAL_H

#include <stddef.h>

#include "ipc/ipc.h"
#include "serve_plugin.h"

/* ---- loader.c ---------------------------------------------------------- */

typedef struct loader_plugin {
    void *dl;                    /* dlopen handle */
    const serve_deployment *dep; /* the deployment found in it */
} loader_plugin;

/*
 * Load the plugin at `path` and find deployment `name` in it. Checks, in
 * order: the file opens, it exports `serve_plugin`, its ABI version matches,
 * the deployment exists, and it has init and handle. Returns 0, or -ENOENT /
 * -EINVAL / -ENOTSUP with a message naming the plugin and the deployment.
 */
int loader_open(const char *path, const char *name, loader_plugin *out, char *err, size_t errlen);
void loader_close(loader_plugin *p);

/* ---- api.c ------------------------------------------------------------- */

struct serve_context {
    char *app;
    char *deployment;
    char *replica_id;
    char *log_tag; /* "app/deployment#id" */
};

struct serve_response {
    int status;
    serve_header *headers; /* names and values are owned copies */
    size_t n_headers;
    size_t cap_headers;
    ipc_buf body;
    int streamed; /* a part was sent: status and headers are fixed */
    /* Sends the part written so far (set by the replica for each request). */
    int (*flush)(serve_response *res);
    void *flush_arg;
};

void api_response_init(serve_response *res);
void api_response_release(serve_response *res);

/* The calling thread's last serve_set_error message ("" if none) and a way
   to clear it before each callback. */
const char *api_last_error(void);
void api_clear_error(void);

#endif
