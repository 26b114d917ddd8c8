/*
 * controller.c - replica processes: start, watch, replace, stop.
 *
 * A replica object (rep) is referenced by up to three things that end
 * asynchronously: its process handle (closed after the exit callback), its
 * control connection, and its router backend once it is ready. It is freed
 * when the last of them lets go, and the controller finishes shutting down
 * when no replica object is left.
 */
#include "serve/controller.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "ipc/ipc.h"
#include "autoscaler/autoscaler.h"
#include "router/router.h"
#include "serve/admin.h"
#include "serve/internal.h"

#define CTL_BACKOFF_MIN_S  0.1
#define CTL_WATCH_MS       1000 /* how often replicas' memory is read */
#define CTL_BACKOFF_MAX_S  10.0
#define CTL_START_ATTEMPTS 3 /* crashes before any READY that stop `serve run` */

static void reconcile(ctl_dep *d);
static void maybe_finish(ctl *c);

static ctl_dep *add_deployment(ctl *c, const cfg_app *a, const cfg_deployment *cfg, cfg_ref *ref);
static void remove_deployment(ctl_dep *d);
static void dep_close(ctl_dep *d);
static void dep_release(ctl_dep *d);
static void update_autoscaling(ctl_dep *d);

static cfg_ref *cfg_ref_new(cfg_config *cfg)
{
    cfg_ref *r = malloc(sizeof(*r));
    if (r) *r = (cfg_ref){cfg, 1};
    return r;
}

static void cfg_ref_put(cfg_ref *r)
{
    if (r && --r->refs == 0) {
        cfg_free(r->cfg);
        free(r);
    }
}
static int setup_routes(ctl *c);

