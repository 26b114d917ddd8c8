/*
 * test_metrics.c - observability end to end: GET /metrics on the admin port
 * (the proxy's HTTP counters, the deployments' gauges, the controller's
 * replica counters and the histograms replicas report about once a
 * second), checked against the traffic sent and by promtool; its token
 * rule; and the dashboard page at / rendered by headless Chromium, checked
 * against the status document and `serve status`.
 *
 * Metrics are read with a small parser of the text format below: a series
 * is found by its name and its whole label set (in any order), and a
 * series that appears twice is a failure.
 *
 * External tools (Debian packages; scripts/deps.sh installs them):
 *   /usr/bin/promtool  package prometheus
 *   /usr/bin/chromium  package chromium
 * A missing tool fails its test with a message saying what to install.
 */
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "expect.h"
#include "harness.h"

#define PROMTOOL            "/usr/bin/promtool"
#define CHROMIUM            "/usr/bin/chromium"
#define STATS_TIMEOUT_S     5.0 /* replicas report each second; margin for a busy machine */
#define CHROMIUM_GUARD_S    60  /* `timeout` kills a Chromium that hangs */
#define DASHBOARD_TIMEOUT_S 90.0

TestSuite(metrics, .fini = h_cleanup_all, .timeout = TEST_TIMEOUT_S);
TestSuite(dashboard, .fini = h_cleanup_all, .timeout = DASHBOARD_TIMEOUT_S);

#define NO_LOG ", \"access_log\": false"

/* ---- The admin port ------------------------------------------------------ */

/* GET /metrics, which must answer 200; the text, malloc'd. */
static char *scrape(const h_serve *s)
{
    admin_page p;
    long status = admin_fetch(s, "GET", "/metrics", NULL, NULL, &p);
    cr_assert_eq(status, 200, "GET /metrics: %ld %s\n%s", status, p.body, LOG(s));
    return p.body;
}

/* The status document (GET /api/serve/applications/), parsed. */
static json_t *status_doc(const h_serve *s)
{
    static char body[65536];
    cr_assert_eq(admin_request(s, "GET", NULL, body), 200, "%s\n%s", body, LOG(s));
    json_t *doc = json_loads(body, 0, NULL);
    cr_assert(json_is_object(doc), "status is not JSON: %s", body);
    return doc;
}

static json_t *deployment_of(json_t *doc, const char *app, const char *dep)
{
    json_t *a = json_object_get(json_object_get(doc, "applications"), app);
    return json_object_get(json_object_get(a, "deployments"), dep);
}

/* Every application RUNNING and every replica of every deployment RUNNING,
   as many as the target; waits up to `timeout_s`. The requests go to the
   admin port, so no proxy counter moves. */
static void wait_running(const h_serve *s, double timeout_s)
{
    double deadline = h_now() + timeout_s;
    char *last = NULL;
    for (;;) {
        json_t *doc = status_doc(s);
        int ok = json_object_size(json_object_get(doc, "applications")) > 0;
        const char *name, *dname;
        json_t *app, *dep;
        json_object_foreach(json_object_get(doc, "applications"), name, app)
        {
            ok &= strcmp(jstr(app, "status"), "RUNNING") == 0;
            json_object_foreach(json_object_get(app, "deployments"), dname, dep)
            {
                json_t *reps = json_object_get(dep, "replicas");
                ok &= (json_int_t)json_array_size(reps) ==
                      json_integer_value(json_object_get(dep, "target_num_replicas"));
                for (size_t i = 0; i < json_array_size(reps); i++)
                    ok &= strcmp(jstr(json_array_get(reps, i), "state"), "RUNNING") == 0;
            }
        }
        free(last);
        last = json_dumps(doc, JSON_COMPACT);
        json_decref(doc);
        if (ok) break;
        cr_assert(h_now() < deadline, "not every replica RUNNING after %.0f s: %s\n%s", timeout_s,
                  last, LOG(s));
        h_sleep_ms(50);
    }
    free(last);
}

/* ---- The text format ----------------------------------------------------- */

#define MAX_LABELS 12

typedef struct label {
    char k[64];
    char v[256];
} label;

/* Labels `k="v",k2="v2"` up to '}' or the end; values unescaped. Returns
   how many, or -1 when malformed; *end is left after the last one. */
static int parse_labels(const char *p, const char **end, label *l)
{
    int n = 0;
    for (;;) {
        while (*p == ',' || *p == ' ') p++;
        if (*p == '}' || *p == '\0' || *p == '\n') break;
        const char *eq = strchr(p, '=');
        if (!eq || eq[1] != '"' || n == MAX_LABELS) return -1;
        snprintf(l[n].k, sizeof(l[n].k), "%.*s", (int)(eq - p), p);
        size_t j = 0;
        for (p = eq + 2; *p && *p != '"' && *p != '\n'; p++) {
            char c = *p;
            if (c == '\\' && p[1]) c = *++p == 'n' ? '\n' : *p;
            if (j + 1 < sizeof(l[n].v)) l[n].v[j++] = c;
        }
        if (*p != '"') return -1;
        l[n].v[j] = '\0';
        p++;
        n++;
    }
    *end = p;
    return n;
}

/*
 * How many samples of `text` are called `name` and have exactly the labels
 * of `labels` (`k="v",...`, any order; "" for none). The value of the last
 * one goes to *value (NAN when there is none).
 */
static int metric_find(const char *text, const char *name, const char *labels, double *value)
{
    label want[MAX_LABELS], got[MAX_LABELS];
    const char *end;
    int n_want = parse_labels(labels, &end, want);
    cr_assert_geq(n_want, 0, "bad label spec %s", labels);
    size_t name_len = strlen(name);
    int found = 0;
    *value = NAN;
    for (const char *line = text; line && *line; line = strchr(line, '\n'), line += !!line) {
        if (line[0] == '#' || strncmp(line, name, name_len) != 0) continue;
        const char *p = line + name_len;
        int n_got = 0;
        if (*p == '{') {
            n_got = parse_labels(p + 1, &p, got);
            if (n_got < 0 || *p != '}') continue;
            p++;
        }
        if (*p != ' ' || n_got != n_want) continue;
        int same = 1;
        for (int i = 0; i < n_want && same; i++) {
            int match = 0;
            for (int j = 0; j < n_got && !match; j++)
                match = strcmp(want[i].k, got[j].k) == 0 && strcmp(want[i].v, got[j].v) == 0;
            same = match;
        }
        if (!same) continue;
        found++;
        *value = strtod(p + 1, NULL);
    }
    return found;
}

