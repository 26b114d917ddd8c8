/*
 * router.c - the HTTP proxy. See router.h for the shape; this file is the
 * life of one request:
 *
 *   uri_log callback      allocate the request (rreq), keep the raw query
 *   access handler #1     remember method and url; return (never answer in
 *                         the first call: libmicrohttpd would then close a
 *                         keep-alive connection)
 *   access handler #2..   append body chunks (413 past the limit)
 *   access handler, last  builtin endpoint, 404, or: pick a backend, append
 *                         a REQUEST frame to its output, suspend the
 *                         connection (or wait in the pool's FIFO)
 *   RESPONSE frame        build the MHD response, resume the connection;
 *                         a check handle runs MHD once per loop turn after
 *                         the replies of that turn, and the access handler
 *                         queues the response
 *   completed callback    free the request
 *
 * Requests in flight are found by id through a slot table: the id is
 * (generation << 32 | slot), so a late reply to a finished request (stale
 * generation) is recognised and dropped.
 */
#include "router/router.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "ipc/ipc.h"

#define ROUTER_IDLE_TIMEOUT_S   60
#define ROUTER_CONNECTION_LIMIT 16384
#define ROUTER_LISTEN_BACKLOG   1024
#define ROUTER_MAX_REQUEST_ID   64
#define ROUTER_PUMP_ROUNDS      8

typedef enum rq_state { RQ_NEW, RQ_BODY, RQ_WAITING, RQ_SENT, RQ_ANSWERED } rq_state;

typedef struct rreq rreq;

struct rreq {
    router *r;
    struct MHD_Connection *conn;
    rq_state state;
    int suspended;
    uint64_t id;
    const char *url; /* MHD's, valid for the request's lifetime */
    const char *method;
    const char *route_path;
    char *query;
    ipc_buf body;
    int body_too_large;
    router_pool *pool;
    router_backend *backend;
    rreq *prev, *next; /* in the backend's in-flight list or the pool's FIFO */
    int status;
    struct MHD_Response *response;
    char request_id[ROUTER_MAX_REQUEST_ID + 1];
};

/* A doubly linked list of requests. */
typedef struct rq_list {
    rreq *head, *tail;
    size_t n;
} rq_list;

struct router_pool {
    router_pool *next;
    char *app;
    char *dep;
    router_backend **backends;
    size_t n_backends, cap_backends;
    size_t rr;
    rq_list waiting;
};

struct router_backend {
    router *r;
    router_pool *pool;
    ipc_conn *conn;
    char *replica_id;
    void *data;
    rq_list inflight;
};

struct router {
    uv_loop_t *loop;
    router_options opts;
    char *host;
    struct MHD_Daemon *mhd;
    uv_poll_t poll;
    uv_timer_t timer;
    uv_check_t pump;
    uv_timer_t drain_timer;
    routes *routes;
    router_pool *pools;
    /* slot table: id -> request */
    rreq **slots;
    uint32_t cap_slots, n_free;
    uint32_t *free_slots;
    uint32_t generation;
    size_t active; /* requests between uri_log and completed */
    uint64_t id_seed, id_counter;
    serve_header *hdr_scratch;
    size_t cap_hdr;
    int draining;
    void (*drain_done)(void *);
    void *drain_arg;
    int closing;
    int pending_closes; /* open backend connections and, once closing, handles */
};

static void mhd_pump(router *r);
static void on_check(uv_check_t *h);
static void on_timer(uv_timer_t *h);
static void router_free(router *r);

/* ---- Request lists ----------------------------------------------------- */

static void list_push(rq_list *l, rreq *rq)
{
    rq->next = NULL;
    rq->prev = l->tail;
    if (l->tail)
        l->tail->next = rq;
    else
        l->head = rq;
    l->tail = rq;
    l->n++;
}

static void list_remove(rq_list *l, rreq *rq)
{
    if (rq->prev)
        rq->prev->next = rq->next;
    else
        l->head = rq->next;
    if (rq->next)
        rq->next->prev = rq->prev;
    else
        l->tail = rq->prev;
    rq->prev = rq->next = NULL;
    l->n--;
}

static rreq *list_pop(rq_list *l)
{
    rreq *rq = l->head;
    if (rq) list_remove(l, rq);
    return rq;
}

/* ---- Slot table -------------------------------------------------------- */

