/*
 * router.c - the HTTP proxy. See router.h for the shape; this file is the
 * life of one request (rreq):
 *
 *   uri_log callback      allocate the rreq, keep the raw query
 *   access handler #1     refuse a declared body over the limit (413);
 *                         otherwise just note method and url (answering in
 *                         the first call would close a keep-alive connection)
 *   access handler #2..   append body chunks (413 once past the limit)
 *   access handler, last  builtin endpoint or 404, or: set the deadline,
 *                         pick a replica with room (else wait in the
 *                         deployment's FIFO, or 503 when it is full), append
 *                         a REQUEST frame to the replica's output, suspend
 *   RESPONSE frame        build the MHD response, resume the connection; an
 *                         idle handle runs MHD once at the start of the next
 *                         loop turn, after all of this turn's replies (and
 *                         without blocking in between), and the access
 *                         handler queues it
 *   completed callback    access log line; free the rreq, unless its replica
 *                         still owes an answer (then it is freed when that
 *                         answer or the replica's CANCELLED comes)
 *
 * Two lifetimes meet in an rreq: the client's (until libmicrohttpd's
 * completed callback: http_done) and the replica slot's (while `backend` is
 * set, the replica counts it as ongoing). It is freed when both are over.
 * A request that times out or whose client disconnects is answered at once
 * (408) and the replica is sent CANCEL; its slot frees when the replica
 * confirms or answers, so the router's count of ongoing requests is always
 * what the replica really runs.
 *
 * Replica slots are found by id through a slot table: the id is
 * (generation << 32 | slot), so a late frame for a finished request is
 * recognised and dropped.
 *
 * A handle call (a CALL frame from a replica) is an rreq too, with the
 * calling replica in place of the HTTP client: it is queued, dispatched,
 * timed out and cancelled like any request, and its answer goes back to the
 * caller as CALL_PART / CALL_RESULT frames. The caller lets go of it when
 * its answer is sent (or when the caller asks to cancel, or exits); that
 * step runs at the next loop turn (the reaper), as libmicrohttpd's
 * completed callback does for HTTP, so that no path frees a request that
 * its caller still holds.
 */
#include "router/router.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <microhttpd.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/httpd.h"
#include "common/log.h"
#include "common/util.h"
#include "ipc/ipc.h"

#define ROUTER_IDLE_TIMEOUT_S   60          /* no byte either way while a request is in progress */
#define ROUTER_MIN_BODY_RATE    (16 * 1024) /* a body averages this many bytes/s at least */
#define ROUTER_HEADER_TIMEOUT_S 10          /* when router_options leaves it 0 */
#define ROUTER_MAX_CONNECTIONS  16384       /* when router_options leaves it 0 */
#define ROUTER_FD_RESERVE       256         /* descriptors kept for replicas, logs, the admin API */
#define ROUTER_STREAM_BACKLOG   (64u << 20) /* streamed bytes held for a client that lags */
#define ROUTER_BODY_BUDGET      ((uint64_t)1 << 30) /* request bodies held at once */
#define ROUTER_MAX_REQUEST_ID   64
#define ROUTER_SWEEP_MS         1000 /* how often waiting clients are checked */
#define ROUTER_ACCESS_LINE      512
#define ROUTER_TIMEOUT_HEADER   "x-request-timeout-seconds"
#define ROUTER_MAX_TIMEOUT_S    (7 * 24 * 3600.0)
#define ROUTER_DISCARD_LIMIT    (1u << 20) /* body read past a 413 before we hang up */
#define ROUTER_BODY_PRESIZE     (1u << 20) /* body bytes reserved from Content-Length */
#define ROUTER_LOG_FIELDS       ((log_fields){.component = "proxy"})

typedef enum rq_state { RQ_NEW, RQ_BODY, RQ_ROUTED, RQ_ANSWERED } rq_state;

typedef struct rreq rreq;

/* A client connection, as far as its read deadlines go: a client must send
   a request line within keep_alive_timeout_s of the connection being ready
   (opened, or its last request completed), the headers within
   client_header_timeout_s of that line, and the body no slower than
   ROUTER_MIN_BODY_RATE after a grace of client_header_timeout_s. Otherwise it is cut (the sweep):
   idle, slow-header (slowloris) and slow-body clients cannot hold connections for good. */
typedef struct rconn {
    struct rconn *prev, *next;
    struct MHD_Connection *conn;
    uint64_t ready_ms;   /* loop time it became ready for a request */
    uint64_t line_ms;    /* its request line arrived; 0: not yet */
    uint64_t headers_ms; /* its headers were complete; 0: not yet */
    uint64_t body_bytes; /* body bytes read so far */
    int busy;            /* the request is in: the proxy owes the answer */
    int cut;             /* shut down by the sweep; MHD closes it */
} rconn;

struct rreq {
    dheap_node deadline; /* first: a heap node leads to its request */
    router *r;
    struct MHD_Connection *conn;
    rq_state state;
    int suspended;
    int queued;         /* in the pool's FIFO */
    int http_done;      /* libmicrohttpd has let go of it */
    int cancel_sent;    /* the replica was told to drop it */
    uint64_t cancel_ns; /* when (uv_hrtime) */
    uint64_t id;        /* replica slot id while `backend` is set */
    uint64_t start_ns;
    double timeout_s;
    const char *url; /* MHD's, valid until http_done */
    const char *method;
    const char *route_path;
    char *query;
    ipc_buf body;
    size_t body_counted; /* of the router's body budget */
    size_t discarded;    /* body bytes dropped after a 413 */
    router_pool *pool;
    router_backend *backend;
    rreq *prev, *next; /* in the backend's in-flight list or the pool's FIFO */
    int status;
    struct MHD_Response *response;
    /* A streamed response: parts arrive in `stream`; the content reader
       takes them out and sleeps (suspends the connection) when it is dry. */
    int streaming, stream_end, stream_aborted, reader_waiting;
    ipc_buf stream;
    size_t stream_off;
    char replica_id[17];
    char request_id[ROUTER_MAX_REQUEST_ID + 1];
    /* A handle call: the calling replica (NULL once it let go), the call's
       id there, and links in its list of calls or in the reap list. */
    int is_call;
    uint8_t frame_flags;     /* IPC_FLAG_INFER for a v2 infer request */
    http_route_stats *stats; /* where it counts; NULL: the unrouted entry */
    router_backend *caller;
    uint64_t call_id;
    rreq *call_prev, *call_next;
    /* From the request line until libmicrohttpd calls on_access: in the
       router's `fresh` list (see on_connection). */
    int fresh;
    rreq *fresh_prev, *fresh_next;
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
    unsigned max_ongoing;
    int max_queued;               /* -1: unbounded */
    uint64_t stuck_after_ns;      /* a cancel not honoured this long: stuck (0: never) */
    json_t *model;                /* declared tensors ({inputs, outputs}); NULL until reported */
    http_route_stats *http_stats; /* its application's route, when it is an ingress */
    http_route_stats *v2_stats;   /* its application's v2 infer endpoint */
    const balancer_ops *balancer;
    uint64_t lb_state;
    rq_list waiting;
    int closed; /* its deployment was removed: no new requests */
};

struct router_backend {
    lb_candidate lb; /* first: the balancer sees backends as candidates */
    router *r;
    router_pool *pool;
    ipc_conn *conn;
    char *replica_id;
    void *data;
    rq_list inflight;
    int retired; /* out of the pool: report when inflight empties */
    int stuck;   /* reported as stuck (once) */
    rreq *calls; /* handle calls this replica made and waits for */
};

