/*
 * replica.c - the replica process: one libuv loop for the two channels and
 * a pool of worker threads that run the plugin.
 *
 * Threads and what they own:
 *   - the loop thread reads frames, queues REQUEST jobs, and writes the
 *     responses workers have encoded; it alone touches the ipc_conns.
 *   - worker threads (one per allowed ongoing request, up to a cap) pop
 *     jobs, call the plugin's `handle`, and encode the response frame into
 *     the shared `done` buffer, then wake the loop with one uv_async_send.
 *     uv_async coalesces wake-ups, so under load one loop turn forwards many
 *     responses with one write: the batching that makes the hop cheap.
 *   - `init` runs on libuv's thread pool, so the loop stays responsive.
 * A writer-preferring rwlock gives `reconfigure` the exclusive access the
 * plugin header promises: `handle` and `check_health` take it shared.
 */
#include "replica/replica.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <time.h>

#include "common/log.h"
#include "common/metrics.h"
#include "common/util.h"
#include "replica/internal.h"

#define REPLICA_MAX_THREADS 256
#define REPLICA_INLINE_NS   50000 /* handlers faster than this run inline */
#define REPLICA_ERR_LEN     1024
#define REPLICA_STATS_MS    1000 /* how often the controller gets our histograms */

typedef struct job {
    struct job *next;
    uint64_t id;
    uint64_t arrival_ns; /* when the loop got it: latency, and a batch's wait */
    uint8_t flags;       /* the REQUEST frame's */
    size_t len;
    char payload[]; /* the REQUEST frame's payload, copied off the socket */
} job;

typedef enum phase { PHASE_WAIT_INIT, PHASE_INITIALIZING, PHASE_SERVING, PHASE_STOPPING } phase;

typedef struct replica {
    uv_loop_t loop;
    ipc_conn *control;
    ipc_conn *data;
    uv_async_t wake;
    uv_signal_t sigterm;
    uv_work_t init_work;
    phase phase;
    int stop_requested; /* a stop arrived while init was running */
    int exit_code;

    serve_context ctx;
    loader_plugin plugin;
    void *state;
    char *init_args;
    char *user_config;
    char *plugin_path;
    int max_ongoing;
    int batch_max;          /* batching.max_batch_size; 0: no batching */
    uint64_t batch_wait_ns; /* batching.batch_wait_timeout_s */
    int batcher_idle;       /* the batcher sleeps until a job arrives (mu) */
    char init_error[REPLICA_ERR_LEN];

    /* Work queue: loop -> workers. */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    job *head, *tail;
    int n_queued; /* jobs in the queue */
    int n_awake;  /* workers not blocked waiting for a job */
    int n_busy;   /* workers running a job */
    int quit_workers;
    pthread_t *threads;
    int n_threads;
    int ongoing; /* loop thread only: dispatched and not yet answered */

    /* Finished responses: workers -> loop. */
    pthread_mutex_t done_mu;
    ipc_buf done;
    int n_done;
    /* Metrics (done_mu): each request's time here, each batch's size. */
    metrics_hist latency;
    metrics_hist batch;
    int stats_moved; /* since they were last sent */
    uv_timer_t stats_timer;

    pthread_rwlock_t plugin_lock;

    /* The batcher's scratch (batching only), batch_max of each. */
    job **batch_jobs;
    item *batch_items;
    const serve_request **batch_reqs;
    serve_response **batch_res;

    /* Moving average of handler run time (done_mu). Below the threshold the
       loop thread runs requests itself: see on_data_frame. */
    uint64_t handle_ns;
    int streams;           /* the handler streams: never run it inline (done_mu) */
    int reconfiguring;     /* loop thread: a reconfigure holds the write lock */
    uv_work_t reconf_work; /* runs reconfigure on the thread pool */
    char *reconf_json;     /* the user_config being applied */
    char reconf_error[REPLICA_ERR_LEN];
    int checking; /* loop thread: a check_health runs on the pool */
    uv_work_t health_work;
    char health_error[REPLICA_ERR_LEN];
    pthread_t loop_thread; /* needs no async wake-up to see `done` */
    calls_hub calls;       /* handle calls this replica makes */
} replica;

static void replica_stop(replica *r);
static void send_result(replica *r, uint8_t type, const char *error);

/* ---- Workers ----------------------------------------------------------- */

/* Encode a 500 whose body is {"error": msg} into `b`. */
static void encode_error(ipc_buf *b, uint64_t id, int status, const char *msg)
{
    json_t *obj = json_pack("{s:s}", "error", msg);
    char *text = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
    const char *body = text ? text : "{\"error\":\"out of memory\"}";
    serve_header h = {"content-type", "application/json"};
    ipc_response_encode(b, id, status, &h, 1, body, strlen(body));
    free(text);
    json_decref(obj);
}

/* What a worker needs to send parts of one response. */
typedef struct job_out {
    replica *r;
    uint64_t id;
} job_out;

/* Frames for the loop to send go into the shared `done` buffer, encoded in
   place under its lock; then the loop is woken (uv_async coalesces). */
