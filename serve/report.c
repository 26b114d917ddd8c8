/*
 * report.c - what the controller shows of itself: the status document of
 * the admin API (Ray Serve's shape) and the controller's metrics.
 */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/util.h"
#include "serve/internal.h"

const char *const ctl__rep_state_names[] = {"STARTING", "RUNNING", "STOPPING", "STOPPED"};

static json_t *autoscaling_status(const ctl_dep *d)
{
    if (!d->cfg->autoscaling.enabled) return json_null();
    const cfg_autoscaling *a = &d->cfg->autoscaling;
    return json_pack("{s:i, s:i, s:i, s:i, s:f, s:s}", "target", d->as_target, "desired",
                     d->as_last.desired, "min_replicas", a->min_replicas, "max_replicas",
                     a->max_replicas, "metric", d->as_last.metric, "last_decision",
                     d->as_last.reason);
}

/* ---- Status ------------------------------------------------------------ */

/* The state shown: RECOVERING replaces a replica that died, UPDATING
   applies a new user_config. */
static const char *shown_state(const rep *p)
{
    if (p->state == REP_STARTING && p->recovering) return "RECOVERING";
    if (p->state == REP_RUNNING && p->reconfiguring) return "UPDATING";
    return ctl__rep_state_names[p->state];
}

static json_t *replica_status(const rep *p)
{
    return json_pack("{s:s, s:s, s:i, s:f, s:i, s:I}", "replica_id", p->id, "state", shown_state(p),
                     "pid", p->proc.pid, "start_time_s", p->start_time_s, "ongoing_requests",
                     p->backend ? (int)router_backend_ongoing(p->backend) : 0, "memory_bytes",
                     (json_int_t)p->rss_bytes);
}

/* HEALTHY when every replica runs; UPDATING while some start. */
static json_t *deployment_status(const ctl_dep *d)
{
    json_t *reps = json_array();
    for (const rep *p = d->reps; p; p = p->next) json_array_append_new(reps, replica_status(p));
    int at_target = d->n_running == ctl__dep_target(d) && d->n_active == ctl__dep_target(d);
    const char *status = d->deploy_failed ? "DEPLOY_FAILED"
                         : d->message[0]  ? "UNHEALTHY"
                         : at_target      ? "HEALTHY"
                                          : "UPDATING";
    return json_pack("{s:s, s:s, s:s, s:i, s:i, s:i, s:o, s:o}", "name", d->cfg->name, "status",
                     status, "message", d->message, "target_num_replicas", ctl__dep_target(d),
                     "ongoing_requests", (int)router_pool_ongoing(d->pool), "queued_requests",
                     (int)router_pool_queued(d->pool), "autoscaling", autoscaling_status(d),
                     "replicas", reps);
}

/* The app's object from the config document as it was deployed. */
static json_t *deployed_app_config(const ctl *c, size_t index)
{
    json_t *root = json_loads(c->cfg->source_json, 0, NULL);
    json_t *app = json_incref(json_array_get(json_object_get(root, "applications"), index));
    json_decref(root);
    return app ? app : json_null();
}

static json_t *app_status(const ctl *c, size_t index)
{
    const cfg_app *a = &c->cfg->apps[index];
    json_t *deps = json_object();
    int running = 1, unhealthy = 0, failed = 0;
    for (const ctl_dep *d = c->deps; d; d = d->next) {
        if (d->app != a || d->removing) continue;
        running &= d->n_running >= ctl__dep_target(d);
        unhealthy |= d->message[0] != '\0';
        failed |= d->deploy_failed;
        json_object_set_new(deps, d->cfg->name, deployment_status(d));
    }
    const char *status = c->stopping ? "DELETING"
                         : failed    ? "DEPLOY_FAILED"
                         : unhealthy ? "UNHEALTHY"
                         : running   ? "RUNNING"
                                     : "DEPLOYING";
    return json_pack("{s:s, s:s, s:s, s:s, s:f, s:o, s:o}", "name", a->name, "route_prefix",
                     a->route_prefix, "status", status, "message", "", "last_deployed_time_s",
                     c->deployed_time_s, "deployed_app_config", deployed_app_config(c, index),
                     "deployments", deps);
}

json_t *ctl_status(const ctl *c)
{
    json_t *apps = json_object();
    for (size_t i = 0; i < c->cfg->n_apps; i++)
        json_object_set_new(apps, c->cfg->apps[i].name, app_status(c, i));
    const cfg_config *k = c->cfg; /* the token is never shown */
    json_t *logging = json_object();
    const char *keys[] = {"log_level", "encoding", "logs_dir"};
    const char *values[] = {k->logging.log_level, k->logging.encoding, k->logging.logs_dir};
    for (size_t i = 0; i < UTIL_ARRAY_LEN(keys); i++)
        if (values[i]) json_object_set_new(logging, keys[i], json_string(values[i]));
    json_t *doc =
        json_pack("{s:{s:i}, s:{s:s, s:i, s:f, s:i, s:i, s:b, s:f, s:i, s:f}, s:{s:s, s:i}, s:o}",
                  "controller_info", "pid", (int)getpid(), "http_options", "host", k->http_host,
                  "port", k->http_port, "request_timeout_s", k->request_timeout_s, "max_body_bytes",
                  k->max_body_bytes, "max_header_bytes", k->max_header_bytes, "access_log",
                  k->access_log, "keep_alive_timeout_s", k->keep_alive_timeout_s, "max_connections",
                  k->max_connections, "client_header_timeout_s", k->client_header_timeout_s,
                  "admin", "host", k->admin_host, "port", k->admin_port, "applications", apps);
    json_object_set_new(doc, "logging_config", logging); /* as given: serve config repeats it */
    return doc;
}

