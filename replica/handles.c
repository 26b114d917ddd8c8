/*
 * handles.c - the calling side of deployment handles (serve_plugin.h):
 * handles, futures, CALL frames out and their answers in.
 *
 * Threads. A worker thread running `handle` starts a call: it registers a
 * future in the hub's pending list (hub lock), then encodes a CALL frame
 * into the replica's outgoing buffer (through calls_io, which wakes the
 * loop thread to write it). The loop thread receives CALL_PART and
 * CALL_RESULT frames and fills the future in under the hub lock; the last
 * one signals the condition variable of the thread waiting for it, if any.
 * Lock order: the hub lock, then the outgoing buffer's; the loop thread
 * only ever takes the hub lock here.
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "common/log.h"
#include "replica/internal.h"

struct serve_handle {
    char *name;   /* the init_args key */
    char *target; /* "app/deployment" */
    char *app, *deployment;
    calls_hub *hub;
};

struct serve_future {
    calls_hub *hub;
    uint64_t id;
    serve_future *prev, *next; /* in the hub's pending list while `linked` */
    int linked;
    int status;   /* 0 until answered */
    int has_head; /* status and headers arrived (with a first part) */
    int head_status;
    serve_header *headers; /* owned copies */
    size_t n_headers;
    ipc_buf body;
    char *error;            /* serve_future_error's answer, made on first use */
    pthread_cond_t *waiter; /* the waiting thread's, while one waits */
};

/* ---- The hub ------------------------------------------------------------- */

int calls_init(calls_hub *hub, const calls_io *io)
{
    memset(hub, 0, sizeof(*hub));
    hub->io = *io;
    return -pthread_mutex_init(&hub->mu, NULL);
}

void calls_open(calls_hub *hub, int open)
{
    pthread_mutex_lock(&hub->mu);
    hub->open = open;
    pthread_mutex_unlock(&hub->mu);
}

static void pending_unlink(calls_hub *hub, serve_future *f)
{
    if (!f->linked) return;
    f->linked = 0;
    if (f->prev)
        f->prev->next = f->next;
    else
        hub->pending = f->next;
    if (f->next) f->next->prev = f->prev;
    f->prev = f->next = NULL;
}

static void pending_link(calls_hub *hub, serve_future *f)
{
    f->linked = 1;
    f->prev = NULL;
    f->next = hub->pending;
    if (hub->pending) hub->pending->prev = f;
    hub->pending = f;
}

/* The answer is complete (hub lock held): wake whoever waits for it. */
static void settle(serve_future *f, int status)
{
    ipc_buf_put(&f->body, "", 1); /* a NUL after the body, not counted */
    if (!f->body.oom) f->body.len--;
    f->status = status;
    pending_unlink(f->hub, f);
    if (f->waiter) pthread_cond_broadcast(f->waiter);
}

/* Answer `f` here, with {"error": msg} (hub lock held). */
static void fail_locally(serve_future *f, int status, const char *msg)
{
    json_t *obj = json_pack("{s:s}", "error", msg);
    char *text = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
    f->body.len = 0;
    ipc_buf_put(&f->body, text ? text : "{}", text ? strlen(text) : 2);
    free(text);
    json_decref(obj);
    settle(f, status);
}

void calls_fail_all(calls_hub *hub, int status, const char *msg)
{
    pthread_mutex_lock(&hub->mu);
    hub->open = 0;
    while (hub->pending) fail_locally(hub->pending, status, msg);
    pthread_mutex_unlock(&hub->mu);
}

void calls_destroy(calls_hub *hub)
{
    pthread_mutex_destroy(&hub->mu);
}

/* Keep the status and headers of the first frame of an answer. */
static int take_head(serve_future *f, const ipc_response *res)
{
    f->has_head = 1;
    f->head_status = res->status;
    if (res->n_headers == 0) return 0;
    f->headers = calloc(res->n_headers, sizeof(*f->headers));
    if (!f->headers) return -ENOMEM;
    for (size_t i = 0; i < res->n_headers; i++) {
        f->headers[i].name = strdup(res->headers[i].name);
        f->headers[i].value = strdup(res->headers[i].value);
        f->n_headers++;
        if (!f->headers[i].name || !f->headers[i].value) return -ENOMEM;
    }
    return 0;
}

