/*
 * test_serve.c - end-to-end tests: the real `serve run` binary, real
 * replica processes, real plugins (examples/ and tests/plugins/), driven
 * over HTTP with libcurl.
 *
 * Every test starts its own serve on its own free ports (criterion runs
 * tests in parallel processes) and h_cleanup_all, the .fini of every suite,
 * kills whatever a failed test left running. Assertion messages end with
 * the tail of the server's log.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "expect.h"
#include "harness.h"

#define STOP_TIMEOUT_S 5.0 /* serve must exit this soon after a signal */
#define REPLACE_S      3.0 /* a lost replica must be replaced within this */
#define MIB            (1024 * 1024)

/* Pieces of config: one application serving one deployment. */
#define ECHO_APP(name, prefix)        APP(name, prefix, "echo.so", "{\"name\": \"Echo\"}")
#define ECHO_APP_N(name, prefix, n)   APP(name, prefix, "echo.so", ECHO_DEP_N(n))
#define ECHO_DEP_N(n)                 "{\"name\": \"Echo\", \"num_replicas\": " #n "}"
#define FAULTY_APP(name, prefix, dep) APP(name, prefix, "faulty.so", "{\"name\": \"" dep "\"}")

TestSuite(routing, .fini = h_cleanup_all, .timeout = TEST_TIMEOUT_S);
TestSuite(builtin, .fini = h_cleanup_all, .timeout = TEST_TIMEOUT_S);
TestSuite(balancing, .fini = h_cleanup_all, .timeout = TEST_TIMEOUT_S);
TestSuite(roundtrip, .fini = h_cleanup_all, .timeout = TEST_TIMEOUT_S);
TestSuite(plugins, .fini = h_cleanup_all, .timeout = TEST_TIMEOUT_S);
TestSuite(failures, .fini = h_cleanup_all, .timeout = TEST_TIMEOUT_S);
TestSuite(config, .fini = h_cleanup_all, .timeout = TEST_TIMEOUT_S);
TestSuite(startup, .fini = h_cleanup_all, .timeout = TEST_TIMEOUT_S);
TestSuite(shutdown, .fini = h_cleanup_all, .timeout = TEST_TIMEOUT_S);

/* ---- Helpers ----------------------------------------------------------- */

/* Start serve with these applications (a printf template of the contents
   of "applications") and wait until /-/healthz and `path` answer 200. */
static h_serve *serve_apps(const char *path, const char *apps_fmt, ...)
{
    char *apps;
    va_list ap;
    va_start(ap, apps_fmt);
    int n = vasprintf(&apps, apps_fmt, ap);
    va_end(ap);
    cr_assert(n >= 0, "out of memory");
    h_serve *s = serve_up(path, "", apps);
    free(apps);
    return s;
}

/* GET an echo route: answers 200 with a JSON object (caller decrefs). */
static json_t *echo_get(h_serve *s, const char *path)
{
    h_response r;
    get_expect(s, path, 200, &r);
    json_t *obj = body_json(s, &r);
    h_response_free(&r);
    return obj;
}

/* Check that `path` was answered by echo app `app` with route_path `rest`. */
static void expect_echo_route(h_serve *s, const char *path, const char *app, const char *rest)
{
    json_t *obj = echo_get(s, path);
    cr_expect_str_eq(jstr(obj, "app"), app, "GET %s: answered by app '%s', expected '%s'", path,
                     jstr(obj, "app"), app);
    cr_expect_str_eq(jstr(obj, "route_path"), rest, "GET %s: route_path '%s', expected '%s'", path,
                     jstr(obj, "route_path"), rest);
    json_decref(obj);
}

/* The value of header `name` in echo's "headers" object (any case). */
static const char *echo_header(json_t *obj, const char *name)
{
    const char *key;
    json_t *value;
    json_object_foreach(json_object_get(obj, "headers"), key, value)
    {
        if (strcasecmp(key, name) == 0) return json_string_value(value);
    }
    return NULL;
}

/* GET `path` until `want` distinct pids (from echo JSON or Sleepy's text)
   have answered, or `timeout_s`; returns how many were seen. */