static double wall_clock_s(void)
{
    uv_timeval64_t tv;
    uv_gettimeofday(&tv);
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

/* ---- Replica objects --------------------------------------------------- */

static void rep_unref(rep *p)
{
    if (--p->refs > 0) return;
    ctl_dep *d = p->dep;
    metrics_hist_add(&d->latency_gone, &p->latency); /* its requests still count */
    metrics_hist_add(&d->batch_gone, &p->batch);
    for (rep **pp = &d->reps; *pp; pp = &(*pp)->next)
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    free(p);
    ctl *c = d->c;
    c->n_reps--;
    if (d->removing && !d->reps && !c->finished) dep_release(d); /* its last replica */
    maybe_finish(c);
}

static void set_state(rep *p, rep_state s)
{
    ctl_dep *d = p->dep;
    int was_active = p->state == REP_STARTING || p->state == REP_RUNNING;
    int is_active = s == REP_STARTING || s == REP_RUNNING;
    d->n_active += is_active - was_active;
    d->n_running += (s == REP_RUNNING) - (p->state == REP_RUNNING);
    p->state = s;
}

static double max_graceful_s(const ctl *c)
{
    double t = 0;
    for (const ctl_dep *d = c->deps; d; d = d->next)
        if (d->cfg->graceful_shutdown_timeout_s > t) t = d->cfg->graceful_shutdown_timeout_s;
    return t;
}

static void fatal(ctl *c, const char *what)
{
    log_error("%s; stopping", what);
    c->exit_code = 1;
    ctl_shutdown(c);
}

/* `host` as it goes in a URL: IPv6 addresses are bracketed. */
static const char *url_host(const char *host, char *buf, size_t size)
{
    snprintf(buf, size, strchr(host, ':') ? "[%s]" : "%s", host);
    return buf;
}

/* Log once when every deployment has all its replicas running. */
static void log_if_all_ready(ctl *c)
{
    if (c->all_ready_logged) return;
    for (const ctl_dep *d = c->deps; d; d = d->next)
        if (!d->removing && d->n_running < ctl__dep_target(d)) return;
    c->all_ready_logged = 1;
    c->initial_done = 1;
    char host[300];
    url_host(c->cfg->http_host, host, sizeof(host));
    for (size_t i = 0; i < c->cfg->n_apps; i++)
        log_info("application '%s' is running at http://%s:%d%s", c->cfg->apps[i].name, host,
                 c->cfg->http_port, c->cfg->apps[i].route_prefix);
}

/* ---- Events of one replica --------------------------------------------- */

/* Bring a running replica to the deployment's user_config: one RECONFIGURE
   at a time; its answer sends the next if the config changed meanwhile. */
static void send_user_config(rep *p)
{
    ctl_dep *d = p->dep;
    const char *uc = d->cfg->user_config_json;
    if (p->state != REP_RUNNING || p->reconfiguring || !p->control || !uc ||
        p->config_gen == d->config_gen)
        return;
    p->reconfiguring = d->config_gen;
    ipc_conn_send(p->control, IPC_RECONFIGURE, 0, uc, strlen(uc));
}

static void on_reconfigured(rep *p, const ipc_frame *f)
{
    ctl_dep *d = p->dep;
    int gen = p->reconfiguring;
    p->reconfiguring = 0;
    if (f->flags & IPC_FLAG_FAILED) {
        /* The plugin refused it: the deployment is unhealthy with its
           message, and the replica keeps its previous config. */
        snprintf(d->message, sizeof(d->message), "%.*s", (int)f->len, f->payload);
        dlog_error(d, "replica %s: %s", p->id, d->message);
        p->config_gen = gen; /* do not retry the same config */
        return;
    }
    p->config_gen = gen;
    dlog_info(d, "replica %s reconfigured", p->id);
    send_user_config(p);
}

/* ---- Health checks ----------------------------------------------------- */

#define CTL_HEALTH_FAILURES 3 /* consecutive failures that replace a replica */
#define CTL_HEALTH_PREFIX   "health check: "

/* A check ended: `error` is NULL when healthy. The third failure in a row
   replaces the replica (it is killed; the usual restart follows). */
static void health_result(rep *p, const char *error)
{
    ctl_dep *d = p->dep;
    p->health_sent_ms = 0;
    if (!error) {
        p->health_failures = 0;
        int any = 0;
        for (rep *q = d->reps; q; q = q->next) any |= q->health_failures > 0;
        if (!any && strncmp(d->message, CTL_HEALTH_PREFIX, strlen(CTL_HEALTH_PREFIX)) == 0)
            d->message[0] = '\0';
        return;
    }
    snprintf(d->message, sizeof(d->message), CTL_HEALTH_PREFIX "replica %s: %s", p->id, error);
    dlog_warn(d, "replica %s failed a health check (%d in a row): %s", p->id,
              p->health_failures + 1, error);
    if (++p->health_failures < CTL_HEALTH_FAILURES || p->state != REP_RUNNING) return;
    dlog_error(d, "replica %s failed %d health checks in a row; replacing it", p->id,
               CTL_HEALTH_FAILURES);
    uv_process_kill(&p->proc, SIGKILL);
}

/* Every health_check_period_s: a check to each running replica, and a
   failure for each one whose last check is older than the timeout. */
static void on_health_tick(uv_timer_t *t)
{
    ctl_dep *d = t->data;
    uint64_t now = uv_now(d->c->loop);
    uint64_t timeout_ms = (uint64_t)(d->cfg->health_check_timeout_s * 1000);
    uint64_t grace_ms = (uint64_t)(d->cfg->graceful_shutdown_timeout_s * 1000);
    for (rep *p = d->reps; p; p = p->next) { /* health_result never frees p */
        if (p->state == REP_STOPPING && p->stop_since_ms && now - p->stop_since_ms >= grace_ms) {
            dlog_warn(d,
                      "replica %s did not stop within graceful_shutdown_timeout_s; "
                      "killing it",
                      p->id);
            p->stop_since_ms = 0;
            uv_process_kill(&p->proc, SIGKILL);
        }
        if (p->state != REP_RUNNING || !p->control || d->removing) continue;
        if (p->health_sent_ms && now - p->health_sent_ms >= timeout_ms) {
            char why[128];
            snprintf(why, sizeof(why), "no answer within %g s", d->cfg->health_check_timeout_s);
            health_result(p, why);
        }
        uint64_t period_ms = (uint64_t)(d->cfg->health_check_period_s * 1000);
        if (!p->health_sent_ms && p->state == REP_RUNNING &&
            now - p->health_last_ms + period_ms / 10 >= period_ms) { /* timer jitter */
            p->health_sent_ms = p->health_last_ms = now ? now : 1;
            ipc_conn_send(p->control, IPC_HEALTH, 0, NULL, 0);
        }
    }
}

static void start_health_checks(ctl_dep *d)
{
    double s = d->cfg->health_check_period_s;
    if (d->cfg->graceful_shutdown_timeout_s > 0 && d->cfg->graceful_shutdown_timeout_s < s)
        s = d->cfg->graceful_shutdown_timeout_s; /* the tick also enforces stop deadlines */
    uint64_t ms = (uint64_t)(s * 1000);
    uv_timer_start(&d->health_timer, on_health_tick, ms ? ms : 1, ms ? ms : 1);
}

static void on_ready(rep *p, const ipc_frame *f)
{
    ctl_dep *d = p->dep;
    ctl *c = d->c;
    if (c->stopping) {
        set_state(p, REP_STOPPING);
        ipc_conn_send(p->control, IPC_STOP, 0, NULL, 0);
        return;
    }
    int rc = router_add_backend(c->router, d->pool, p->data_fd, p->id, p, &p->backend);
    p->data_fd = -1;
    if (rc < 0) {
        dlog_error(d, "cannot route to replica %s: %s", p->id, uv_strerror(rc));
        uv_process_kill(&p->proc, SIGKILL);
        return;
    }
    p->refs++;
    set_state(p, REP_RUNNING);
    router_pool_set_model(d->pool, f->payload, f->len); /* its declared tensors */
    send_user_config(p);
    d->gen_ready = 1;
    d->start_failures = 0;
    d->backoff_s = CTL_BACKOFF_MIN_S;
    dlog_info(d, "replica %s running (pid %d)", p->id, p->proc.pid);
    reconcile(d); /* a rolling update may now retire an old replica */
    log_if_all_ready(c);
}

/* A replica's counters since it started: the latest replace the last. */
static void on_stats(rep *p, const ipc_frame *f)
{
    json_t *doc = json_loadb(f->payload, f->len, 0, NULL);
    if (metrics_hist_from_json(json_object_get(doc, "latency"), &metrics_latency_buckets,
                               &p->latency) != 0 ||
        metrics_hist_from_json(json_object_get(doc, "batch"), &metrics_batch_buckets, &p->batch) !=
            0)
        dlog_warn(p->dep, "replica %s sent malformed stats", p->id);
    json_decref(doc);
}

static void on_control_frame(ipc_conn *conn, const ipc_frame *f)
{
    rep *p = ipc_conn_data(conn);
    ctl_dep *d = p->dep;
    if (f->type == IPC_READY && p->state == REP_STARTING) {
        on_ready(p, f);
    } else if (f->type == IPC_STATS) {
        on_stats(p, f);
    } else if (f->type == IPC_RECONFIGURED) {
        on_reconfigured(p, f);
    } else if (f->type == IPC_HEALTH_RESULT) {
        char msg[512];
        snprintf(msg, sizeof(msg), "%.*s", (int)(f->len > 500 ? 500 : f->len), f->payload);
        health_result(p, (f->flags & IPC_FLAG_FAILED) ? msg : NULL);
    } else if (f->type == IPC_FAILED) {
        char msg[1200];
        snprintf(msg, sizeof(msg), "%s/%s: replica %s failed to start: %.*s", d->app->name,
                 d->cfg->name, p->id, (int)(f->len > 1024 ? 1024 : f->len), f->payload);
        snprintf(d->last_error, sizeof(d->last_error), "%.500s", msg);
        /* A definite load or init error of the first config is a failed
           `serve run`, as in Ray Serve; later ones count toward
           DEPLOY_FAILED as the replica exits (schedule_restart). */
        if (!d->gen_ready && !d->c->initial_done && !d->c->stopping)
            fatal(d->c, msg);
        else
            log_error("%s", msg);
    }
}

static void on_control_close(ipc_conn *conn, int status)
{
    rep *p = ipc_conn_data(conn);
    p->control = NULL;
    rep_unref(p);
}

static void on_proc_closed(uv_handle_t *h)
{
    rep_unref(h->data);
}

static void on_restart_timer(uv_timer_t *t)
{
    ctl_dep *d = t->data;
    reconcile(d);
    d->recovering = 0;
}

/* Replace an unexpected exit after the current backoff, doubling it. */
static void schedule_restart(ctl_dep *d, rep_state was)
{
    if (d->removing) return;
    if (was == REP_STARTING && !d->gen_ready && ++d->start_failures >= CTL_START_ATTEMPTS) {
        char msg[1300];
        snprintf(msg, sizeof(msg), "%s/%s: replicas exited %d times before becoming ready%s%s",
                 d->app->name, d->cfg->name, d->start_failures, d->last_error[0] ? "; " : "",
                 d->last_error);
        if (!d->c->initial_done) {
            fatal(d->c, msg);
            return;
        }
        /* Later deploys fail alone: the others (and any replicas of the
           previous code) keep serving; a new config tries again. */
        d->deploy_failed = 1;
        snprintf(d->message, sizeof(d->message), "%.500s", msg);
        log_error("%s; DEPLOY_FAILED until its config changes", msg);
        return;
    }
    d->recovering = 1;
    uv_timer_start(&d->restart_timer, on_restart_timer, (uint64_t)(d->backoff_s * 1000), 0);
    d->backoff_s = d->backoff_s * 2 > CTL_BACKOFF_MAX_S ? CTL_BACKOFF_MAX_S : d->backoff_s * 2;
}

static void on_proc_exit(uv_process_t *proc, int64_t status, int signum)
{
    rep *p = proc->data;
    ctl_dep *d = p->dep;
    ctl *c = d->c;
    rep_state was = p->state;
    set_state(p, REP_EXITED);
    if (was == REP_STOPPING)
        dlog_info(d, "replica %s stopped", p->id);
    else if (signum)
        dlog_warn(d, "replica %s (pid %d) killed by signal %d (%s)", p->id, proc->pid, signum,
                  strsignal(signum));
    else
        dlog_warn(d, "replica %s (pid %d) exited with status %" PRId64, p->id, proc->pid, status);
    if (p->backend) router_remove_backend(c->router, p->backend);
    if (p->data_fd >= 0) close(p->data_fd);
    p->data_fd = -1;
    if (p->control) ipc_conn_close(p->control);
    uv_close((uv_handle_t *)proc, on_proc_closed);
    if (!c->stopping && was != REP_STOPPING) schedule_restart(d, was);
}

/* A retired replica has answered everything it ran: it may stop now. */
static void on_backend_drained(void *data, void *arg)
{
    rep *p = data;
    if (p->control) ipc_conn_send(p->control, IPC_STOP, 0, NULL, 0);
}

/* A replica holds on to a request it was told to drop, past its
   graceful_shutdown_timeout_s (router_pool_configure): its handle is in an
   endless loop or a deadlock. Only a kill frees it; it is then replaced as
   after any crash. */
static void on_backend_stuck(void *data, void *arg, const char *why)
{
    rep *p = data;
    dlog_error(p->dep, "replica %s is stuck (%s); killing it", p->id, why);
    uv_process_kill(&p->proc, SIGKILL);
}

/* The router's view of the deployment's limits. The grace a cancelled
   request gets is the one a stopping replica gets. */
static void configure_pool(ctl_dep *d)
{
    router_pool_configure(d->pool, d->cfg->max_ongoing_requests, d->cfg->max_queued_requests,
                          d->cfg->graceful_shutdown_timeout_s);
}

/* The router let go of a backend (after removal or a closed socket). A
   replica still meant to serve whose connection closed (it died, or it
   wrote bytes that are no frame and the router hung up) is of no use: it
   is killed, and replaced once it has exited. */
static void on_backend_closed(void *data, void *arg)
{
    rep *p = data;
    p->backend = NULL;
    if (p->state == REP_RUNNING) {
        dlog_warn(p->dep, "replica %s lost its connection to the proxy; killing it", p->id);
        uv_process_kill(&p->proc, SIGKILL);
    }
    rep_unref(p);
}

/* ---- Spawning ---------------------------------------------------------- */

/* Our environment without the admin token: a plugin is trusted code, but
   it has no business holding the key to the admin API (security F8). The
   array is the caller's to free; its strings are environ's. */
static char **replica_environ(void)
{
    extern char **environ;
    static const char hidden[] = "SERVE_ADMIN_TOKEN=";
    size_t n = 0, k = 0;
    while (environ[n]) n++;
    char **env = calloc(n + 1, sizeof(*env));
    for (size_t i = 0; env && i < n; i++)
        if (strncmp(environ[i], hidden, sizeof(hidden) - 1) != 0) env[k++] = environ[i];
    return env;
}

/* The deployment's handle bindings as [{name, app, deployment}]. */
static json_t *bindings_json(const cfg_deployment *cfg)
{
    json_t *list = json_array();
    for (size_t i = 0; list && i < cfg->n_bindings; i++) {
        const cfg_binding *b = &cfg->bindings[i];
        json_array_append_new(list, json_pack("{s:s, s:s, s:s}", "name", b->name, "app", b->app,
                                              "deployment", b->deployment));
    }
    return list;
}

/* The deployment's batching settings, or NULL (JSON null) without. */
static json_t *batching_json(const cfg_deployment *cfg)
{
    if (!cfg->batching.enabled) return NULL;
    return json_pack("{s:i, s:f}", "max_batch_size", cfg->batching.max_batch_size,
                     "batch_wait_timeout_s", cfg->batching.batch_wait_timeout_s);
}

static int send_init(ctl_dep *d, rep *p)
{
    json_t *msg = json_pack(
        "{s:s, s:s, s:s, s:s, s:s, s:s?, s:i, s:o, s:o*, s:o}", "app", d->app->name, "deployment",
        d->cfg->name, "plugin", d->app->plugin, "replica_id", p->id, "init_args",
        d->cfg->init_args_json, "user_config", d->cfg->user_config_json, "max_ongoing_requests",
        d->cfg->max_ongoing_requests, "bindings", bindings_json(d->cfg), "batching",
        batching_json(d->cfg), "logging", ctl__replica_logging(d, 1));
    char *text = msg ? json_dumps(msg, JSON_COMPACT) : NULL;
    int rc = text ? ipc_conn_send(p->control, IPC_INIT, 0, text, strlen(text)) : -ENOMEM;
    free(text);
    json_decref(msg);
    return rc;
}

static void free_on_close(uv_handle_t *h)
{
    free(h->data);
}

/* Start one replica process with its two socketpairs as fds 3 and 4. */
static int spawn_replica(ctl_dep *d)
{
    ctl *c = d->c;
    int ctl_sv[2] = {-1, -1}, data_sv[2] = {-1, -1};
    int rc = -ENOMEM;
    rep *p = calloc(1, sizeof(*p));
    if (!p) return rc;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ctl_sv) != 0 ||
        socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, data_sv) != 0) {
        rc = -errno;
        goto fail_sockets;
    }
    p->dep = d;
    p->data_fd = -1;
    p->start_time_s = wall_clock_s();
    p->config_gen = d->config_gen;
    p->code_gen = d->code_gen;
    p->recovering = d->recovering;
    p->state = REP_EXITED; /* set_state below counts it in */
    p->proc.data = p;
    /* seed + counter mod 2^32 through a bijection: unique for 2^32 starts */
    snprintf(p->id, sizeof(p->id), "%08" PRIx32,
             util_mix32((uint32_t)c->id_seed + (uint32_t)++c->id_counter));
    char *args[] = {c->exe, "__replica", NULL};
    uv_stdio_container_t stdio[5] = {
        {.flags = UV_IGNORE},
        {.flags = UV_INHERIT_FD, .data.fd = 1},
        {.flags = UV_INHERIT_FD, .data.fd = 2},
        {.flags = UV_INHERIT_FD, .data.fd = ctl_sv[1]},
        {.flags = UV_INHERIT_FD, .data.fd = data_sv[1]},
    };
    char **env = replica_environ();
    uv_process_options_t opts = {.file = c->exe,
                                 .args = args,
                                 .env = env,
                                 .exit_cb = on_proc_exit,
                                 .stdio_count = 5,
                                 .stdio = stdio};
    rc = env ? uv_spawn(c->loop, &p->proc, &opts) : UV_ENOMEM;
    free(env);
    close(ctl_sv[1]);
    close(data_sv[1]);
    if (rc < 0) {
        close(ctl_sv[0]);
        close(data_sv[0]);
        uv_close((uv_handle_t *)&p->proc, free_on_close);
        return rc;
    }
    /* From here the replica object is live: failures go through its exit. */
    p->refs = 1; /* the process handle */
    p->next = d->reps;
    d->reps = p;
    c->n_reps++;
    set_state(p, REP_STARTING);
    p->data_fd = data_sv[0];
    if (ipc_conn_open(c->loop, ctl_sv[0], on_control_frame, on_control_close, p, &p->control) ==
        0) {
        p->refs++;
        if (send_init(d, p) == 0) return 0;
    }
    dlog_error(d, "cannot talk to new replica %s; killing it", p->id);
    uv_process_kill(&p->proc, SIGKILL);
    return 0;

