/*
 * router.h - the HTTP proxy: accepts client requests, finds the application
 * by route prefix, and forwards each request as one frame to a replica of
 * the application's ingress deployment, without blocking: the client's
 * connection is suspended until the replica's answer arrives.
 *
 * It runs on the controller's libuv loop; libmicrohttpd is driven in its
 * external epoll mode from that loop (a uv_poll on MHD's epoll fd and a
 * timer from MHD_get_timeout), so there is one thread and no hand-off per
 * request.
 *
 * Replicas ("backends") are added by the controller once they are ready,
 * grouped in pools by "app/deployment". A request goes to the replica the
 * pool's balancer picks among those with room (ongoing < max_ongoing); when
 * none has room it waits in the pool's FIFO, bounded by max_queued (503
 * past it). Deadlines (408) and disconnected clients cancel requests at
 * their replica so that the slot frees up.
 */
#ifndef SERVE_ROUTER_H
#define SERVE_ROUTER_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <uv.h>

#include "common/metrics.h"

/* ---- Route table (pure; unit tested) ----------------------------------- */

typedef struct route_entry {
    const char *prefix; /* "/" or "/x" or "/x/y", no trailing '/' */
    const char *app;
    void *target; /* opaque to the table */
} route_entry;

typedef struct routes routes;

/* Build a table from `n` entries (copied). Longest prefix wins at match.
   Returns 0, -EINVAL for a duplicate or malformed prefix, or -ENOMEM. */
int routes_new(const route_entry *entries, size_t n, routes **out);
void routes_free(routes *t);

/*
 * Find the entry whose prefix is the longest match of `path` on a segment
 * boundary ("/a" matches "/a" and "/a/b", not "/ab"). On a match, *rest is
 * the path after the prefix, "/" when nothing is left. NULL if none.
 */
const route_entry *routes_match(const routes *t, const char *path, const char **rest);

size_t routes_count(const routes *t);
const route_entry *routes_at(const routes *t, size_t i);

/* ---- Replica choice (pure; unit tested) -------------------------------- */

/* What a strategy sees of a replica: the router's own count of requests it
   sent there and not yet got back, and the deployment's
   max_ongoing_requests. A replica with ongoing == capacity is full. */
typedef struct lb_candidate {
    unsigned ongoing;
    unsigned capacity;
} lb_candidate;

/* A strategy: pick(c, n, state) returns the index of the chosen candidate,
   or -1 when every one is full. `state` is one word the strategy keeps per
   deployment (a random state, a cursor). Add a strategy by writing one
   pick function and listing it in balancer_find. */
typedef struct balancer_ops {
    const char *name;
    int (*pick)(lb_candidate *const *c, size_t n, uint64_t *state);
} balancer_ops;

extern const balancer_ops balancer_p2c;         /* "power_of_two_choices" (default) */
extern const balancer_ops balancer_round_robin; /* "round_robin" */

/* The strategy called `name`, or NULL. */
const balancer_ops *balancer_find(const char *name);

/* ---- Deadlines (pure; unit tested) ------------------------------------- */

/* A min-heap of deadlines embedded in the objects that have one (requests),
   so that one timer serves them all: it is armed for the earliest. */
typedef struct dheap_node {
    uint64_t at;  /* deadline, in the caller's clock unit */
    size_t index; /* position in the heap; SIZE_MAX when not in it */
} dheap_node;

typedef struct dheap {
    dheap_node **nodes;
    size_t n, cap;
} dheap;

int dheap_push(dheap *h, dheap_node *n);    /* 0 or -ENOMEM */
void dheap_remove(dheap *h, dheap_node *n); /* no-op if n is not in h */
dheap_node *dheap_top(const dheap *h);      /* earliest, or NULL */
void dheap_free(dheap *h);

/* ---- Open Inference Protocol v2 paths (pure; unit tested) -------------- */

typedef enum v2_endpoint {
    V2_NOT_FOUND,
    V2_SERVER,      /* GET /v2 */
    V2_LIVE,        /* GET /v2/health/live */
    V2_READY,       /* GET /v2/health/ready */
    V2_MODEL,       /* GET /v2/models/{name} */
    V2_MODEL_READY, /* GET /v2/models/{name}/ready */
    V2_INFER,       /* POST /v2/models/{name}/infer */
} v2_endpoint;

/* The endpoint `url` names; for the model ones, the name goes into `model`
   (`size` bytes; a longer name is not found). "/versions/1" may come after
   the name: every model has the one version "1". */
v2_endpoint v2_parse_path(const char *url, char *model, size_t size);

/* Metadata documents (new references). `specs` is a deployment's declared
   tensors as its replicas report them: {"inputs": [..], "outputs": [..]}. */
json_t *v2_server_metadata(void);
json_t *v2_model_metadata(const char *name, const json_t *specs);
/* Do the specs declare inputs (is the deployment a model)? */
int v2_is_model(const json_t *specs);

/* ---- HTTP metrics (pure; unit tested) ---------------------------------- */

/* The proxy's counters: for each (application, route) a latency histogram
   and a count per (method, status code). Entries live as long as the
   table, so counters never go back. */
typedef struct http_stats http_stats;
typedef struct http_route_stats http_route_stats;