struct router {
    uv_loop_t *loop;
    router_options opts;
    httpd *http;
    uv_timer_t drain_timer;
    uv_timer_t deadline_timer;
    uv_timer_t sweep_timer;
    uv_prepare_t log_flusher;
    uv_prepare_t reaper; /* lets go of answered handle calls */
    rreq *reap;          /* answered calls, linked by call_next */
    rreq *fresh;         /* requests not yet seen by on_access, by fresh_next */
    routes *routes;
    router_pool *pools;
    dheap deadlines;
    /* slot table: id -> request at a replica */
    rreq **slots;
    uint32_t cap_slots, n_free;
    uint32_t *free_slots;
    uint32_t generation;
    size_t active; /* requests between uri_log and completed */
    uint64_t id_seed, id_counter;
    serve_header *hdr_scratch;
    size_t cap_hdr;
    ipc_buf access_log;
    http_stats *stats;
    http_route_stats *unrouted; /* builtins, metadata, 404s */
    rconn *conns;               /* every client connection */
    uint64_t body_bytes;        /* request bodies held, against ROUTER_BODY_BUDGET */
    int draining;
    void (*drain_done)(void *);
    void *drain_arg;
    int closing;
    int pending_closes; /* open backend connections and, once closing, handles */
};

static void router_free(router *r);
static void pool_flush(router_pool *p);
static void call_answer(rreq *rq, int status, const char *json_body);
static int set_deadline(rreq *rq, double timeout_s);
static void on_reap(uv_prepare_t *h);
static void maybe_drained(router *r);
static void stream_abort(rreq *rq);

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
        if (slots) r->slots = slots;
        uint32_t *free_slots = slots ? realloc(r->free_slots, cap * sizeof(*free_slots)) : NULL;
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

/* ---- Access log -------------------------------------------------------- */

/* Lines are collected during a loop turn and written with one write(2)
   per destination. */
static void on_log_flush(uv_prepare_t *h)
{
    router *r = h->data;
    uv_prepare_stop(h);
    log_emit(r->access_log.data, r->access_log.len);
    r->access_log.len = 0;
}

/* One access line: the request's deployment, replica and id as fields,
   what happened as the message ("GET /x 200 0.412ms"). */
static void access_log_line(const rreq *rq, const char *fmt, ...)
{
    router *r = rq->r;
    char line[ROUTER_ACCESS_LINE];
    log_fields f = {"access", rq->pool ? rq->pool->app : NULL, rq->pool ? rq->pool->dep : NULL,
                    rq->replica_id[0] ? rq->replica_id : NULL, rq->request_id};
    va_list ap;
    va_start(ap, fmt);
    size_t n = log_format(line, sizeof(line), LOG_INFO, &f, fmt, ap);
    va_end(ap);
    ipc_buf_put(&r->access_log, line, n);
    uv_prepare_start(&r->log_flusher, on_log_flush);
}

static void log_request(const rreq *rq, uint64_t took_ns)
{
    if (!rq->r->opts.access_log || log_min_level > LOG_INFO || !rq->url) return;
    access_log_line(rq, "%s %.512s %d %.3fms", rq->method, rq->url, rq->status,
                    (double)took_ns / 1e6);
}

/* Count an HTTP request as it completes. One never answered (the client
   left first) counts as 499, nginx's "client closed request". */
static void count_request(const rreq *rq, uint64_t took_ns)
{
    http_route_stats *e = rq->stats ? rq->stats : rq->r->unrouted;
    if (e && rq->method)
        http_stats_record(e, rq->method, rq->status ? rq->status : 499, (double)took_ns / 1e9);
}

/* ---- Answering --------------------------------------------------------- */

/* Give `rq` its response and wake its connection if it sleeps. Only the
   first answer counts: a late reply after a 408 is dropped. */