/* The lines of `text` that mention `name` (without histogram buckets
   unless `name` is one), for assertion messages (a static buffer: one use
   per message). */
static const char *excerpt(const char *text, const char *name)
{
    static char buf[8192];
    size_t used = 0;
    buf[0] = '\0';
    for (const char *line = text; line && *line; line = strchr(line, '\n'), line += !!line) {
        const char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        if (!memmem(line, len, name, strlen(name))) continue;
        if (!strstr(name, "_bucket") && memmem(line, len, "_bucket{", 8)) continue;
        if (used + len + 2 >= sizeof(buf)) break;
        memcpy(buf + used, line, len);
        used += len;
        buf[used++] = '\n';
        buf[used] = '\0';
    }
    return buf;
}

/* The value of a series that must appear exactly once. */
static double metric(const char *text, const char *name, const char *labels)
{
    double v;
    int n = metric_find(text, name, labels, &v);
    cr_assert_eq(n, 1, "%s{%s} appears %d times (once expected):\n%s", name, labels, n,
                 excerpt(text, name));
    return v;
}

/* metric() for a test that has a server: the message quotes its log. */
static double metric_of(const h_serve *s, const char *text, const char *name, const char *labels)
{
    double v;
    int n = metric_find(text, name, labels, &v);
    cr_assert_eq(n, 1, "%s{%s} appears %d times (once expected):\n%s\n---- serve log:\n%s", name,
                 labels, n, excerpt(text, name), LOG(s));
    return v;
}

/* name{labels} must appear once, with value `want`. */
#define expect_metric(text, name, labels, want)                                                    \
    do {                                                                                           \
        double got_ = metric(text, name, labels), want_ = (want);                                  \
        cr_expect_eq(got_, want_, "%s{%s} is %g, expected %g:\n%s", name, labels, got_, want_,     \
                     excerpt(text, name));                                                         \
    } while (0)

/* Whether a series exists (any number of times). */
static int has_series(const char *text, const char *name, const char *labels)
{
    double v;
    return metric_find(text, name, labels, &v) > 0;
}

/* Scrape until name{labels} equals `want`, up to `timeout_s`; returns the
   last value seen (NAN when the series was absent). */
static double wait_metric(const h_serve *s, const char *name, const char *labels, double want,
                          double timeout_s)
{
    double deadline = h_now() + timeout_s, v = NAN;
    for (;;) {
        char *text = scrape(s);
        metric_find(text, name, labels, &v);
        free(text);
        if (v == want || h_now() >= deadline) return v;
        h_sleep_ms(100);
    }
}

/* ---- Traffic ------------------------------------------------------------- */

static void get_n(h_serve *s, const char *path, int n, long status)
{
    for (int i = 0; i < n; i++) {
        h_response r;
        get_expect(s, path, status, &r);
        h_response_free(&r);
    }
}

/*
 * Background GETs: TRAFFIC_THREADS threads, each on its own keep-alive
 * connection, in a loop until stopped. No pause between requests: the
 * dashboard under virtual time polls only a few real milliseconds apart,
 * and each poll interval should see answers.
 */
#define TRAFFIC_THREADS 3

typedef struct traffic {
    char url[256];
    atomic_int stop;
    atomic_long ok, failed;
    pthread_t threads[TRAFFIC_THREADS];
} traffic;

static size_t discard(char *data, size_t size, size_t n, void *arg)
{
    return size * n;
}

static void *traffic_loop(void *arg)
{
    traffic *t = arg;
    CURL *e = curl_easy_init();
    curl_easy_setopt(e, CURLOPT_URL, t->url);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(e, CURLOPT_TIMEOUT, 5L);
    while (!atomic_load(&t->stop)) {
        long status = 0;
        if (curl_easy_perform(e) == CURLE_OK) curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
        if (status == 200)
            atomic_fetch_add(&t->ok, 1);
        else
            atomic_fetch_add(&t->failed, 1);
    }
    curl_easy_cleanup(e);
    return NULL;
}

static traffic *traffic_start(const h_serve *s, const char *path)
{
    traffic *t = calloc(1, sizeof(*t));
    cr_assert_not_null(t);
    snprintf(t->url, sizeof(t->url), "http://127.0.0.1:%d%s", s->port, path);
    for (int i = 0; i < TRAFFIC_THREADS; i++)
        cr_assert_eq(pthread_create(&t->threads[i], NULL, traffic_loop, t), 0);
    return t;
}

/* Stop and join; returns how many requests answered 200. */
static long traffic_stop(traffic *t, long *failed)
{
    atomic_store(&t->stop, 1);
    for (int i = 0; i < TRAFFIC_THREADS; i++) pthread_join(t->threads[i], NULL);
    long ok = atomic_load(&t->ok);
    *failed = atomic_load(&t->failed);
    free(t);
    return ok;
}

/* ---- 1. Counters --------------------------------------------------------- */

