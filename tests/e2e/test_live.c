/*
 * test_live.c - live config changes with `serve run --watch`: scaling,
 * user_config, and edits that are refused, without dropping requests.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "expect.h"
#include "harness.h"

TestSuite(live, .fini = h_cleanup_all, .timeout = TEST_TIMEOUT_S);

/* (Re)write the config: hello at `prefix` with n replicas and a greeting
   (a JSON value, e.g. "\"Hi\"" or "42"). */
static void write_hello(h_serve *s, const char *prefix, int n, const char *greeting)
{
    cr_assert_eq(
        h_serve_write_config(s,
                             "{\"http_options\": {\"port\": %d}, \"admin\": {\"port\": %d},"
                             " \"applications\": [{\"name\": \"hello\", \"route_prefix\": "
                             "\"%s\", \"plugin\": \"hello.so\", \"deployments\": [{\"name\":"
                             " \"Hello\", \"num_replicas\": %d, \"user_config\": "
                             "{\"greeting\": %s}}]}]}",
                             s->port, s->admin_port, prefix, n, greeting),
        0);
}

static h_serve *start_watched(int n, const char *greeting)
{
    h_serve *s = h_serve_new();
    write_hello(s, "/hello", n, greeting);
    const char *args[] = {"--watch", NULL};
    cr_assert_eq(h_serve_start_args(s, args), 0);
    cr_assert_eq(h_serve_wait_ready(s, "/hello", READY_TIMEOUT_S), 0, "%s", LOG(s));
    return s;
}

/* All answers of `n` GET /hello, joined. */
static void greetings(h_serve *s, int n, char *out, size_t size)
{
    out[0] = '\0';
    for (int i = 0; i < n; i++) {
        h_response r;
        get_expect(s, "/hello", 200, &r);
        strncat(out, r.body, size - strlen(out) - 1);
        h_response_free(&r);
    }
}

Test(live, scaling_up_and_down_keeps_the_first_replica_and_drops_no_request)
{
    h_serve *s = start_watched(1, "\"Hi\"");
    pid_t first[H_MAX_REPLICAS], three[H_MAX_REPLICAS], now[H_MAX_REPLICAS];
    cr_assert_eq(h_serve_wait_replicas(s, 1, 5, first), 0);
    write_hello(s, "/hello", 3, "\"Hi\"");
    cr_assert_eq(h_serve_wait_replicas(s, 3, 5, three), 0, "%s", LOG(s));
    cr_expect(h_pid_in(first[0], three, 3), "scaling up replaced the first replica");
    wait_log(s, "applied", 1);
    /* Scale down while requests flow: every one must succeed. */
    write_hello(s, "/hello", 1, "\"Hi\"");
    char out[8192];
    for (int k = 0; k < 10; k++) greetings(s, 5, out, sizeof(out));
    cr_assert_eq(h_serve_wait_replicas(s, 1, 5, now), 0, "%s", LOG(s));
    cr_expect_eq(now[0], first[0], "the oldest replica is the one kept");
    /* A replica on its way out is no longer listed (its cmdline is gone)
       a moment before it is dead: give the exit a bounded moment. */
    for (int i = 0; i < 3; i++) {
        if (three[i] == first[0]) continue;
        cr_expect(h_pid_gone_within(three[i], 2), "removed replica %d still runs", (int)three[i]);
    }
}

Test(live, a_new_user_config_reaches_every_replica_without_a_restart)
{
    h_serve *s = start_watched(2, "\"Hi\"");
    pid_t before[H_MAX_REPLICAS], after[H_MAX_REPLICAS];
    cr_assert_eq(h_serve_wait_replicas(s, 2, 5, before), 0);
    wait_log(s, "is running at", 1);
    write_hello(s, "/hello", 2, "\"Bonjour\"");
    wait_log(s, "reconfigured", 2);
    char out[8192];
    greetings(s, 20, out, sizeof(out));
    cr_expect(!strstr(out, "Hi,"), "an old greeting is still served: %s", out);
    cr_expect(strstr(out, "Bonjour, world!"), "%s", out);
    cr_assert_eq(h_serve_wait_replicas(s, 2, 1, after), 0);
    for (int i = 0; i < 2; i++)
        cr_expect(h_pid_in(before[i], after, 2), "replica %d was restarted", (int)before[i]);
}