fail_sockets:
    for (int i = 0; i < 2; i++) {
        if (ctl_sv[i] >= 0) close(ctl_sv[i]);
        if (data_sv[i] >= 0) close(data_sv[i]);
    }
    free(p);
    return rc;
}

/* Start replicas until the deployment has its target count. */
static int is_active(const rep *p)
{
    return p->state == REP_STARTING || p->state == REP_RUNNING;
}

static int is_outdated(const rep *p)
{
    return p->code_gen != p->dep->code_gen;
}

/* The replica to let go first when scaling down: one still starting, else
   the newest (replicas are listed newest first). */
static rep *scale_down_victim(ctl_dep *d)
{
    rep *newest = NULL;
    for (rep *p = d->reps; p; p = p->next) {
        if (p->state == REP_STARTING) return p;
        if (p->state == REP_RUNNING && !newest) newest = p;
    }
    return newest;
}

/* The oldest running replica with outdated code, or NULL. */
static rep *oldest_outdated(ctl_dep *d)
{
    rep *oldest = NULL;
    for (rep *p = d->reps; p; p = p->next)
        if (p->state == REP_RUNNING && is_outdated(p)) oldest = p;
    return oldest;
}

/* Take a replica out of service gracefully: the router stops sending it
   requests, and once it has answered those it runs (on_backend_drained)
   it is told to STOP. A replica still starting is told at once. */