static size_t collect_pids(h_serve *s, const char *path, int json, size_t want, double timeout_s,
                           pid_t *seen)
{
    size_t n = 0;
    double deadline = h_now() + timeout_s;
    while (n < want && h_now() < deadline) {
        h_response r;
        get_expect(s, path, 200, &r);
        json_t *obj = json ? body_json(s, &r) : NULL;
        pid_t pid = json ? (pid_t)json_integer_value(json_object_get(obj, "pid")) : atoi(r.body);
        json_decref(obj);
        h_response_free(&r);
        if (pid > 0 && !h_pid_in(pid, seen, n)) seen[n++] = pid;
    }
    return n;
}

/* Whether no process in pids[0..n) is alive. */
static int none_alive(const pid_t *pids, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (h_pid_alive(pids[i])) return 0;
    return 1;
}

/* ---- Routing ----------------------------------------------------------- */

#define ROUTING_APPS                                                                               \
    APP("hello", "/hello", "hello.so", "{\"name\": \"Hello\"}")                                    \
    ", " ECHO_APP("echo", "/echo") ", " ECHO_APP("deep", "/echo/deep")

Test(routing, each_prefix_reaches_its_own_app)
{
    h_serve *s = serve_apps("/echo", ROUTING_APPS);
    h_response r;
    get_expect(s, "/hello", 200, &r);
    cr_expect_str_eq(r.body, "Hello, world!\n", "GET /hello answered '%s'", r.body);
    h_response_free(&r);
    expect_echo_route(s, "/echo/x", "echo", "/x");
    expect_echo_route(s, "/echo/deep/x", "deep", "/x");
}

Test(routing, route_path_is_the_path_after_the_prefix)
{
    h_serve *s = serve_apps("/echo", ROUTING_APPS);
    expect_echo_route(s, "/echo/a/b", "echo", "/a/b");
    expect_echo_route(s, "/echo", "echo", "/");
    expect_echo_route(s, "/echo/", "echo", "/");
    json_t *obj = echo_get(s, "/echo/a/b?x=1");
    cr_expect_str_eq(jstr(obj, "path"), "/echo/a/b", "path must be the full path without query");
    cr_expect_str_eq(jstr(obj, "route_path"), "/a/b", "route_path must not hold the query");
    json_decref(obj);
}

Test(routing, the_longest_prefix_wins)
{
    h_serve *s = serve_apps("/echo", ROUTING_APPS);
    expect_echo_route(s, "/echo/deep", "deep", "/");
    expect_echo_route(s, "/echo/deep/a/b", "deep", "/a/b");
    expect_echo_route(s, "/echo/deeper", "echo", "/deeper");
    expect_echo_route(s, "/echo/x/deep", "echo", "/x/deep");
}

Test(routing, a_prefix_matches_whole_path_segments_only)
{
    h_serve *s = serve_apps("/echo", ROUTING_APPS ", " ECHO_APP("root", "/"));
    expect_echo_route(s, "/echoes", "root", "/echoes");
    expect_echo_route(s, "/hellooo/x", "root", "/hellooo/x");
    expect_echo_route(s, "/echo/deepest", "echo", "/deepest");
    expect_echo_route(s, "/", "root", "/");
}

/* ---- Builtin endpoints ------------------------------------------------- */

Test(builtin, routes_lists_every_prefix_and_its_app)
{
    h_serve *s = serve_apps(NULL, ROUTING_APPS ", " ECHO_APP("root", "/"));
    h_response r;
    get_expect(s, "/-/routes", 200, &r);
    cr_expect(strstr(r.content_type, "application/json"), "content-type '%s'", r.content_type);
    json_t *obj = body_json(s, &r);
    static const char *const want[][2] = {
        {"/hello", "hello"}, {"/echo", "echo"}, {"/echo/deep", "deep"}, {"/", "root"}};
    cr_expect_eq(json_object_size(obj), 4, "expected 4 routes, got: %s", r.body);
    for (size_t i = 0; i < 4; i++)
        cr_expect_str_eq(jstr(obj, want[i][0]), want[i][1], "route %s: got %s", want[i][0], r.body);
    json_decref(obj);
    h_response_free(&r);
}

Test(builtin, healthz_answers_success)
{
    h_serve *s = serve_apps(NULL, ECHO_APP("echo", "/echo"));
    h_response r;
    get_expect(s, "/-/healthz", 200, &r);
    cr_expect_str_eq(r.body, "success", "healthz body '%s'", r.body);
    h_response_free(&r);
}