static int slot_alloc(router *r, rreq *rq)
{
    if (r->n_free == 0) {
        uint32_t cap = r->cap_slots ? r->cap_slots * 2 : 256;
        rreq **slots = realloc(r->slots, cap * sizeof(*slots));
        uint32_t *free_slots = slots ? realloc(r->free_slots, cap * sizeof(*free_slots)) : NULL;
        if (slots) r->slots = slots;
        if (!free_slots) return -ENOMEM;
        r->free_slots = free_slots;
        for (uint32_t i = cap; i > r->cap_slots; i--) {
            r->slots[i - 1] = NULL;
            r->free_slots[r->n_free++] = i - 1;
        }
        r->cap_slots = cap;
    }
    uint32_t slot = r->free_slots[--r->n_free];
    r->slots[slot] = rq;
    rq->id = ((uint64_t)++r->generation << 32) | slot;
    return 0;
}

static void slot_free(router *r, rreq *rq)
{
    uint32_t slot = (uint32_t)rq->id;
    if (rq->id == 0 || slot >= r->cap_slots || r->slots[slot] != rq) return;
    r->slots[slot] = NULL;
    r->free_slots[r->n_free++] = slot;
    rq->id = 0;
}

static rreq *slot_find(router *r, uint64_t id)
{
    uint32_t slot = (uint32_t)id;
    if (slot >= r->cap_slots || !r->slots[slot] || r->slots[slot]->id != id) return NULL;
    return r->slots[slot];
}

/* ---- Answering --------------------------------------------------------- */

/* Give `rq` its response and wake its connection if it sleeps. */
static void answer(rreq *rq, int status, struct MHD_Response *resp)
{
    router *r = rq->r;
    if (rq->response) MHD_destroy_response(rq->response);
    MHD_add_response_header(resp, "x-request-id", rq->request_id);
    rq->status = status;
    rq->response = resp;
    rq->state = RQ_ANSWERED;
    slot_free(r, rq);
    if (rq->suspended) {
        rq->suspended = 0;
        MHD_resume_connection(rq->conn);
        uv_check_start(&r->pump, on_check);
    }
}

static struct MHD_Response *json_response(json_t *obj)
{
    char *text = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
    json_decref(obj);
    const char *body = text ? text : "{\"error\":\"out of memory\"}";
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_MUST_COPY);
    free(text);
    if (resp) MHD_add_response_header(resp, "content-type", "application/json");
    return resp;
}

/* Answer with {"error": reason} (and the request id, so logs can be found). */
static void answer_error(rreq *rq, int status, const char *fmt, ...)
{
    char reason[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    struct MHD_Response *resp = json_response(json_pack("{s:s}", "error", reason));
    if (resp) answer(rq, status, resp);
}

/* Headers the proxy sets itself; a plugin's copy would be wrong or doubled. */
static int hop_by_hop(const char *name)
{
    static const char *const names[] = {"content-length", "transfer-encoding", "connection",
                                        "keep-alive", "x-request-id"};
    for (size_t i = 0; i < UTIL_ARRAY_LEN(names); i++)
        if (strcasecmp(name, names[i]) == 0) return 1;
    return 0;
}

/* ---- Backends ---------------------------------------------------------- */

typedef struct hdr_acc {
    router *r;
    size_t n;
    int oom;
} hdr_acc;

static enum MHD_Result add_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                  const char *value)
{
    hdr_acc *acc = cls;
    router *r = acc->r;
    if (acc->n == r->cap_hdr) {
        size_t cap = r->cap_hdr ? r->cap_hdr * 2 : 32;
        serve_header *h = realloc(r->hdr_scratch, cap * sizeof(*h));
        if (!h) {
            acc->oom = 1;
            return MHD_NO;
        }
        r->hdr_scratch = h;
        r->cap_hdr = cap;
    }
    r->hdr_scratch[acc->n++] = (serve_header){key, value ? value : ""};
    return MHD_YES;
}

/* Encode `rq` into the backend's output; it leaves at the end of this loop
   turn together with every other frame queued meanwhile. */