Test(metrics, http_counters_equal_the_requests_sent)
{
    h_serve *s = serve_up(NULL, NO_LOG,
                          APP("echo", "/echo", "echo.so", "{\"name\": \"Echo\"}") ", " APP(
                              "f", "/f", "faulty.so", "{\"name\": \"Fail\"}"));
    wait_running(s, READY_TIMEOUT_S);
    get_n(s, "/echo/x?y=1", 37, 200);
    get_n(s, "/nowhere/x", 5, 404);
    get_n(s, "/f", 3, 500);
    char *text = scrape(s);
#define ECHO_L "application=\"echo\",route=\"/echo\""
#define NONE_L "application=\"\",route=\"\""
    expect_metric(text, "serve_http_requests_total", ECHO_L ",method=\"GET\",status_code=\"200\"",
                  37);
    expect_metric(text, "serve_http_requests_total", NONE_L ",method=\"GET\",status_code=\"404\"",
                  5);
    expect_metric(text, "serve_http_request_errors_total",
                  NONE_L ",method=\"GET\",status_code=\"404\"", 5);
    expect_metric(text, "serve_http_requests_total",
                  "application=\"f\",route=\"/f\",method=\"GET\",status_code=\"500\"", 3);
    expect_metric(text, "serve_http_request_errors_total",
                  "application=\"f\",route=\"/f\",method=\"GET\",status_code=\"500\"", 3);
    cr_expect_not(has_series(text, "serve_http_request_errors_total",
                             ECHO_L ",method=\"GET\",status_code=\"200\""),
                  "a 200 counted as an error:\n%s",
                  excerpt(text, "serve_http_request_errors_total"));
    expect_metric(text, "serve_http_request_duration_seconds_count", ECHO_L, 37);
    expect_metric(text, "serve_http_request_duration_seconds_bucket", ECHO_L ",le=\"+Inf\"", 37);
    double sum = metric(text, "serve_http_request_duration_seconds_sum", ECHO_L);
    cr_expect(sum > 0 && sum < 37 * 5.0, "duration sum %g for 37 quick requests", sum);
    expect_metric(text, "serve_http_request_duration_seconds_count",
                  "application=\"f\",route=\"/f\"", 3);
    free(text);
    /* The replicas' own count arrives with their next report. */
    double n = wait_metric(s, "serve_deployment_processing_latency_seconds_count",
                           "application=\"echo\",deployment=\"Echo\"", 37, STATS_TIMEOUT_S);
    cr_expect_eq(n, 37, "processing latency count %g after %.0f s, 37 requests sent", n,
                 STATS_TIMEOUT_S);
    text = scrape(s);
    expect_metric(text, "serve_deployment_processing_latency_seconds_bucket",
                  "application=\"echo\",deployment=\"Echo\",le=\"+Inf\"", 37);
    free(text);
}

/* ---- 2. promtool --------------------------------------------------------- */

/* Every family ctl_write_metrics writes, with its type. */
static const char *const families[][2] = {
    {"serve_http_requests_total", "counter"},
    {"serve_http_request_errors_total", "counter"},
    {"serve_http_request_duration_seconds", "histogram"},
    {"serve_deployment_ongoing_requests", "gauge"},
    {"serve_deployment_queued_requests", "gauge"},
    {"serve_replica_ongoing_requests", "gauge"},
    {"serve_deployment_replicas", "gauge"},
    {"serve_deployment_target_replicas", "gauge"},
    {"serve_deployment_replica_starts_total", "counter"},
    {"serve_deployment_replica_restarts_total", "counter"},
    {"serve_autoscaling_desired_replicas", "gauge"},
    {"serve_autoscaling_ongoing_requests", "gauge"},
    {"serve_autoscaling_target_ongoing_requests", "gauge"},
    {"serve_deployment_processing_latency_seconds", "histogram"},
    {"serve_deployment_batch_size", "histogram"},
};

#define SLEEPY_AUTOSCALED                                                                          \
    APP("s", "/s", "faulty.so",                                                                    \
        "{\"name\": \"Sleepy\", \"max_ongoing_requests\": 8, \"autoscaling_config\": "             \
        "{\"min_replicas\": 1, \"max_replicas\": 3, \"target_ongoing_requests\": 2.5, "            \
        "\"look_back_period_s\": 0.5, \"upscale_delay_s\": 60, \"downscale_delay_s\": 60}}")
#define BATCHER_APP                                                                                \
    APP("b", "/b", "batcher.so",                                                                   \
        "{\"name\": \"Batcher\", \"init_args\": {\"delay_ms\": 20}, \"batching\": "                \
        "{\"max_batch_size\": 4, \"batch_wait_timeout_s\": 0.05}}")

/* An application whose route needs its label value escaped: a quote, a
   backslash and a newline. (Names are plain: the config refuses others.) */
#define ODD_APP                                                                                    \
    "{\"name\": \"odd\", \"route_prefix\": \"/we\\\"ird\\\\p\\nx\", "                              \
    "\"plugin\": \"echo.so\", \"deployments\": [{\"name\": \"Echo\"}]}"
#define ECHO2_APP   APP("echo", "/echo", "echo.so", "{\"name\": \"Echo\", \"num_replicas\": 2}")
#define FAIL_APP    APP("f", "/f", "faulty.so", "{\"name\": \"Fail\"}")
#define TENSORS_APP APP("t", "/t", "batcher.so", "{\"name\": \"Tensors\"}")
/* Every kind: 2 replicas, batching, autoscaling, failures, a v2 model. */
#define PROM_APPS                                                                                  \
    ECHO2_APP ", " BATCHER_APP ", " SLEEPY_AUTOSCALED ", " FAIL_APP ", " TENSORS_APP ", " ODD_APP