Test(live, a_rejected_user_config_marks_the_deployment_unhealthy_and_keeps_serving)
{
    h_serve *s = start_watched(1, "\"Hi\"");
    write_hello(s, "/hello", 1, "42"); /* hello wants a string */
    wait_log(s, "reconfigure failed", 1);
    char out[8192];
    greetings(s, 3, out, sizeof(out));
    cr_expect(strstr(out, "Hi, world!"), "the previous config must stay: %s", out);
    static char body[65536];
    cr_assert_eq(admin_request(s, "GET", NULL, body), 200);
    json_t *doc = json_loads(body, 0, NULL);
    json_t *app = json_object_get(json_object_get(doc, "applications"), "hello");
    json_t *dep = json_object_get(json_object_get(app, "deployments"), "Hello");
    cr_expect_str_eq(jstr(app, "status"), "UNHEALTHY", "%s", body);
    cr_expect_str_eq(jstr(dep, "status"), "UNHEALTHY", "%s", body);
    cr_expect(strstr(jstr(dep, "message"), "greeting: must be a string"), "%s", body);
    json_decref(doc);
}

Test(live, a_broken_or_unsupported_edit_is_reported_and_the_old_config_kept)
{
    h_serve *s = start_watched(1, "\"Hi\"");
    wait_log(s, "is running at", 1);
    char path[H_PATH_MAX];
    cr_assert_eq(h_serve_write_file(s, "config.json", "{\"broken", 8, path), 0);
    wait_log(s, "not applied; still serving the previous config", 1);
    /* another proxy port needs a restart */
    cr_assert_eq(
        h_serve_write_config(s,
                             "{\"http_options\": {\"port\": %d}, \"admin\": {\"port\": %d},"
                             " \"applications\": []}",
                             s->port + 1, s->admin_port),
        0);
    wait_log(s, "http_options: cannot change while serving", 1);
    char out[8192];
    greetings(s, 3, out, sizeof(out));
    cr_expect(strstr(out, "Hi, world!"), "%s", out);
}

Test(live, a_route_prefix_moves_live)
{
    h_serve *s = start_watched(1, "\"Hi\"");
    write_hello(s, "/elsewhere", 1, "\"Hi\"");
    wait_log(s, "applied", 1);
    h_response r;
    get_expect(s, "/elsewhere", 200, &r);
    h_response_free(&r);
    get_expect(s, "/hello", 404, &r);
    h_response_free(&r);
}

/* Send requests to /echo until the deployment's `n` replicas are all new
   processes (none of `before`): every request must succeed meanwhile. */
static void expect_rolled_over(h_serve *s, const pid_t *before, size_t n)
{
    pid_t now[H_MAX_REPLICAS];
    int failed = 0, sent = 0, replaced = 0;
    for (; sent < 600 && !replaced; sent++) {
        h_response r;
        if (h_get(s, "/echo", &r) != 0 || r.status != 200) failed++;
        h_response_free(&r);
        replaced = h_serve_replicas(s, now, H_MAX_REPLICAS) == n;
        for (size_t i = 0; replaced && i < n; i++) replaced = !h_pid_in(now[i], before, n);
        h_sleep_ms(5);
    }
    cr_expect(replaced, "the replicas were not all replaced\n%s", LOG(s));
    cr_expect_eq(failed, 0, "%d of %d requests failed during the rolling update", failed, sent);
    cr_expect(sent > 20, "too few requests (%d) to show anything", sent);
}