static void retire(rep *p, const char *why)
{
    ctl_dep *d = p->dep;
    dlog_info(d, "replica %s stopping (%s)", p->id, why);
    rep_state was = p->state;
    set_state(p, REP_STOPPING);
    p->stop_since_ms = uv_now(d->c->loop);
    if (was == REP_RUNNING && p->backend)
        router_retire_backend(d->c->router, p->backend);
    else if (p->control)
        ipc_conn_send(p->control, IPC_STOP, 0, NULL, 0);
}

static int spawn_one(ctl_dep *d)
{
    int rc = spawn_replica(d);
    if (rc < 0) {
        dlog_error(d, "cannot start a replica: %s", uv_strerror(rc));
        schedule_restart(d, REP_STOPPING);
        return rc;
    }
    dlog_info(d, "replica %s starting (pid %d)", d->reps->id, d->reps->proc.pid);
    d->starts++;
    d->restarts += d->reps->recovering;
    return 0;
}

/*
 * Move the deployment toward num_replicas replicas running its current
 * code. Replicas with outdated code (a rolling update) are replaced a few
 * at a time: new ones start while at most max(20%, 1) replicas run above
 * the target, and an old one retires only while more than the target are
 * running, so capacity never drops below it. Called again whenever a
 * replica becomes ready or has stopped.
 */