Test(metrics, promtool_accepts_the_exposition_after_varied_traffic)
{
    cr_assert(access(PROMTOOL, X_OK) == 0,
              "%s is missing: install the Debian package prometheus (scripts/deps.sh "
              "installs it)",
              PROMTOOL);
    h_serve *s = serve_up(NULL, NO_LOG, PROM_APPS);
    wait_running(s, READY_TIMEOUT_S);
    get_n(s, "/echo/a?x=1", 10, 200);
    get_n(s, "/s?ms=1", 3, 200);
    get_n(s, "/f", 2, 500);
    get_n(s, "/missing", 2, 404);
    get_n(s, "/we%22ird%5Cp%0Ax/y", 2, 200); /* route /we"ird\p<newline>x of app odd */
    get_n(s, "/v2/models/t/ready", 1, 200);
    h_response r;
    const char *infer = "{\"inputs\": [{\"name\": \"int8\", \"datatype\": \"INT8\", "
                        "\"shape\": [1, 1], \"data\": [1]}]}";
    request_ok(s, "POST", "/v2/models/t/infer", NULL, infer, strlen(infer), &r);
    cr_expect_eq(r.status, 200, "%s", r.body);
    h_response_free(&r);
    request_ok(s, "POST", "/echo", NULL, "body", 4, &r);
    h_response_free(&r);
    request_ok(s, "BREW", "/echo", NULL, NULL, 0, &r); /* counted as method OTHER */
    h_response_free(&r);
    h_async *a[6];
    for (int i = 0; i < 6; i++) a[i] = h_request_async(s, "POST", "/b", NULL, "x", 1);
    for (int i = 0; i < 6; i++) {
        cr_assert_eq(h_async_wait(a[i], &r), 0, "%s", r.error);
        cr_expect_eq(r.status, 200, "%s", r.body);
        h_response_free(&r);
    }
    /* every histogram has data once the replicas have reported */
    double v = wait_metric(s, "serve_deployment_batch_size_sum",
                           "application=\"b\",deployment=\"Batcher\"", 6, STATS_TIMEOUT_S);
    cr_expect_eq(v, 6, "batch size sum %g", v);
    v = wait_metric(s, "serve_deployment_processing_latency_seconds_count",
                    "application=\"s\",deployment=\"Sleepy\"", 3, STATS_TIMEOUT_S);
    cr_expect_eq(v, 3);
    char *text = scrape(s);
    expect_metric(text, "serve_http_requests_total",
                  "application=\"odd\",route=\"/we\\\"ird\\\\p\\nx\","
                  "method=\"GET\",status_code=\"200\"",
                  2);
    expect_metric(
        text, "serve_http_requests_total",
        "application=\"t\",route=\"/v2/models/t/infer\",method=\"POST\",status_code=\"200\"", 1);
    for (size_t i = 0; i < sizeof(families) / sizeof(families[0]); i++) {
        char type[160];
        snprintf(type, sizeof(type), "# TYPE %s %s\n", families[i][0], families[i][1]);
        cr_expect(strstr(text, type), "no \"%.*s\" in the metrics", (int)strlen(type) - 1, type);
    }
    char path[H_PATH_MAX];
    cr_assert_eq(h_serve_write_file(s, "metrics.txt", text, strlen(text), path), 0);
    char cmd[H_PATH_MAX + 64];
    snprintf(cmd, sizeof(cmd), "exec %s check metrics < '%s'", PROMTOOL, path);
    const char *argv[] = {"/bin/sh", "-c", cmd, NULL};
    char *out = NULL;
    int code = h_run(s, argv, NULL, "promtool.out", &out);
    cr_expect_eq(code, 0, "promtool check metrics exited %d:\n%s\n---- metrics:\n%s", code,
                 out ? out : "", text);
    cr_expect_str_empty(out ? out : "", "promtool check metrics found problems:\n%s", out);
    free(out);
    free(text);
}

/* ---- 3. Gauges ------------------------------------------------------------ */

#define GAUGE_DEP "application=\"s\",deployment=\"Sleepy\""

Test(metrics, ongoing_and_queued_gauges_follow_requests_in_flight)
{
    h_serve *s = serve_up(
        NULL, NO_LOG,
        APP("s", "/s", "faulty.so", "{\"name\": \"Sleepy\", \"max_ongoing_requests\": 2}"));
    wait_running(s, READY_TIMEOUT_S);
    json_t *doc = status_doc(s);
    json_t *rep0 =
        json_array_get(json_object_get(deployment_of(doc, "s", "Sleepy"), "replicas"), 0);
    char replica[64], rep_labels[160];
    snprintf(replica, sizeof(replica), "%s", jstr(rep0, "replica_id"));
    json_decref(doc);
    snprintf(rep_labels, sizeof(rep_labels), GAUGE_DEP ",replica=\"%s\"", replica);
    /* 5 requests of 2 s on 1 replica taking 2 at a time: 2 run, 3 wait */
    h_async *a[5];
    for (int i = 0; i < 5; i++) a[i] = h_request_async(s, "GET", "/s?ms=2000", NULL, NULL, 0);
    double ongoing = NAN, queued = NAN, rep_ongoing = NAN, deadline = h_now() + 1.5;
    char *text = NULL;
    do {
        free(text);
        text = scrape(s);
        ongoing = metric_of(s, text, "serve_deployment_ongoing_requests", GAUGE_DEP);
        queued = metric_of(s, text, "serve_deployment_queued_requests", GAUGE_DEP);
        rep_ongoing = metric_of(s, text, "serve_replica_ongoing_requests", rep_labels);
        if (ongoing == 2 && queued == 3 && rep_ongoing == 2) break;
        h_sleep_ms(20);
    } while (h_now() < deadline);
    cr_expect_eq(ongoing, 2, "deployment ongoing %g:\n%s", ongoing, excerpt(text, "ongoing"));
    cr_expect_eq(queued, 3, "deployment queued %g:\n%s", queued, excerpt(text, "queued"));
    cr_expect_eq(rep_ongoing, 2, "replica ongoing %g:\n%s", rep_ongoing, excerpt(text, "ongoing"));
    free(text);
    /* the status document tells the same */
    json_int_t doc_ongoing = -1, doc_queued = -1, doc_rep = -1;
    deadline = h_now() + 1.0;
    do {
        doc = status_doc(s);
        json_t *dep = deployment_of(doc, "s", "Sleepy");
        doc_ongoing = json_integer_value(json_object_get(dep, "ongoing_requests"));
        doc_queued = json_integer_value(json_object_get(dep, "queued_requests"));
        json_t *r0 = json_array_get(json_object_get(dep, "replicas"), 0);
        cr_expect_str_eq(jstr(r0, "replica_id"), replica);
        doc_rep = json_integer_value(json_object_get(r0, "ongoing_requests"));
        json_decref(doc);
        if (doc_ongoing == 2 && doc_queued == 3 && doc_rep == 2) break;
        h_sleep_ms(20);
    } while (h_now() < deadline);
    cr_expect_eq(doc_ongoing, 2, "status ongoing_requests %lld", (long long)doc_ongoing);
    cr_expect_eq(doc_queued, 3, "status queued_requests %lld", (long long)doc_queued);
    cr_expect_eq(doc_rep, 2, "status replica ongoing_requests %lld", (long long)doc_rep);
    for (int i = 0; i < 5; i++) {
        h_response r;
        cr_assert_eq(h_async_wait(a[i], &r), 0, "%s", r.error);
        cr_expect_eq(r.status, 200, "%s", r.body);
        h_response_free(&r);
    }
    /* all answered: nothing runs, nothing waits */
    deadline = h_now() + 2.0;
    do {
        text = scrape(s);
        ongoing = metric_of(s, text, "serve_deployment_ongoing_requests", GAUGE_DEP);
        queued = metric_of(s, text, "serve_deployment_queued_requests", GAUGE_DEP);
        rep_ongoing = metric_of(s, text, "serve_replica_ongoing_requests", rep_labels);
        free(text);
        if (ongoing == 0 && queued == 0 && rep_ongoing == 0) break;
        h_sleep_ms(20);
    } while (h_now() < deadline);
    cr_expect_eq(ongoing, 0);
    cr_expect_eq(queued, 0);
    cr_expect_eq(rep_ongoing, 0);
    doc = status_doc(s);
    json_t *dep = deployment_of(doc, "s", "Sleepy");
    cr_expect_eq(json_integer_value(json_object_get(dep, "ongoing_requests")), 0);
    cr_expect_eq(json_integer_value(json_object_get(dep, "queued_requests")), 0);
    json_decref(doc);
}