Test(builtin, an_unknown_path_gets_404_with_a_json_error)
{
    h_serve *s = serve_apps("/echo", ECHO_APP("echo", "/echo"));
    const char *paths[] = {"/nothing/here", "/echoes", "/-/nope"};
    for (size_t i = 0; i < 3; i++) {
        h_response r;
        get_expect(s, paths[i], 404, &r);
        cr_expect(strstr(r.content_type, "application/json"), "content-type '%s'", r.content_type);
        json_t *obj = body_json(s, &r);
        cr_expect(strstr(jstr(obj, "error"), paths[i]), "the error must name %s: %s", paths[i],
                  r.body);
        cr_expect_neq(r.request_id[0], '\0', "a 404 must carry an x-request-id too");
        json_decref(obj);
        h_response_free(&r);
    }
}

/* ---- Load balancing ---------------------------------------------------- */

Test(balancing, requests_reach_every_replica)
{
    h_serve *s = serve_apps("/echo", ECHO_APP_N("echo", "/echo", 3));
    pid_t procs[H_MAX_REPLICAS], seen[H_MAX_REPLICAS];
    cr_assert_eq(h_serve_wait_replicas(s, 3, READY_TIMEOUT_S, procs), 0,
                 "expected 3 replica processes\n%s", LOG(s));
    /* Replicas become ready one by one: wait until all three have answered. */
    cr_assert_eq(collect_pids(s, "/echo", 1, 3, READY_TIMEOUT_S, seen), 3,
                 "not every replica answered\n%s", LOG(s));
    pid_t pids[30];
    char ids[30][64];
    size_t n_seen = 0;
    for (int i = 0; i < 30; i++) {
        json_t *obj = echo_get(s, "/echo");
        pids[i] = (pid_t)json_integer_value(json_object_get(obj, "pid"));
        snprintf(ids[i], sizeof(ids[i]), "%s", jstr(obj, "replica_id"));
        json_decref(obj);
        cr_assert(h_pid_in(pids[i], procs, 3), "pid %d is not a replica of serve\n%s", pids[i],
                  LOG(s));
        if (!h_pid_in(pids[i], seen, n_seen)) seen[n_seen++] = pids[i];
    }
    cr_expect_eq(n_seen, 3, "30 requests reached %zu of 3 replicas", n_seen);
    for (int i = 0; i < 30; i++)
        for (int j = 0; j < 30; j++)
            cr_expect_eq(pids[i] == pids[j], strcmp(ids[i], ids[j]) == 0,
                         "replica ids must differ per replica: pid %d has '%s', pid %d has '%s'",
                         pids[i], ids[i], pids[j], ids[j]);
}

/* ---- Request and response round-trip ----------------------------------- */

Test(roundtrip, method_query_and_headers_reach_the_plugin)
{
    h_serve *s = serve_apps("/echo", ECHO_APP("echo", "/echo"));
    const char *headers[] = {"X-Test: abc", "X-Other: d e f", NULL};
    const char *methods[] = {"GET", "DELETE", "PUT", "PATCH"};
    for (size_t i = 0; i < 4; i++) {
        h_response r;
        request_ok(s, methods[i], "/echo/q?x=1&y=a%20b", headers, NULL, 0, &r);
        cr_assert_eq(r.status, 200, "%s: status %ld: %s\n%s", methods[i], r.status, r.body, LOG(s));
        cr_expect(strstr(r.content_type, "application/json"), "content-type '%s'", r.content_type);
        json_t *obj = body_json(s, &r);
        cr_expect_str_eq(jstr(obj, "method"), methods[i]);
        cr_expect_str_eq(jstr(obj, "query"), "x=1&y=a%20b", "the query must arrive raw");
        const char *xt = echo_header(obj, "X-Test"), *xo = echo_header(obj, "X-Other");
        cr_expect(xt && strcmp(xt, "abc") == 0, "X-Test did not arrive: %s", r.body);
        cr_expect(xo && strcmp(xo, "d e f") == 0, "X-Other did not arrive: %s", r.body);
        json_decref(obj);
        h_response_free(&r);
    }
    json_t *obj = echo_get(s, "/echo/q");
    cr_expect_str_eq(jstr(obj, "query"), "", "no query must give an empty query");
    json_decref(obj);
}