static void reconcile(ctl_dep *d)
{
    int target = ctl__dep_target(d);
    int surge = target / 5 > 1 ? target / 5 : 1;
    int current = 0, old = 0;
    rep *p, *next;
    if (d->c->stopping) return;
    for (p = d->reps; p; p = next) {
        next = p->next;
        if (!is_active(p)) continue;
        if (!is_outdated(p))
            current++;
        else if (p->state == REP_STARTING) /* outdated before it even ran */
            retire(p, "outdated");
        else
            old++;
    }
    while (old > 0 && d->n_running > target && (p = oldest_outdated(d))) {
        retire(p, "rolling update");
        old--;
    }
    while (old == 0 && current > target && (p = scale_down_victim(d))) {
        retire(p, "scaling down");
        current--;
    }
    while (!d->deploy_failed && current < target && current + old < target + surge &&
           spawn_one(d) == 0)
        current++;
}

/* ---- Memory ------------------------------------------------------------ */

/* Resident bytes of process `pid` (the second field of /proc/PID/statm,
   in pages), or 0 when it cannot be read. */
static uint64_t rss_of(int pid)
{
    char path[64];
    unsigned long size, pages = 0;
    snprintf(path, sizeof(path), "/proc/%d/statm", pid);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    if (fscanf(f, "%lu %lu", &size, &pages) != 2) pages = 0;
    fclose(f);
    return (uint64_t)pages * (uint64_t)sysconf(_SC_PAGESIZE);
}

/* A replica over max_replica_memory_mb (a plugin that leaks) is replaced
   the way a rolling update replaces one: retired, so that it finishes
   what it runs, while a new one starts. One that keeps growing while it
   drains is killed at graceful_shutdown_timeout_s like any other. */
static void watch_memory(ctl_dep *d)
{
    uint64_t limit = (uint64_t)d->cfg->max_replica_memory_mb << 20;
    int retired = 0;
    for (rep *p = d->reps; p; p = p->next) {
        if (p->state == REP_EXITED) continue;
        p->rss_bytes = rss_of(p->proc.pid);
        if (!limit || p->state != REP_RUNNING || p->rss_bytes <= limit) continue;
        char why[128];
        snprintf(why, sizeof(why), "resident memory %.0f MiB is over max_replica_memory_mb %d",
                 (double)p->rss_bytes / (1 << 20), d->cfg->max_replica_memory_mb);
        dlog_warn(d, "replica %s: %s; replacing it", p->id, why);
        retire(p, why);
        d->restarts++; /* a replacement, as after a crash */
        retired = 1;
    }
    if (retired) reconcile(d);
}

static void on_watch_timer(uv_timer_t *t)
{
    ctl *c = t->data;
    if (c->stopping) return;
    for (ctl_dep *d = c->deps; d; d = d->next)
        if (!d->removing) watch_memory(d);
}

/* ---- Shutdown ---------------------------------------------------------- */

static void kill_all(ctl *c, int sig)
{
    for (ctl_dep *d = c->deps; d; d = d->next)
        for (rep *p = d->reps; p; p = p->next)
            if (p->state != REP_EXITED) uv_process_kill(&p->proc, sig);
}

static void on_kill_timeout(uv_timer_t *t)
{
    ctl *c = t->data;
    log_warn("replicas did not stop within the graceful shutdown timeout; killing them");
    kill_all(c, SIGKILL);
}

/* The router is drained: ask every replica to finish and exit. */
static void on_drained(void *arg)
{
    ctl *c = arg;
    c->stopping = 2;
    for (ctl_dep *d = c->deps; d; d = d->next)
        for (rep *p = d->reps; p; p = p->next) {
            if (p->state == REP_EXITED || p->state == REP_STOPPING) continue;
            set_state(p, REP_STOPPING);
            if (p->control) ipc_conn_send(p->control, IPC_STOP, 0, NULL, 0);
        }
    uv_timer_start(&c->kill_timer, on_kill_timeout, (uint64_t)(max_graceful_s(c) * 1000) + 1, 0);
    maybe_finish(c);
}

/* One more of the controller's handles (or the admin API) has closed; the
   last one frees the controller and reports. */
static void close_done(ctl *c)
{
    if (--c->pending_closes > 0) return;
    ctl_done_cb done = c->done;
    void *arg = c->done_arg;
    int code = c->exit_code;
    cfg_ref_put(c->cur); /* deployments hold their own references */
    free(c->exe);
    free(c->file_dir);
    free(c->trusted);
    free(c->logs_dir);
    free(c);
    done(arg, code);
}

static void on_closed(uv_handle_t *h)
{
    close_done(h->data);
}

static void on_admin_closed(void *arg)
{
    close_done(arg);
}

static void close_handle(ctl *c, uv_handle_t *h)
{
    h->data = c;
    c->pending_closes++;
    uv_close(h, on_closed);
}

/* Every replica is gone: close the router and our own handles. */
static void maybe_finish(ctl *c)
{
    if (c->stopping != 2 || c->n_reps > 0 || c->finished) return;
    c->finished = 1;
    router_close(c->router);
    if (c->admin) {
        c->pending_closes++;
        admin_close(c->admin, on_admin_closed, c);
    }
    close_handle(c, (uv_handle_t *)&c->sigint);
    close_handle(c, (uv_handle_t *)&c->sigterm);
    close_handle(c, (uv_handle_t *)&c->kill_timer);
    close_handle(c, (uv_handle_t *)&c->watch_timer);
    while (c->deps) {
        ctl_dep *d = c->deps;
        c->deps = d->next;
        dep_close(d);
    }
    log_info("stopped");
}

/* Each call goes one step further: drain, then skip the drain, then kill. */
void ctl_shutdown(ctl *c)
{
    switch (c->stopping) {
    case 0:
        c->stopping = 1;
        log_info("shutting down: finishing requests in progress (up to %.0f s)", max_graceful_s(c));
        for (ctl_dep *d = c->deps; d; d = d->next) {
            uv_timer_stop(&d->restart_timer);
            uv_timer_stop(&d->health_timer);
            uv_timer_stop(&d->as_timer);
        }
        router_drain(c->router, max_graceful_s(c), on_drained, c);
        break;
    case 1:
        log_warn("asked again: not waiting for requests in progress");
        router_drain(c->router, 0, on_drained, c);
        break;
    default:
        log_warn("asked again: killing replicas");
        kill_all(c, SIGKILL);
    }
}

static void on_signal(uv_signal_t *h, int signum)
{
    ctl_shutdown(h->data);
}

/* ---- Live changes ------------------------------------------------------ */