int http_stats_new(http_stats **out); /* 0 or -ENOMEM */
void http_stats_free(http_stats *s);

/* The entry of (app, route), created if needed; NULL when out of memory. */
http_route_stats *http_stats_route(http_stats *s, const char *app, const char *route);

/* One request answered with `status` after `seconds`. */
void http_stats_record(http_route_stats *e, const char *method, int status, double seconds);

/* The families serve_http_requests_total, serve_http_request_errors_total
   and serve_http_request_duration_seconds. */
void http_stats_write(const http_stats *s, FILE *f);

/* ---- The proxy --------------------------------------------------------- */

typedef struct router router;
typedef struct router_backend router_backend;
typedef struct router_pool router_pool;

typedef struct router_options {
    const char *host;
    int port;
    size_t max_body_bytes;          /* 413 above it */
    size_t max_header_bytes;        /* 431 above about this much */
    double request_timeout_s;       /* 0: none; x-request-timeout-seconds may shorten it */
    double keep_alive_timeout_s;    /* no request line this long: closed (0: never) */
    double client_header_timeout_s; /* request line to end of headers; body grace (0: 10) */
    unsigned max_connections;       /* client connections at most (fd limit permitting); 0: 16384 */
    int access_log;                 /* one INFO line per request (stderr and the log file) */
    /* A backend's connection ended (replica exited, or removed): `data` is
       what router_add_backend got. The backend is gone after this returns. */
    void (*on_backend_closed)(void *data, void *cb_arg);
    /* A retired backend has no request left (see router_retire_backend). */
    void (*on_backend_drained)(void *data, void *cb_arg);
    /* A backend has not ended a cancelled request in time (see
       router_pool_configure); `why` says which. Called once per backend;
       the owner is expected to kill the replica. May be NULL. */
    void (*on_backend_stuck)(void *data, void *cb_arg, const char *why);
    void *cb_arg;
} router_options;

/* Create the router and listen. Returns 0 or a negative errno, with a
   message naming host and port in `err`. */
int router_start(uv_loop_t *loop, const router_options *opts, router **out, char *err,
                 size_t errlen);

/* The pool for deployment `dep` of application `app`, created if needed.
   Owned by the router; valid until router_close. NULL when out of memory. */
router_pool *router_pool_get(router *r, const char *app, const char *dep);

/* Set a deployment's limits: each replica runs at most `max_ongoing`
   requests; at most `max_queued` wait when all are full (-1: no limit). A
   replica still running a request `stuck_after_s` after it was cancelled
   (timed out, or its client left) is reported stuck (0: never). */
void router_pool_configure(router_pool *p, int max_ongoing, int max_queued, double stuck_after_s);

/* Change the default request timeout and the access log switch live; they
   apply to requests that arrive from now on. */
void router_configure(router *r, double request_timeout_s, int access_log);

/* The tensors the deployment's replicas declare, as the JSON text they
   report when ready ({"inputs": [..], "outputs": [..]}; `len` bytes,
   copied). An application whose ingress deployment declares inputs is a
   v2 model named after the application; until a replica has reported,
   the proxy answers 503 "not ready" for it. */
void router_pool_set_model(router_pool *p, const char *json, size_t len);

/* The deployment was removed: requests waiting for it get 503, and handle
   calls to it 404, until router_pool_get opens it again. */
void router_pool_close(router_pool *p);

/* The deployment's load now: requests its replicas run (as counted by the
   router) plus requests waiting in its queue. The autoscaler's metric. */
unsigned router_pool_load(const router_pool *p);
/* Its two parts, and what one replica runs. */
unsigned router_pool_ongoing(const router_pool *p);
unsigned router_pool_queued(const router_pool *p);
unsigned router_backend_ongoing(const router_backend *b);

/* Write the proxy's metrics (HTTP counters and latency, each deployment's
   ongoing and queued requests, each replica's ongoing requests) in the
   Prometheus text format. */
void router_write_metrics(const router *r, FILE *f);

/* Replace the route table: each (prefix, app) maps to a pool. Requests
   already routed are not affected. Returns 0 or negative. */
int router_set_routes(router *r, const char *const *prefixes, const char *const *apps,
                      router_pool *const *pools, size_t n);

/* Start routing to a ready replica reachable over socket `fd` (ownership
   of fd passes to the router). Queued requests of the pool start flowing.
   `data` is handed back to on_backend_closed. */
int router_add_backend(router *r, router_pool *pool, int fd, const char *replica_id, void *data,
                       router_backend **out);

/* Stop routing to a backend and close its connection. Requests it was
   running are answered 502. on_backend_closed follows. */
void router_remove_backend(router *r, router_backend *b);

/* Stop sending new requests to a backend but let it finish the ones it
   runs; `drained(data, cb_arg)` (router_options.on_backend_drained) is
   called once none is left, from the loop. The connection stays open:
   remove the backend (or let the replica exit) afterwards. */
void router_retire_backend(router *r, router_backend *b);

/* Stop accepting connections, let requests in progress finish, and call
   `done` when none is left or after `timeout_s` (the rest get 503). */
void router_drain(router *r, double timeout_s, void (*done)(void *arg), void *arg);

/* Close everything; the memory is released once the loop has run the
   close callbacks. All backends must have been removed first. */
void router_close(router *r);

#endif