/* echo with n replicas and this init_args "v" */
static void write_echo(h_serve *s, int n, int v)
{
    cr_assert_eq(
        h_serve_write_config(s,
                             "{\"http_options\": {\"port\": %d}, \"admin\": {\"port\": %d},"
                             " \"applications\": [{\"name\": \"echo\", \"route_prefix\": "
                             "\"/echo\", \"plugin\": \"echo.so\", \"deployments\": [{\"name\":"
                             " \"Echo\", \"num_replicas\": %d, \"init_args\": {\"v\": %d}}]}]}",
                             s->port, s->admin_port, n, v),
        0);
}

Test(live, new_init_args_roll_every_replica_over_without_a_failed_request)
{
    h_serve *s = h_serve_new();
    write_echo(s, 3, 1);
    const char *args[] = {"--watch", NULL};
    cr_assert_eq(h_serve_start_args(s, args), 0);
    cr_assert_eq(h_serve_wait_ready(s, "/echo", READY_TIMEOUT_S), 0, "%s", LOG(s));
    wait_log(s, "is running at", 1);
    pid_t before[H_MAX_REPLICAS];
    cr_assert_eq(h_serve_wait_replicas(s, 3, 5, before), 0);
    write_echo(s, 3, 2);
    /* Requests flow during the whole update; count every failure. */
    expect_rolled_over(s, before, 3);
}

/* ---- Health checks ----------------------------------------------------- */

TestSuite(health, .fini = h_cleanup_all, .timeout = TEST_TIMEOUT_S);

/* Wait until the only replica is another process than `old`; return it. */
static pid_t wait_replaced(h_serve *s, pid_t old, double timeout_s)
{
    pid_t now[H_MAX_REPLICAS];
    for (int i = 0; i < (int)(timeout_s * 100); i++) {
        if (h_serve_replicas(s, now, H_MAX_REPLICAS) == 1 && now[0] != old) return now[0];
        h_sleep_ms(10);
    }
    cr_assert_fail("replica %d was not replaced\n%s", (int)old, LOG(s));
    return 0;
}

Test(health, a_replica_failing_its_health_checks_is_replaced)
{
    h_serve *s = serve_up(
        "/u", "",
        APP("u", "/u", "faulty.so", "{\"name\": \"Unhealthy\", \"health_check_period_s\": 0.1}"));
    pid_t first[H_MAX_REPLICAS];
    cr_assert_eq(h_serve_wait_replicas(s, 1, 5, first), 0);
    pid_t second = wait_replaced(s, first[0], 5);
    cr_expect_neq(second, first[0]);
    wait_log(s, "failed 3 health checks in a row; replacing it", 1);
    wait_log(s, "disk full", 3);
}

Test(health, a_stalled_replica_is_replaced_when_its_checks_time_out)
{
    h_serve *s = serve_up("/echo", "",
                          APP("echo", "/echo", "echo.so",
                              "{\"name\": \"Echo\", \"health_check_period_s\": 0.1,"
                              " \"health_check_timeout_s\": 0.2}"));
    pid_t first[H_MAX_REPLICAS];
    cr_assert_eq(h_serve_wait_replicas(s, 1, 5, first), 0);
    kill(first[0], SIGSTOP); /* alive, but answers nothing */
    wait_replaced(s, first[0], 5);
    wait_log(s, "no answer within 0.2 s", 3);
    h_response r;
    for (int i = 0; i < 300; i++) { /* the replacement serves */
        if (h_get(s, "/echo", &r) == 0 && r.status == 200) break;
        h_response_free(&r);
        h_sleep_ms(10);
    }
    cr_expect_eq(r.status, 200, "%s", LOG(s));
    h_response_free(&r);
}