static int differs(const char *x, const char *y)
{
    return (x == NULL) != (y == NULL) || (x && strcmp(x, y) != 0);
}

#define CTL_LIVE_FIELDS "applications and their deployments, logging_config.log_level and encoding"

/* Set err to "FIELD: ..." and return 1 when `changed`. */
static int refuse(int changed, char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int refuse(int changed, char *err, size_t errlen, const char *fmt, ...)
{
    if (!changed) return 0;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < errlen)
        snprintf(err + n, errlen - (size_t)n,
                 ": cannot change while serving in this version (restart serve run); "
                 "these change live: " CTL_LIVE_FIELDS);
    return 1;
}

/* Does `b` keep everything of `a` that this version cannot change while it
   serves (processes, sockets, routes, code)? If not, err names the field. */
static int same_shape(const cfg_config *a, const cfg_config *b, char *err, size_t errlen)
{
    if (refuse(differs(a->http_host, b->http_host) || a->http_port != b->http_port ||
                   a->max_body_bytes != b->max_body_bytes ||
                   a->max_header_bytes != b->max_header_bytes ||
                   a->keep_alive_timeout_s != b->keep_alive_timeout_s ||
                   a->max_connections != b->max_connections ||
                   a->client_header_timeout_s != b->client_header_timeout_s,
               err, errlen, "http_options") ||
        refuse(differs(a->admin_host, b->admin_host) || a->admin_port != b->admin_port ||
                   differs(a->admin_auth_token, b->admin_auth_token),
               err, errlen, "admin") ||
        refuse(differs(a->logging.logs_dir, b->logging.logs_dir), err, errlen,
               "logging_config.logs_dir"))
        return 0;
    return 1;
}

/* What a replica's code is made of: the plugin's path, its file's mtime and
   size (a rebuilt plugin counts as new code), the init_args, and the
   batching settings (the replica is built around them, as a Triton model
   is reloaded for a new dynamic_batching). NULL when out of memory. */
static char *code_key(const cfg_app *app, const cfg_deployment *dep)
{
    struct stat st = {0};
    char *key = NULL;
    const cfg_batching *b = &dep->batching;
    stat(app->plugin, &st);
    if (asprintf(&key, "%s|%lld.%09ld|%lld|%s|%d|%.9g", app->plugin, (long long)st.st_mtim.tv_sec,
                 st.st_mtim.tv_nsec, (long long)st.st_size, dep->init_args_json,
                 b->enabled ? b->max_batch_size : 0, b->enabled ? b->batch_wait_timeout_s : 0) < 0)
        key = NULL;
    return key;
}

/* A new code key starts a rolling update (reconcile replaces the replicas). */
static void update_code_key(ctl_dep *d)
{
    char *key = code_key(d->app, d->cfg);
    if (!key || (d->code_key && strcmp(key, d->code_key) == 0)) {
        free(key);
        return;
    }
    if (d->code_key) {
        d->code_gen++;
        d->gen_ready = 0; /* the new code has to prove itself */
        dlog_info(d, "new code (plugin, init_args or batching): rolling update");
    }
    free(d->code_key);
    d->code_key = key;
}

/* Apply one deployment's new settings to its pool and replicas. */
static void apply_deployment(ctl_dep *d, const cfg_app *app, const cfg_deployment *next,
                             cfg_ref *ref)
{
    int user_config_changed = differs(d->cfg->user_config_json, next->user_config_json);
    d->app = app;
    d->cfg = next;
    ref->refs++;
    cfg_ref_put(d->ref); /* d no longer points into its old config */
    d->ref = ref;
    update_code_key(d);
    configure_pool(d);
    start_health_checks(d); /* the period may have changed */
    update_autoscaling(d);
    if (d->deploy_failed) { /* a new config is a new try */
        d->deploy_failed = d->start_failures = 0;
        d->message[0] = d->last_error[0] = '\0';
    }
    if (user_config_changed) {
        d->config_gen++;
        d->message[0] = '\0';
        for (rep *p = d->reps; p; p = p->next) send_user_config(p);
    }
    reconcile(d);
}

static ctl_dep *find_deployment(ctl *c, const char *app, const char *name)
{
    for (ctl_dep *d = c->deps; d; d = d->next)
        if (!d->removing && strcmp(d->app->name, app) == 0 && strcmp(d->cfg->name, name) == 0)
            return d;
    return NULL;
}

/* Make `next` (wrapped in `ref`) the running config: deployments found by
   name are updated, new ones start, and the ones it lacks drain away. */
static void apply_config(ctl *c, cfg_config *next, cfg_ref *ref)
{
    for (ctl_dep *d = c->deps; d; d = d->next) d->seen = 0;
    for (size_t i = 0; i < next->n_apps; i++)
        for (size_t j = 0; j < next->apps[i].n_deployments; j++) {
            const cfg_app *a = &next->apps[i];
            ctl_dep *d = find_deployment(c, a->name, a->deployments[j].name);
            if (d)
                apply_deployment(d, a, &a->deployments[j], ref);
            else if ((d = add_deployment(c, a, &a->deployments[j], ref)))
                reconcile(d);
            if (d) d->seen = 1;
        }
    for (ctl_dep *d = c->deps, *next_d; d; d = next_d) {
        next_d = d->next; /* remove_deployment may unlink d */
        if (!d->seen && !d->removing) remove_deployment(d);
    }
    router_configure(c->router, next->request_timeout_s, next->access_log);
    cfg_ref_put(c->cur);
    c->cur = ref;
    c->cfg = next;
    if (setup_routes(c) != 0) log_error("cannot update the route table: out of memory");
    c->deployed_time_s = wall_clock_s();
    c->all_ready_logged = 0;
    ctl__logs_apply(c);
    log_if_all_ready(c);
}