Test(roundtrip, a_given_request_id_is_passed_through)
{
    h_serve *s = serve_apps("/echo", ECHO_APP("echo", "/echo"));
    const char *headers[] = {"x-request-id: my-request-42", NULL};
    h_response r;
    request_ok(s, "GET", "/echo", headers, NULL, 0, &r);
    cr_assert_eq(r.status, 200, "status %ld\n%s", r.status, LOG(s));
    json_t *obj = body_json(s, &r);
    cr_expect_str_eq(jstr(obj, "request_id"), "my-request-42", "the plugin saw '%s'",
                     jstr(obj, "request_id"));
    cr_expect_str_eq(r.request_id, "my-request-42", "the response header says '%s'", r.request_id);
    json_decref(obj);
    h_response_free(&r);
}

Test(roundtrip, a_one_mebibyte_binary_body_arrives_intact)
{
    h_serve *s = serve_apps("/echo", ECHO_APP("echo", "/echo"));
    unsigned char *body = malloc(MIB);
    cr_assert_not_null(body);
    for (size_t i = 0; i < MIB; i++) body[i] = (unsigned char)(i ^ (i >> 8) ^ (i >> 16));
    char want[17];
    snprintf(want, sizeof(want), "%016llx", (unsigned long long)h_fnv1a64(body, MIB));
    h_response r;
    const char *headers[] = {"content-type: application/octet-stream", NULL};
    request_ok(s, "POST", "/echo/upload", headers, body, MIB, &r);
    free(body);
    cr_assert_eq(r.status, 200, "status %ld: %s\n%s", r.status, r.body, LOG(s));
    json_t *obj = body_json(s, &r);
    cr_expect_eq(json_integer_value(json_object_get(obj, "body_length")), MIB, "body_length %lld",
                 (long long)json_integer_value(json_object_get(obj, "body_length")));
    cr_expect_str_eq(jstr(obj, "body_fnv1a64"), want, "checksum %s, expected %s",
                     jstr(obj, "body_fnv1a64"), want);
    cr_expect_str_eq(jstr(obj, "method"), "POST");
    json_decref(obj);
    h_response_free(&r);
}

Test(roundtrip, an_empty_body_arrives_empty)
{
    h_serve *s = serve_apps("/echo", ECHO_APP("echo", "/echo"));
    char want[17];
    snprintf(want, sizeof(want), "%016llx", (unsigned long long)h_fnv1a64("", 0));
    h_response r;
    request_ok(s, "POST", "/echo", NULL, "", 0, &r);
    cr_assert_eq(r.status, 200, "status %ld: %s\n%s", r.status, r.body, LOG(s));
    json_t *obj = body_json(s, &r);
    cr_expect_eq(json_integer_value(json_object_get(obj, "body_length")), 0);
    cr_expect_str_eq(jstr(obj, "body_fnv1a64"), want);
    json_decref(obj);
    h_response_free(&r);
}

Test(roundtrip, the_plugin_sets_the_status)
{
    h_serve *s = serve_apps("/echo", ECHO_APP("echo", "/echo"));
    h_response r;
    get_expect(s, "/echo?status=418", 418, &r);
    h_response_free(&r);
}

/* ---- Plugins ----------------------------------------------------------- */

/* Two hello apps: one with an init_args greeting only, one whose
   user_config (applied by reconfigure before any request) overrides it. */
#define HELLO_HI "{\"name\": \"Hello\", \"init_args\": {\"greeting\": \"Hi\"}}"
#define HELLO_BONJOUR                                                                              \
    "{\"name\": \"Hello\", \"init_args\": {\"greeting\": \"Hi\"}, "                                \
    "\"user_config\": {\"greeting\": \"Bonjour\"}}"
#define HELLO_APPS                                                                                 \
    APP("hi", "/hi", "hello.so", HELLO_HI)                                                         \
    ", " APP("bonjour", "/bonjour", "hello.so", HELLO_BONJOUR)

Test(plugins, hello_answers_with_the_user_config_greeting)
{
    h_serve *s = serve_apps("/bonjour", HELLO_APPS);
    h_response r;
    get_expect(s, "/hi", 200, &r);
    cr_expect_str_eq(r.body, "Hi, world!\n", "init_args greeting: got '%s'", r.body);
    h_response_free(&r);
    get_expect(s, "/bonjour", 200, &r);
    cr_expect_str_eq(r.body, "Bonjour, world!\n", "user_config must win over init_args: '%s'",
                     r.body);
    cr_expect(strstr(r.content_type, "text/plain"), "content-type '%s'", r.content_type);
    h_response_free(&r);
    get_expect(s, "/bonjour?name=Ada", 200, &r);
    cr_expect_str_eq(r.body, "Bonjour, Ada!\n", "got '%s'", r.body);
    h_response_free(&r);
}