Test(live, applications_are_added_and_removed_live)
{
    h_serve *s = start_watched(1, "\"Hi\"");
    pid_t hello[H_MAX_REPLICAS], now[H_MAX_REPLICAS];
    cr_assert_eq(h_serve_wait_replicas(s, 1, 5, hello), 0);
    /* add echo next to hello */
    cr_assert_eq(
        h_serve_write_config(s,
                             "{\"http_options\": {\"port\": %d}, \"admin\": {\"port\": %d},"
                             " \"applications\": [%s, %s]}",
                             s->port, s->admin_port,
                             APP("hello", "/hello", "hello.so",
                                 "{\"name\": \"Hello\", \"user_config\": {\"greeting\": \"Hi\"}}"),
                             APP("echo", "/echo", "echo.so", "{\"name\": \"Echo\"}")),
        0);
    cr_assert_eq(h_serve_wait_ready(s, "/echo", READY_TIMEOUT_S), 0, "%s", LOG(s));
    /* then keep echo only: hello's route goes, its replica stops */
    cr_assert_eq(
        h_serve_write_config(s,
                             "{\"http_options\": {\"port\": %d}, \"admin\": {\"port\": %d},"
                             " \"applications\": [%s]}",
                             s->port, s->admin_port,
                             APP("echo", "/echo", "echo.so", "{\"name\": \"Echo\"}")),
        0);
    wait_log(s, "hello/Hello: not in the config any more", 1);
    cr_expect(h_pid_gone_within(hello[0], 3), "hello's replica still runs");
    cr_expect_eq(h_serve_wait_replicas(s, 1, 5, now), 0, "%s", LOG(s));
    h_response r;
    get_expect(s, "/hello", 404, &r);
    h_response_free(&r);
    get_expect(s, "/echo", 200, &r);
    h_response_free(&r);
}

Test(live, a_deployment_that_never_starts_is_deploy_failed_while_others_serve)
{
    h_serve *s = start_watched(1, "\"Hi\"");
    wait_log(s, "is running at", 1);
    cr_assert_eq(
        h_serve_write_config(s,
                             "{\"http_options\": {\"port\": %d}, \"admin\": {\"port\": %d},"
                             " \"applications\": [%s, %s]}",
                             s->port, s->admin_port,
                             APP("hello", "/hello", "hello.so",
                                 "{\"name\": \"Hello\", \"user_config\": {\"greeting\": \"Hi\"}}"),
                             APP("bad", "/bad", "faulty.so",
                                 "{\"name\": \"FailInit\", \"init_args\": {\"message\": \"weights "
                                 "missing\"}}")),
        0);
    wait_log(s, "DEPLOY_FAILED until its config changes", 1);
    static char body[65536];
    cr_assert_eq(admin_request(s, "GET", NULL, body), 200);
    json_t *doc = json_loads(body, 0, NULL);
    json_t *apps = json_object_get(doc, "applications");
    json_t *bad = json_object_get(apps, "bad");
    json_t *dep = json_object_get(json_object_get(bad, "deployments"), "FailInit");
    cr_expect_str_eq(jstr(bad, "status"), "DEPLOY_FAILED", "%s", body);
    cr_expect_str_eq(jstr(dep, "status"), "DEPLOY_FAILED", "%s", body);
    cr_expect(strstr(jstr(dep, "message"), "weights missing"), "%s", body);
    cr_expect_str_eq(jstr(json_object_get(apps, "hello"), "status"), "RUNNING", "%s", body);
    json_decref(doc);
    cr_expect(h_serve_running(s), "serve must keep running\n%s", LOG(s));
    char out[8192];
    greetings(s, 3, out, sizeof(out));
    cr_expect(strstr(out, "Hi, world!"), "%s", out);
}

/* Sleepy with n replicas and this much more in http_options and in the
   deployment (each starting with a comma, or ""). */