static void send_request(rreq *rq, router_backend *b)
{
    router *r = rq->r;
    hdr_acc acc = {r, 0, 0};
    MHD_get_connection_values(rq->conn, MHD_HEADER_KIND, add_header, &acc);
    serve_request req = {
        .method = rq->method,
        .path = rq->url,
        .route_path = rq->route_path,
        .query = rq->query ? rq->query : "",
        .request_id = rq->request_id,
        .headers = r->hdr_scratch,
        .n_headers = acc.n,
        .body = rq->body.data ? rq->body.data : "",
        .body_len = rq->body.len,
    };
    if (acc.oom || slot_alloc(r, rq) != 0) {
        answer_error(rq, 503, "proxy out of memory");
        return;
    }
    if (ipc_request_encode(ipc_conn_out(b->conn), rq->id, &req) != 0) {
        answer_error(rq, 413, "request too large to forward");
        return;
    }
    ipc_conn_flush_later(b->conn);
    ipc_buf_free(&rq->body);
    rq->state = RQ_SENT;
    rq->backend = b;
    list_push(&b->inflight, rq);
}

/* Round-robin over the pool's ready backends; NULL when it has none. */
static router_backend *pick_backend(router_pool *p)
{
    if (p->n_backends == 0) return NULL;
    return p->backends[p->rr++ % p->n_backends];
}

static void dispatch(rreq *rq)
{
    router_backend *b = pick_backend(rq->pool);
    if (b) {
        send_request(rq, b);
    } else {
        rq->state = RQ_WAITING;
        list_push(&rq->pool->waiting, rq);
    }
}

static void on_backend_frame(ipc_conn *c, const ipc_frame *f)
{
    router_backend *b = ipc_conn_data(c);
    rreq *rq = slot_find(b->r, f->id);
    if (f->type != IPC_RESPONSE || !rq || rq->backend != b) return; /* late: already answered */
    list_remove(&b->inflight, rq);
    rq->backend = NULL;
    ipc_response res;
    if (ipc_response_decode(f->payload, f->len, &res) != 0) {
        answer_error(rq, 502, "malformed response from replica %s", b->replica_id);
        return;
    }
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(res.body_len, (void *)res.body, MHD_RESPMEM_MUST_COPY);
    if (!resp) {
        ipc_response_release(&res);
        answer_error(rq, 503, "proxy out of memory");
        return;
    }
    for (size_t i = 0; i < res.n_headers; i++)
        if (!hop_by_hop(res.headers[i].name))
            MHD_add_response_header(resp, res.headers[i].name, res.headers[i].value);
    ipc_response_release(&res);
    answer(rq, res.status, resp);
}

static void pool_detach(router_pool *p, router_backend *b)
{
    for (size_t i = 0; i < p->n_backends; i++) {
        if (p->backends[i] != b) continue;
        p->backends[i] = p->backends[--p->n_backends];
        return;
    }
}

/* The replica's socket closed: whatever it was running is lost. */
static void on_backend_close(ipc_conn *c, int status)
{
    router_backend *b = ipc_conn_data(c);
    router *r = b->r;
    rreq *rq;
    pool_detach(b->pool, b);
    while ((rq = list_pop(&b->inflight))) {
        rq->backend = NULL;
        answer_error(rq, 502, "replica %s of %s/%s exited while handling the request",
                     b->replica_id, b->pool->app, b->pool->dep);
    }
    if (r->opts.on_backend_closed) r->opts.on_backend_closed(b->data, r->opts.cb_arg);
    free(b->replica_id);
    free(b);
    if (--r->pending_closes == 0 && r->closing) router_free(r);
}

int router_add_backend(router *r, router_pool *p, int fd, const char *replica_id, void *data,
                       router_backend **out)
{
    int rc = -ENOMEM;
    router_backend *b = calloc(1, sizeof(*b));
    if (!b || !(b->replica_id = strdup(replica_id))) goto fail;
    if (p->n_backends == p->cap_backends) {
        size_t cap = p->cap_backends ? p->cap_backends * 2 : 4;
        router_backend **v = realloc(p->backends, cap * sizeof(*v));
        if (!v) goto fail;
        p->backends = v;
        p->cap_backends = cap;
    }
    b->r = r;
    b->pool = p;
    b->data = data;
    rc = ipc_conn_open(r->loop, fd, on_backend_frame, on_backend_close, b, &b->conn);
    fd = -1; /* owned by the connection now, even on failure */
    if (rc < 0) goto fail;
    p->backends[p->n_backends++] = b;
    r->pending_closes++; /* the router outlives every backend connection */
    *out = b;
    rreq *rq;
    while ((rq = list_pop(&p->waiting))) send_request(rq, pick_backend(p));
    return 0;
fail:
    if (fd >= 0) close(fd);
    if (b) free(b->replica_id);
    free(b);
    return rc;
}

