/*
 * test_faults.c - plugins that misbehave in handle (tests/plugins/faulty.c):
 * one that never returns, one that leaks, one that answers garbage. Each
 * must cost only the requests that reach it, its replica must be replaced,
 * and the application beside it must keep answering throughout. (Crashes
 * by abort and segfault are in test_serve.c, failures/.)
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "expect.h"
#include "harness.h"

#define REPLACE_S 5.0 /* a faulty replica must be gone and replaced within this */

TestSuite(faults, .fini = h_cleanup_all, .timeout = TEST_TIMEOUT_S);

/* An echo application beside the faulty one, to show it is not affected. */
#define ECHO ", " APP("echo", "/echo", "echo.so", "{\"name\": \"Echo\"}")

/* The pid that answered GET `path` (a faulty.c "pid\n" body, or echo's
   JSON {"pid": N}); the answer must be 200. */
static pid_t pid_of(h_serve *s, const char *path)
{
    h_response r;
    get_expect(s, path, 200, &r);
    json_t *obj = json_loads(r.body, JSON_DECODE_ANY, NULL);
    pid_t pid = (pid_t)(json_is_integer(obj) ? json_integer_value(obj)
                                             : json_integer_value(json_object_get(obj, "pid")));
    json_decref(obj);
    h_response_free(&r);
    cr_assert_gt(pid, 0, "no pid in %s", path);
    return pid;
}

/* Wait until `victim` is no longer a replica and `n` replicas run again,
   asking echo all along: it must answer every time, from `echo`. */
static void expect_replaced(h_serve *s, pid_t victim, size_t n, pid_t echo)
{
    pid_t procs[H_MAX_REPLICAS];
    double deadline = h_now() + REPLACE_S;
    size_t got;
    do {
        cr_assert_eq(pid_of(s, "/echo"), echo, "echo changed process\n%s", LOG(s));
        h_sleep_ms(20);
        got = h_serve_replicas(s, procs, H_MAX_REPLICAS);
    } while ((got != n || h_pid_in(victim, procs, got)) && h_now() < deadline);
    cr_assert(got == n && !h_pid_in(victim, procs, got),
              "replica %d was not replaced within %.0f s (%zu replicas)\n%s", (int)victim,
              REPLACE_S, got, LOG(s));
    cr_expect(h_pid_gone_within(victim, 2), "replica %d still runs", (int)victim);
}

/* A JSON error body with a non-empty reason. */
static void expect_reason(h_serve *s, const h_response *r)
{
    json_t *obj = body_json(s, r);
    cr_expect_neq(jstr(obj, "error")[0], '\0', "%ld without a reason: %s", r->status, r->body);
    json_decref(obj);
}

Test(faults, a_handle_that_never_returns_times_out_and_its_replica_is_killed_and_replaced)
{
    /* The spinning request gets its 408 at the timeout; the replica still
       runs it a graceful_shutdown_timeout_s later, so it is stuck: killed
       and replaced. Meanwhile its other threads still answer. */
    h_serve *s = serve_up("/echo", ", \"request_timeout_s\": 0.5",
                          APP("spin", "/spin", "faulty.so",
                              "{\"name\": \"Spin\", \"graceful_shutdown_timeout_s\": 1}") ECHO);
    pid_t echo = pid_of(s, "/echo"), spinner = pid_of(s, "/spin");
    h_response r;
    get_expect(s, "/spin?spin=1", 408, &r);
    cr_expect_lt(r.elapsed_s, 3.0, "the 408 took %.2f s",
                 r.elapsed_s); /* 0.5 s, on a busy machine */
    expect_reason(s, &r);
    h_response_free(&r);
    cr_expect_eq(pid_of(s, "/spin"), spinner, "the spinning replica answers on other threads");
    expect_replaced(s, spinner, 2, echo);
    wait_log(s, "still runs", 1);
    wait_log(s, "is stuck", 1);
    cr_expect_neq(pid_of(s, "/spin"), spinner);
}