/* ---- Failures while serving -------------------------------------------- */

Test(failures, a_failing_handle_answers_500_with_its_message)
{
    h_serve *s =
        serve_apps("/echo", FAULTY_APP("fail", "/fail", "Fail") ", " ECHO_APP("echo", "/echo"));
    h_response r;
    get_expect(s, "/fail", 500, &r);
    cr_expect(strstr(r.content_type, "application/json"), "content-type '%s'", r.content_type);
    json_t *obj = body_json(s, &r);
    cr_expect(strstr(jstr(obj, "error"), "the model is on fire"), "error: %s", r.body);
    json_decref(obj);
    h_response_free(&r);
    json_decref(echo_get(s, "/echo")); /* the replica survives its errors */
    get_expect(s, "/fail", 500, &r);
    h_response_free(&r);
}

/* The pid of the echo replica answering `path`. */
static pid_t echo_pid(h_serve *s, const char *path)
{
    json_t *obj = echo_get(s, path);
    pid_t pid = (pid_t)json_integer_value(json_object_get(obj, "pid"));
    json_decref(obj);
    return pid;
}

/* GET /crash must answer 502 quickly with a JSON reason. */
static void expect_crash_502(h_serve *s)
{
    h_response r;
    get_expect(s, "/crash", 502, &r);
    cr_expect_lt(r.elapsed_s, 3.0, "the 502 took %.2f s", r.elapsed_s);
    json_t *obj = body_json(s, &r);
    cr_expect_neq(jstr(obj, "error")[0], '\0', "502 without a reason: %s", r.body);
    json_decref(obj);
    h_response_free(&r);
}

/* A replica of `dep` (tests/plugins/faulty.c) dies in every handle call:
   each request it gets answers 502, it is replaced, and the application
   beside it keeps answering from the same process throughout. */
static void expect_crash_contained(const char *dep)
{
    h_serve *s = serve_apps(
        "/echo",
        APP("crash", "/crash", "faulty.so", "{\"name\": \"%s\"}") ", " ECHO_APP("echo", "/echo"),
        dep);
    pid_t procs[H_MAX_REPLICAS];
    cr_assert_eq(h_serve_wait_replicas(s, 2, READY_TIMEOUT_S, procs), 0, "expected 2 replicas\n%s",
                 LOG(s));
    pid_t echo = echo_pid(s, "/echo");
    pid_t crash = procs[0] == echo ? procs[1] : procs[0];
    cr_assert(h_pid_in(echo, procs, 2), "echo pid %d is not a replica\n%s", echo, LOG(s));
    expect_crash_502(s);
    /* Echo keeps answering, from the same process, while Crash is replaced. */
    double deadline = h_now() + REPLACE_S;
    size_t n;
    do {
        cr_assert_eq(echo_pid(s, "/echo"), echo, "echo changed process\n%s", LOG(s));
        n = h_serve_replicas(s, procs, H_MAX_REPLICAS);
    } while ((n != 2 || h_pid_in(crash, procs, n)) && h_now() < deadline);
    cr_assert(n == 2 && !h_pid_in(crash, procs, n) && h_pid_in(echo, procs, n),
              "the crashed replica %d was not replaced within %.0f s\n%s", crash, REPLACE_S,
              LOG(s));
    cr_expect(h_pid_gone_within(crash, 2), "the crashed replica %d is still alive", crash);
    expect_crash_502(s); /* the new replica gets requests too (and crashes) */
    cr_expect_eq(echo_pid(s, "/echo"), echo);
}

Test(failures, an_abort_mid_request_answers_502_and_the_replica_is_replaced)
{
    expect_crash_contained("Crash");
}

Test(failures, a_segfault_mid_request_answers_502_and_the_replica_is_replaced)
{
    expect_crash_contained("Segv");
}