void router_remove_backend(router *r, router_backend *b)
{
    pool_detach(b->pool, b);
    ipc_conn_close(b->conn);
}

/* ---- Pools and routes -------------------------------------------------- */

router_pool *router_pool_get(router *r, const char *app, const char *dep)
{
    router_pool *p;
    for (p = r->pools; p; p = p->next)
        if (strcmp(p->app, app) == 0 && strcmp(p->dep, dep) == 0) return p;
    p = calloc(1, sizeof(*p));
    if (!p) return NULL;
    p->app = strdup(app);
    p->dep = strdup(dep);
    if (!p->app || !p->dep) {
        free(p->app);
        free(p->dep);
        free(p);
        return NULL;
    }
    p->next = r->pools;
    r->pools = p;
    return p;
}

int router_set_routes(router *r, const char *const *prefixes, const char *const *apps,
                      router_pool *const *pools, size_t n)
{
    route_entry *e = calloc(n ? n : 1, sizeof(*e));
    if (!e) return -ENOMEM;
    for (size_t i = 0; i < n; i++) e[i] = (route_entry){prefixes[i], apps[i], pools[i]};
    routes *t;
    int rc = routes_new(e, n, &t);
    free(e);
    if (rc != 0) return rc;
    routes_free(r->routes);
    r->routes = t;
    return 0;
}

/* ---- Builtin endpoints ------------------------------------------------- */

static struct MHD_Response *text_response(const char *text)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_PERSISTENT);
    if (resp) MHD_add_response_header(resp, "content-type", "text/plain");
    return resp;
}

static void answer_builtin(rreq *rq)
{
    router *r = rq->r;
    struct MHD_Response *resp;
    if (strcmp(rq->url, "/-/healthz") == 0) {
        if (r->draining)
            answer_error(rq, 503, "draining: the server is shutting down");
        else if ((resp = text_response("success")))
            answer(rq, 200, resp);
        return;
    }
    if (strcmp(rq->url, "/-/routes") == 0) {
        json_t *obj = json_object();
        for (size_t i = 0; i < routes_count(r->routes); i++) {
            const route_entry *e = routes_at(r->routes, i);
            json_object_set_new(obj, e->prefix, json_string(e->app));
        }
        resp = json_response(obj);
        if (resp) answer(rq, 200, resp);
        return;
    }
    answer_error(rq, 404, "no such endpoint: %s", rq->url);
}

/* ---- libmicrohttpd callbacks ------------------------------------------- */

/* Keep the client's x-request-id when it is sane, else make one. */
static void set_request_id(rreq *rq)
{
    const char *given = MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND, "x-request-id");
    size_t n = given ? strlen(given) : 0;
    int ok = n > 0 && n <= ROUTER_MAX_REQUEST_ID;
    for (size_t i = 0; ok && i < n; i++) ok = given[i] > 32 && given[i] < 127;
    if (ok)
        memcpy(rq->request_id, given, n + 1);
    else
        snprintf(rq->request_id, sizeof(rq->request_id), "%016" PRIx64,
                 util_mix64(rq->r->id_seed + ++rq->r->id_counter));
}

/* The request is complete: answer it here or send it on. */
static void start_request(rreq *rq)
{
    router *r = rq->r;
    set_request_id(rq);
    const route_entry *e = NULL;
    if (rq->body_too_large)
        answer_error(rq, 413, "request body larger than the limit of %zu bytes",
                     r->opts.max_body_bytes);
    else if (strncmp(rq->url, "/-/", 3) == 0)
        answer_builtin(rq);
    else if (!(e = routes_match(r->routes, rq->url, &rq->route_path)))
        answer_error(rq, 404, "no application serves the path %s", rq->url);
    else if (r->draining)
        answer_error(rq, 503, "draining: the server is shutting down");
    else {
        rq->pool = e->target;
        dispatch(rq);
    }
}