/* ---- 4. Replicas and restarts -------------------------------------------- */

#define ECHO_DEP "application=\"echo\",deployment=\"Echo\""

Test(metrics, a_killed_replica_counts_as_a_restart_and_keeps_its_reported_latency)
{
    h_serve *s = serve_up(
        NULL, NO_LOG, APP("echo", "/echo", "echo.so", "{\"name\": \"Echo\", \"num_replicas\": 2}"));
    wait_running(s, READY_TIMEOUT_S);
    char *text = scrape(s);
    expect_metric(text, "serve_deployment_replicas", ECHO_DEP ",state=\"RUNNING\"", 2);
    expect_metric(text, "serve_deployment_replicas", ECHO_DEP ",state=\"STARTING\"", 0);
    expect_metric(text, "serve_deployment_target_replicas", ECHO_DEP, 2);
    expect_metric(text, "serve_deployment_replica_starts_total", ECHO_DEP, 2);
    expect_metric(text, "serve_deployment_replica_restarts_total", ECHO_DEP, 0);
    free(text);
    /* 20 requests; echo says which replica answered each */
    char victim_id[64] = "", victim_labels[160];
    pid_t pid = 0;
    int served = 0;
    for (int i = 0; i < 20; i++) {
        h_response r;
        get_expect(s, "/echo", 200, &r);
        json_t *doc = body_json(s, &r);
        if (!victim_id[0]) { /* the replica of the first answer */
            snprintf(victim_id, sizeof(victim_id), "%s", jstr(doc, "replica_id"));
            pid = (pid_t)json_integer_value(json_object_get(doc, "pid"));
        }
        served += strcmp(jstr(doc, "replica_id"), victim_id) == 0;
        json_decref(doc);
        h_response_free(&r);
    }
    double n = wait_metric(s, "serve_deployment_processing_latency_seconds_count", ECHO_DEP, 20,
                           STATS_TIMEOUT_S);
    cr_assert_eq(n, 20, "processing latency count %g, 20 requests sent", n);
    /* kill -9 that replica (it served `served` of them), checked to be one
       of this serve's */
    pid_t pids[H_MAX_REPLICAS];
    size_t n_pids = h_serve_replicas(s, pids, H_MAX_REPLICAS);
    cr_assert(pid > 0 && h_pid_in(pid, pids, n_pids), "pid %d is not a replica of this serve",
              (int)pid);
    cr_assert_eq(kill(pid, SIGKILL), 0);
    double restarts = NAN, starts = NAN, running = NAN, count = NAN;
    double deadline = h_now() + 8.0;
    for (;;) {
        text = scrape(s);
        restarts = metric(text, "serve_deployment_replica_restarts_total", ECHO_DEP);
        starts = metric(text, "serve_deployment_replica_starts_total", ECHO_DEP);
        running = metric(text, "serve_deployment_replicas", ECHO_DEP ",state=\"RUNNING\"");
        count = metric(text, "serve_deployment_processing_latency_seconds_count", ECHO_DEP);
        cr_expect_eq(count, 20,
                     "the processing latency count moved to %g (no request sent; "
                     "the killed replica had answered %d of 20)",
                     count, served);
        if ((restarts == 1 && starts == 3 && running == 2) || h_now() >= deadline) break;
        free(text);
        h_sleep_ms(50);
    }
    cr_expect_eq(restarts, 1, "restarts_total %g", restarts);
    cr_expect_eq(starts, 3, "starts_total %g", starts);
    cr_expect_eq(running, 2, "RUNNING %g\n%s", running, excerpt(text, "serve_deployment_replicas"));
    snprintf(victim_labels, sizeof(victim_labels), ECHO_DEP ",replica=\"%s\"", victim_id);
    cr_expect_not(has_series(text, "serve_replica_ongoing_requests", victim_labels),
                  "the killed replica %s is still shown:\n%s", victim_id,
                  excerpt(text, "serve_replica_ongoing_requests"));
    free(text);
    /* the replacement's requests add to what the deployment had */
    get_n(s, "/echo", 6, 200);
    n = wait_metric(s, "serve_deployment_processing_latency_seconds_count", ECHO_DEP, 26,
                    STATS_TIMEOUT_S);
    cr_expect_eq(n, 26, "processing latency count %g after 20 + 6 requests", n);
}

/* ---- 5. Batching --------------------------------------------------------- */