Test(failures, a_killed_replica_is_replaced)
{
    h_serve *s = serve_apps("/echo", ECHO_APP_N("echo", "/echo", 2));
    pid_t procs[H_MAX_REPLICAS];
    cr_assert_eq(h_serve_wait_replicas(s, 2, READY_TIMEOUT_S, procs), 0, "expected 2 replicas\n%s",
                 LOG(s));
    pid_t victim = procs[0], survivor = procs[1];
    cr_assert_eq(kill(victim, SIGKILL), 0);
    double deadline = h_now() + REPLACE_S;
    size_t n;
    do {
        h_sleep_ms(10);
        n = h_serve_replicas(s, procs, H_MAX_REPLICAS);
    } while ((n != 2 || h_pid_in(victim, procs, n)) && h_now() < deadline);
    cr_assert(n == 2 && !h_pid_in(victim, procs, n) && h_pid_in(survivor, procs, n),
              "killed replica %d was not replaced within %.0f s (%zu replicas)\n%s", victim,
              REPLACE_S, n, LOG(s));
    cr_expect(h_pid_gone_within(victim, 2), "the killed replica %d is still alive", victim);
    pid_t fresh = procs[0] == survivor ? procs[1] : procs[0];
    /* Every request succeeds, and the new replica soon answers its share. */
    pid_t seen[H_MAX_REPLICAS];
    size_t n_seen = 0;
    deadline = h_now() + READY_TIMEOUT_S;
    while (!h_pid_in(fresh, seen, n_seen) && h_now() < deadline) {
        pid_t pid = echo_pid(s, "/echo");
        cr_assert(pid == fresh || pid == survivor, "answered by pid %d, not a replica\n%s", pid,
                  LOG(s));
        if (!h_pid_in(pid, seen, n_seen)) seen[n_seen++] = pid;
    }
    cr_expect(h_pid_in(fresh, seen, n_seen), "the new replica %d never answered\n%s", fresh,
              LOG(s));
}

/* ---- Bad configs and failed starts ------------------------------------- */

/* Run serve on the config already written to `s` and expect it to exit with
   `code` within a few seconds, saying every string of `expect` (NULL-ended),
   and leaving no replica behind. */
static void expect_refused(h_serve *s, int code, const char *const *expect)
{
    cr_assert_eq(h_serve_start(s), 0, "cannot start serve");
    int got = h_serve_wait_exit(s, 5.0);
    char *log = h_serve_log(s);
    cr_assert_eq(got, code, "exit code %d, expected %d\n%s", got, code, log);
    for (size_t i = 0; expect[i]; i++)
        cr_expect(strstr(log, expect[i]), "the message must mention '%s':\n%s", expect[i], log);
    pid_t left[H_MAX_REPLICAS];
    size_t n = h_orphan_replicas(left, H_MAX_REPLICAS);
    cr_expect_eq(n, 0, "%zu replica processes outlived serve (first: %d)\n%s", n, left[0], log);
    if (code == 2)
        cr_expect_null(strstr(log, "replica "), "a refused config must start no replica:\n%s", log);
    free(log);
}

/* Write `apps` (one application per config) and expect refusal. */
static void expect_apps_refused(const char *apps, int code, const char *const *expect)
{
    h_serve *s = h_serve_new();
    cr_assert_not_null(s);
    cr_assert_eq(h_serve_write_apps(s, "%s", apps), 0);
    expect_refused(s, code, expect);
}

Test(config, a_negative_num_replicas_is_refused)
{
    const char *expect[] = {"applications[0].deployments[0].num_replicas", NULL};
    expect_apps_refused(ECHO_APP_N("echo", "/echo", -1), 2, expect);
}

Test(config, an_unknown_field_is_refused)
{
    const char *expect[] = {"applications[0].deployments[0].replicas", NULL};
    expect_apps_refused(APP("echo", "/echo", "echo.so", "{\"name\": \"Echo\", \"replicas\": 2}"), 2,
                        expect);
}

Test(config, a_missing_plugin_file_is_refused)
{
    const char *expect[] = {"applications[1].plugin", "no_such_plugin.so", NULL};
    expect_apps_refused(
        ECHO_APP("echo", "/echo") ", " APP("x", "/x", "no_such_plugin.so", "{\"name\": \"X\"}"), 2,
        expect);
}

Test(config, a_json_syntax_error_is_refused)
{
    h_serve *s = h_serve_new();
    cr_assert_not_null(s);
    cr_assert_eq(h_serve_write_config(s,
                                      "{\"http_options\": {\"port\": %d},\n"
                                      " \"applications\": [" ECHO_APP("echo", "/echo") ",]}\n",
                                      s->port),
                 0);
    const char *expect[] = {"config.json", NULL};
    expect_refused(s, 2, expect);
}