static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
    router *r = cls;
    rreq *rq = calloc(1, sizeof(*rq));
    if (!rq) return NULL;
    rq->r = r;
    rq->conn = conn;
    const char *q = strchr(uri, '?');
    if (q && !(rq->query = strdup(q + 1))) {
        free(rq);
        return NULL;
    }
    r->active++;
    return rq;
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version, const char *upload,
                                 size_t *upload_size, void **con_cls)
{
    router *r = cls;
    rreq *rq = *con_cls;
    if (!rq) return MHD_NO; /* out of memory in on_uri */
    if (rq->state == RQ_NEW) {
        rq->state = RQ_BODY;
        rq->url = url;
        rq->method = method;
        return MHD_YES;
    }
    if (*upload_size) {
        if (rq->body.len + *upload_size > r->opts.max_body_bytes)
            rq->body_too_large = 1;
        else
            ipc_buf_put(&rq->body, upload, *upload_size);
        if (rq->body.oom) rq->body_too_large = 1;
        *upload_size = 0;
        return MHD_YES;
    }
    if (rq->state == RQ_BODY) {
        start_request(rq);
        if (rq->state != RQ_ANSWERED) {
            rq->suspended = 1;
            MHD_suspend_connection(conn);
            return MHD_YES;
        }
    }
    if (!rq->response) return MHD_NO;
    enum MHD_Result ret = MHD_queue_response(conn, (unsigned)rq->status, rq->response);
    MHD_destroy_response(rq->response);
    rq->response = NULL;
    return ret;
}

static void maybe_drained(router *r);

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode code)
{
    router *r = cls;
    rreq *rq = *con_cls;
    if (!rq) return;
    *con_cls = NULL;
    if (rq->state == RQ_SENT && rq->backend) list_remove(&rq->backend->inflight, rq);
    if (rq->state == RQ_WAITING) list_remove(&rq->pool->waiting, rq);
    slot_free(r, rq);
    if (rq->response) MHD_destroy_response(rq->response);
    ipc_buf_free(&rq->body);
    free(rq->query);
    free(rq);
    r->active--;
    maybe_drained(r);
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    char line[512];
    vsnprintf(line, sizeof(line), fmt, ap);
    line[strcspn(line, "\n")] = '\0';
    log_warn("http: %s", line);
}

/* ---- Driving libmicrohttpd from the loop ------------------------------- */

/* Run MHD until it has nothing due now, then arm the timer for its next
   deadline. After resumes MHD reports a zero timeout for a round or two. */
static void mhd_pump(router *r)
{
    MHD_UNSIGNED_LONG_LONG ms = 0;
    uv_check_stop(&r->pump);
    if (!r->mhd) return;
    for (int i = 0; i < ROUTER_PUMP_ROUNDS; i++) {
        MHD_run(r->mhd);
        if (MHD_get_timeout(r->mhd, &ms) != MHD_YES) {
            uv_timer_stop(&r->timer);
            return;
        }
        if (ms > 0) break;
    }
    uv_timer_start(&r->timer, on_timer, ms, 0);
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    mhd_pump(h->data);
}

static void on_timer(uv_timer_t *h)
{
    mhd_pump(h->data);
}

static void on_check(uv_check_t *h)
{
    mhd_pump(h->data);
}

/* Bind the listening socket ourselves: errors then name the real cause. */
static int listen_on(const char *host, int port, char *err, size_t errlen)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *ai;
    char service[16];
    snprintf(service, sizeof(service), "%d", port);
    int rc = getaddrinfo(host, service, &hints, &ai);
    if (rc != 0) {
        snprintf(err, errlen, "http_options.host: cannot resolve '%s': %s", host, gai_strerror(rc));
        return -EINVAL;
    }
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, ROUTER_LISTEN_BACKLOG) != 0) {
        rc = -errno;
        snprintf(err, errlen, "cannot listen on %s:%d: %s", host, port, strerror(errno));
        if (fd >= 0) close(fd);
        fd = rc;
    }
    freeaddrinfo(ai);
    return fd;
}

