/*
 * internal.h - what the replica's files share: the plugin loader and the
 * framework side of the plugin API (context and response objects).
 */
#ifndef SERVE_REPLICA_INTERNAL_H
#define SERVE_REPLICA_INTERNAL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "infer/infer.h"
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
    struct serve_handle *handles; /* bound in the config (handles.c) */
    size_t n_handles;
};

struct serve_response {
    int status;
    serve_header *headers; /* names and values are owned copies */
    size_t n_headers;
    size_t cap_headers;
    ipc_buf body;
    int streamed;          /* a part was sent: status and headers are fixed */
    serve_tensor *outputs; /* serve_response_output*: names and data owned */
    size_t n_outputs;
    size_t cap_outputs;
    const serve_deployment *dep; /* whose `outputs` declare what may be added */
    /* Sends the part written so far (set by the replica for each request). */
    int (*flush)(serve_response *res);
    void *flush_arg;
};

/* A fresh response (200, empty) for a request to `dep`. */
void api_response_init(serve_response *res, const serve_deployment *dep);
void api_response_release(serve_response *res);
/* Remove every header called `name` (case-insensitive). */
void api_response_drop_header(serve_response *res, const char *name);

/* The calling thread's last serve_set_error message ("" if none) and a way
   to clear it before each callback. */
const char *api_last_error(void);
void api_clear_error(void);

/* ---- item.c ------------------------------------------------------------ */

/* One request's trip through the plugin: decoded from its REQUEST frame
   (and, for a v2 infer request, its tensors), answered in `res`. */
typedef struct item {
    uint64_t id;
    int infer;    /* a v2 infer request (IPC_FLAG_INFER) */
    int runnable; /* decoded: give it to the plugin; else res holds the 4xx/5xx */
    serve_request req;
    serve_response res;
    infer_request ireq;
} item;

/* Decode a REQUEST payload; `payload` must outlive the item. */
void item_open(item *it, uint64_t id, uint8_t flags, const char *payload, size_t len,
               const serve_deployment *dep);
/* The plugin returned `rc` (-1: failed, `why`): make res the final answer,
   a 500 for a failure, or the outputs as a v2 response of model `model`. */
void item_finish(item *it, int rc, const char *why, const char *model);
void item_close(item *it);

/* ---- handles.c ------------------------------------------------------------------------------ */

/* How the hub sends frames: begin() locks and returns the outgoing buffer
   of the data channel, end() unlocks it and has the loop write it. */
typedef struct calls_io {
    ipc_buf *(*begin)(void *arg);
    void (*end)(void *arg);
    void *arg;
} calls_io;

/* The handle calls of one replica. */
typedef struct calls_hub {
    pthread_mutex_t mu;
    struct serve_future *pending; /* unanswered calls */
    uint64_t next_id;
    int open; /* calls may start: the replica serves */
    calls_io io;
} calls_hub;

int calls_init(calls_hub *hub, const calls_io *io); /* 0 or negative */
void calls_destroy(calls_hub *hub);
/* Allow calls (serving) or not (initializing). */
void calls_open(calls_hub *hub, int open);
/* Loop thread: a CALL_PART or CALL_RESULT frame arrived. */
void calls_on_frame(calls_hub *hub, const ipc_frame *f);
/* Answer every pending call with {"error": msg} and allow no more. */
void calls_fail_all(calls_hub *hub, int status, const char *msg);
/* Give ctx a handle `name` to app/deployment. 0 or -ENOMEM. */
int calls_bind(calls_hub *hub, serve_context *ctx, const char *name, const char *app,
               const char *deployment);
void calls_unbind_all(serve_context *ctx);

#endif