Test(metrics, batch_size_histogram_counts_each_handle_batch_call)
{
    h_serve *s = serve_up(NULL, NO_LOG, BATCHER_APP);
    wait_running(s, READY_TIMEOUT_S);
    enum { BURST = 14, ALONE = 3, K = BURST + ALONE };
    h_async *a[BURST];
    h_response r;
    long calls = 0, items = 0, sizes[5] = {0};
    for (int i = 0; i < BURST; i++) a[i] = h_request_async(s, "POST", "/b", NULL, "x", 1);
    for (int i = 0; i < K; i++) {
        if (i < BURST)
            cr_assert_eq(h_async_wait(a[i], &r), 0, "%s", r.error);
        else
            request_ok(s, "POST", "/b", NULL, "y", 1, &r);
        cr_assert_eq(r.status, 200, "%s", r.body);
        json_t *doc = body_json(s, &r);
        long size = (long)json_integer_value(json_object_get(doc, "batch_size"));
        long index = (long)json_integer_value(json_object_get(doc, "index"));
        json_decref(doc);
        cr_assert(size >= 1 && size <= 4, "batch_size %ld", size);
        if (index == 0) { /* one answer per batch has index 0 */
            calls++;
            items += size;
            sizes[size]++;
        }
        h_response_free(&r);
    }
    cr_assert_eq(items, K, "the batches answered hold %ld items, %d sent", items, K);
    double count = NAN, sum = NAN, deadline = h_now() + STATS_TIMEOUT_S;
    char *text = NULL;
    for (;;) {
        free(text);
        text = scrape(s);
        double v;
        if (metric_find(text, "serve_deployment_batch_size_count",
                        "application=\"b\",deployment=\"Batcher\"", &v) == 1)
            count = v;
        if (metric_find(text, "serve_deployment_batch_size_sum",
                        "application=\"b\",deployment=\"Batcher\"", &v) == 1)
            sum = v;
        if ((count == calls && sum == K) || h_now() >= deadline) break;
        h_sleep_ms(100);
    }
    cr_expect_eq(count, calls, "batch_size_count %g, %ld handle_batch calls\n%s", count, calls,
                 excerpt(text, "batch_size"));
    cr_expect_eq(sum, K, "batch_size_sum %g, %d requests", sum, K);
    /* the buckets (cumulative): le="1" holds the batches of one, le="2" up to two */
    expect_metric(text, "serve_deployment_batch_size_bucket",
                  "application=\"b\",deployment=\"Batcher\",le=\"1\"", sizes[1]);
    expect_metric(text, "serve_deployment_batch_size_bucket",
                  "application=\"b\",deployment=\"Batcher\",le=\"2\"", sizes[1] + sizes[2]);
    expect_metric(text, "serve_deployment_batch_size_bucket",
                  "application=\"b\",deployment=\"Batcher\",le=\"+Inf\"", calls);
    expect_metric(text, "serve_deployment_processing_latency_seconds_count",
                  "application=\"b\",deployment=\"Batcher\"", K);
    free(text);
}

/* ---- 6. Autoscaling ------------------------------------------------------ */

Test(metrics, autoscaling_gauges_exist_only_for_autoscaled_deployments)
{
    h_serve *s =
        serve_up(NULL, NO_LOG,
                 SLEEPY_AUTOSCALED ", " APP("echo", "/echo", "echo.so", "{\"name\": \"Echo\"}"));
    wait_running(s, READY_TIMEOUT_S);
    char *text = scrape(s);
    expect_metric(text, "serve_autoscaling_target_ongoing_requests", GAUGE_DEP, 2.5);
    expect_metric(text, "serve_autoscaling_desired_replicas", GAUGE_DEP, 1);
    expect_metric(text, "serve_autoscaling_ongoing_requests", GAUGE_DEP, 0);
    expect_metric(text, "serve_deployment_target_replicas", GAUGE_DEP, 1);
    static const char *const as_families[] = {"serve_autoscaling_desired_replicas",
                                              "serve_autoscaling_ongoing_requests",
                                              "serve_autoscaling_target_ongoing_requests"};
    for (int i = 0; i < 3; i++)
        cr_expect_not(has_series(text, as_families[i], ECHO_DEP),
                      "%s shown for a deployment without autoscaling:\n%s", as_families[i],
                      excerpt(text, as_families[i]));
    free(text);
    /* load: the autoscaler's metric moves (scaling itself waits 60 s) */
    h_async *a[4];
    for (int i = 0; i < 4; i++) a[i] = h_request_async(s, "GET", "/s?ms=3000", NULL, NULL, 0);
    double metric_v = 0, desired = NAN, deadline = h_now() + 2.0;
    do {
        h_sleep_ms(100);
        text = scrape(s);
        metric_v = metric(text, "serve_autoscaling_ongoing_requests", GAUGE_DEP);
        desired = metric(text, "serve_autoscaling_desired_replicas", GAUGE_DEP);
        free(text);
    } while (!(metric_v > 1 && desired == 2) && h_now() < deadline);
    cr_expect(metric_v > 1 && metric_v <= 4, "autoscaling metric %g with 4 requests running",
              metric_v);
    cr_expect_eq(desired, 2, "desired %g: ceil(4 / 2.5) is 2", desired);
    /* the gauges are the ones the status document shows */
    json_t *doc = status_doc(s);
    json_t *as = json_object_get(deployment_of(doc, "s", "Sleepy"), "autoscaling");
    text = scrape(s);
    expect_metric(text, "serve_autoscaling_desired_replicas", GAUGE_DEP,
                  json_integer_value(json_object_get(as, "desired")));
    expect_metric(text, "serve_deployment_target_replicas", GAUGE_DEP,
                  json_integer_value(json_object_get(as, "target")));
    free(text);
    json_decref(doc);
    for (int i = 0; i < 4; i++) {
        h_response r;
        cr_assert_eq(h_async_wait(a[i], &r), 0, "%s", r.error);
        h_response_free(&r);
    }
}

/* ---- 7. Token ------------------------------------------------------------ */