Test(config, a_duplicate_route_prefix_is_refused)
{
    const char *expect[] = {"applications[1].route_prefix", NULL};
    expect_apps_refused(ECHO_APP("a", "/same") ", " ECHO_APP("b", "/same"), 2, expect);
}

Test(startup, a_plugin_built_for_another_abi_fails_the_run)
{
    const char *expect[] = {"bad_abi.so", "ABI", NULL};
    expect_apps_refused(
        ECHO_APP("echo", "/echo") ", " APP("old", "/old", "bad_abi.so", "{\"name\": \"Old\"}"), 1,
        expect);
}

Test(startup, a_library_without_the_plugin_symbol_fails_the_run)
{
    const char *expect[] = {"no_symbol.so", "serve_plugin", NULL};
    expect_apps_refused(APP("x", "/x", "no_symbol.so", "{\"name\": \"X\"}"), 1, expect);
}

Test(startup, a_deployment_the_plugin_does_not_export_fails_the_run)
{
    const char *expect[] = {"echo.so", "Nope", NULL};
    expect_apps_refused(APP("echo", "/echo", "echo.so", "{\"name\": \"Nope\"}"), 1, expect);
}

Test(startup, a_deployment_without_handle_fails_the_run)
{
    const char *expect[] = {"NoHandle", "handle", NULL};
    expect_apps_refused(APP("nh", "/nh", "no_handle.so", "{\"name\": \"NoHandle\"}"), 1, expect);
}

#define FAIL_INIT_DEP "{\"name\": \"FailInit\", \"init_args\": {\"message\": \"weights missing\"}}"

Test(startup, a_failing_init_fails_the_run_with_its_reason)
{
    const char *expect[] = {"FailInit", "weights missing", NULL};
    expect_apps_refused(
        ECHO_APP_N("echo", "/echo", 2) ", " APP("f", "/f", "faulty.so", FAIL_INIT_DEP), 1, expect);
}

/* ---- Shutdown ---------------------------------------------------------- */

#define SLEEPY_APP_3                                                                               \
    APP("sleepy", "/sleepy", "faulty.so", "{\"name\": \"Sleepy\", \"num_replicas\": 3}")

Test(shutdown, sigterm_finishes_the_request_in_flight_and_exits_0)
{
    h_serve *s = serve_apps("/sleepy?ms=0", SLEEPY_APP_3);
    pid_t procs[H_MAX_REPLICAS], seen[H_MAX_REPLICAS];
    cr_assert_eq(h_serve_wait_replicas(s, 3, READY_TIMEOUT_S, procs), 0, "expected 3 replicas\n%s",
                 LOG(s));
    cr_assert_eq(collect_pids(s, "/sleepy?ms=0", 0, 3, READY_TIMEOUT_S, seen), 3,
                 "not every replica answered\n%s", LOG(s));
    h_async *slow = h_request_async(s, "GET", "/sleepy?ms=800", NULL, NULL, 0);
    cr_assert_not_null(slow);
    h_sleep_ms(200); /* let it reach a replica */
    int code = h_serve_stop(s, SIGTERM, STOP_TIMEOUT_S);
    h_response r;
    int rc = h_async_wait(slow, &r);
    cr_expect_eq(rc, 0, "the request in flight got no answer: %s\n%s", r.error, LOG(s));
    cr_expect_eq(r.status, 200, "the request in flight got %ld: %s\n%s", r.status, r.body, LOG(s));
    cr_expect(h_pid_in((pid_t)atoi(r.body), procs, 3), "answered by '%s', not a replica", r.body);
    h_response_free(&r);
    cr_expect_eq(code, 0, "serve exited with %d after SIGTERM\n%s", code, LOG(s));
    cr_expect(none_alive(procs, 3), "replicas outlived serve\n%s", LOG(s));
}