int ctl_apply(ctl *c, cfg_config *next, char *err, size_t errlen)
{
    if (c->stopping) {
        snprintf(err, errlen, "shutting down");
        cfg_free(next);
        return -ECANCELED;
    }
    /* The token never shows in `serve config`, so a config sent back
       without one keeps the current token rather than being refused. */
    if (c->cfg->admin_auth_token && !next->admin_auth_token &&
        !(next->admin_auth_token = strdup(c->cfg->admin_auth_token))) {
        cfg_free(next);
        return -ENOMEM;
    }
    if (!same_shape(c->cfg, next, err, errlen)) {
        cfg_free(next);
        return -ENOTSUP;
    }
    cfg_ref *ref = cfg_ref_new(next);
    if (!ref) {
        snprintf(err, errlen, "out of memory");
        cfg_free(next);
        return -ENOMEM;
    }
    apply_config(c, next, ref);
    return 0;
}

int ctl_delete_all(ctl *c, char *err, size_t errlen)
{
    json_t *doc = json_loads(c->cfg->source_json, 0, NULL);
    json_object_set_new(doc, "applications", json_array());
    char *text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    cfg_config *next = NULL;
    int rc = text ? cfg_parse(text, strlen(text), &next, err, errlen) : -ENOMEM;
    free(text);
    if (rc != 0) return rc;
    return ctl_apply(c, next, err, errlen);
}

/* Add the folder of each plugin of the current config to c->trusted. */
int ctl_trust_file(ctl *c, const char *config_dir)
{
    char *dir = strdup(config_dir);
    if (!dir) return -ENOMEM;
    free(c->file_dir);
    c->file_dir = dir;
    for (size_t i = 0; i < c->cfg->n_apps; i++) {
        const char *plugin = c->cfg->apps[i].plugin, *slash = strrchr(plugin, '/');
        int len = slash ? (int)(slash - plugin) : 0;
        char *next = NULL;
        if (len == 0 || util_list_has(c->trusted, plugin, (size_t)len)) continue;
        if (asprintf(&next, "%s%s%.*s", c->trusted ? c->trusted : "", c->trusted ? ":" : "", len,
                     plugin) < 0)
            return -ENOMEM;
        free(c->trusted);
        c->trusted = next;
    }
    return 0;
}

const char *ctl_file_dir(const ctl *c)
{
    return c->file_dir;
}

const char *ctl_trusted_folders(const ctl *c)
{
    return c->trusted;
}

/* ---- Start ------------------------------------------------------------- */

/* One pool per deployment; routes point at each application's ingress. */
static int setup_routes(ctl *c)
{
    size_t n = c->cfg->n_apps;
    const char **prefixes = calloc(n + 1, sizeof(*prefixes));
    const char **apps = calloc(n + 1, sizeof(*apps));
    router_pool **pools = calloc(n + 1, sizeof(*pools));
    int rc = (prefixes && apps && pools) ? 0 : -ENOMEM;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        const cfg_app *a = &c->cfg->apps[i];
        prefixes[i] = a->route_prefix;
        apps[i] = a->name;
        pools[i] = router_pool_get(c->router, a->name, a->ingress);
        if (!pools[i]) rc = -ENOMEM;
    }
    if (rc == 0) rc = router_set_routes(c->router, prefixes, apps, (router_pool *const *)pools, n);
    free(prefixes);
    free(apps);
    free(pools);
    return rc;
}

/* Settings that are valid but probably not what the user meant. */
static void warn_doubtful(const ctl_dep *d)
{
    if (d->cfg->autoscaling.enabled &&
        d->cfg->autoscaling.target_ongoing_requests >= d->cfg->max_ongoing_requests)
        dlog_warn(d,
                  "autoscaling_config.target_ongoing_requests (%g) >= "
                  "max_ongoing_requests (%d): replicas never hold enough requests to scale up "
                  "on their own (only queued ones can)",
                  d->cfg->autoscaling.target_ongoing_requests, d->cfg->max_ongoing_requests);
}

/* ---- Autoscaling ------------------------------------------------------- */

#define CTL_AS_SAMPLE_S 0.25 /* sample at least this often (metrics_interval_s may ask more) */

static as_params as_params_of(const cfg_deployment *cfg)
{
    const cfg_autoscaling *a = &cfg->autoscaling;
    return (as_params){a->min_replicas,
                       a->max_replicas,
                       a->target_ongoing_requests,
                       a->look_back_period_s,
                       a->upscale_delay_s,
                       a->downscale_delay_s,
                       a->downscale_to_zero_delay_s,
                       a->upscaling_factor,
                       a->downscaling_factor};
}

/* Sample the deployment's load, ask the policy, and move the target; the
   move goes through reconcile, like a manual change of num_replicas. */
static void on_autoscale_tick(uv_timer_t *t)
{
    ctl_dep *d = t->data;
    if (d->removing || d->c->stopping) return;
    as_params p = as_params_of(d->cfg);
    double now = (double)uv_now(d->c->loop) / 1000.0;
    as_record(&d->as, &p, now, (double)router_pool_load(d->pool));
    d->as_last = as_decide(&d->as, &p, now, d->as_target);
    if (d->as_last.target == d->as_target) return;
    dlog_info(d, "autoscaling: %s", d->as_last.reason);
    d->as_target = d->as_last.target;
    reconcile(d);
}

/* Start, stop or re-time sampling to match the deployment's config. */
static void update_autoscaling(ctl_dep *d)
{
    const cfg_autoscaling *a = &d->cfg->autoscaling;
    if (!a->enabled) {
        uv_timer_stop(&d->as_timer);
        return;
    }
    if (d->as_target < a->min_replicas) d->as_target = a->min_replicas;
    if (d->as_target > a->max_replicas) d->as_target = a->max_replicas;
    double s = a->metrics_interval_s < CTL_AS_SAMPLE_S ? a->metrics_interval_s : CTL_AS_SAMPLE_S;
    uint64_t ms = (uint64_t)(s * 1000) ? (uint64_t)(s * 1000) : 1;
    uv_timer_start(&d->as_timer, on_autoscale_tick, ms, ms);
}

/* A deployment object for `cfg` of app `a` (which live in ref's config),
   linked into the controller; its replicas start at the next reconcile. */