static void answer(rreq *rq, int status, struct MHD_Response *resp)
{
    router *r = rq->r;
    if (rq->state == RQ_ANSWERED || rq->http_done) {
        MHD_destroy_response(resp);
        return;
    }
    MHD_add_response_header(resp, "x-request-id", rq->request_id);
    rq->status = status;
    rq->response = resp;
    rq->state = RQ_ANSWERED;
    dheap_remove(&r->deadlines, &rq->deadline);
    if (rq->suspended) {
        rq->suspended = 0;
        MHD_resume_connection(rq->conn);
        httpd_wake(r->http);
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

/* Answer with a JSON object (reference stolen) that has an "error" key. */
static void answer_json(rreq *rq, int status, json_t *obj)
{
    if (rq->is_call) {
        char *text = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
        json_decref(obj);
        call_answer(rq, status, text ? text : "{\"error\":\"out of memory\"}");
        free(text);
        return;
    }
    struct MHD_Response *resp = json_response(obj);
    if (resp) answer(rq, status, resp);
}

/* Answer with {"error": reason}. */
static void answer_error(rreq *rq, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void answer_error(rreq *rq, int status, const char *fmt, ...)
{
    char reason[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    answer_json(rq, status, json_pack("{s:s}", "error", reason));
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

/* ---- Retired backends -------------------------------------------------- */

static void report_drained(router_backend *b)
{
    router *r = b->r;
    b->retired = 0; /* once */
    if (r->opts.on_backend_drained) r->opts.on_backend_drained(b->data, r->opts.cb_arg);
}

/* ---- Client connections ------------------------------------------------ */

static rconn *conn_of(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

/* libmicrohttpd opened or closed a connection. One that gets no record
   (out of memory) has no read deadlines, only the idle timeout. */
static void drop_fresh(router *r, struct MHD_Connection *conn);

static void on_connection(void *cls, struct MHD_Connection *conn, void **ctx,
                          enum MHD_ConnectionNotificationCode code)
{
    router *r = cls;
    rconn *c = *ctx;
    if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
        drop_fresh(r, conn);
        /* At max_connections libmicrohttpd stopped watching the listening
           socket; it watches it again on its next run, and a client
           already waiting there raises no new event: run it once more. */
        httpd_wake(r->http);
    }
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        if (!(c = calloc(1, sizeof(*c)))) return;
        c->conn = conn;
        c->ready_ms = uv_now(r->loop);
        c->next = r->conns;
        if (r->conns) r->conns->prev = c;
        r->conns = c;
        *ctx = c;
    } else if (c) {
        if (c->prev)
            c->prev->next = c->next;
        else
            r->conns = c->next;
        if (c->next) c->next->prev = c->prev;
        free(c);
        *ctx = NULL;
    }
}

/* Which deadline `c` has missed at `now`, or NULL. */
static const char *overdue(const router *r, const rconn *c, uint64_t now)
{
    if (c->busy || c->cut) return NULL;
    if (!c->line_ms) { /* keep_alive_timeout_s 0: only the idle timeout */
        uint64_t keep_ms = (uint64_t)(r->opts.keep_alive_timeout_s * 1000);
        return keep_ms && now - c->ready_ms >= keep_ms ? "idle" : NULL;
    }
    uint64_t grace_ms = (uint64_t)(r->opts.client_header_timeout_s * 1000);
    if (!c->headers_ms) return now - c->line_ms >= grace_ms ? "slow headers" : NULL;
    uint64_t allowed = grace_ms + c->body_bytes * 1000 / ROUTER_MIN_BODY_RATE;
    return now - c->headers_ms >= allowed ? "slow body" : NULL;
}

/* Cut the connections past a deadline. Shutting the socket down makes
   libmicrohttpd see the end of it and close it the usual way (it owns the
   descriptor). Idle ones go quietly; slow ones are worth a line. */
static void sweep_conns(router *r)
{
    uint64_t now = uv_now(r->loop);
    unsigned cut = 0, slow = 0;
    for (rconn *c = r->conns; c; c = c->next) {
        const char *why = overdue(r, c, now);
        if (!why) continue;
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(c->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (!ci || shutdown(ci->connect_fd, SHUT_RDWR) != 0) continue;
        c->cut = 1;
        cut++;
        slow += strcmp(why, "idle") != 0;
    }
    if (slow && LOG_WARN >= log_min_level)
        log_write(LOG_WARN, &ROUTER_LOG_FIELDS,
                  "closed %u slow client connection(s): headers not complete %g s after the "
                  "request line, or a body slower than %d bytes/s after %g s",
                  slow, r->opts.client_header_timeout_s, ROUTER_MIN_BODY_RATE,
                  r->opts.client_header_timeout_s);
    if (cut) httpd_wake(r->http);
}

/* ---- Request memory ---------------------------------------------------- */

/* Bodies held by the proxy (read, not yet at a replica) count against
   ROUTER_BODY_BUDGET, so that many large uploads at once cannot take all
   memory: past it, new ones get 503. */
static void body_release(rreq *rq)
{
    rq->r->body_bytes -= rq->body_counted;
    rq->body_counted = 0;
    ipc_buf_free(&rq->body);
}

static void rreq_free(rreq *rq)
{
    if (rq->response) MHD_destroy_response(rq->response);
    body_release(rq);
    ipc_buf_free(&rq->stream);
    free(rq->query);
    free(rq);
}

/* The replica no longer runs `rq`: free its slot, let a waiting request
   have it, and free the request if the client is gone too. */
static void release_slot(rreq *rq)
{
    router_backend *b = rq->backend;
    list_remove(&b->inflight, rq);
    b->lb.ongoing--;
    rq->backend = NULL;
    slot_free(rq->r, rq);
    pool_flush(b->pool);
    if (rq->http_done) rreq_free(rq);
    if (b->retired && b->inflight.n == 0) report_drained(b);
}

/* Tell the replica to drop `rq`; the slot is released on its reply. */
static void send_cancel(rreq *rq)
{
    if (!rq->backend || rq->cancel_sent) return;
    rq->cancel_sent = 1;
    rq->cancel_ns = uv_hrtime();
    ipc_conn_send(rq->backend->conn, IPC_CANCEL, rq->id, NULL, 0);
}

/* Fail a request that may already be streaming: a stream is cut short, any
   other request answered with {"error": why}. */
static void fail_request(rreq *rq, int status, const char *why)
{
    if (rq->streaming)
        stream_abort(rq);
    else
        answer_error(rq, status, "%s", why);
}

/* Stop waiting for `rq`: out of the queue or cancelled at its replica,
   answered with `status` unless it already was. */
static void abandon(rreq *rq, int status, const char *why)
{
    router_pool *p = rq->pool;
    if (rq->queued) {
        list_remove(&p->waiting, rq);
        rq->queued = 0;
        answer_error(rq, status, "%s while waiting for a replica of %s/%s", why, p->app, p->dep);
    } else if (rq->backend) {
        char reason[256];
        snprintf(reason, sizeof(reason), "%s while replica %s of %s/%s was handling it", why,
                 rq->replica_id, p->app, p->dep);
        fail_request(rq, status, reason);
        send_cancel(rq);
    }
}

/* ---- Sending to replicas ----------------------------------------------- */

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

/* `rq` was queued in b's output: it is at that replica now. */
static void sent_to(rreq *rq, router_backend *b)
{
    ipc_conn_flush_later(b->conn);
    body_release(rq);
    rq->backend = b;
    b->lb.ongoing++;
    snprintf(rq->replica_id, sizeof(rq->replica_id), "%s", b->replica_id);
    list_push(&b->inflight, rq);
}

/* A call's request is forwarded as it came: its body holds the REQUEST
   payload the caller encoded. */
static void send_call(rreq *rq, router_backend *b)
{
    router *r = rq->r;
    if (slot_alloc(r, rq) != 0) {
        answer_error(rq, 503, "proxy out of memory");
        return;
    }
    if (ipc_frame_put(ipc_conn_out(b->conn), IPC_REQUEST, rq->id, rq->body.data, rq->body.len)) {
        ipc_conn_out(b->conn)->oom = 0;
        slot_free(r, rq);
        answer_error(rq, 503, "proxy out of memory");
        return;
    }
    sent_to(rq, b);
}

/* Encode `rq` into the backend's output; it leaves at the end of this loop
   turn together with every other frame queued meanwhile. */
static void send_request(rreq *rq, router_backend *b)
{
    router *r = rq->r;
    if (rq->is_call) {
        send_call(rq, b);
        return;
    }
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
    if (ipc_request_encode(ipc_conn_out(b->conn), rq->id, rq->frame_flags, &req) != 0) {
        slot_free(r, rq);
        answer_error(rq, 413, "request too large to forward");
        return;
    }
    sent_to(rq, b);
}

/* The balancer's choice among the pool's backends with room, or NULL. */
static router_backend *pick_backend(router_pool *p)
{
    if (p->n_backends == 0) return NULL;
    int i = p->balancer->pick((lb_candidate *const *)p->backends, p->n_backends, &p->lb_state);
    return i >= 0 ? p->backends[i] : NULL;
}

/* Send to a replica with room; else wait in the FIFO, unless it is full. */
static void dispatch(rreq *rq)
{
    router_pool *p = rq->pool;
    router_backend *b = p->waiting.n ? NULL : pick_backend(p);
    if (p->closed) {
        answer_error(rq, 503, "deployment %s/%s was removed", p->app, p->dep);
    } else if (b) {
        send_request(rq, b);
    } else if (p->max_queued >= 0 && p->waiting.n >= (size_t)p->max_queued) {
        answer_json(rq, 503,
                    json_pack("{s:s, s:I, s:i}", "error",
                              "queue full: no replica has room and max_queued_requests "
                              "requests are already waiting",
                              "queue_length", (json_int_t)p->waiting.n, "max_queued_requests",
                              p->max_queued));
    } else {
        rq->queued = 1;
        list_push(&p->waiting, rq);
    }
}

/* Send waiting requests, oldest first, while replicas have room. */
static void pool_flush(router_pool *p)
{
    router_backend *b;
    while (p->waiting.n && (b = pick_backend(p))) {
        rreq *rq = list_pop(&p->waiting);
        rq->queued = 0;
        send_request(rq, b);
    }
}

/* ---- Streamed responses ------------------------------------------------ */

/* Wake a connection whose content reader ran out of data. */
static void stream_wake(rreq *rq)
{
    if (!rq->reader_waiting) return;
    rq->reader_waiting = 0;
    rq->suspended = 0;
    MHD_resume_connection(rq->conn);
    httpd_wake(rq->r->http);
}

/* End a stream early: the client sees a truncated chunked body. */
static void stream_abort(rreq *rq)
{
    rq->stream_end = rq->stream_aborted = 1;
    stream_wake(rq);
}

/* libmicrohttpd asks for the next bytes of a streamed body. */
static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    rreq *rq = cls;
    size_t avail = rq->stream.len - rq->stream_off;
    if (avail) {
        size_t n = avail < max ? avail : max;
        memcpy(buf, rq->stream.data + rq->stream_off, n);
        rq->stream_off += n;
        if (rq->stream_off == rq->stream.len) rq->stream.len = rq->stream_off = 0;
        return (ssize_t)n;
    }
    if (rq->stream_end) {
        if (!rq->stream_aborted) return MHD_CONTENT_READER_END_OF_STREAM;
        /* libmicrohttpd (0.9.75, external epoll) marks the connection for
           closing but completes the close only on the connection's next
           event or timeout, and a cut socket has no further event: with
           other connections open, that was the 60 s idle timeout. Give
           this connection a 1 s timeout so the client learns soon. */
        MHD_set_connection_option(rq->conn, MHD_CONNECTION_OPTION_TIMEOUT, 1u);
        httpd_wake(rq->r->http);
        return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    rq->reader_waiting = 1;
    rq->suspended = 1;
    MHD_suspend_connection(rq->conn);
    return 0;
}

/* A part of a streamed response (or, `final`, the RESPONSE ending it). The
   first part answers the client with a chunked response. */
static void stream_part(rreq *rq, const ipc_frame *f, int final)
{
    ipc_response res;
    if (ipc_response_decode(f->payload, f->len, &res) != 0) {
        if (rq->streaming)
            stream_abort(rq);
        else
            answer_error(rq, 502, "malformed response from replica %s", rq->replica_id);
        return;
    }
    if (!rq->streaming) {
        rq->streaming = 1;
        struct MHD_Response *resp =
            MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 64 * 1024, stream_reader, rq, NULL);
        for (size_t i = 0; resp && i < res.n_headers; i++)
            if (!hop_by_hop(res.headers[i].name))
                MHD_add_response_header(resp, res.headers[i].name, res.headers[i].value);
        if (resp) answer(rq, res.status, resp);
    }
    /* The bytes of an aborted end are dropped: the stream is cut at its
       last complete part, and ends at once. */
    int aborted = final && (f->flags & IPC_FLAG_ABORTED);
    if (!rq->http_done && !aborted && !rq->stream_end)
        ipc_buf_put(&rq->stream, res.body, res.body_len);
    ipc_response_release(&res);
    if (!rq->stream_end && rq->stream.len - rq->stream_off > ROUTER_STREAM_BACKLOG) {
        /* The client reads slower than the replica writes: rather than hold
           all of it, cut the stream and stop the replica. */
        log_write(LOG_WARN, &ROUTER_LOG_FIELDS,
                  "request %s: the client lags %u MiB behind its stream; cutting it",
                  rq->request_id, ROUTER_STREAM_BACKLOG >> 20);
        stream_abort(rq);
        send_cancel(rq);
        return;
    }
    if (!rq->stream_end && (rq->stream.oom || final)) { /* a cut stream stays cut */
        rq->stream_end = 1;
        rq->stream_aborted = rq->stream.oom || aborted;
    }
    stream_wake(rq);
}

/* ---- Handle calls ------------------------------------------------------ */

static void call_link(rreq **head, rreq *rq)
{
    rq->call_prev = NULL;
    rq->call_next = *head;
    if (*head) (*head)->call_prev = rq;
    *head = rq;
}

static void call_unlink(rreq **head, rreq *rq)
{
    if (rq->call_prev)
        rq->call_prev->call_next = rq->call_next;
    else
        *head = rq->call_next;
    if (rq->call_next) rq->call_next->call_prev = rq->call_prev;
    rq->call_prev = rq->call_next = NULL;
}

/* The caller lets go of `rq` (at the next loop turn, see the top). */
static void call_release(rreq *rq)
{
    router *r = rq->r;
    if (rq->caller) call_unlink(&rq->caller->calls, rq);
    rq->caller = NULL;
    rq->call_next = r->reap;
    r->reap = rq;
    if (!r->closing) uv_prepare_start(&r->reaper, on_reap);
}

static void log_call(const rreq *rq)
{
    if (!rq->r->opts.access_log || log_min_level > LOG_INFO) return;
    access_log_line(rq, "CALL %d %.3fms", rq->status, (double)(uv_hrtime() - rq->start_ns) / 1e6);
}

/* The call's final answer is in: it counts once, and the caller lets go. */
static void call_finish(rreq *rq, int status)
{
    rq->status = status;
    rq->state = RQ_ANSWERED;
    dheap_remove(&rq->r->deadlines, &rq->deadline);
    log_call(rq);
    call_release(rq);
}

/* Answer a call from the router itself: a response with a JSON body. */
static void call_answer(rreq *rq, int status, const char *json_body)
{
    if (rq->state == RQ_ANSWERED) return;
    if (rq->caller) {
        serve_header h = {"content-type", "application/json"};
        ipc_conn *c = rq->caller->conn;
        if (ipc_response_encode_frame(ipc_conn_out(c), IPC_CALL_RESULT, 0, rq->call_id, status, &h,
                                      1, json_body, strlen(json_body)) != 0)
            ipc_conn_out(c)->oom = 0;
        ipc_conn_flush_later(c);
    }
    call_finish(rq, status);
}

/* Pass a callee's answer frame on to the caller, as it is. Returns 1 when
   it ends the request at the callee (RESPONSE or CANCELLED). */
static int call_forward(rreq *rq, const ipc_frame *f)
{
    int final = f->type == IPC_RESPONSE, part = f->type == IPC_RESPONSE_PART;
    if (!final && !part) return f->type == IPC_CANCELLED;
    if (rq->state == RQ_ANSWERED) return final; /* after a 408: dropped */
    ipc_conn *c = rq->caller ? rq->caller->conn : NULL;
    if (c && ipc_frame_put_flags(ipc_conn_out(c), final ? IPC_CALL_RESULT : IPC_CALL_PART, f->flags,
                                 rq->call_id, f->payload, f->len) != 0)
        ipc_conn_out(c)->oom = 0; /* too big to pass on: the caller gets a 502 */
    if (c) ipc_conn_flush_later(c);
    if (final)
        call_finish(rq, f->len >= 2 ? (uint8_t)f->payload[0] | (uint8_t)f->payload[1] << 8 : 0);
    return final;
}

static router_pool *pool_find(router *r, const char *app, const char *dep)
{
    for (router_pool *p = r->pools; p; p = p->next)
        if (strcmp(p->app, app) == 0 && strcmp(p->dep, dep) == 0) return p;
    return NULL;
}

/* The request id inside a REQUEST payload (its fifth string), for logs. */
static void copy_request_id(rreq *rq, const char *payload, size_t len)
{
    ipc_reader rd;
    ipc_reader_init(&rd, payload, len);
    for (int i = 0; i < 4; i++) ipc_get_str(&rd, NULL);
    const char *id = ipc_get_str(&rd, NULL);
    snprintf(rq->request_id, sizeof(rq->request_id), "%s", id ? id : "-");
}

/* A CALL from replica b: route it like an HTTP request to its target. */
static void start_call(router_backend *b, const ipc_frame *f)
{
    router *r = b->r;
    ipc_call call;
    rreq *rq = calloc(1, sizeof(*rq));
    if (!rq) { /* tell the caller, or it would wait for ever */
        static const char oom[] = "{\"error\":\"proxy out of memory\"}";
        serve_header h = {"content-type", "application/json"};
        ipc_response_encode_frame(ipc_conn_out(b->conn), IPC_CALL_RESULT, 0, f->id, 503, &h, 1, oom,
                                  sizeof(oom) - 1);
        ipc_conn_flush_later(b->conn);
        return;
    }
    *rq = (rreq){.r = r,
                 .is_call = 1,
                 .caller = b,
                 .call_id = f->id,
                 .state = RQ_ROUTED,
                 .start_ns = uv_hrtime(),
                 .deadline.index = SIZE_MAX};
    call_link(&b->calls, rq);
    if (ipc_call_decode(f->payload, f->len, &call) != 0) {
        answer_error(rq, 400, "malformed call from replica %s", b->replica_id);
        return;
    }
    copy_request_id(rq, call.request, call.request_len);
    router_pool *p = pool_find(r, call.app, call.deployment);
    if (!p || p->closed) {
        answer_error(rq, 404, "no deployment %s/%s", call.app, call.deployment);
        return;
    }
    rq->pool = p;
    ipc_buf_put(&rq->body, call.request, call.request_len);
    if (rq->body.oom || set_deadline(rq, call.timeout_ms / 1000.0) != 0)
        answer_error(rq, 503, "proxy out of memory");
    else
        dispatch(rq);
}

static void on_call_frame(router_backend *b, const ipc_frame *f)
{
    if (f->type == IPC_CALL) {
        start_call(b, f);
        return;
    }
    for (rreq *rq = b->calls; rq; rq = rq->call_next)
        if (rq->call_id == f->id) {
            abandon(rq, 499, "cancelled by the caller");
            return;
        }
}

/* Next loop turn: the caller has let go of these calls. Those still at a
   replica (timed out, cancelled) are freed when it confirms. */
static void on_reap(uv_prepare_t *h)
{
    router *r = h->data;
    uv_prepare_stop(h);
    rreq *rq;
    while ((rq = r->reap)) {
        r->reap = rq->call_next;
        rq->http_done = 1;
        if (rq->queued) {
            list_remove(&rq->pool->waiting, rq);
            rq->queued = 0;
        }
        if (rq->backend)
            send_cancel(rq);
        else
            rreq_free(rq);
    }
}

/* A replica that made calls is gone: nobody waits for their answers. */
static void orphan_calls(router_backend *b)
{
    rreq *rq;
    while ((rq = b->calls)) {
        call_unlink(&b->calls, rq);
        rq->caller = NULL;
        abandon(rq, 499, "the calling replica exited");
        if (rq->state != RQ_ANSWERED) call_finish(rq, 499);
    }
}

/* ---- Frames from replicas ---------------------------------------------- */

static void forward_response(rreq *rq, const ipc_frame *f)
{
    ipc_response res;
    if (ipc_response_decode(f->payload, f->len, &res) != 0) {
        answer_error(rq, 502, "malformed response from replica %s", rq->replica_id);
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

static void on_backend_frame(ipc_conn *c, const ipc_frame *f)
{
    router_backend *b = ipc_conn_data(c);
    if (f->type == IPC_CALL || f->type == IPC_CALL_CANCEL) {
        on_call_frame(b, f);
        return;
    }
    rreq *rq = slot_find(b->r, f->id);
    if (!rq || rq->backend != b) return;
    if (rq->is_call) {
        if (call_forward(rq, f)) release_slot(rq);
        return;
    }
    switch (f->type) {
    case IPC_RESPONSE_PART:
        stream_part(rq, f, 0);
        return; /* the replica still runs it */
    case IPC_RESPONSE:
        if (rq->streaming)
            stream_part(rq, f, 1);
        else
            forward_response(rq, f);
        break;
    case IPC_CANCELLED:
        break;
    default:
        return;
    }
    release_slot(rq);
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
    orphan_calls(b);
    while ((rq = list_pop(&b->inflight))) {
        char why[256];
        rq->backend = NULL;
        slot_free(r, rq);
        snprintf(why, sizeof(why), "replica %s of %s/%s exited while handling the request",
                 b->replica_id, b->pool->app, b->pool->dep);
        fail_request(rq, 502, why);
        if (rq->http_done) rreq_free(rq);
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
    b->lb.capacity = p->max_ongoing;
    rc = ipc_conn_open(r->loop, fd, on_backend_frame, on_backend_close, b, &b->conn);
    fd = -1; /* owned by the connection now, even on failure */
    if (rc < 0) goto fail;
    p->backends[p->n_backends++] = b;
    r->pending_closes++; /* the router outlives every backend connection */
    *out = b;
    pool_flush(p);
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
    b->retired = 0;
    ipc_conn_close(b->conn);
}

void router_retire_backend(router *r, router_backend *b)
{
    pool_detach(b->pool, b);
    b->retired = 1;
    if (b->inflight.n == 0) report_drained(b);
}

/* ---- Pools and routes -------------------------------------------------- */

router_pool *router_pool_get(router *r, const char *app, const char *dep)
{
    router_pool *p = pool_find(r, app, dep);
    if (p) {
        p->closed = 0;
        return p;
    }
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
    p->max_ongoing = 5;
    p->max_queued = -1;
    p->balancer = &balancer_p2c;
    p->lb_state = util_mix64((uintptr_t)p ^ r->id_seed);
    p->next = r->pools;
    r->pools = p;
    return p;
}

void router_pool_configure(router_pool *p, int max_ongoing, int max_queued, double stuck_after_s)
{
    p->max_ongoing = max_ongoing > 0 ? (unsigned)max_ongoing : 1;
    p->max_queued = max_queued;
    p->stuck_after_ns = stuck_after_s > 0 ? (uint64_t)(stuck_after_s * 1e9) : 0;
    for (size_t i = 0; i < p->n_backends; i++) p->backends[i]->lb.capacity = p->max_ongoing;
    pool_flush(p);
}

void router_pool_set_model(router_pool *p, const char *json, size_t len)
{
    json_t *specs = json_loadb(json, len, 0, NULL);
    json_decref(p->model);
    p->model = specs ? specs : json_object(); /* unreadable: no tensors */
}

void router_pool_close(router_pool *p)
{
    rreq *rq;
    p->closed = 1;
    while ((rq = list_pop(&p->waiting))) {
        rq->queued = 0;
        answer_error(rq, 503, "deployment %s/%s was removed while the request waited", p->app,
                     p->dep);
    }
}

unsigned router_pool_load(const router_pool *p)
{
    unsigned load = (unsigned)p->waiting.n;
    for (size_t i = 0; i < p->n_backends; i++) load += p->backends[i]->lb.ongoing;
    return load;
}

unsigned router_pool_queued(const router_pool *p)
{
    return (unsigned)p->waiting.n;
}

unsigned router_pool_ongoing(const router_pool *p)
{
    return router_pool_load(p) - router_pool_queued(p);
}

unsigned router_backend_ongoing(const router_backend *b)
{
    return b->lb.ongoing;
}

/* A gauge family with one sample per open deployment. */
static void pool_gauge(const router *r, FILE *f, const char *name, const char *help,
                       unsigned (*value)(const router_pool *p))
{
    metrics_family(f, name, "gauge", help);
    for (const router_pool *p = r->pools; p; p = p->next)
        if (!p->closed)
            metrics_sample(f, name,
                           (const char *[]){"application", p->app, "deployment", p->dep, NULL},
                           value(p));
}

/* The deployments' gauges: what each replica runs, what waits. */
static void write_pool_gauges(const router *r, FILE *f)
{
    pool_gauge(r, f, "serve_deployment_ongoing_requests",
               "Requests a deployment's replicas are running, as the proxy counts them.",
               router_pool_ongoing);
    pool_gauge(r, f, "serve_deployment_queued_requests",
               "Requests waiting at the proxy for a replica of the deployment to have room.",
               router_pool_queued);
    metrics_family(f, "serve_replica_ongoing_requests", "gauge", "Requests a replica is running.");
    for (const router_pool *p = r->pools; p; p = p->next)
        for (size_t i = 0; i < p->n_backends; i++)
            metrics_sample(f, "serve_replica_ongoing_requests",
                           (const char *[]){"application", p->app, "deployment", p->dep, "replica",
                                            p->backends[i]->replica_id, NULL},
                           p->backends[i]->lb.ongoing);
}

void router_write_metrics(const router *r, FILE *f)
{
    http_stats_write(r->stats, f);
    write_pool_gauges(r, f);
}

void router_configure(router *r, double request_timeout_s, int access_log)
{
    r->opts.request_timeout_s = request_timeout_s;
    r->opts.access_log = access_log;
}

int router_set_routes(router *r, const char *const *prefixes, const char *const *apps,
                      router_pool *const *pools, size_t n)
{
    route_entry *e = calloc(n ? n : 1, sizeof(*e));
    if (!e) return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        e[i] = (route_entry){prefixes[i], apps[i], pools[i]};
        pools[i]->http_stats = http_stats_route(r->stats, apps[i], prefixes[i]);
    }
    routes *t;
    int rc = routes_new(e, n, &t);
    free(e);
    if (rc != 0) return rc;
    routes_free(r->routes);
    r->routes = t;
    return 0;
}

/* ---- Deadlines and disconnected clients -------------------------------- */

static void on_deadline(uv_timer_t *t);

static void arm_deadline_timer(router *r)
{
    dheap_node *top = dheap_top(&r->deadlines);
    if (!top) {
        uv_timer_stop(&r->deadline_timer);
        return;
    }
    uint64_t now = uv_now(r->loop);
    uv_timer_start(&r->deadline_timer, on_deadline, top->at > now ? top->at - now : 0, 0);
}

static void on_deadline(uv_timer_t *t)
{
    router *r = t->data;
    uint64_t now = uv_now(r->loop);
    dheap_node *top;
    while ((top = dheap_top(&r->deadlines)) && top->at <= now) {
        rreq *rq = (rreq *)top; /* the node is the request's first member */
        dheap_remove(&r->deadlines, top);
        char why[96];
        snprintf(why, sizeof(why), "request timed out after %g s", rq->timeout_s);
        abandon(rq, 408, why);
    }
    arm_deadline_timer(r);
}

/* The timeout for `rq`: its x-request-timeout-seconds header, else the
   configured default; 0 is none. -1 for a malformed header. */
static double request_timeout(rreq *rq)
{
    const char *h = MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND, ROUTER_TIMEOUT_HEADER);
    if (!h) return rq->r->opts.request_timeout_s;
    char *end;
    double t = strtod(h, &end);
    if (end == h || *end || !isfinite(t) || t <= 0 || t > ROUTER_MAX_TIMEOUT_S) return -1;
    /* A client may ask for less time than the operator allows, not more:
       otherwise any client could hold a replica slot as long as it likes. */
    double limit = rq->r->opts.request_timeout_s;
    return limit > 0 && t > limit ? limit : t;
}

static int set_deadline(rreq *rq, double timeout_s)
{
    router *r = rq->r;
    if (timeout_s <= 0) return 0;
    rq->timeout_s = timeout_s;
    rq->deadline.at = uv_now(r->loop) + (uint64_t)ceil(timeout_s * 1000);
    int rc = dheap_push(&r->deadlines, &rq->deadline);
    if (rc == 0 && dheap_top(&r->deadlines) == &rq->deadline) arm_deadline_timer(r);
    return rc;
}

/* Has the client of a sleeping request hung up? A suspended connection is
   not watched by libmicrohttpd, so we look ourselves. */
static int client_gone(rreq *rq)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(rq->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    struct pollfd pfd = {.fd = ci ? ci->connect_fd : -1, .events = POLLRDHUP};
    return pfd.fd >= 0 && poll(&pfd, 1, 0) == 1 && (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

/* Every second, cancel requests (waiting for over a second) whose client
   has disconnected: their replica slot then frees up for others. */
static void sweep_list(router *r, rq_list *l, uint64_t older_than)
{
    rreq *rq = l->head;
    while (rq) {
        rreq *next = rq->next;
        if (rq->start_ns < older_than && rq->suspended && client_gone(rq))
            abandon(rq, 499, "client disconnected"); /* nginx's code, for the log */
        rq = next;
    }
}

/* A replica that has not let go of a cancelled request long after the
   cancel is stuck (a handle in an endless loop, a deadlock): its slots
   would stay taken for good, and no health check notices, since those run
   on another thread. The owner is told once; it kills the replica, whose
   other requests then end with 502 as for any crash. */
static void check_stuck(router *r, router_backend *b, uint64_t now)
{
    uint64_t limit = b->pool->stuck_after_ns;
    if (!limit || b->stuck || !r->opts.on_backend_stuck) return;
    for (rreq *rq = b->inflight.head; rq; rq = rq->next) {
        if (!rq->cancel_sent || now - rq->cancel_ns < limit) continue;
        char why[160];
        snprintf(why, sizeof(why), "request %s still runs %.1f s after it was cancelled",
                 rq->request_id, (double)(now - rq->cancel_ns) / 1e9);
        b->stuck = 1;
        r->opts.on_backend_stuck(b->data, r->opts.cb_arg, why);
        return;
    }
}

static void on_sweep(uv_timer_t *t)
{
    router *r = t->data;
    uint64_t now = uv_hrtime(), older_than = now - (uint64_t)ROUTER_SWEEP_MS * 1000000;
    sweep_conns(r);
    for (router_pool *p = r->pools; p; p = p->next) {
        sweep_list(r, &p->waiting, older_than);
        for (size_t i = 0; i < p->n_backends; i++) {
            sweep_list(r, &p->backends[i]->inflight, older_than);
            check_stuck(r, p->backends[i], now);
        }
    }
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
        if ((resp = json_response(obj))) answer(rq, 200, resp);
        return;
    }
    answer_error(rq, 404, "no such endpoint: %s", rq->url);
}

/* ---- Open Inference Protocol v2 ---------------------------------------- */

/* The pool of the application called `name` (its ingress deployment). */
static router_pool *app_pool(router *r, const char *name)
{
    for (size_t i = 0; i < routes_count(r->routes); i++) {
        const route_entry *e = routes_at(r->routes, i);
        if (strcmp(e->app, name) == 0) return e->target;
    }
    return NULL;
}

/* A model can infer now: a replica of it runs and the proxy takes work. */
static int model_ready(const router *r, const router_pool *p)
{
    return !r->draining && !p->closed && p->model && v2_is_model(p->model) && p->n_backends > 0;
}

/* Ready: not draining, and every application that is a model has a ready
   replica (and none is still starting: its tensors are not known yet). */
static int server_ready(router *r)
{
    if (r->draining) return 0;
    for (size_t i = 0; i < routes_count(r->routes); i++) {
        router_pool *p = routes_at(r->routes, i)->target;
        if (!p->model || (v2_is_model(p->model) && !model_ready(r, p))) return 0;
    }
    return 1;
}

/* The model `name`, or NULL after answering 404 (no such model) or 503
   (its replicas have not said what they take yet). */
static router_pool *find_model(rreq *rq, const char *name)
{
    router_pool *p = app_pool(rq->r, name);
    if (!p)
        answer_error(rq, 404, "unknown model \"%s\"", name);
    else if (!p->model)
        answer_error(rq, 503, "model \"%s\" is not ready: no replica has started yet", name);
    else if (!v2_is_model(p->model))
        answer_error(rq, 404,
                     "application \"%s\" is not a model: its ingress deployment declares no "
                     "input tensors",
                     name);
    else
        return p;
    return NULL;
}

/* {"ready": bool} with 200 when ready, else 503. */
static void answer_ready(rreq *rq, json_t *obj, int ready)
{
    json_object_set_new(obj, "ready", json_boolean(ready));
    answer_json(rq, ready ? 200 : 503, obj);
}

static void forward(rreq *rq, router_pool *pool);

/* The counters of a model's infer endpoint, made on its first request. */
static http_route_stats *v2_stats(router *r, router_pool *p)
{
    if (!p->v2_stats) {
        char route[300];
        snprintf(route, sizeof(route), "/v2/models/%s/infer", p->app);
        p->v2_stats = http_stats_route(r->stats, p->app, route);
    }
    return p->v2_stats;
}

/* The v2 endpoints: metadata and health answered here, infer forwarded
   to the model's replicas with IPC_FLAG_INFER so that they decode the
   tensors (the parsing cost scales with the replicas, not on this loop). */
static void answer_v2(rreq *rq)
{
    char name[256];
    router_pool *p;
    v2_endpoint ep = v2_parse_path(rq->url, name, sizeof(name));
    int get = strcmp(rq->method, "GET") == 0 || strcmp(rq->method, "HEAD") == 0;
    if (ep == V2_NOT_FOUND) {
        answer_error(rq, 404, "no such endpoint: %s", rq->url);
    } else if (ep == V2_INFER ? strcmp(rq->method, "POST") != 0 : !get) {
        answer_error(rq, 405, "%s %s: use %s", rq->method, rq->url,
                     ep == V2_INFER ? "POST" : "GET");
    } else if (ep == V2_SERVER) {
        answer_json(rq, 200, v2_server_metadata());
    } else if (ep == V2_LIVE) {
        answer_json(rq, 200, json_pack("{s:b}", "live", 1));
    } else if (ep == V2_READY) {
        answer_ready(rq, json_object(), server_ready(rq->r));
    } else if ((p = find_model(rq, name))) {
        if (ep == V2_MODEL)
            answer_json(rq, 200, v2_model_metadata(name, p->model));
        else if (ep == V2_MODEL_READY)
            answer_ready(rq, json_pack("{s:s}", "name", name), model_ready(rq->r, p));
        else if (p->closed)
            answer_error(rq, 503, "model \"%s\" is being removed", name);
        else {
            rq->frame_flags = IPC_FLAG_INFER;
            rq->route_path = rq->url;
            rq->stats = v2_stats(rq->r, p);
            forward(rq, p);
        }
    }
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
    const route_entry *e;
    rq->state = RQ_ROUTED;
    if (strncmp(rq->url, "/-/", 3) == 0)
        answer_builtin(rq);
    else if (strncmp(rq->url, "/v2", 3) == 0 && (rq->url[3] == '/' || rq->url[3] == '\0'))
        answer_v2(rq);
    else if (!(e = routes_match(r->routes, rq->url, &rq->route_path)))
        answer_error(rq, 404, "no application serves the path %s", rq->url);
    else {
        rq->stats = ((router_pool *)e->target)->http_stats;
        forward(rq, e->target);
    }
}

/* Send a routed request on to `pool`, under its deadline. */
static void forward(rreq *rq, router_pool *pool)
{
    router *r = rq->r;
    double timeout;
    if (r->draining)
        answer_error(rq, 503, "draining: the server is shutting down");
    else if ((timeout = request_timeout(rq)) < 0)
        answer_error(rq, 400, "%s: must be a number of seconds, > 0 and at most %.0f",
                     ROUTER_TIMEOUT_HEADER, ROUTER_MAX_TIMEOUT_S);
    else if (set_deadline(rq, timeout) != 0)
        answer_error(rq, 503, "proxy out of memory");
    else {
        rq->pool = pool;
        dispatch(rq);
    }
}

/* A request leaves the `fresh` list once on_access or on_completed saw it. */
static void fresh_unlink(rreq *rq)
{
    if (!rq->fresh) return;
    rq->fresh = 0;
    if (rq->fresh_prev)
        rq->fresh_prev->fresh_next = rq->fresh_next;
    else
        rq->r->fresh = rq->fresh_next;
    if (rq->fresh_next) rq->fresh_next->fresh_prev = rq->fresh_prev;
    rq->fresh_prev = rq->fresh_next = NULL;
}

static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
    router *r = cls;
    rreq *rq = calloc(1, sizeof(*rq));
    if (!rq) return NULL;
    rq->r = r;
    rq->conn = conn;
    rq->deadline.index = SIZE_MAX;
    rq->start_ns = uv_hrtime();
    rconn *c = conn_of(conn);
    if (c) c->line_ms = uv_now(r->loop);
    const char *q = strchr(uri, '?');
    if (q && !(rq->query = strdup(q + 1))) {
        free(rq);
        return NULL;
    }
    r->active++;
    rq->fresh = 1;
    rq->fresh_next = r->fresh;
    if (r->fresh) r->fresh->fresh_prev = rq;
    r->fresh = rq;
    return rq;
}

/*
 * A client connection closed. libmicrohttpd (0.9.75) may drop a request
 * between the request line (on_uri) and on_access without calling
 * on_completed: when the query's arguments do not fit in the connection's
 * memory pool ("GET /?&&&&..."), it closes the connection and forgets the
 * request. Those are still in the `fresh` list: free them here, or each
 * such request would leak and keep the drain waiting for it (found by
 * fuzz/fuzz_http.c). Called by on_connection as the connection closes.
 */
static void drop_fresh(router *r, struct MHD_Connection *conn)
{
    for (rreq *rq = r->fresh, *next; rq; rq = next) {
        next = rq->fresh_next;
        if (rq->conn != conn) continue;
        fresh_unlink(rq);
        r->active--;
        rreq_free(rq);
    }
    maybe_drained(r);
}

/* Queue rq's response now; the connection is closed after it when the
   request body was not read to its end. */
static enum MHD_Result queue_answer(rreq *rq)
{
    enum MHD_Result ret = MHD_queue_response(rq->conn, (unsigned)rq->status, rq->response);
    MHD_destroy_response(rq->response);
    rq->response = NULL;
    return ret;
}

/* A body larger than the limit gets 413. Declared by Content-Length, it is
   refused before any of it is read (a client that sent Expect: 100-continue
   then sends nothing). Found while reading chunks, the rest of the body is
   read and dropped, up to a bound, and the 413 sent at its end: closing
   with unread data would make the kernel reset the connection before the
   client reads the answer. */
static void refuse_body(rreq *rq, uint64_t more)
{
    router *r = rq->r;
    set_request_id(rq);
    if (rq->body.len + more > r->opts.max_body_bytes)
        answer_error(rq, 413, "request body larger than the limit of %zu bytes",
                     r->opts.max_body_bytes);
    else
        answer_error(rq, 503,
                     "the proxy holds %" PRIu64 " MiB of request bodies, its limit; "
                     "retry later",
                     r->body_bytes >> 20);
    body_release(rq);
}

/* Will `more` body bytes fit, in this request and in the proxy? */
static int body_fits(const rreq *rq, uint64_t more)
{
    const router *r = rq->r;
    return rq->body.len + more <= r->opts.max_body_bytes &&
           r->body_bytes + more <= ROUTER_BODY_BUDGET;
}

/* Take one chunk of the body; MHD_NO hangs up on the client. */
static enum MHD_Result take_body(rreq *rq, const char *data, size_t *size)
{
    size_t n = *size;
    *size = 0;
    rconn *c = conn_of(rq->conn);
    if (c) c->body_bytes += n;
    if (rq->state != RQ_BODY) { /* already refused */
        rq->discarded += n;
        return rq->discarded > ROUTER_DISCARD_LIMIT ? MHD_NO : MHD_YES;
    }
    if (!body_fits(rq, n)) {
        refuse_body(rq, n);
        return MHD_YES;
    }
    ipc_buf_put(&rq->body, data, n);
    rq->body_counted += n;
    rq->r->body_bytes += n;
    return rq->body.oom ? MHD_NO : MHD_YES;
}

/* RFC 9110's token characters: all a method may hold. */
static int is_token(const char *s)
{
    static const char tchar[] = "!#$%&'*+-.^_`|~0123456789"
                                "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    return *s && s[strspn(s, tchar)] == '\0';
}

typedef struct framing {
    int n_length, n_te, lengths_differ;
    const char *length;
} framing;

static enum MHD_Result count_framing(void *cls, enum MHD_ValueKind kind, const char *key,
                                     const char *value)
{
    framing *f = cls;
    if (strcasecmp(key, "content-length") == 0) {
        if (f->length && strcmp(f->length, value ? value : "") != 0) f->lengths_differ = 1;
        f->length = value ? value : "";
        f->n_length++;
    } else if (strcasecmp(key, "transfer-encoding") == 0) {
        f->n_te++;
    }
    return MHD_YES;
}

/* A request whose method or body framing is ambiguous is refused: a proxy
   in front of us might read it differently (request smuggling). NULL when
   it is fine, else the reason. */
static const char *malformed(struct MHD_Connection *conn, const char *method)
{
    if (!is_token(method)) return "the method is not a token (RFC 9110)";
    framing f = {0};
    MHD_get_connection_values(conn, MHD_HEADER_KIND, count_framing, &f);
    if (f.n_length && f.n_te) return "both Content-Length and Transfer-Encoding are set";
    if (f.lengths_differ) return "conflicting Content-Length headers";
    return NULL;
}

/* The first call for a request: its headers are in. Refuse what cannot be
   served before reading a body (and the connection closes after the
   answer, as the body was not read); otherwise note method and url. */
static enum MHD_Result headers_in(rreq *rq, const char *url, const char *method)
{
    router *r = rq->r;
    struct MHD_Connection *conn = rq->conn;
    rconn *c = conn_of(conn);
    if (c) c->headers_ms = uv_now(r->loop);
    rq->state = RQ_BODY;
    rq->url = url;
    rq->method = method;
    const char *bad = malformed(conn, method);
    if (bad) {
        set_request_id(rq);
        answer_error(rq, 400, "%s", bad);
        return queue_answer(rq);
    }
    const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "content-length");
    unsigned long long len = cl ? strtoull(cl, NULL, 10) : 0;
    if (!body_fits(rq, len)) {
        refuse_body(rq, len);
        return rq->response ? queue_answer(rq) : MHD_NO;
    }
    /* One allocation for a body of known size, instead of a copy at every
       doubling; a large one is trusted only so far before it arrives. */
    if (len) ipc_buf_reserve(&rq->body, len < ROUTER_BODY_PRESIZE ? len : ROUTER_BODY_PRESIZE);
    return MHD_YES;
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version, const char *upload,
                                 size_t *upload_size, void **con_cls)
{
    rreq *rq = *con_cls;
    if (!rq) return MHD_NO; /* out of memory in on_uri */
    fresh_unlink(rq);
    if (rq->state == RQ_NEW) return headers_in(rq, url, method);
    if (*upload_size) return take_body(rq, upload, upload_size);
    rconn *c = conn_of(conn);
    if (c) c->busy = 1; /* the whole request is in */
    if (rq->state == RQ_BODY) {
        set_request_id(rq);
        start_request(rq);
        if (rq->state != RQ_ANSWERED) {
            rq->suspended = 1;
            MHD_suspend_connection(conn);
            return MHD_YES;
        }
    }
    return rq->response ? queue_answer(rq) : MHD_YES;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode code)
{
    router *r = cls;
    rreq *rq = *con_cls;
    rconn *c = conn_of(conn);
    if (c) /* ready for the next request on this connection */
        *c = (rconn){.prev = c->prev, .next = c->next, .conn = conn, .ready_ms = uv_now(r->loop)};
    if (!rq) return;
    *con_cls = NULL;
    fresh_unlink(rq);
    uint64_t took = uv_hrtime() - rq->start_ns;
    log_request(rq, took);
    count_request(rq, took);
    rq->http_done = 1;
    rq->url = rq->method = NULL; /* MHD's memory goes away now */
    dheap_remove(&r->deadlines, &rq->deadline);
    if (rq->queued) {
        list_remove(&rq->pool->waiting, rq);
        rq->queued = 0;
    }
    r->active--;
    if (rq->backend)
        send_cancel(rq); /* freed when the replica confirms */
    else
        rreq_free(rq);
    maybe_drained(r);
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    char line[512];
    vsnprintf(line, sizeof(line), fmt, ap);
    line[strcspn(line, "\n")] = '\0';
    if (LOG_WARN >= log_min_level) log_write(LOG_WARN, &ROUTER_LOG_FIELDS, "http: %s", line);
}

/* ---- Starting ---------------------------------------------------------- */

/*
 * libmicrohttpd keeps a request's headers in the connection's memory pool,
 * which also holds its read and write buffers (about half of the pool).
 * Headers that do not fit get 431, so the pool is twice the header limit.
 */
static struct MHD_Daemon *start_mhd(router *r, int fd, unsigned max_connections)
{
    return MHD_start_daemon(
        HTTPD_MHD_FLAGS, 0, NULL, NULL, on_access, r, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, r,
        MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_URI_LOG_CALLBACK, on_uri, r,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, r, MHD_OPTION_NOTIFY_CONNECTION, on_connection,
        r, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)ROUTER_IDLE_TIMEOUT_S,
        MHD_OPTION_CONNECTION_LIMIT, max_connections, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        (size_t)r->opts.max_header_bytes * 2, MHD_OPTION_END);
}

/* max_connections, as far as descriptors allow: the soft limit is raised
   to the hard one, and a reserve is kept for replicas' sockets, log files
   and the admin API. (Past the limit, libmicrohttpd stops accepting.) */
static unsigned connection_limit(const router *r)
{
    struct rlimit rl;
    unsigned want = r->opts.max_connections ? r->opts.max_connections : ROUTER_MAX_CONNECTIONS;
    unsigned can = want;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return want;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < (rlim_t)want + ROUTER_FD_RESERVE)
        can = rl.rlim_cur > 2 * ROUTER_FD_RESERVE ? (unsigned)rl.rlim_cur - ROUTER_FD_RESERVE
                                                  : (unsigned)rl.rlim_cur / 2;
    if (can < want && LOG_WARN >= log_min_level)
        log_write(LOG_WARN, &ROUTER_LOG_FIELDS,
                  "http_options.max_connections %u lowered to %u: the descriptor limit is %llu",
                  want, can, (unsigned long long)rl.rlim_cur);
    return can;
}

static void init_handles(router *r)
{
    uv_timer_init(r->loop, &r->drain_timer);
    uv_timer_init(r->loop, &r->deadline_timer);
    uv_timer_init(r->loop, &r->sweep_timer);
    uv_prepare_init(r->loop, &r->log_flusher);
    uv_prepare_init(r->loop, &r->reaper);
    r->drain_timer.data = r->deadline_timer.data = r->sweep_timer.data = r->log_flusher.data = r;
    r->reaper.data = r;
    uv_timer_start(&r->sweep_timer, on_sweep, ROUTER_SWEEP_MS, ROUTER_SWEEP_MS);
    uv_unref((uv_handle_t *)&r->sweep_timer);
}

int router_start(uv_loop_t *loop, const router_options *opts, router **out, char *err,
                 size_t errlen)
{
    int rc = -ENOMEM;
    router *r = calloc(1, sizeof(*r));
    if (!r) goto fail_alloc;
    r->loop = loop;
    r->opts = *opts;
    if (r->opts.client_header_timeout_s <= 0)
        r->opts.client_header_timeout_s = ROUTER_HEADER_TIMEOUT_S;
    r->id_seed = util_mix64((uint64_t)uv_hrtime() ^ ((uint64_t)getpid() << 32));
    if (http_stats_new(&r->stats) < 0) goto fail_stats;
    r->unrouted = http_stats_route(r->stats, "", "");
    int fd = httpd_listen("http_options", opts->host, opts->port, err, errlen);
    if (fd < 0) {
        rc = fd;
        goto fail_listen;
    }
    struct MHD_Daemon *mhd = start_mhd(r, fd, connection_limit(r));
    if (!mhd) {
        close(fd);
        snprintf(err, errlen, "cannot start the HTTP server on %s:%d", opts->host, opts->port);
        rc = -EIO;
        goto fail_listen;
    }
    if ((rc = httpd_start(loop, mhd, &r->http)) < 0) goto fail_listen;
    init_handles(r);
    *out = r;
    return 0;

fail_listen:
    http_stats_free(r->stats);
fail_stats:
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
        while ((rq = list_pop(&p->waiting))) {
            rq->queued = 0;
            answer_error(rq, status, "%s", why);
        }
        for (size_t i = 0; i < p->n_backends; i++)
            for (rq = p->backends[i]->inflight.head; rq; rq = rq->next) {
                fail_request(rq, status, why);
                send_cancel(rq); /* queued work need not run before STOP */
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
        log_write(LOG_WARN, &ROUTER_LOG_FIELDS,
                  "drain timed out with %zu requests unfinished; answering them 503", r->active);
        fail_all(r, 503, "draining: the server is shutting down");
        httpd_wake(r->http);
    }
    drain_finish(r);
}

void router_drain(router *r, double timeout_s, void (*done)(void *), void *arg)
{
    r->drain_done = done;
    r->drain_arg = arg;
    if (!r->draining) {
        r->draining = 1;
        httpd_quiesce(r->http);
    }
    /* Call back from the loop, never from inside the caller. */
    uint64_t ms = r->active == 0 ? 0 : (uint64_t)(timeout_s * 1000);
    uv_timer_start(&r->drain_timer, on_drain_timeout, ms, 0);
}

/* Last close callback: release what the router owns. */
static void router_free(router *r)
{
    rreq *rq;
    while ((rq = r->reap)) { /* calls answered during the close */
        r->reap = rq->call_next;
        rreq_free(rq);
    }
    router_pool *p = r->pools;
    while (p) {
        router_pool *next = p->next;
        free(p->backends);
        free(p->app);
        free(p->dep);
        json_decref(p->model);
        free(p);
        p = next;
    }
    routes_free(r->routes);
    http_stats_free(r->stats);
    dheap_free(&r->deadlines);
    ipc_buf_free(&r->access_log);
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

static void on_http_closed(void *arg)
{
    router *r = arg;
    if (--r->pending_closes == 0) router_free(r);
}

void router_close(router *r)
{
    if (r->closing) return;
    r->closing = 1;
    /* MHD must never be stopped with suspended connections: wake them all
       with an answer first and let MHD take them off its suspended list. */
    fail_all(r, 503, "draining: the server is shutting down");
    r->pending_closes++;
    httpd_close(r->http, on_http_closed, r);
    r->http = NULL;
    on_log_flush(&r->log_flusher);
    for (router_pool *p = r->pools; p; p = p->next)
        for (size_t i = 0; i < p->n_backends; i++) ipc_conn_close(p->backends[i]->conn);
    uv_handle_t *handles[] = {(uv_handle_t *)&r->drain_timer, (uv_handle_t *)&r->deadline_timer,
                              (uv_handle_t *)&r->sweep_timer, (uv_handle_t *)&r->log_flusher,
                              (uv_handle_t *)&r->reaper};
    for (size_t i = 0; i < UTIL_ARRAY_LEN(handles); i++) {
        r->pending_closes++;
        uv_close(handles[i], on_handle_closed);
    }
}