Test(shutdown, sigint_stops_every_replica_and_exits_0)
{
    h_serve *s = serve_apps("/echo", ECHO_APP_N("echo", "/echo", 3));
    pid_t procs[H_MAX_REPLICAS], seen[H_MAX_REPLICAS];
    cr_assert_eq(h_serve_wait_replicas(s, 3, READY_TIMEOUT_S, procs), 0, "expected 3 replicas\n%s",
                 LOG(s));
    cr_assert_eq(collect_pids(s, "/echo", 1, 3, READY_TIMEOUT_S, seen), 3,
                 "not every replica answered\n%s", LOG(s));
    double t0 = h_now();
    int code = h_serve_stop(s, SIGINT, STOP_TIMEOUT_S);
    cr_expect_eq(code, 0, "serve exited with %d after SIGINT (-1: not within %.0f s)\n%s", code,
                 STOP_TIMEOUT_S, LOG(s));
    cr_expect_lt(h_now() - t0, STOP_TIMEOUT_S, "stopping took %.1f s", h_now() - t0);
    cr_expect(none_alive(procs, 3), "replicas outlived serve\n%s", LOG(s));
    pid_t left[H_MAX_REPLICAS];
    cr_expect_eq(h_orphan_replicas(left, H_MAX_REPLICAS), 0, "orphaned replicas\n%s", LOG(s));
}

/* Ctrl-C while replicas are still loading their plugin: with no request in
   flight nothing justifies waiting for the graceful shutdown timeout. */
Test(shutdown, a_signal_during_startup_stops_promptly)
{
    h_serve *s = serve_apps(NULL, ECHO_APP_N("echo", "/echo", 4));
    pid_t procs[H_MAX_REPLICAS];
    size_t n = h_serve_replicas(s, procs, H_MAX_REPLICAS);
    double t0 = h_now();
    int code = h_serve_stop(s, SIGTERM, STOP_TIMEOUT_S);
    cr_expect_eq(code, 0, "serve exited with %d after SIGTERM (-1: not within %.0f s)\n%s", code,
                 STOP_TIMEOUT_S, LOG(s));
    cr_expect_lt(h_now() - t0, STOP_TIMEOUT_S, "stopping took %.1f s", h_now() - t0);
    cr_expect(none_alive(procs, n < H_MAX_REPLICAS ? n : H_MAX_REPLICAS),
              "replicas outlived serve\n%s", LOG(s));
    pid_t left[H_MAX_REPLICAS];
    cr_expect_eq(h_orphan_replicas(left, H_MAX_REPLICAS), 0, "orphaned replicas\n%s", LOG(s));
}

/* ---- The demo configs -------------------------------------------------- */

/* Start serve on examples/<rel> (the README's demos) moved to this
   instance's free ports, and wait until it is healthy. */
static h_serve *serve_example(const char *rel)
{
    char path[H_PATH_MAX];
    snprintf(path, sizeof(path), "%s/examples/%s", getenv("SERVE_SOURCE_DIR"), rel);
    json_error_t jerr;
    json_t *doc = json_load_file(path, 0, &jerr);
    cr_assert_not_null(doc, "%s: %s", path, jerr.text);
    h_serve *s = h_serve_new();
    cr_assert_not_null(s);
    json_object_set_new(json_object_get(doc, "http_options"), "port", json_integer(s->port));
    json_object_set_new(doc, "admin", json_pack("{s:i}", "port", s->admin_port));
    char *text = json_dumps(doc, 0);
    json_decref(doc);
    cr_assert_eq(h_serve_write_config(s, "%s", text), 0);
    free(text);
    cr_assert_eq(h_serve_start(s), 0);
    cr_assert_eq(h_serve_wait_ready(s, NULL, READY_TIMEOUT_S), 0, "%s did not start\n%s", rel,
                 LOG(s));
    return s;
}

Test(startup, the_demo_config_serves_every_example)
{
    h_serve *s = serve_example("serve.json");
    static const char *const paths[] = {"/hello?name=Ada",
                                        "/echo/x?y=1",
                                        "/stream?n=2&ms=1",
                                        "/autoscale?ms=1",
                                        "/lang?language=french",
                                        "/pi?n=2&samples=1000",
                                        "/mlp",
                                        "/v2/models/markov/ready"};
    for (size_t i = 0; i < sizeof(paths) / sizeof(*paths); i++) {
        h_response r;
        get_expect(s, paths[i], 200, &r);
        h_response_free(&r);
    }
    h_response r;
    get_expect(s, "/-/routes", 200, &r);
    json_t *routes = body_json(s, &r);
    cr_assert_eq(json_object_size(routes), 8, "every example has a route: %s", r.body);
    json_decref(routes);
    h_response_free(&r);
}

Test(startup, the_autoscale_demo_config_serves_its_deployment)
{
    h_serve *s = serve_example("autoscale/serve.json");
    h_response r;
    get_expect(s, "/autoscale?ms=1", 200, &r);
    h_response_free(&r);
}