/* Loop thread: a CALL_PART or CALL_RESULT for one of our futures. */
void calls_on_frame(calls_hub *hub, const ipc_frame *f)
{
    ipc_response res;
    pthread_mutex_lock(&hub->mu);
    serve_future *fu = hub->pending;
    while (fu && fu->id != f->id) fu = fu->next;
    if (!fu) goto out; /* cancelled: nobody waits */
    if (ipc_response_decode(f->payload, f->len, &res) != 0) {
        fail_locally(fu, 502, "malformed answer to a handle call");
        goto out;
    }
    int rc = fu->has_head ? 0 : take_head(fu, &res);
    ipc_buf_put(&fu->body, res.body, res.body_len);
    ipc_response_release(&res);
    if (rc != 0 || fu->body.oom)
        fail_locally(fu, 503, "out of memory receiving the answer of a handle call");
    else if (f->type == IPC_CALL_RESULT && (f->flags & IPC_FLAG_ABORTED))
        fail_locally(fu, 502, "the callee's streamed answer was cut short");
    else if (f->type == IPC_CALL_RESULT)
        settle(fu, fu->head_status);
out:
    pthread_mutex_unlock(&hub->mu);
}

/* ---- Handles ------------------------------------------------------------- */

int calls_bind(calls_hub *hub, serve_context *ctx, const char *name, const char *app,
               const char *deployment)
{
    serve_handle *next = realloc(ctx->handles, (ctx->n_handles + 1) * sizeof(*next));
    if (!next) return -ENOMEM;
    ctx->handles = next;
    serve_handle *h = &ctx->handles[ctx->n_handles];
    *h = (serve_handle){
        .name = strdup(name), .app = strdup(app), .deployment = strdup(deployment), .hub = hub};
    if (asprintf(&h->target, "%s/%s", app, deployment) < 0) h->target = NULL;
    ctx->n_handles++;
    return h->name && h->app && h->deployment && h->target ? 0 : -ENOMEM;
}

void calls_unbind_all(serve_context *ctx)
{
    for (size_t i = 0; i < ctx->n_handles; i++) {
        free(ctx->handles[i].name);
        free(ctx->handles[i].app);
        free(ctx->handles[i].deployment);
        free(ctx->handles[i].target);
    }
    free(ctx->handles);
    ctx->handles = NULL;
    ctx->n_handles = 0;
}

serve_handle *serve_get_handle(serve_context *ctx, const char *name)
{
    for (size_t i = 0; ctx && name && i < ctx->n_handles; i++)
        if (strcmp(ctx->handles[i].name, name) == 0) return &ctx->handles[i];
    serve_set_error("no handle bound to init_args key '%s': bind one with {\"deployment\": NAME}",
                    name ? name : "(null)");
    return NULL;
}

const char *serve_handle_target(const serve_handle *h)
{
    return h ? h->target : NULL;
}

/* ---- Calls --------------------------------------------------------------- */

/* Queue a frame for the serve process: a CALL for `req`, or a CALL_CANCEL
   when req is NULL. Returns 0 or -ENOMEM. */
static int send_frame(calls_hub *hub, uint64_t id, const serve_handle *h, uint32_t timeout_ms,
                      const serve_request *req)
{
    ipc_buf *out = hub->io.begin(hub->io.arg);
    int rc = req ? ipc_call_encode(out, id, h->app, h->deployment, timeout_ms, req)
                 : ipc_frame_put(out, IPC_CALL_CANCEL, id, NULL, 0);
    hub->io.end(hub->io.arg);
    return rc;
}

/* The request a call sends, from its options. */
static serve_request call_request(const serve_request *parent, const serve_call_options *o,
                                  char *id_buf, size_t id_size, uint64_t id)
{
    static const serve_call_options none = {0};
    if (!o) o = &none;
    const char *path = o->path && *o->path ? o->path : "/";
    if (!parent) snprintf(id_buf, id_size, "call-%016llx", (unsigned long long)id);
    return (serve_request){
        .method = o->method     ? o->method
                  : o->body_len ? "POST"
                                : "GET",
        .path = path,
        .route_path = path,
        .query = o->query ? o->query : "",
        .request_id = parent ? parent->request_id : id_buf,
        .headers = o->headers,
        .n_headers = o->headers ? o->n_headers : 0,
        .body = o->body ? o->body : "",
        .body_len = o->body ? o->body_len : 0,
    };
}

serve_future *serve_call_async(serve_handle *h, const serve_request *parent,
                               const serve_call_options *opts)
{
    if (!h) {
        serve_set_error("serve_call_async: no handle");
        return NULL;
    }
    calls_hub *hub = h->hub;
    serve_future *f = calloc(1, sizeof(*f));
    if (!f) {
        serve_set_error("out of memory starting a call to %s", h->target);
        return NULL;
    }
    f->hub = hub;
    pthread_mutex_lock(&hub->mu);
    if (!hub->open) {
        pthread_mutex_unlock(&hub->mu);
        free(f);
        serve_set_error("%s cannot be called now: calls are made from handle, while the replica "
                        "serves",
                        h->target);
        return NULL;
    }
    f->id = ++hub->next_id;
    pending_link(hub, f);
    char id_buf[32];
    serve_request req = call_request(parent, opts, id_buf, sizeof(id_buf), f->id);
    double t = opts && opts->timeout_s > 0 ? opts->timeout_s * 1000 : 0;
    uint32_t timeout_ms = t > UINT32_MAX ? UINT32_MAX : t > 0 && t < 1 ? 1 : (uint32_t)t;
    if (send_frame(hub, f->id, h, timeout_ms, &req) != 0)
        fail_locally(f, 503, "out of memory sending a handle call");
    pthread_mutex_unlock(&hub->mu);
    return f;
}