static void write_sleepy(h_serve *s, int n, const char *http_extra, const char *dep_extra)
{
    cr_assert_eq(
        h_serve_write_config(s,
                             "{\"http_options\": {\"port\": %d%s}, \"admin\": {\"port\": %d},"
                             " \"applications\": [{\"name\": \"s\", \"route_prefix\": \"/s\","
                             " \"plugin\": \"faulty.so\", \"deployments\": [{\"name\": "
                             "\"Sleepy\", \"num_replicas\": %d%s}]}]}",
                             s->port, http_extra, s->admin_port, n, dep_extra),
        0);
}

static h_serve *start_sleepy(int n, const char *http_extra, const char *dep_extra)
{
    h_serve *s = h_serve_new();
    write_sleepy(s, n, http_extra, dep_extra);
    const char *args[] = {"--watch", NULL};
    cr_assert_eq(h_serve_start_args(s, args), 0);
    cr_assert_eq(h_serve_wait_ready(s, "/s", READY_TIMEOUT_S), 0, "%s", LOG(s));
    wait_log(s, "is running at", 1);
    return s;
}

Test(live, a_retired_replica_stuck_past_its_graceful_timeout_is_killed)
{
    const char *dep = ", \"graceful_shutdown_timeout_s\": 0.5";
    h_serve *s = start_sleepy(1, "", dep);
    pid_t pids[H_MAX_REPLICAS];
    cr_assert_eq(h_serve_wait_replicas(s, 1, 5, pids), 0);
    h_async *slow = h_request_async(s, "GET", "/s?ms=5000", NULL, NULL, 0);
    h_sleep_ms(200); /* let it reach the replica */
    write_sleepy(s, 0, "", dep);
    h_response r;
    h_async_wait(slow, &r);
    cr_expect_eq(r.status, 502, "the stuck request ends with its replica: %ld", r.status);
    cr_expect_lt(r.elapsed_s, 3.0, "the replica was killed after %.2f s", r.elapsed_s);
    h_response_free(&r);
    wait_log(s, "did not stop within graceful_shutdown_timeout_s; killing it", 1);
    cr_expect(h_pid_gone_within(pids[0], 2), "the stuck replica %d still runs", (int)pids[0]);
}

Test(live, the_request_timeout_changes_live)
{
    h_serve *s = start_sleepy(1, "", "");
    h_response r;
    get_expect(s, "/s?ms=400", 200, &r);
    h_response_free(&r);
    write_sleepy(s, 1, ", \"request_timeout_s\": 0.2", "");
    wait_log(s, "applied", 1);
    get_expect(s, "/s?ms=400", 408, &r);
    h_response_free(&r);
}

/* Copy $SERVE_BUILD_DIR/examples/echo.so to `dest`, a new file each time. */
static void copy_echo_plugin(const char *dest)
{
    char src[H_PATH_MAX];
    snprintf(src, sizeof(src), "%s/examples/echo.so", getenv("SERVE_BUILD_DIR"));
    size_t len = 0;
    char *data = h_read_file(src, &len);
    cr_assert_not_null(data, "cannot read %s", src);
    unlink(dest); /* a new inode, as a rebuild makes: never rewrite a loaded .so in place */
    FILE *f = fopen(dest, "wb");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(data, 1, len, f), len);
    fclose(f);
    free(data);
}