/* ---- Metrics ----------------------------------------------------------- */

/* Deployments being removed are left out: a new one of the same name may
   already run, and one series may not appear twice. */
#define FOR_EACH_SHOWN_DEP(c, d)                                                                   \
    for (const ctl_dep *d = (c)->deps; d; d = d->next)                                             \
        if (!d->removing)

#define DEP_LABELS(d)                                                                              \
    (const char *[])                                                                               \
    {                                                                                              \
        "application", (d)->app->name, "deployment", (d)->cfg->name, NULL                          \
    }

/* A family with one sample per deployment; `value` returns NAN for a
   deployment that has no such value (it is then left out). */
static void per_deployment(const ctl *c, FILE *f, const char *name, const char *type,
                           const char *help, double (*value)(const ctl_dep *d))
{
    metrics_family(f, name, type, help);
    FOR_EACH_SHOWN_DEP(c, d)
    {
        double v = value(d);
        if (!isnan(v)) metrics_sample(f, name, DEP_LABELS(d), v);
    }
}

static double target_replicas(const ctl_dep *d)
{
    return ctl__dep_target(d);
}

static double starts(const ctl_dep *d)
{
    return (double)d->starts;
}

static double restarts(const ctl_dep *d)
{
    return (double)d->restarts;
}

static double as_desired(const ctl_dep *d)
{
    return d->cfg->autoscaling.enabled ? d->as_last.desired : NAN;
}

static double as_metric(const ctl_dep *d)
{
    return d->cfg->autoscaling.enabled ? d->as_last.metric : NAN;
}

static double as_target_ongoing(const ctl_dep *d)
{
    return d->cfg->autoscaling.enabled ? d->cfg->autoscaling.target_ongoing_requests : NAN;
}

/* Replicas by the state status shows, every state listed (zeros too) so
   that a chart of one state has no gaps. */
static void write_replica_states(const ctl *c, FILE *f)
{
    static const char *const states[] = {"STARTING", "RECOVERING", "RUNNING", "UPDATING",
                                         "STOPPING"};
    const char *name = "serve_deployment_replicas";
    metrics_family(f, name, "gauge", "Replicas of a deployment by state.");
    FOR_EACH_SHOWN_DEP(c, d)
    for (size_t i = 0; i < sizeof(states) / sizeof(states[0]); i++) {
        int n = 0;
        for (const rep *p = d->reps; p; p = p->next) n += strcmp(shown_state(p), states[i]) == 0;
        metrics_sample(f, name,
                       (const char *[]){"application", d->app->name, "deployment", d->cfg->name,
                                        "state", states[i], NULL},
                       n);
    }
}

/* Each live replica's resident memory, as the controller last read it. */
static void write_replica_memory(const ctl *c, FILE *f)
{
    const char *name = "serve_replica_memory_bytes";
    metrics_family(f, name, "gauge", "Resident memory of a replica process (read every second).");
    FOR_EACH_SHOWN_DEP(c, d)
    for (const rep *p = d->reps; p; p = p->next)
        if (p->state != REP_EXITED && p->rss_bytes)
            metrics_sample(f, name,
                           (const char *[]){"application", d->app->name, "deployment", d->cfg->name,
                                            "replica", p->id, NULL},
                           (double)p->rss_bytes);
}

/* A histogram that replicas report: the ones gone plus the live ones. */
static void write_replica_histogram(const ctl *c, FILE *f, int batch)
{
    const char *name =
        batch ? "serve_deployment_batch_size" : "serve_deployment_processing_latency_seconds";
    const metrics_buckets *b = batch ? &metrics_batch_buckets : &metrics_latency_buckets;
    metrics_family(f, name, "histogram",
                   batch ? "Requests per handle_batch call (batching deployments)."
                         : "Time from a request's arrival at a replica to its answer, batch "
                           "wait included.");
    FOR_EACH_SHOWN_DEP(c, d)
    {
        if (batch && !d->cfg->batching.enabled) continue;
        metrics_hist h = batch ? d->batch_gone : d->latency_gone;
        for (const rep *p = d->reps; p; p = p->next)
            metrics_hist_add(&h, batch ? &p->batch : &p->latency);
        metrics_histogram(f, name, DEP_LABELS(d), &h, b);
    }
}

void ctl_write_metrics(const ctl *c, FILE *f)
{
    router_write_metrics(c->router, f);
    write_replica_states(c, f);
    per_deployment(c, f, "serve_deployment_target_replicas", "gauge",
                   "Replicas the deployment should have now (num_replicas or the autoscaler's "
                   "target).",
                   target_replicas);
    per_deployment(c, f, "serve_deployment_replica_starts_total", "counter",
                   "Replica processes started.", starts);
    per_deployment(c, f, "serve_deployment_replica_restarts_total", "counter",
                   "Replica processes started to replace one that exited unexpectedly, was "
                   "stuck, or outgrew max_replica_memory_mb.",
                   restarts);
    per_deployment(c, f, "serve_autoscaling_desired_replicas", "gauge",
                   "Replicas the autoscaling policy asks for at its last decision.", as_desired);
    per_deployment(c, f, "serve_autoscaling_ongoing_requests", "gauge",
                   "The autoscaler's metric: ongoing plus queued requests, averaged over "
                   "look_back_period_s.",
                   as_metric);
    per_deployment(c, f, "serve_autoscaling_target_ongoing_requests", "gauge",
                   "autoscaling_config.target_ongoing_requests.", as_target_ongoing);
    write_replica_histogram(c, f, 0);
    write_replica_histogram(c, f, 1);
    write_replica_memory(c, f);
}