/* The status document's memory_bytes of the first replica of `dep`. */
static long long replica_memory(h_serve *s, const char *app, const char *dep)
{
    static char body[65536];
    cr_assert_eq(admin_request(s, "GET", NULL, body), 200);
    json_t *doc = json_loads(body, 0, NULL);
    json_t *d = json_object_get(
        json_object_get(json_object_get(json_object_get(doc, "applications"), app), "deployments"),
        dep);
    json_t *rep = json_array_get(json_object_get(d, "replicas"), 0);
    long long bytes = json_integer_value(json_object_get(rep, "memory_bytes"));
    json_decref(doc);
    return bytes;
}

Test(faults, a_replica_over_max_replica_memory_mb_is_replaced_without_failing_a_request)
{
    h_serve *s = serve_up("/echo", "",
                          APP("leak", "/leak", "faulty.so",
                              "{\"name\": \"Leak\", \"max_replica_memory_mb\": 96}") ECHO);
    pid_t echo = pid_of(s, "/echo"), leaker = pid_of(s, "/leak?mb=1");
    for (int i = 0; i < 30 && replica_memory(s, "leak", "Leak") == 0; i++) h_sleep_ms(100);
    long long before = replica_memory(s, "leak", "Leak");
    cr_expect(before > 0 && before < 96LL << 20, "memory_bytes %lld", before);
    /* 120 MiB in four requests: each one answers 200; the replica is
       retired (it finishes what it runs) while a new one starts. */
    for (int i = 0; i < 4; i++) cr_expect_eq(pid_of(s, "/leak?mb=30"), leaker);
    wait_log(s, "is over max_replica_memory_mb 96; replacing it", 1);
    pid_t procs[H_MAX_REPLICAS];
    double deadline = h_now() + REPLACE_S;
    while (h_now() < deadline) { /* every request succeeds during the swap */
        pid_t now = pid_of(s, "/leak");
        size_t n = h_serve_replicas(s, procs, H_MAX_REPLICAS);
        if (now != leaker && n == 2 && !h_pid_in(leaker, procs, n)) break;
    }
    expect_replaced(s, leaker, 2, echo);
    admin_page p;
    cr_assert_eq(admin_fetch(s, "GET", "/metrics", NULL, NULL, &p), 200);
    cr_expect(strstr(p.body, "serve_deployment_replica_restarts_total{application=\"leak\","
                             "deployment=\"Leak\"} 1"),
              "%s", p.body);
    cr_expect(strstr(p.body, "serve_replica_memory_bytes{application=\"echo\""), "%s", p.body);
    admin_page_free(&p);
}

Test(faults, a_handle_returning_an_unknown_code_answers_500_with_a_reason)
{
    h_serve *s = serve_up("/garbage", "",
                          APP("garbage", "/garbage", "faulty.so", "{\"name\": \"Garbage\"}") ECHO);
    pid_t pid = pid_of(s, "/garbage");
    h_response r;
    get_expect(s, "/garbage?kind=rc", 500, &r);
    expect_reason(s, &r);
    h_response_free(&r);
    cr_expect_eq(pid_of(s, "/garbage"), pid, "a failed call costs no replica");
}

Test(faults, a_header_with_cr_lf_never_reaches_the_client)
{
    h_serve *s = serve_up("/garbage", "",
                          APP("garbage", "/garbage", "faulty.so", "{\"name\": \"Garbage\"}") ECHO);
    h_response r;
    get_expect(s, "/garbage?kind=header", 200, &r);
    char buf[128];
    cr_expect_eq(h_response_header(&r, "x-split", buf, sizeof(buf)), -1, "x-split: %s", buf);
    cr_expect_eq(h_response_header(&r, "set-cookie", buf, sizeof(buf)), -1, "set-cookie: %s", buf);
    h_response_free(&r);
}

Test(faults, bytes_that_are_no_frame_cost_the_replica_and_its_request_only)
{
    h_serve *s = serve_up("/garbage", "",
                          APP("garbage", "/garbage", "faulty.so", "{\"name\": \"Garbage\"}") ECHO);
    pid_t echo = pid_of(s, "/echo"), pid = pid_of(s, "/garbage");
    h_response r;
    get_expect(s, "/garbage?kind=frame", 502, &r);
    expect_reason(s, &r);
    h_response_free(&r);
    expect_replaced(s, pid, 2, echo);
    cr_expect_neq(pid_of(s, "/garbage"), pid);
}
