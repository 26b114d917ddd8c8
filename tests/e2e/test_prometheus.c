/*
 * test_prometheus.c - a real Prometheus (Debian's `prometheus` package)
 * scrapes a running serve: the scrape succeeds and the counts it stores are
 * the requests sent.
 */
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "expect.h"
#include "harness.h"

#define PROMETHEUS    "/usr/bin/prometheus"
#define SCRAPE_WAIT_S 10.0
#define SENT          26 /* serve_up's readiness GET and the 25 below */

extern char **environ;

static pid_t prometheus_pid = -1;

static void stop_prometheus(void)
{
    if (prometheus_pid > 0) {
        kill(prometheus_pid, SIGKILL);
        waitpid(prometheus_pid, NULL, 0);
        prometheus_pid = -1;
    }
    h_cleanup_all();
}

TestSuite(prometheus, .fini = stop_prometheus, .timeout = 60);

/* Start Prometheus on `port`, scraping the admin API of `s` every 0.5 s,
   with its config, data and output in the scratch folder. */
static void start_prometheus(h_serve *s, int port)
{
    char yml[512], path[H_PATH_MAX], data[H_PATH_MAX + 8], out[H_PATH_MAX + 16];
    snprintf(yml, sizeof(yml),
             "global: {scrape_interval: 500ms, evaluation_interval: 500ms}\n"
             "scrape_configs:\n"
             "  - job_name: serve\n"
             "    static_configs: [{targets: ['127.0.0.1:%d']}]\n",
             s->admin_port);
    cr_assert_eq(h_serve_write_file(s, "prometheus.yml", yml, strlen(yml), path), 0);
    snprintf(data, sizeof(data), "%s/tsdb", s->dir);
    snprintf(out, sizeof(out), "%s/prometheus.log", s->dir);
    char config_arg[H_PATH_MAX + 20], data_arg[H_PATH_MAX + 30], listen_arg[64];
    snprintf(config_arg, sizeof(config_arg), "--config.file=%s", path);
    snprintf(data_arg, sizeof(data_arg), "--storage.tsdb.path=%s", data);
    snprintf(listen_arg, sizeof(listen_arg), "--web.listen-address=127.0.0.1:%d", port);
    char *argv[] = {PROMETHEUS, config_arg, data_arg, listen_arg, NULL};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    int rc = posix_spawn(&prometheus_pid, PROMETHEUS, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    cr_assert_eq(rc, 0, "cannot start %s: %s", PROMETHEUS, strerror(rc));
}

static size_t collect(char *data, size_t size, size_t n, void *arg)
{
    char *buf = arg;
    size_t have = strlen(buf), add = size * n;
    if (have + add >= 65536) add = 65535 - have;
    memcpy(buf + have, data, add);
    buf[have + add] = '\0';
    return size * n;
}

/* The value of the first sample of instant query `query`, or -1 when
   Prometheus answers none (yet). */
static double query(int port, const char *promql)
{
    static char body[65536];
    body[0] = '\0';
    CURL *c = curl_easy_init();
    char *escaped = curl_easy_escape(c, promql, 0);
    char url[1024];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/api/v1/query?query=%s", port, escaped);
    curl_free(escaped);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, body);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 2L);
    CURLcode rc = curl_easy_perform(c);
    curl_easy_cleanup(c);
    if (rc != CURLE_OK) return -1;
    json_t *doc = json_loads(body, 0, NULL);
    json_t *first = json_array_get(json_object_get(json_object_get(doc, "data"), "result"), 0);
    const char *v = json_string_value(json_array_get(json_object_get(first, "value"), 1));
    double value = v ? atof(v) : -1;
    json_decref(doc);
    return value;
}

/* Poll `promql` until it equals `want` (or SCRAPE_WAIT_S); the last value. */
static double wait_value(int port, const char *promql, double want)
{
    double v = -1;
    for (double end = h_now() + SCRAPE_WAIT_S; h_now() < end; h_sleep_ms(200))
        if ((v = query(port, promql)) == want) break;
    return v;
}

Test(prometheus, a_real_prometheus_scrapes_the_counts_that_were_sent)
{
    cr_assert(access(PROMETHEUS, X_OK) == 0,
              "%s is missing: install the Debian package prometheus (scripts/deps.sh does)",
              PROMETHEUS);
    h_serve *s = serve_up("/echo", ", \"access_log\": false",
                          APP("echo", "/echo", "echo.so", "{\"name\": \"Echo\"}"));
    for (int i = 0; i < 25; i++) {
        h_response r;
        get_expect(s, "/echo/x", 200, &r);
        h_response_free(&r);
    }
    int port = h_free_port();
    start_prometheus(s, port);
    double up = wait_value(port, "up{job=\"serve\"}", 1);
    cr_assert_eq(up, 1, "Prometheus never scraped serve successfully (up = %g)", up);
    double n = wait_value(
        port, "sum(serve_http_requests_total{application=\"echo\",status_code=\"200\"})", SENT);
    cr_expect_eq(n, SENT, "Prometheus holds %g requests for echo, %d were sent", n, SENT);
    n = wait_value(
        port, "sum(serve_deployment_processing_latency_seconds_count{deployment=\"Echo\"})", SENT);
    cr_expect_eq(n, SENT, "Prometheus holds %g processed requests, %d were sent", n, SENT);
    n = wait_value(port, "serve_deployment_replicas{deployment=\"Echo\",state=\"RUNNING\"}", 1);
    cr_expect_eq(n, 1);
    /* Prometheus's own view of the scrape: no sample was refused. */
    n = query(port, "scrape_samples_post_metric_relabeling{job=\"serve\"}");
    cr_expect_gt(n, 20, "only %g samples kept from a scrape", n);
}