static void done_lock(replica *r)
{
    pthread_mutex_lock(&r->done_mu);
}

static void done_unlock_and_wake(replica *r, int finished)
{
    r->done.oom = 0; /* a frame that failed was dropped whole */
    r->n_done += finished;
    pthread_mutex_unlock(&r->done_mu);
    if (!pthread_equal(pthread_self(), r->loop_thread)) uv_async_send(&r->wake);
}

static void on_wake(uv_async_t *h);

/* calls_io: handle calls are frames in the same `done` buffer. */
static ipc_buf *calls_out_begin(void *arg)
{
    replica *r = arg;
    done_lock(r);
    return &r->done;
}

static void calls_out_end(void *arg)
{
    done_unlock_and_wake(arg, 0);
}

/* serve_response_flush: send status, headers (first time) and the body so
   far as a RESPONSE_PART, then start the body afresh. A handler that
   streams is long-running by nature: it is never run inline again, and if
   it runs inline now, the part is written at once (the loop is busy). */
static int flush_part(serve_response *res)
{
    job_out *o = res->flush_arg;
    replica *r = o->r;
    done_lock(r);
    r->streams = 1;
    int rc = ipc_response_encode_frame(
        &r->done, IPC_RESPONSE_PART, 0, o->id, res->status, res->streamed ? NULL : res->headers,
        res->streamed ? 0 : res->n_headers, res->body.data, res->body.len);
    done_unlock_and_wake(r, 0);
    if (pthread_equal(pthread_self(), r->loop_thread) && r->data) {
        on_wake(&r->wake);
        ipc_conn_flush_now(r->data);
    }
    if (rc != 0) return -1;
    res->streamed = 1;
    res->body.len = 0;
    return 0;
}

/* The frame that ends a request: the whole response (item_finish made
   it), or the last part of a stream, aborted if the handler failed. */
static void encode_final(ipc_buf *b, const item *it, int rc)
{
    const serve_response *res = &it->res;
    if (res->streamed)
        ipc_response_encode_frame(b, IPC_RESPONSE, rc != 0 ? IPC_FLAG_ABORTED : 0, it->id,
                                  res->status, NULL, 0, res->body.data, res->body.len);
    else if (ipc_response_encode(b, it->id, res->status, res->headers, res->n_headers,
                                 res->body.data, res->body.len) != 0) {
        b->oom = 0;
        encode_error(b, it->id, 500, "response too large or out of memory");
    }
}

/* Why a callback failed: its serve_set_error message, or a default. */
static const char *failure_reason(const char *fallback)
{
    return api_last_error()[0] ? api_last_error() : fallback;
}

/* Fold one handler run time into the moving average (done_mu held). A slow
   run counts in full at once, so one slow request ends inline running. */
static void note_duration(replica *r, uint64_t ns)
{
    if (ns > r->handle_ns)
        r->handle_ns = ns;
    else
        r->handle_ns -= (r->handle_ns - ns) / 8;
}

/* A request that arrived at `arrival_ns` is answered at `now` (done_mu
   held). */
static void note_latency(replica *r, uint64_t arrival_ns, uint64_t now)
{
    metrics_hist_observe(&r->latency, &metrics_latency_buckets, (double)(now - arrival_ns) / 1e9);
    r->stats_moved = 1;
}

/* Run one request through the plugin and queue its encoded response. The
   payload is the REQUEST frame's; it is only read during the call. */
static void run_job(replica *r, uint64_t id, uint8_t flags, const char *payload, size_t len,
                    uint64_t arrival_ns)
{
    item it;
    job_out out = {r, id};
    uint64_t start = uv_hrtime();
    int rc = 0;
    item_open(&it, id, flags, payload, len, r->plugin.dep);
    it.res.flush = flush_part;
    it.res.flush_arg = &out;
    if (it.runnable) {
        pthread_rwlock_rdlock(&r->plugin_lock);
        api_clear_error();
        log_set_request_id(it.req.request_id); /* what the plugin logs carries it */
        rc = r->plugin.dep->handle(r->state, &it.req, &it.res);
        log_set_request_id(NULL);
        pthread_rwlock_unlock(&r->plugin_lock);
    }
    item_finish(&it, rc, failure_reason("the deployment's handle failed"), r->ctx.app);
    uint64_t end = uv_hrtime();
    done_lock(r);
    note_duration(r, end - start);
    note_latency(r, arrival_ns, end);
    encode_final(&r->done, &it, rc);
    done_unlock_and_wake(r, 1);
    item_close(&it);
}

/* Wake one more worker when the queue holds more jobs than there are awake
   workers free to take them (awake and not running a job). A burst thus
   wakes as many workers as it has jobs, and a worker that finishes picks
   the next job itself. Called with `mu` held. */
static void maybe_wake_worker(replica *r)
{
    if (r->batch_max) { /* the batcher: when its wait starts or its batch is full */
        if (r->batcher_idle || r->n_queued == r->batch_max) pthread_cond_signal(&r->cv);
    } else if (r->n_queued > r->n_awake - r->n_busy && r->n_awake < r->n_threads) {
        pthread_cond_signal(&r->cv);
    }
}