Test(metrics, metrics_need_the_token_and_the_page_does_not)
{
    h_serve *s = h_serve_new();
    cr_assert_not_null(s);
    cr_assert_eq(h_serve_write_config(s,
                                      "{\"http_options\": {\"host\": \"127.0.0.1\", \"port\": %d},"
                                      " \"admin\": {\"host\": \"127.0.0.1\", \"port\": %d,"
                                      " \"auth_token\": \"s3cret\"}, \"applications\": [%s]}",
                                      s->port, s->admin_port,
                                      APP("echo", "/echo", "echo.so", "{\"name\": \"Echo\"}")),
                 0);
    cr_assert_eq(h_serve_start(s), 0);
    cr_assert_eq(h_serve_wait_ready(s, "/echo", READY_TIMEOUT_S), 0, "%s", LOG(s));
    admin_page p;
    cr_expect_eq(admin_fetch(s, "GET", "/metrics", NULL, NULL, &p), 401, "%s", p.body);
    cr_expect_not(strstr(p.body, "serve_http_requests_total"), "%s", p.body);
    admin_page_free(&p);
    cr_expect_eq(admin_fetch(s, "GET", "/metrics", "wrong", NULL, &p), 401, "%s", p.body);
    admin_page_free(&p);
    cr_expect_eq(admin_fetch(s, "GET", "/metrics", "s3cret", NULL, &p), 200, "%s", p.body);
    cr_expect_str_eq(p.type, "text/plain; version=0.0.4; charset=utf-8");
    cr_expect(strstr(p.body, "serve_http_requests_total{application=\"echo\""), "%s", p.body);
    admin_page_free(&p);
    cr_expect_eq(admin_fetch(s, "GET", "/", NULL, NULL, &p), 200, "%s", p.body);
    cr_expect(strncmp(p.type, "text/html", 9) == 0, "content-type %s", p.type);
    cr_expect(strstr(p.body, "data-polls") && strstr(p.body, "id=\"replicas\""), "%.300s", p.body);
    admin_page_free(&p);
    cr_expect_eq(admin_fetch(s, "POST", "/metrics", "s3cret", "x", &p), 405, "%s", p.body);
    admin_page_free(&p);
    cr_expect_eq(admin_fetch(s, "POST", "/metrics", NULL, "x", &p), 405, "%s", p.body);
    admin_page_free(&p);
}

/* ---- 8. The dashboard in headless Chromium ------------------------------- */

/* Run Chromium on the dashboard for 5 s of virtual time; the DOM it dumps,
   malloc'd. HOME and the profile stay in the scratch folder. */
static char *dump_dashboard(const h_serve *s)
{
    cr_assert(access(CHROMIUM, X_OK) == 0,
              "%s is missing: install the Debian package chromium (scripts/deps.sh installs it)",
              CHROMIUM);
    char cmd[4 * H_DIR_MAX + 512];
    snprintf(cmd, sizeof(cmd),
             "HOME='%s' timeout -k 5 %d %s --headless --no-sandbox --disable-gpu "
             "--disable-dev-shm-usage --no-first-run --user-data-dir='%s/chromium' "
             "--virtual-time-budget=5000 --dump-dom http://127.0.0.1:%d/ >'%s/dom.html' "
             "2>'%s/chromium.err'",
             s->dir, CHROMIUM_GUARD_S, CHROMIUM, s->dir, s->admin_port, s->dir, s->dir);
    int status = system(cmd);
    char path[H_PATH_MAX];
    snprintf(path, sizeof(path), "%s/chromium.err", s->dir);
    char *err = h_read_file(path, NULL);
    snprintf(path, sizeof(path), "%s/dom.html", s->dir);
    char *dom = h_read_file(path, NULL);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0 && dom && strstr(dom, "</html>"),
              "chromium failed (status 0x%x); stderr:\n%.3000s", status, err ? err : "");
    free(err);
    return dom;
}

/* The text of `dom` from `start` (e.g. id="replicas") to `end`, copied. */
static char *dom_part(const char *dom, const char *start, const char *end)
{
    const char *a = strstr(dom, start);
    cr_assert_not_null(a, "no %s in the page", start);
    const char *b = strstr(a + strlen(start), end);
    size_t len = b ? (size_t)(b - a) : strlen(a);
    char *out = malloc(len + 1);
    memcpy(out, a, len);
    out[len] = '\0';
    return out;
}

/* The value of attribute `name` in the tag at `tag` (up to its '>'); 0, or
   -1 when absent. */
static int tag_attr(const char *tag, const char *name, char *out, size_t size)
{
    const char *end = strchr(tag, '>');
    char key[64];
    snprintf(key, sizeof(key), " %s=\"", name);
    const char *p = strstr(tag, key);
    if (!p || (end && p > end)) return -1;
    p += strlen(key);
    const char *q = strchr(p, '"');
    if (!q) return -1;
    snprintf(out, size, "%.*s", (int)(q - p), p);
    return 0;
}

/* The next tag opening with `open` ("<tr", "<span") that has attribute
   `attr`, from `p`; NULL when none. */
static const char *next_tag_with(const char *p, const char *open, const char *attr)
{
    char v[256];
    for (p = strstr(p, open); p; p = strstr(p + 1, open))
        if (tag_attr(p, attr, v, sizeof(v)) == 0) return p;
    return NULL;
}

/* The data-value of the legend entry `series` in chart `chart_id`
   ("chart-rps"); NAN when absent or empty. */
static double legend_value(const char *dom, const char *chart_id, const char *series)
{
    char start[64];
    snprintf(start, sizeof(start), "id=\"%s\"", chart_id);
    char *part = dom_part(dom, start, "class=\"card");
    double v = NAN;
    char name[256], value[64];
    for (const char *t = next_tag_with(part, "<span", "data-series"); t;
         t = next_tag_with(t + 1, "<span", "data-series")) {
        tag_attr(t, "data-series", name, sizeof(name));
        if (strcmp(name, series) == 0 && tag_attr(t, "data-value", value, sizeof(value)) == 0 &&
            value[0])
            v = strtod(value, NULL);
    }
    free(part);
    return v;
}

#define MAX_ROWS 16

/* The replicas table: ids and states of its rows. */
typedef struct rep_rows {
    int n;
    char id[MAX_ROWS][64];
    char state[MAX_ROWS][32];
} rep_rows;

