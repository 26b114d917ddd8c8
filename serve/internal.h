/*
 * internal.h - what the controller's files share: the replica and
 * deployment objects (controller.c runs them; report.c describes them in
 * the status document and the metrics).
 */
#ifndef SERVE_INTERNAL_H
#define SERVE_INTERNAL_H

#include <jansson.h>
#include <stdint.h>
#include <uv.h>

#include "autoscaler/autoscaler.h"
#include "common/log.h"
#include "common/metrics.h"
#include "ipc/ipc.h"
#include "router/router.h"
#include "serve/admin.h"
#include "serve/config.h"
#include "serve/controller.h"

typedef enum rep_state { REP_STARTING, REP_RUNNING, REP_STOPPING, REP_EXITED } rep_state;

/* Ray Serve's names for the states, as the status document shows them. */
extern const char *const ctl__rep_state_names[];

typedef struct ctl_dep ctl_dep;

typedef struct rep {
    struct rep *next;
    ctl_dep *dep;
    char id[17];
    uv_process_t proc;
    ipc_conn *control;
    int data_fd; /* our end of the data socket until the router takes it */
    router_backend *backend;
    rep_state state;
    int refs;
    double start_time_s;     /* wall clock, for status */
    int config_gen;          /* the deployment's user_config generation it has */
    int code_gen;            /* the deployment's code generation it runs */
    int reconfiguring;       /* a RECONFIGURE is out, its answer awaited */
    int recovering;          /* started to replace a replica that died */
    uint64_t stop_since_ms;  /* loop time it was retired, or 0 */
    uint64_t health_last_ms; /* loop time the last check was sent */
    uint64_t health_sent_ms; /* loop time of the HEALTH awaiting an answer, or 0 */
    int health_failures;     /* consecutive failed or timed-out checks */
    metrics_hist latency;    /* its processing latency, as it last reported */
    metrics_hist batch;      /* its batch sizes, likewise */
    uint64_t rss_bytes;      /* resident memory at the last watch tick (0: unknown) */
} rep;

/* A config shared by whoever points into it: the controller (current) and
   each deployment (the config it came from). A removed deployment drains
   while a newer config is current; its own reference keeps its strings. */
typedef struct cfg_ref {
    cfg_config *cfg;
    int refs;
} cfg_ref;

struct ctl_dep {
    ctl_dep *next; /* in the controller's list */
    ctl *c;
    cfg_ref *ref;
    int removing; /* not in the config any more: draining, then freed */
    int seen;     /* scratch for ctl_apply */
    int pending_closes;
    const cfg_app *app;
    const cfg_deployment *cfg;
    router_pool *pool;
    rep *reps;
    int n_active; /* STARTING or RUNNING */
    int n_running;
    int gen_ready;     /* a replica of the current code became ready */
    int deploy_failed; /* the current code never started: not retried */
    int recovering;    /* the replicas being started replace crashed ones */
    char last_error[512];
    int start_failures;
    double backoff_s;
    uv_timer_t restart_timer;
    int config_gen;    /* bumped by each live change of user_config */
    int code_gen;      /* bumped when the plugin (path or file) or init_args change */
    char *code_key;    /* what code_gen stands for: plugin, mtime, size, init_args */
    char message[512]; /* why the deployment is unhealthy, or "" */
    uv_timer_t health_timer;
    /* Autoscaling (when autoscaling_config is set): the policy's state, its
       current target and last decision, and the sampling timer. */
    as_state as;
    int as_target;
    as_decision as_last;
    uv_timer_t as_timer;
    /* Metrics: replicas started (restarts: to replace one that died), and
       the histograms of replicas gone, which the live ones add to. */
    uint64_t starts, restarts;
    metrics_hist latency_gone, batch_gone;
};

struct ctl {
    uv_loop_t *loop;
    cfg_config *cfg;
    char *exe;
    char *file_dir; /* the folder of the config file given to serve run */
    char *trusted;  /* its plugins' folders, ':'-separated (ctl_trust_file) */
    router *router;
    admin *admin;
    double deployed_time_s;
    ctl_dep *deps; /* list */
    cfg_ref *cur;  /* the current config (c->cfg is cur->cfg) */
    uv_signal_t sigint, sigterm;
    uv_timer_t kill_timer;
    uv_timer_t watch_timer; /* replicas' memory, every CTL_WATCH_MS */
    ctl_done_cb done;
    void *done_arg;
    int stopping; /* 0 serving, 1 draining the router, 2 stopping replicas */
    int finished;
    int all_ready_logged;
    int initial_done; /* every deployment of the first config ran once */
    int exit_code;
    int n_reps;
    int pending_closes;
    uint64_t id_seed, id_counter;
    char *logs_dir; /* absolute; NULL when logging to stderr only */
};

/* How many replicas the deployment should have now. */
static inline int ctl__dep_target(const ctl_dep *d)
{
    if (d->removing) return 0;
    return d->cfg->autoscaling.enabled ? d->as_target : d->cfg->num_replicas;
}
/* A line about deployment `d`: its application and deployment are fields
   of the line ("controller app/dep: message" in text). */
#define DLOG_AT(lvl, d, ...)                                                                       \
    do {                                                                                           \
        if ((lvl) >= log_min_level)                                                                \
            log_write((lvl), &(log_fields){.app = (d)->app->name, .deployment = (d)->cfg->name},   \
                      __VA_ARGS__);                                                                \
    } while (0)
#define dlog_info(d, ...)  DLOG_AT(LOG_INFO, d, __VA_ARGS__)
#define dlog_warn(d, ...)  DLOG_AT(LOG_WARN, d, __VA_ARGS__)
#define dlog_error(d, ...) DLOG_AT(LOG_ERROR, d, __VA_ARGS__)

/* ---- logs.c ---------------------------------------------------------- */

/* Create the logs folder (logging_config.logs_dir, or a session folder)
   and log to serve.log in it (0700 folders, 0600 files). A logs_dir that
   cannot be made, or whose serve.log cannot be opened safely (a symbolic
   link, another user's file), is an error (-errno, message in err); a
   session folder that cannot be made, or a $TMPDIR/serve that is not ours
   alone, is a warning, and lines then go to stderr only. */
int ctl__logs_open(ctl *c, char *err, size_t errlen);

/* A deployment's replicas' {level, encoding[, dir]} (a new reference). */
json_t *ctl__replica_logging(const ctl_dep *d, int with_dir);

/* Apply the current config's logging: the controller's own level and
   encoding, and a LOGGING frame to every replica. */
void ctl__logs_apply(ctl *c);

#endif