/* Absolute CLOCK_MONOTONIC time `s` seconds from now. */
static struct timespec deadline_in(double s)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    double whole = (double)(time_t)s;
    ts.tv_sec += (time_t)whole;
    ts.tv_nsec += (long)((s - whole) * 1e9);
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

int serve_future_wait_all(serve_future *const *fs, size_t n, double timeout_s)
{
    if (n == 0) return 0;
    calls_hub *hub = fs[0]->hub;
    pthread_condattr_t attr;
    pthread_cond_t cv;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&cv, &attr);
    pthread_condattr_destroy(&attr);
    struct timespec until = deadline_in(timeout_s < 0 ? 0 : timeout_s);
    int rc = 0;
    pthread_mutex_lock(&hub->mu);
    for (size_t i = 0; i < n; i++) fs[i]->waiter = &cv;
    for (size_t i = 0; i < n && rc == 0;) {
        if (fs[i]->status) {
            i++;
            continue;
        }
        if (timeout_s < 0)
            pthread_cond_wait(&cv, &hub->mu);
        else if (pthread_cond_timedwait(&cv, &hub->mu, &until) == ETIMEDOUT && !fs[i]->status)
            rc = -1;
    }
    for (size_t i = 0; i < n; i++) fs[i]->waiter = NULL;
    pthread_mutex_unlock(&hub->mu);
    pthread_cond_destroy(&cv);
    return rc;
}

int serve_future_wait(serve_future *f, double timeout_s)
{
    return serve_future_wait_all(&f, 1, timeout_s);
}

/* Stop waiting for an unanswered future: the serve process drops the call
   (hub lock held). */
static void cancel_locked(serve_future *f)
{
    if (f->status) return;
    pending_unlink(f->hub, f);
    send_frame(f->hub, f->id, NULL, 0, NULL); /* best effort: its answer is dropped anyway */
}

serve_future *serve_call(serve_handle *h, const serve_request *parent,
                         const serve_call_options *opts, double timeout_s)
{
    serve_future *f = serve_call_async(h, parent, opts);
    if (!f || serve_future_wait(f, timeout_s) == 0) return f;
    pthread_mutex_lock(&f->hub->mu);
    if (!f->status) {
        char msg[128];
        snprintf(msg, sizeof(msg), "no answer from %s within %g s", h->target, timeout_s);
        cancel_locked(f);
        fail_locally(f, 504, msg);
    }
    pthread_mutex_unlock(&f->hub->mu);
    return f;
}

/* ---- Answers ------------------------------------------------------------- */

/* The getters read what the loop thread wrote under the hub lock; a caller
   that saw status != 0 through wait (which took the lock) sees it all. */
int serve_future_status(const serve_future *f)
{
    if (!f) return 0;
    pthread_mutex_lock(&f->hub->mu);
    int status = f->status;
    pthread_mutex_unlock(&f->hub->mu);
    return status;
}

const void *serve_future_body(const serve_future *f, size_t *len)
{
    if (len) *len = f && f->status ? f->body.len : 0;
    if (!f || !f->status) return NULL;
    return f->body.data ? f->body.data : "";
}

const char *serve_future_header(const serve_future *f, const char *name)
{
    for (size_t i = 0; f && f->status && name && i < f->n_headers; i++)
        if (strcasecmp(f->headers[i].name, name) == 0) return f->headers[i].value;
    return NULL;
}

const char *serve_future_error(const serve_future *f)
{
    if (!f || f->status < 400) return NULL;
    serve_future *m = (serve_future *)f; /* the message is made once, on demand */
    if (!m->error) {
        json_t *obj = json_loadb(f->body.data ? f->body.data : "", f->body.len, 0, NULL);
        const char *e = json_string_value(json_object_get(obj, "error"));
        m->error = strdup(e ? e : f->body.data ? f->body.data : "");
        json_decref(obj);
    }
    return m->error ? m->error : "out of memory";
}

void serve_future_free(serve_future *f)
{
    if (!f) return;
    pthread_mutex_lock(&f->hub->mu);
    cancel_locked(f);
    pthread_mutex_unlock(&f->hub->mu);
    for (size_t i = 0; i < f->n_headers; i++) {
        free((char *)f->headers[i].name);
        free((char *)f->headers[i].value);
    }
    free(f->headers);
    ipc_buf_free(&f->body);
    free(f->error);
    free(f);
}