static void replica_rows(const char *dom, rep_rows *rows)
{
    char *part = dom_part(dom, "id=\"replicas\"", "</table>");
    rows->n = 0;
    for (const char *t = next_tag_with(part, "<tr", "data-replica"); t && rows->n < MAX_ROWS;
         t = next_tag_with(t + 1, "<tr", "data-replica")) {
        tag_attr(t, "data-replica", rows->id[rows->n], sizeof(rows->id[0]));
        if (tag_attr(t, "data-state", rows->state[rows->n], sizeof(rows->state[0])) != 0)
            rows->state[rows->n][0] = '\0';
        rows->n++;
    }
    free(part);
}

static int row_index(const rep_rows *rows, const char *id)
{
    for (int i = 0; i < rows->n; i++)
        if (strcmp(rows->id[i], id) == 0) return i;
    return -1;
}

#define DASH_APPS                                                                                  \
    APP("echo", "/echo", "echo.so", "{\"name\": \"Echo\", \"num_replicas\": 2}")                   \
    ", " APP("hello", "/hello", "hello.so", "{\"name\": \"Hello\"}")

Test(dashboard, the_page_shows_apps_replicas_and_live_charts)
{
    h_serve *s = serve_up(NULL, NO_LOG, DASH_APPS);
    wait_running(s, READY_TIMEOUT_S);
    traffic *t = traffic_start(s, "/echo/dash");
    h_sleep_ms(300); /* some requests before the first poll */
    char *dom = dump_dashboard(s);
    long failed, ok = traffic_stop(t, &failed);
    cr_expect(ok > 0 && failed == 0, "background traffic: %ld ok, %ld failed", ok, failed);

    char polls[32] = "";
    const char *body = strstr(dom, "<body");
    cr_assert_not_null(body);
    tag_attr(body, "data-polls", polls, sizeof(polls));
    cr_expect_geq(atoi(polls), 2, "body data-polls=\"%s\": the page polled fewer than 2 times",
                  polls);
    /* applications */
    char *apps = dom_part(dom, "id=\"apps\"", "</table>");
    cr_expect(strstr(apps, "<tr data-app=\"echo\""), "%s", apps);
    cr_expect(strstr(apps, "<tr data-app=\"hello\""), "%s", apps);
    free(apps);
    /* deployments */
    char *deps = dom_part(dom, "id=\"deployments\"", "</table>");
    const char *row = strstr(deps, "data-deployment=\"Echo\"");
    cr_assert_not_null(row, "%s", deps);
    while (row > deps && *row != '<') row--;
    char running[16] = "", target[16] = "";
    tag_attr(row, "data-running", running, sizeof(running));
    tag_attr(row, "data-target", target, sizeof(target));
    cr_expect_str_eq(running, "2", "%s", deps);
    cr_expect_str_eq(target, "2", "%s", deps);
    free(deps);
    /* replicas: those of the status document, all RUNNING */
    rep_rows rows;
    replica_rows(dom, &rows);
    json_t *doc = status_doc(s);
    int n_doc = 0;
    const char *name, *dname;
    json_t *app, *dep;
    json_object_foreach(json_object_get(doc, "applications"), name, app)
    {
        json_object_foreach(json_object_get(app, "deployments"), dname, dep)
        {
            json_t *reps = json_object_get(dep, "replicas");
            for (size_t i = 0; i < json_array_size(reps); i++, n_doc++) {
                const char *id = jstr(json_array_get(reps, i), "replica_id");
                cr_expect_geq(row_index(&rows, id), 0, "replica %s of %s is not in #replicas", id,
                              dname);
            }
        }
    }
    json_decref(doc);
    cr_expect_eq(n_doc, 3);
    cr_expect_eq(rows.n, n_doc, "#replicas has %d rows, the status document %d replicas", rows.n,
                 n_doc);
    for (int i = 0; i < rows.n; i++)
        cr_expect_str_eq(rows.state[i], "RUNNING", "replica %s", rows.id[i]);
    /* charts: the legends hold each series' latest value */
    double rps = legend_value(dom, "chart-rps", "echo");
    cr_expect(rps > 0, "requests/s of echo: %g while traffic ran", rps);
    double p50 = legend_value(dom, "chart-latency", "echo p50");
    double p99 = legend_value(dom, "chart-latency", "echo p99");
    cr_expect(p50 > 0 && p99 > 0 && p99 >= p50, "echo latency p50 %g ms, p99 %g ms", p50, p99);
    cr_expect_eq(legend_value(dom, "chart-replicas", "echo/Echo"), 2);
    cr_expect_eq(legend_value(dom, "chart-replicas", "echo/Echo target"), 2);
    cr_expect_eq(legend_value(dom, "chart-replicas", "hello/Hello"), 1);
    free(dom);
}

Test(dashboard, the_replicas_table_matches_serve_status)
{
    h_serve *s = serve_up(NULL, NO_LOG, DASH_APPS);
    wait_running(s, READY_TIMEOUT_S);
    char *dom = dump_dashboard(s);
    rep_rows rows;
    replica_rows(dom, &rows);
    free(dom);
    char addr[64];
    snprintf(addr, sizeof(addr), "http://127.0.0.1:%d", s->admin_port);
    const char *argv[] = {getenv("SERVE_BIN"), "status", "-a", addr, NULL};
    cr_assert_not_null(argv[0], "SERVE_BIN is not set");
    char *out = NULL;
    int code = h_run(s, argv, NULL, "status.out", &out);
    cr_assert_eq(code, 0, "serve status exited %d:\n%s", code, out ? out : "");
    /* replica lines: "        - ID  STATE  pid N  up Ns" */
    int listed = 0;
    for (const char *line = out; line && *line; line = strchr(line, '\n'), line += !!line) {
        char id[64], state[32];
        if (sscanf(line, " - %63s %31s pid", id, state) != 2) continue;
        listed++;
        int i = row_index(&rows, id);
        cr_expect_geq(i, 0, "serve status lists replica %s, the dashboard does not:\n%s", id, out);
        if (i >= 0)
            cr_expect_str_eq(rows.state[i], state, "replica %s: dashboard %s, serve status %s", id,
                             rows.state[i], state);
    }
    cr_expect_eq(listed, 3, "serve status lists %d replicas:\n%s", listed, out);
    cr_expect_eq(rows.n, listed, "the dashboard shows %d replicas, serve status %d:\n%s", rows.n,
                 listed, out);
    free(out);
}