static void *worker_main(void *arg)
{
    replica *r = arg;
    pthread_mutex_lock(&r->mu);
    r->n_awake++;
    for (;;) {
        while (!r->head && !r->quit_workers) {
            r->n_awake--;
            pthread_cond_wait(&r->cv, &r->mu);
            r->n_awake++;
        }
        job *j = r->head;
        if (!j) break;
        r->head = j->next;
        if (!r->head) r->tail = NULL;
        r->n_queued--;
        r->n_busy++;
        maybe_wake_worker(r);
        pthread_mutex_unlock(&r->mu);
        run_job(r, j->id, j->flags, j->payload, j->len, j->arrival_ns);
        free(j);
        pthread_mutex_lock(&r->mu);
        r->n_busy--;
    }
    r->n_awake--;
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

/* ---- Batching ---------------------------------------------------------- */

/* Unlink the first `n` jobs of the queue into `out` (mu held). */
static void dequeue(replica *r, job **out, int n)
{
    for (int i = 0; i < n; i++) {
        out[i] = r->head;
        r->head = r->head->next;
    }
    if (!r->head) r->tail = NULL;
    r->n_queued -= n;
}

/*
 * Wait for the next batch (mu held): until batch_max jobs are queued or the
 * oldest has waited batch_wait_ns, as Ray's @serve.batch and Triton's
 * dynamic batcher do; then take up to batch_max of them. While a batch
 * runs, requests pile up, so under load the next batch is full at once
 * and the wait costs nothing. Returns the count, 0 when the replica stops.
 */
static int take_batch(replica *r, job **out)
{
    for (;;) {
        while (!r->head && !r->quit_workers) {
            r->batcher_idle = 1;
            pthread_cond_wait(&r->cv, &r->mu);
        }
        r->batcher_idle = 0;
        if (!r->head) return 0;
        uint64_t due = r->head->arrival_ns + r->batch_wait_ns, now = uv_hrtime();
        if (r->n_queued >= r->batch_max || now >= due || r->quit_workers) break;
        struct timespec ts = {(time_t)(due / 1000000000u), (long)(due % 1000000000u)};
        pthread_cond_timedwait(&r->cv, &r->mu, &ts); /* the cv runs on CLOCK_MONOTONIC */
    }
    int n = r->n_queued < r->batch_max ? r->n_queued : r->batch_max;
    dequeue(r, out, n);
    return n;
}

/* Run one batch: decode every request, give the good ones to handle_batch
   in one call, answer all of them in one go. A request that fails to
   decode (a bad tensor) is answered alone and left out of the call. */
static void run_batch(replica *r, job **jobs, int n)
{
    const serve_deployment *dep = r->plugin.dep;
    size_t m = 0;
    int rc = 0;
    for (int i = 0; i < n; i++) {
        item *it = &r->batch_items[i];
        item_open(it, jobs[i]->id, jobs[i]->flags, jobs[i]->payload, jobs[i]->len, dep);
        if (!it->runnable) continue;
        r->batch_reqs[m] = &it->req;
        r->batch_res[m++] = &it->res;
    }
    if (m > 0) {
        pthread_rwlock_rdlock(&r->plugin_lock);
        api_clear_error();
        rc = dep->handle_batch(r->state, r->batch_reqs, r->batch_res, m);
        pthread_rwlock_unlock(&r->plugin_lock);
    }
    const char *why = failure_reason("the deployment's handle_batch failed");
    for (int i = 0; i < n; i++)
        item_finish(&r->batch_items[i], r->batch_items[i].runnable ? rc : 0, why, r->ctx.app);
    uint64_t end = uv_hrtime();
    done_lock(r);
    if (m > 0) metrics_hist_observe(&r->batch, &metrics_batch_buckets, (double)m);
    for (int i = 0; i < n; i++) {
        note_latency(r, jobs[i]->arrival_ns, end);
        encode_final(&r->done, &r->batch_items[i], 0);
    }
    done_unlock_and_wake(r, n);
    for (int i = 0; i < n; i++) {
        item_close(&r->batch_items[i]);
        free(jobs[i]);
    }
}

static void *batcher_main(void *arg)
{
    replica *r = arg;
    pthread_mutex_lock(&r->mu);
    for (;;) {
        int n = take_batch(r, r->batch_jobs);
        if (n == 0) break;
        pthread_mutex_unlock(&r->mu);
        run_batch(r, r->batch_jobs, n);
        pthread_mutex_lock(&r->mu);
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

/* The batcher's arrays, sized for the largest batch. */
static int batcher_alloc(replica *r)
{
    size_t n = (size_t)r->batch_max;
    r->batch_jobs = calloc(n, sizeof(*r->batch_jobs));
    r->batch_items = calloc(n, sizeof(*r->batch_items));
    r->batch_reqs = calloc(n, sizeof(*r->batch_reqs));
    r->batch_res = calloc(n, sizeof(*r->batch_res));
    return r->batch_jobs && r->batch_items && r->batch_reqs && r->batch_res ? 0 : -ENOMEM;
}

static void batcher_free(replica *r)
{
    free(r->batch_jobs);
    free(r->batch_items);
    free(r->batch_reqs);
    free(r->batch_res);
}

/* ---- Worker threads ----------------------------------------------------- */

/* One worker per allowed ongoing request, or the one batcher. */
static int workers_start(replica *r)
{
    if (r->batch_max) {
        r->threads = calloc(1, sizeof(*r->threads));
        if (!r->threads || batcher_alloc(r) != 0) return -ENOMEM;
        int rc = pthread_create(&r->threads[0], NULL, batcher_main, r);
        if (rc != 0) return -rc;
        r->n_threads = 1;
        return 0;
    }
    int n = r->max_ongoing < REPLICA_MAX_THREADS ? r->max_ongoing : REPLICA_MAX_THREADS;
    r->threads = calloc((size_t)n, sizeof(*r->threads));
    if (!r->threads) return -ENOMEM;
    for (; r->n_threads < n; r->n_threads++) {
        int rc = pthread_create(&r->threads[r->n_threads], NULL, worker_main, r);
        if (rc != 0) return r->n_threads > 0 ? 0 : -rc; /* fewer threads still serve */
    }
    return 0;
}

static void workers_join(replica *r)
{
    pthread_mutex_lock(&r->mu);
    r->quit_workers = 1;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    for (int i = 0; i < r->n_threads; i++) pthread_join(r->threads[i], NULL);
    free(r->threads);
    r->threads = NULL;
    r->n_threads = 0;
}

/* Loop thread: forward everything the workers finished since last time. */
static void on_wake(uv_async_t *h)
{
    replica *r = h->data;
    pthread_mutex_lock(&r->done_mu);
    int n = r->n_done;
    r->n_done = 0;
    if (r->data) {
        ipc_buf *out = ipc_conn_out(r->data);
        if (out->len == 0) {
            ipc_buf tmp = *out; /* swap: no copy when nothing else is queued */
            *out = r->done;
            r->done = tmp;
        } else {
            ipc_buf_put(out, r->done.data, r->done.len);
        }
        ipc_conn_flush_later(r->data);
    }
    r->done.len = 0;
    pthread_mutex_unlock(&r->done_mu);
    r->ongoing -= n;
    if (r->phase == PHASE_STOPPING && r->ongoing == 0) replica_stop(r);
}

/* ---- Data channel ------------------------------------------------------ */

/* Drop request `id` if no worker has started it; confirm so that the
   router frees its slot. A running request cannot be interrupted: it
   answers as usual and the router discards the answer. */
static void cancel_job(replica *r, uint64_t id)
{
    job *found = NULL;
    pthread_mutex_lock(&r->mu);
    for (job **pp = &r->head, *prev = NULL; *pp; prev = *pp, pp = &(*pp)->next) {
        if ((*pp)->id != id) continue;
        found = *pp;
        *pp = found->next;
        if (r->tail == found) r->tail = prev;
        r->n_queued--;
        break;
    }
    pthread_mutex_unlock(&r->mu);
    if (!found) return;
    free(found);
    ipc_conn_send(r->data, IPC_CANCELLED, id, NULL, 0);
    if (--r->ongoing == 0 && r->phase == PHASE_STOPPING) replica_stop(r);
}

/*
 * A fast handler is cheaper to run here, on the loop thread, than to hand
 * to a worker: the hand-off (a futex wake, an eventfd write, an epoll
 * wake-up, and the context switches between them) costs some 20 us, many
 * times a small handler. So while the average run time stays under
 * REPLICA_INLINE_NS and no job is waiting for a worker, the loop thread
 * runs the request itself and forwards the answer at once. The threading
 * rule still holds: the router never has more than max_ongoing_requests
 * at this replica, wherever they run. Returns 1 if it ran the request.
 */
static int run_inline(replica *r, const ipc_frame *f)
{
    /* never block the loop on the lock, nor on a handle call's answer */
    if (r->reconfiguring || r->ctx.n_handles || r->batch_max) return 0;
    pthread_mutex_lock(&r->done_mu);
    int fast = r->handle_ns < REPLICA_INLINE_NS && !r->streams;
    pthread_mutex_unlock(&r->done_mu);
    pthread_mutex_lock(&r->mu);
    int idle = r->n_queued == 0;
    pthread_mutex_unlock(&r->mu);
    if (!fast || !idle) return 0;
    r->ongoing++;
    run_job(r, f->id, f->flags, f->payload, f->len, uv_hrtime());
    on_wake(&r->wake); /* forward now, in this loop turn */
    return 1;
}

static void on_data_frame(ipc_conn *c, const ipc_frame *f)
{
    replica *r = ipc_conn_data(c);
    if (f->type == IPC_CANCEL) {
        cancel_job(r, f->id);
        return;
    }
    if (f->type == IPC_CALL_PART || f->type == IPC_CALL_RESULT) {
        calls_on_frame(&r->calls, f);
        return;
    }
    if (f->type != IPC_REQUEST || r->phase < PHASE_SERVING) {
        log_warn("unexpected data frame type %d; ignored", f->type);
        return;
    }
    if (run_inline(r, f)) return;
    job *j = malloc(sizeof(*j) + f->len);
    if (!j) { /* answer anyway, or the router would wait on this slot */
        log_error("out of memory queueing a request");
        encode_error(ipc_conn_out(c), f->id, 503, "replica out of memory");
        ipc_conn_flush_later(c);
        return;
    }
    j->next = NULL;
    j->id = f->id;
    j->flags = f->flags;
    j->arrival_ns = uv_hrtime();
    j->len = f->len;
    memcpy(j->payload, f->payload, f->len);
    pthread_mutex_lock(&r->mu);
    if (r->tail)
        r->tail->next = j;
    else
        r->head = j;
    r->tail = j;
    r->n_queued++;
    maybe_wake_worker(r);
    pthread_mutex_unlock(&r->mu);
    r->ongoing++;
}

static void on_data_close(ipc_conn *c, int status)
{
    replica *r = ipc_conn_data(c);
    r->data = NULL;
    calls_fail_all(&r->calls, 502, "the replica lost its connection to the serve process");
}

/* ---- Stats ------------------------------------------------------------- */

/* Send the controller our histograms (totals since we started) if they
   moved since the last time. */
static void send_stats(replica *r)
{
    pthread_mutex_lock(&r->done_mu);
    int moved = r->stats_moved;
    metrics_hist latency = r->latency, batch = r->batch;
    r->stats_moved = 0;
    pthread_mutex_unlock(&r->done_mu);
    if (!moved || !r->control) return;
    json_t *doc = json_pack("{s:o?, s:o?}", "latency",
                            metrics_hist_to_json(&latency, &metrics_latency_buckets), "batch",
                            metrics_hist_to_json(&batch, &metrics_batch_buckets));
    char *text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    if (text) ipc_conn_send(r->control, IPC_STATS, 0, text, strlen(text));
    free(text);
    json_decref(doc);
}

static void on_stats_timer(uv_timer_t *t)
{
    send_stats(t->data);
}

/* ---- Init -------------------------------------------------------------- */

/* Does what the plugin declares fit, and fit the config? Its tensors must
   be well formed, and batching needs handle_batch. */
static int check_declaration(replica *r)
{
    const serve_deployment *dep = r->plugin.dep;
    char why[512];
    if (infer_specs_check(dep, why, sizeof(why)) != 0) {
        snprintf(r->init_error, sizeof(r->init_error), "%s: bad tensor declaration: %s",
                 r->ctx.deployment, why);
        return -1;
    }
    if (r->batch_max && !dep->handle_batch) {
        snprintf(r->init_error, sizeof(r->init_error),
                 "%s: batching is set but the deployment has no handle_batch callback",
                 r->ctx.deployment);
        return -1;
    }
    return 0;
}

/* Thread pool: load the plugin, build the state, apply the user_config. */
static void init_work(uv_work_t *w)
{
    replica *r = w->data;
    const serve_deployment *dep;
    if (loader_open(r->plugin_path, r->ctx.deployment, &r->plugin, r->init_error,
                    sizeof(r->init_error)) != 0)
        return;
    dep = r->plugin.dep;
    if (check_declaration(r) != 0) goto fail;
    api_clear_error();
    if (dep->init(&r->ctx, r->init_args, &r->state) != 0) {
        snprintf(r->init_error, sizeof(r->init_error), "%s: init failed: %s", r->ctx.deployment,
                 api_last_error()[0] ? api_last_error() : "(no message)");
        goto fail;
    }
    if (!r->user_config) return;
    if (!dep->reconfigure) {
        snprintf(r->init_error, sizeof(r->init_error),
                 "%s: user_config is set but the deployment has no reconfigure callback",
                 r->ctx.deployment);
        goto fail_state;
    }
    api_clear_error();
    if (dep->reconfigure(r->state, r->user_config) != 0) {
        snprintf(r->init_error, sizeof(r->init_error), "%s: reconfigure failed: %s",
                 r->ctx.deployment, api_last_error()[0] ? api_last_error() : "(no message)");
        goto fail_state;
    }
    return;
fail_state:
    if (dep->finalize) dep->finalize(r->state);
    r->state = NULL;
fail:
    loader_close(&r->plugin);
}

static void init_done(uv_work_t *w, int status)
{
    replica *r = w->data;
    if (!r->init_error[0] && workers_start(r) != 0)
        snprintf(r->init_error, sizeof(r->init_error), "cannot start worker threads");
    if (r->init_error[0]) {
        log_error("%s", r->init_error);
        ipc_conn_send(r->control, IPC_FAILED, 0, r->init_error, strlen(r->init_error));
        r->exit_code = 1;
        r->phase = PHASE_STOPPING;
        replica_stop(r);
        return;
    }
    r->phase = PHASE_SERVING;
    calls_open(&r->calls, 1);
    uv_timer_start(&r->stats_timer, on_stats_timer, REPLICA_STATS_MS, REPLICA_STATS_MS);
    if (r->stop_requested) { /* nobody wants us any more: no READY */
        replica_stop(r);
        return;
    }
    if (r->batch_max)
        log_info("ready (pid %d, batches of up to %d, waiting up to %.3f s)", (int)getpid(),
                 r->batch_max, r->batch_wait_ns / 1e9);
    else
        log_info("ready (pid %d, %d worker threads)", (int)getpid(), r->n_threads);
    char *specs = infer_specs_json(r->plugin.dep); /* the proxy's model metadata */
    ipc_conn_send(r->control, IPC_READY, 0, specs ? specs : "", specs ? strlen(specs) : 0);
    free(specs);
}

static char *dup_json_string(json_t *obj, const char *key)
{
    const char *s = json_string_value(json_object_get(obj, key));
    return s ? strdup(s) : NULL;
}

/* Make the handles INIT lists: [{name, app, deployment}]. */
static int bind_handles(replica *r, json_t *list)
{
    size_t i;
    json_t *b;
    json_array_foreach(list, i, b)
    {
        const char *name = json_string_value(json_object_get(b, "name"));
        const char *app = json_string_value(json_object_get(b, "app"));
        const char *dep = json_string_value(json_object_get(b, "deployment"));
        if (!name || !app || !dep) return -EPROTO;
        int rc = calls_bind(&r->calls, &r->ctx, name, app, dep);
        if (rc != 0) return rc;
    }
    return 0;
}

/* Take the level and encoding of a logging object {level, encoding}
   (INIT's, or a LOGGING frame's when the config changes them). */
static void apply_logging(const json_t *logging)
{
    const char *level = json_string_value(json_object_get(logging, "level"));
    const char *encoding = json_string_value(json_object_get(logging, "encoding"));
    int v;
    if (level && (v = log_level_parse(level)) >= 0) log_min_level = (log_level)v;
    if (encoding && (v = log_encoding_parse(encoding)) >= 0) log_encoding_in_use = (log_encoding)v;
}

/* Our own log file in the logs folder: replica_<app>_<deployment>_<id>.log,
   with anything but letters, digits, '-' and '.' in the names made '_'. */
static void open_log_file(replica *r, const char *dir)
{
    if (!dir) return;
    char name[512];
    int n = snprintf(name, sizeof(name), "replica_%s_%s_%s.log", r->ctx.app, r->ctx.deployment,
                     r->ctx.replica_id);
    for (int i = 0; i < n && (size_t)i < sizeof(name); i++)
        if (!isalnum((unsigned char)name[i]) && name[i] != '-' && name[i] != '.') name[i] = '_';
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    int rc = log_open_file(path);
    if (rc < 0)
        log_warn("cannot open the log file %s: %s; logging to stderr only", path, strerror(-rc));
}

/* Parse INIT's JSON and start loading the plugin on the thread pool. */
static int handle_init(replica *r, const ipc_frame *f)
{
    json_error_t jerr;
    json_t *msg = json_loadb(f->payload, f->len, 0, &jerr);
    if (!msg) return -EPROTO;
    r->ctx.app = dup_json_string(msg, "app");
    r->ctx.deployment = dup_json_string(msg, "deployment");
    r->ctx.replica_id = dup_json_string(msg, "replica_id");
    r->plugin_path = dup_json_string(msg, "plugin");
    r->init_args = dup_json_string(msg, "init_args");
    r->user_config = dup_json_string(msg, "user_config");
    r->max_ongoing = (int)json_integer_value(json_object_get(msg, "max_ongoing_requests"));
    json_t *batching = json_object_get(msg, "batching");
    r->batch_max = (int)json_integer_value(json_object_get(batching, "max_batch_size"));
    r->batch_wait_ns =
        (uint64_t)(json_number_value(json_object_get(batching, "batch_wait_timeout_s")) * 1e9);
    int rc = bind_handles(r, json_object_get(msg, "bindings"));
    json_t *logging = json_incref(json_object_get(msg, "logging"));
    json_decref(msg);
    if (rc != 0) return rc;
    if (!r->ctx.app || !r->ctx.deployment || !r->ctx.replica_id || !r->plugin_path ||
        !r->init_args || r->max_ongoing < 1 || r->batch_max < 0) {
        json_decref(logging);
        return -EPROTO;
    }
    log_set_process(&(log_fields){"replica", r->ctx.app, r->ctx.deployment, r->ctx.replica_id});
    apply_logging(logging);
    open_log_file(r, json_string_value(json_object_get(logging, "dir")));
    json_decref(logging);
    r->phase = PHASE_INITIALIZING;
    r->init_work.data = r;
    return uv_queue_work(&r->loop, &r->init_work, init_work, init_done);
}

/* ---- Control channel and shutdown -------------------------------------- */

/* Thread pool: apply a new user_config with the plugin to itself. */
static void reconf_work(uv_work_t *w)
{
    replica *r = w->data;
    const serve_deployment *dep = r->plugin.dep;
    r->reconf_error[0] = '\0';
    if (!dep->reconfigure) {
        snprintf(r->reconf_error, sizeof(r->reconf_error),
                 "%s: user_config is set but the deployment has no reconfigure callback",
                 r->ctx.deployment);
        return;
    }
    pthread_rwlock_wrlock(&r->plugin_lock); /* waits for running requests */
    api_clear_error();
    if (dep->reconfigure(r->state, r->reconf_json) != 0)
        snprintf(r->reconf_error, sizeof(r->reconf_error), "%s: reconfigure failed: %s",
                 r->ctx.deployment, api_last_error()[0] ? api_last_error() : "(no message)");
    pthread_rwlock_unlock(&r->plugin_lock);
}

static void reconf_done(uv_work_t *w, int status)
{
    replica *r = w->data;
    r->reconfiguring = 0;
    free(r->reconf_json);
    r->reconf_json = NULL;
    if (r->reconf_error[0]) log_error("%s", r->reconf_error);
    if (r->stop_requested) {
        replica_stop(r);
        return;
    }
    send_result(r, IPC_RECONFIGURED, r->reconf_error);
}

/* Answer a control request with flags 0 (ok) or IPC_FLAG_FAILED and the
   message. */
static void send_result(replica *r, uint8_t type, const char *error)
{
    if (!r->control) return;
    ipc_buf *out = ipc_conn_out(r->control);
    size_t start = ipc_frame_begin(out, type, 0);
    if (!out->oom) out->data[start + 5] = error[0] ? IPC_FLAG_FAILED : 0;
    ipc_buf_put(out, error, strlen(error));
    ipc_frame_end(out, start);
    ipc_conn_flush_later(r->control);
}

/* Thread pool: check_health may run beside handle (shared lock). */
static void health_work(uv_work_t *w)
{
    replica *r = w->data;
    r->health_error[0] = '\0';
    pthread_rwlock_rdlock(&r->plugin_lock);
    api_clear_error();
    if (r->plugin.dep->check_health(r->state) != 0)
        snprintf(r->health_error, sizeof(r->health_error), "%s",
                 api_last_error()[0] ? api_last_error() : "check_health failed (no message)");
    pthread_rwlock_unlock(&r->plugin_lock);
}

static void health_done(uv_work_t *w, int status)
{
    replica *r = w->data;
    r->checking = 0;
    if (r->stop_requested) {
        replica_stop(r);
        return;
    }
    send_result(r, IPC_HEALTH_RESULT, r->health_error);
}

/* HEALTH: without a check_health callback a replica that answers is
   healthy; with one, its verdict (one check at a time). */
static void handle_health(replica *r)
{
    if (r->phase != PHASE_SERVING || r->checking) return;
    if (!r->plugin.dep->check_health) {
        send_result(r, IPC_HEALTH_RESULT, "");
        return;
    }
    r->checking = 1;
    r->health_work.data = r;
    uv_queue_work(&r->loop, &r->health_work, health_work, health_done);
}

/* RECONFIGURE: the controller sends one at a time and waits for the
   answer, so a second one never arrives while the first runs. */
static void handle_reconfigure(replica *r, const ipc_frame *f)
{
    if (r->phase != PHASE_SERVING || r->reconfiguring ||
        !(r->reconf_json = strndup(f->payload, f->len))) {
        log_warn("RECONFIGURE ignored (not serving, busy, or out of memory)");
        return;
    }
    r->reconfiguring = 1;
    r->reconf_work.data = r;
    uv_queue_work(&r->loop, &r->reconf_work, reconf_work, reconf_done);
}

static void on_control_frame(ipc_conn *c, const ipc_frame *f)
{
    replica *r = ipc_conn_data(c);
    if (f->type == IPC_INIT && r->phase == PHASE_WAIT_INIT) {
        if (handle_init(r, f) != 0) {
            log_error("bad INIT message from the controller");
            r->exit_code = 1;
            replica_stop(r);
        }
    } else if (f->type == IPC_STOP) {
        replica_stop(r);
    } else if (f->type == IPC_RECONFIGURE) {
        handle_reconfigure(r, f);
    } else if (f->type == IPC_HEALTH) {
        handle_health(r);
    } else if (f->type == IPC_LOGGING) {
        json_t *logging = json_loadb(f->payload, f->len, 0, NULL);
        apply_logging(logging);
        json_decref(logging);
    } else {
        log_warn("unexpected control frame type %d; ignored", f->type);
    }
}

static void on_control_close(ipc_conn *c, int status)
{
    replica *r = ipc_conn_data(c);
    r->control = NULL;
    replica_stop(r); /* the controller is gone: nobody will route to us */
}

static void on_sigterm(uv_signal_t *h, int signum)
{
    replica_stop(h->data);
}

/*
 * Stop: wait for ongoing requests (they keep being answered while the loop
 * runs), then join the workers, finalize the plugin and close everything so
 * that uv_run returns. Init in progress is waited for too: its callback
 * calls back here once it is done.
 */
static void replica_stop(replica *r)
{
    if (r->phase == PHASE_INITIALIZING || r->reconfiguring || r->checking) {
        r->stop_requested = 1; /* cannot be interrupted: init_done or reconf_done stops */
        return;
    }
    r->phase = PHASE_STOPPING;
    if (r->ongoing > 0) return; /* on_wake calls again when they are done */
    workers_join(r);
    if (r->plugin.dep && r->plugin.dep->finalize && r->state) r->plugin.dep->finalize(r->state);
    r->state = NULL;
    send_stats(r); /* the last requests count too */
    if (r->data) ipc_conn_close(r->data);
    if (r->control) ipc_conn_shutdown(r->control);
    if (!uv_is_closing((uv_handle_t *)&r->wake)) {
        uv_close((uv_handle_t *)&r->wake, NULL);
        uv_close((uv_handle_t *)&r->sigterm, NULL);
        uv_close((uv_handle_t *)&r->stats_timer, NULL);
    }
}

static void replica_free(replica *r)
{
    loader_close(&r->plugin);
    free(r->ctx.app);
    free(r->ctx.deployment);
    free(r->ctx.replica_id);
    calls_unbind_all(&r->ctx);
    calls_destroy(&r->calls);
    free(r->plugin_path);
    free(r->init_args);
    free(r->user_config);
    ipc_buf_free(&r->done);
    batcher_free(r);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    pthread_mutex_destroy(&r->done_mu);
    pthread_rwlock_destroy(&r->plugin_lock);
}

static void init_sync(replica *r)
{
    pthread_rwlockattr_t attr;
    pthread_condattr_t cattr;
    pthread_mutex_init(&r->mu, NULL);
    pthread_condattr_init(&cattr);
    pthread_condattr_setclock(&cattr, CLOCK_MONOTONIC); /* the batcher's deadlines: uv_hrtime */
    pthread_cond_init(&r->cv, &cattr);
    pthread_condattr_destroy(&cattr);
    pthread_mutex_init(&r->done_mu, NULL);
    pthread_rwlockattr_init(&attr);
    /* reconfigure must not starve behind a steady stream of requests */
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&r->plugin_lock, &attr);
    pthread_rwlockattr_destroy(&attr);
    calls_init(&r->calls, &(calls_io){calls_out_begin, calls_out_end, r});
}

/* Were we started by the controller, with the two sockets in place? */
static int channels_present(void)
{
    struct stat st;
    return fstat(IPC_REPLICA_CONTROL_FD, &st) == 0 && S_ISSOCK(st.st_mode) &&
           fstat(IPC_REPLICA_DATA_FD, &st) == 0 && S_ISSOCK(st.st_mode);
}

int replica_main(void)
{
    static replica r; /* one per process; static so signal paths can reach it */
    int rc;

    /* Ctrl-C reaches the whole process group: the controller decides when a
       replica stops, so only STOP, SIGTERM or the controller's exit do. */
    signal(SIGINT, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
    /* Only stdio and our two sockets: descriptors that reached `serve run`
       from whoever started it are no business of a plugin's (F15). */
    close_range(IPC_REPLICA_DATA_FD + 1, ~0U, 0);
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    log_set_process(&(log_fields){.component = "replica"});
    if (!channels_present()) { /* before libuv takes those fd numbers */
        log_error("no replica channels on fds %d and %d: replicas are started by `serve run`, "
                  "not by hand",
                  IPC_REPLICA_CONTROL_FD, IPC_REPLICA_DATA_FD);
        return 2;
    }
    util_keep_freed_heap();
    init_sync(&r);
    r.loop_thread = pthread_self();
    r.handle_ns = REPLICA_INLINE_NS; /* workers until a run is measured fast */
    if ((rc = uv_loop_init(&r.loop)) < 0) goto fail_loop;
    rc = ipc_conn_open(&r.loop, IPC_REPLICA_CONTROL_FD, on_control_frame, on_control_close, &r,
                       &r.control);
    if (rc < 0) goto fail_open;
    rc = ipc_conn_open(&r.loop, IPC_REPLICA_DATA_FD, on_data_frame, on_data_close, &r, &r.data);
    if (rc < 0) goto fail_open;
    uv_async_init(&r.loop, &r.wake, on_wake);
    r.wake.data = &r;
    uv_timer_init(&r.loop, &r.stats_timer);
    r.stats_timer.data = &r;
    uv_unref((uv_handle_t *)&r.stats_timer);
    uv_signal_init(&r.loop, &r.sigterm);
    r.sigterm.data = &r;
    uv_signal_start(&r.sigterm, on_sigterm, SIGTERM);
    uv_unref((uv_handle_t *)&r.sigterm);

    uv_run(&r.loop, UV_RUN_DEFAULT);
    rc = uv_loop_close(&r.loop);
    if (rc != 0) log_warn("loop closed with handles still open: %s", uv_strerror(rc));
    replica_free(&r);
    return r.exit_code;

fail_open:
    log_error("cannot open the replica channels (fds %d, %d): %s; "
              "replicas are started by `serve run`, not by hand",
              IPC_REPLICA_CONTROL_FD, IPC_REPLICA_DATA_FD, uv_strerror(rc));
    if (r.control) ipc_conn_close(r.control);
    uv_run(&r.loop, UV_RUN_DEFAULT);
    uv_loop_close(&r.loop);
fail_loop:
    replica_free(&r);
    return 1;
}