int router_start(uv_loop_t *loop, const router_options *opts, router **out, char *err,
                 size_t errlen)
{
    int rc = -ENOMEM;
    router *r = calloc(1, sizeof(*r));
    if (!r) goto fail_alloc;
    r->loop = loop;
    r->opts = *opts;
    r->id_seed = util_mix64((uint64_t)uv_hrtime() ^ ((uint64_t)getpid() << 32));
    int fd = listen_on(opts->host, opts->port, err, errlen);
    if (fd < 0) {
        rc = fd;
        goto fail_listen;
    }
    r->mhd = MHD_start_daemon(
        MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_TURBO | MHD_USE_ERROR_LOG, 0, NULL, NULL,
        on_access, r, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, r, MHD_OPTION_LISTEN_SOCKET, fd,
        MHD_OPTION_URI_LOG_CALLBACK, on_uri, r, MHD_OPTION_NOTIFY_COMPLETED, on_completed, r,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)ROUTER_IDLE_TIMEOUT_S, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)ROUTER_CONNECTION_LIMIT, MHD_OPTION_END);
    if (!r->mhd) {
        close(fd);
        snprintf(err, errlen, "cannot start the HTTP server on %s:%d", opts->host, opts->port);
        rc = -EIO;
        goto fail_listen;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(r->mhd, MHD_DAEMON_INFO_EPOLL_FD);
    uv_poll_init(loop, &r->poll, info->epoll_fd);
    uv_timer_init(loop, &r->timer);
    uv_check_init(loop, &r->pump);
    uv_timer_init(loop, &r->drain_timer);
    r->poll.data = r->timer.data = r->pump.data = r->drain_timer.data = r;
    uv_poll_start(&r->poll, UV_READABLE, on_poll);
    mhd_pump(r);
    *out = r;
    return 0;

fail_listen:
    free(r);
fail_alloc:
    return rc;
}

/* ---- Drain and close --------------------------------------------------- */

/* Answer every request still waiting or in flight with `status`. */
static void fail_all(router *r, int status, const char *why)
{
    for (router_pool *p = r->pools; p; p = p->next) {
        rreq *rq;
        while ((rq = list_pop(&p->waiting))) answer_error(rq, status, "%s", why);
        for (size_t i = 0; i < p->n_backends; i++)
            while ((rq = list_pop(&p->backends[i]->inflight))) {
                rq->backend = NULL;
                answer_error(rq, status, "%s", why);
            }
    }
}

static void drain_finish(router *r)
{
    void (*done)(void *) = r->drain_done;
    r->drain_done = NULL;
    uv_timer_stop(&r->drain_timer);
    if (done) done(r->drain_arg);
}

static void maybe_drained(router *r)
{
    if (r->draining && r->active == 0 && r->drain_done) drain_finish(r);
}

static void on_drain_timeout(uv_timer_t *h)
{
    router *r = h->data;
    if (r->active > 0) {
        log_warn("drain timed out with %zu requests unfinished; answering them 503", r->active);
        fail_all(r, 503, "draining: the server is shutting down");
        mhd_pump(r);
    }
    drain_finish(r);
}

void router_drain(router *r, double timeout_s, void (*done)(void *), void *arg)
{
    r->drain_done = done;
    r->drain_arg = arg;
    if (!r->draining) {
        r->draining = 1;
        int fd = MHD_quiesce_daemon(r->mhd);
        if (fd >= 0) close(fd);
    }
    if (r->active == 0) {
        /* Call back from the loop, never from inside the caller. */
        uv_timer_start(&r->drain_timer, on_drain_timeout, 0, 0);
        return;
    }
    uv_timer_start(&r->drain_timer, on_drain_timeout, (uint64_t)(timeout_s * 1000), 0);
}

/* Last close callback: release what the router owns. */
static void router_free(router *r)
{
    router_pool *p = r->pools;
    while (p) {
        router_pool *next = p->next;
        free(p->backends);
        free(p->app);
        free(p->dep);
        free(p);
        p = next;
    }
    routes_free(r->routes);
    free(r->slots);
    free(r->free_slots);
    free(r->hdr_scratch);
    free(r);
}

static void on_handle_closed(uv_handle_t *h)
{
    router *r = h->data;
    if (--r->pending_closes == 0) router_free(r);
}

void router_close(router *r)
{
    if (r->closing) return;
    r->closing = 1;
    /* MHD must never be stopped with suspended connections: wake them all
       with an answer first and let MHD take them off its suspended list. */
    fail_all(r, 503, "draining: the server is shutting down");
    MHD_run(r->mhd);
    MHD_stop_daemon(r->mhd);
    r->mhd = NULL;
    for (router_pool *p = r->pools; p; p = p->next)
        for (size_t i = 0; i < p->n_backends; i++) ipc_conn_close(p->backends[i]->conn);
    uv_handle_t *handles[] = {(uv_handle_t *)&r->poll, (uv_handle_t *)&r->timer,
                              (uv_handle_t *)&r->pump, (uv_handle_t *)&r->drain_timer};
    for (size_t i = 0; i < UTIL_ARRAY_LEN(handles); i++) {
        r->pending_closes++;
        uv_close(handles[i], on_handle_closed);
    }
}