Test(live, a_rebuilt_plugin_rolls_every_replica_over_without_a_failed_request)
{
    h_serve *s = h_serve_new();
    char plugin[H_PATH_MAX + 16];
    snprintf(plugin, sizeof(plugin), "%s/mine.so", s->dir);
    copy_echo_plugin(plugin);
    const char *fmt = "{\"http_options\": {\"port\": %d}, \"admin\": {\"port\": %d},"
                      " \"applications\": [{\"name\": \"echo\", \"route_prefix\": \"/echo\","
                      " \"plugin\": \"mine.so\", \"deployments\": [{\"name\": \"Echo\","
                      " \"num_replicas\": 2}]}]}";
    cr_assert_eq(h_serve_write_config(s, fmt, s->port, s->admin_port), 0);
    const char *args[] = {"--watch", NULL};
    cr_assert_eq(h_serve_start_args(s, args), 0);
    cr_assert_eq(h_serve_wait_ready(s, "/echo", READY_TIMEOUT_S), 0, "%s", LOG(s));
    wait_log(s, "is running at", 1);
    pid_t before[H_MAX_REPLICAS];
    cr_assert_eq(h_serve_wait_replicas(s, 2, 5, before), 0);
    h_sleep_ms(20); /* a later mtime for the rebuilt file */
    copy_echo_plugin(plugin);
    cr_assert_eq(h_serve_write_config(s, fmt, s->port, s->admin_port), 0); /* saved again */
    expect_rolled_over(s, before, 2);
    wait_log(s, "new code (plugin, init_args or batching): rolling update", 1);
}

/* ---- Autoscaling ------------------------------------------------------- */

TestSuite(autoscale, .fini = h_cleanup_all, .timeout = TEST_TIMEOUT_S);

Test(autoscale, a_load_step_adds_replicas_and_they_go_when_it_stops)
{
    h_serve *s = serve_up("/s", "",
                          APP("s", "/s", "faulty.so",
                              "{\"name\": \"Sleepy\", \"max_ongoing_requests\": 2,"
                              " \"autoscaling_config\": {\"min_replicas\": 1, \"max_replicas\": 4,"
                              " \"target_ongoing_requests\": 1, \"look_back_period_s\": 0.3,"
                              " \"upscale_delay_s\": 0.2, \"downscale_delay_s\": 0.5}}"));
    pid_t pids[H_MAX_REPLICAS];
    cr_assert_eq(h_serve_wait_replicas(s, 1, 5, pids), 0);
    h_async *load[4];
    for (int i = 0; i < 4; i++) load[i] = h_request_async(s, "GET", "/s?ms=2500", NULL, NULL, 0);
    cr_expect_eq(h_serve_wait_replicas(s, 4, 5, pids), 0, "4 ongoing / 1 -> 4 replicas\n%s",
                 LOG(s));
    for (int i = 0; i < 4; i++) {
        h_response r;
        h_async_wait(load[i], &r);
        cr_expect_eq(r.status, 200);
        h_response_free(&r);
    }
    cr_expect_eq(h_serve_wait_replicas(s, 1, 8, pids), 0, "back to min_replicas\n%s", LOG(s));
    wait_log(s, "autoscaling: scale up", 1);
    wait_log(s, "autoscaling: scale down", 1);
}

Test(autoscale, a_deployment_at_zero_answers_its_first_request)
{
    h_serve *s = serve_up("/echo", "",
                          APP("echo", "/echo", "echo.so",
                              "{\"name\": \"Echo\", \"autoscaling_config\": {\"min_replicas\": 0,"
                              " \"initial_replicas\": 1, \"max_replicas\": 2,"
                              " \"look_back_period_s\": 0.2, \"downscale_delay_s\": 0.2,"
                              " \"downscale_to_zero_delay_s\": 0.4}}"));
    pid_t pids[H_MAX_REPLICAS];
    cr_assert_eq(h_serve_wait_replicas(s, 0, 8, pids), 0, "idle: down to zero\n%s", LOG(s));
    static char body[65536];
    cr_assert_eq(admin_request(s, "GET", NULL, body), 200);
    cr_expect(strstr(body, "\"target\":0"), "%s", body);
    /* The decision itself is in the log: the status holds only the latest
       one, which a slow machine may have replaced already. */
    wait_log(s, "autoscaling: scale down 1 -> 0", 1);
    h_response r;
    get_expect(s, "/echo", 200, &r); /* waits at the router while a replica starts */
    cr_expect_lt(r.elapsed_s, 5.0);
    h_response_free(&r);
    wait_log(s, "scale up from zero", 1);
}