static ctl_dep *add_deployment(ctl *c, const cfg_app *a, const cfg_deployment *cfg, cfg_ref *ref)
{
    ctl_dep *d = calloc(1, sizeof(*d));
    if (!d) return NULL;
    d->c = c;
    d->app = a;
    d->cfg = cfg;
    d->ref = ref;
    ref->refs++;
    d->backoff_s = CTL_BACKOFF_MIN_S;
    d->pool = router_pool_get(c->router, a->name, cfg->name);
    if (!d->pool) {
        cfg_ref_put(ref);
        free(d);
        return NULL;
    }
    uv_timer_init(c->loop, &d->restart_timer);
    uv_timer_init(c->loop, &d->health_timer);
    uv_timer_init(c->loop, &d->as_timer);
    d->restart_timer.data = d->health_timer.data = d->as_timer.data = d;
    as_init(&d->as);
    d->as_target = cfg->num_replicas; /* initial_replicas when autoscaled */
    snprintf(d->as_last.reason, sizeof(d->as_last.reason), "initial_replicas");
    d->as_last.target = d->as_last.desired = d->as_target;
    update_autoscaling(d);
    configure_pool(d);
    update_code_key(d);
    warn_doubtful(d);
    start_health_checks(d);
    d->next = c->deps;
    c->deps = d;
    return d;
}

/* Gone from the config: no new requests reach it (its route goes with the
   new route table), its replicas drain and stop, and then it is freed. */
static void remove_deployment(ctl_dep *d)
{
    dlog_info(d, "not in the config any more; stopping its replicas");
    d->removing = 1; /* its tick now only enforces the stop deadline */
    router_pool_close(d->pool);
    uv_timer_stop(&d->restart_timer);
    if (d->reps)
        reconcile(d);
    else
        dep_release(d);
}

static void on_dep_timer_closed(uv_handle_t *h)
{
    ctl_dep *d = h->data;
    if (--d->pending_closes > 0) return;
    as_free(&d->as);
    free(d->code_key);
    cfg_ref_put(d->ref);
    free(d);
}

/* A removed deployment whose replicas are all gone: out of the list, then
   freed. */
static void dep_release(ctl_dep *d)
{
    for (ctl_dep **pp = &d->c->deps; *pp; pp = &(*pp)->next)
        if (*pp == d) {
            *pp = d->next;
            break;
        }
    dep_close(d);
}

/* Free an unlinked deployment once the loop has closed its timers. */
static void dep_close(ctl_dep *d)
{
    d->pending_closes = 3;
    uv_close((uv_handle_t *)&d->restart_timer, on_dep_timer_closed);
    uv_close((uv_handle_t *)&d->health_timer, on_dep_timer_closed);
    uv_close((uv_handle_t *)&d->as_timer, on_dep_timer_closed);
}

static int setup_deployments(ctl *c)
{
    for (size_t i = 0; i < c->cfg->n_apps; i++)
        for (size_t j = 0; j < c->cfg->apps[i].n_deployments; j++)
            if (!add_deployment(c, &c->cfg->apps[i], &c->cfg->apps[i].deployments[j], c->cur))
                return -ENOMEM;
    return setup_routes(c);
}

int ctl_start(uv_loop_t *loop, cfg_config *cfg, const char *exe, ctl_done_cb done, void *arg,
              ctl **out, char *err, size_t errlen)
{
    int rc = -ENOMEM;
    ctl *c = calloc(1, sizeof(*c));
    if (!c) goto fail_alloc;
    if (!(c->exe = strdup(exe))) goto fail_router;
    c->loop = loop;
    c->cfg = cfg;
    if (!(c->cur = cfg_ref_new(cfg))) goto fail_router;
    c->done = done;
    c->done_arg = arg;
    c->id_seed = uv_hrtime() ^ ((uint64_t)getpid() << 40);
    ctl__logs_apply(c); /* level and encoding first: they apply to the lines below */
    if ((rc = ctl__logs_open(c, err, errlen)) < 0) goto fail_router;
    router_options ro = {.host = cfg->http_host,
                         .port = cfg->http_port,
                         .max_body_bytes = (size_t)cfg->max_body_bytes,
                         .max_header_bytes = (size_t)cfg->max_header_bytes,
                         .request_timeout_s = cfg->request_timeout_s,
                         .keep_alive_timeout_s = cfg->keep_alive_timeout_s,
                         .max_connections = (unsigned)cfg->max_connections,
                         .client_header_timeout_s = cfg->client_header_timeout_s,
                         .access_log = cfg->access_log,
                         .on_backend_closed = on_backend_closed,
                         .on_backend_drained = on_backend_drained,
                         .on_backend_stuck = on_backend_stuck,
                         .cb_arg = c};
    rc = router_start(loop, &ro, &c->router, err, errlen);
    if (rc < 0) goto fail_router;
    c->deployed_time_s = wall_clock_s();
    uv_signal_init(loop, &c->sigint);
    uv_signal_init(loop, &c->sigterm);
    uv_timer_init(loop, &c->kill_timer);
    uv_timer_init(loop, &c->watch_timer);
    c->sigint.data = c->sigterm.data = c->kill_timer.data = c->watch_timer.data = c;
    uv_timer_start(&c->watch_timer, on_watch_timer, CTL_WATCH_MS, CTL_WATCH_MS);
    uv_signal_start(&c->sigint, on_signal, SIGINT);
    uv_signal_start(&c->sigterm, on_signal, SIGTERM);
    rc = admin_start(loop, c, cfg->admin_host, cfg->admin_port, cfg->admin_auth_token, &c->admin,
                     err, errlen);
    if (rc < 0) goto fail_started;
    rc = setup_deployments(c);
    if (rc < 0) {
        snprintf(err, errlen, "cannot set up deployments: %s", strerror(-rc));
        goto fail_started;
    }
    char host[300];
    log_info("proxy listening on http://%s:%d", url_host(cfg->http_host, host, sizeof(host)),
             cfg->http_port);
    for (ctl_dep *d = c->deps; d; d = d->next) reconcile(d);
    *out = c;
    return 0;

fail_started:
    /* Nothing was spawned: close what exists the normal way; the done
       callback follows from the loop with exit code 1. */
    c->exit_code = 1;
    c->stopping = 2;
    maybe_finish(c);
    *out = NULL;
    return rc;
fail_router:
    free(c->logs_dir);
    free(c->exe);
    free(c->cur); /* the wrapper only: cfg is freed below */
fail_alloc:
    free(c);
    cfg_free(cfg);
    return rc;
}
