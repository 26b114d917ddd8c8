/*
 * test_handles.c - deployments calling deployments through handles, end to
 * end: the lang and pi examples, fan-out in parallel, errors, crashes and
 * timeouts reaching the caller, the callee's limits, a callee at zero
 * replicas, and bindings refused at start.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "expect.h"
#include "harness.h"

TestSuite(handles, .fini = h_cleanup_all, .timeout = TEST_TIMEOUT_S);

#define LANG_APP                                                                                   \
    "{\"name\": \"lang\", \"route_prefix\": \"/lang\", \"plugin\": \"lang.so\", "                  \
    "\"ingress\": \"Classifier\", \"deployments\": [{\"name\": \"Classifier\", \"init_args\": "    \
    "{\"spanish\": {\"deployment\": \"Spanish\"}, \"french\": {\"deployment\": \"French\"}}}, "    \
    "{\"name\": \"Spanish\"}, {\"name\": \"French\"}]}"

#define PI_APP                                                                                     \
    "{\"name\": \"pi\", \"route_prefix\": \"/pi\", \"plugin\": \"pi.so\", \"ingress\": \"Pi\", "   \
    "\"deployments\": [{\"name\": \"Pi\", \"init_args\": {\"worker\": {\"deployment\": "           \
    "\"Worker\"}}}, {\"name\": \"Worker\", \"num_replicas\": 2, \"max_ongoing_requests\": 4}]}"

/* A Caller (tests/plugins/caller.c) at /c bound to deployment `target` of
   app "f" (faulty.so at /f, with `target_extra` in its deployment). */
static h_serve *caller_up(const char *target, const char *target_extra)
{
    char apps[1024];
    snprintf(apps, sizeof(apps),
             "{\"name\": \"c\", \"route_prefix\": \"/c\", \"plugin\": \"caller.so\", "
             "\"deployments\": [{\"name\": \"Caller\", \"max_ongoing_requests\": 16, "
             "\"init_args\": {\"target\": {\"deployment\": \"%s\", \"app\": \"f\"}}}]}, "
             "{\"name\": \"f\", \"route_prefix\": \"/f\", \"plugin\": \"faulty.so\", "
             "\"deployments\": [{\"name\": \"%s\"%s}]}",
             target, target, target_extra);
    return serve_up(NULL, ", \"access_log\": false", apps);
}

/* GET path (must answer 200) and return the answers array of the Caller's
   JSON; *doc_out owns it. */
static json_t *call_answers(h_serve *s, const char *path, json_t **doc_out, double *elapsed)
{
    h_response r;
    get_expect(s, path, 200, &r);
    if (elapsed) *elapsed = r.elapsed_s;
    *doc_out = body_json(s, &r);
    h_response_free(&r);
    json_t *answers = json_object_get(*doc_out, "answers");
    cr_assert(json_is_array(answers), "no answers from %s", path);
    return answers;
}

static int answer_status(json_t *answers, size_t i)
{
    return (int)json_integer_value(json_object_get(json_array_get(answers, i), "status"));
}

/* GET path on the Caller: its first answer must have `status` and, when
   `error` is not NULL, an error message holding it, within max_s seconds. */
static void expect_answer(h_serve *s, const char *path, int status, const char *error, double max_s)
{
    json_t *doc;
    double took;
    json_t *answers = call_answers(s, path, &doc, &took);
    cr_expect_eq(answer_status(answers, 0), status, "%s", path);
    const char *got = jstr(json_array_get(answers, 0), "error");
    if (error) cr_expect(strstr(got, error) != NULL, "%s: error '%s'", path, got);
    cr_expect(took < max_s, "%s took %.1f s", path, took);
    json_decref(doc);
}

Test(handles, lang_routes_each_language_to_its_deployment)
{
    h_serve *s = serve_up("/-/healthz", "", LANG_APP);
    h_response r;
    get_expect(s, "/lang?language=french&name=Ada", 200, &r);
    cr_expect_str_eq(r.body, "Bonjour, Ada !\n");
    char by[64];
    cr_assert_geq(h_response_header(&r, "x-served-by", by, sizeof(by)), 0);
    cr_expect_str_eq(by, "lang/French");
    h_response_free(&r);

    const char *body = "{\"language\": \"spanish\", \"name\": \"Ada\"}";
    request_ok(s, "POST", "/lang", NULL, body, strlen(body), &r);
    cr_expect_eq(r.status, 200);
    cr_expect_str_eq(r.body, "\xc2\xa1Hola, Ada!\n");
    h_response_free(&r);

    get_expect(s, "/lang?language=klingon", 400, &r);
    cr_expect(strstr(r.body, "\"languages\":[\"spanish\",\"french\"]") != NULL, "%s", r.body);
    h_response_free(&r);
}

Test(handles, pi_fans_out_and_adds_up)
{
    h_serve *s = serve_up("/-/healthz", "", PI_APP);
    h_response r;
    get_expect(s, "/pi?n=8&samples=800000", 200, &r);
    json_t *doc = body_json(s, &r);
    double pi = json_real_value(json_object_get(doc, "pi"));
    cr_expect(fabs(pi - M_PI) < 0.01, "pi = %f", pi);
    cr_expect_eq(json_integer_value(json_object_get(doc, "samples")), 800000);
    cr_expect_eq(json_array_size(json_object_get(doc, "workers")), 8);
    json_decref(doc);
    h_response_free(&r);

    get_expect(s, "/pi?n=0", 400, &r);
    h_response_free(&r);
}

Test(handles, the_request_id_travels_with_the_call)
{
    char apps[512];
    snprintf(apps, sizeof(apps),
             "{\"name\": \"c\", \"route_prefix\": \"/c\", \"plugin\": \"caller.so\", "
             "\"deployments\": [{\"name\": \"Caller\", \"init_args\": {\"target\": "
             "{\"deployment\": \"Echo\", \"app\": \"e\"}}}]}, "
             "{\"name\": \"e\", \"route_prefix\": \"/e\", \"plugin\": \"echo.so\", "
             "\"deployments\": [{\"name\": \"Echo\"}]}");
    h_serve *s = serve_up(NULL, "", apps);
    static const char *const hdrs[] = {"x-request-id: trace-42", NULL};
    h_response r;
    get_expect_h(s, "/c?q=x%3D1&path=/deep/path", hdrs, 200, &r);
    json_t *doc = body_json(s, &r);
    json_t *a = json_array_get(json_object_get(doc, "answers"), 0);
    cr_assert_eq(json_integer_value(json_object_get(a, "status")), 200, "%s", r.body);
    json_t *seen = json_loads(jstr(a, "body"), 0, NULL);
    cr_expect_str_eq(jstr(seen, "request_id"), "trace-42");
    cr_expect_str_eq(jstr(seen, "route_path"), "/deep/path");
    cr_expect_str_eq(jstr(seen, "query"), "x=1");
    json_decref(seen);
    json_decref(doc);
    h_response_free(&r);
}

Test(handles, a_fan_out_runs_in_parallel)
{
    h_serve *s = caller_up("Sleepy", ", \"num_replicas\": 2, \"max_ongoing_requests\": 4");
    json_t *doc;
    double one, eight;
    json_t *answers = call_answers(s, "/c?n=1&q=ms%3D300", &doc, &one);
    cr_assert_eq(answer_status(answers, 0), 200);
    json_decref(doc);
    answers = call_answers(s, "/c?n=8&q=ms%3D300", &doc, &eight);
    for (size_t i = 0; i < 8; i++) cr_assert_eq(answer_status(answers, i), 200);
    json_decref(doc);
    cr_expect(eight < 2 * one, "8 calls of 300 ms took %.3f s, one took %.3f s", eight, one);
    cr_expect(eight >= 0.3, "8 calls of 300 ms took %.3f s", eight);
}

Test(handles, calls_respect_the_callees_max_ongoing_requests)
{
    h_serve *s = caller_up("Gauge", ", \"num_replicas\": 1, \"max_ongoing_requests\": 2");
    json_t *doc;
    json_t *answers = call_answers(s, "/c?n=8&q=ms%3D100", &doc, NULL);
    for (size_t i = 0; i < 8; i++) {
        cr_assert_eq(answer_status(answers, i), 200);
        json_t *g = json_loads(jstr(json_array_get(answers, i), "body"), 0, NULL);
        cr_expect_leq(json_integer_value(json_object_get(g, "max_inflight")), 2);
        json_decref(g);
    }
    json_decref(doc);
}

Test(handles, the_callees_error_status_and_message_reach_the_caller)
{
    h_serve *s = caller_up("Fail", "");
    expect_answer(s, "/c", 500, "the model is on fire", 5);
}

Test(handles, a_crashing_callee_is_an_error_not_a_hang)
{
    h_serve *s = caller_up("Crash", "");
    expect_answer(s, "/c", 502, "exited while handling the request", 5);
    expect_answer(s, "/c", 502, "exited", 5); /* the caller still serves */
}

Test(handles, a_call_timeout_is_a_408_and_a_wait_timeout_a_504)
{
    h_serve *s = caller_up("Sleepy", ", \"max_ongoing_requests\": 4");
    expect_answer(s, "/c?q=ms%3D3000&call_timeout=0.2", 408, "timed out", 2);
    expect_answer(s, "/c?q=ms%3D3000&wait=0.2&sync=1", 504, "within 0.2 s", 2);

    json_t *doc;
    json_t *answers = call_answers(s, "/c?q=ms%3D3000&wait=0.2", &doc, NULL);
    cr_expect_eq(answer_status(answers, 0), 0, "unanswered after wait_all timed out");
    cr_expect_eq(json_integer_value(json_object_get(doc, "waited")), -1);
    json_decref(doc);
}

Test(handles, a_callee_at_zero_replicas_starts_on_demand)
{
    h_serve *s = caller_up("Sleepy", ", \"autoscaling_config\": {\"min_replicas\": 0, "
                                     "\"initial_replicas\": 0, \"max_replicas\": 1}");
    cr_assert_eq(h_serve_wait_replicas(s, 1, 5, (pid_t[H_MAX_REPLICAS]){0}), 0,
                 "only the caller runs at first\n%s", LOG(s));
    json_t *doc;
    json_t *answers = call_answers(s, "/c?q=ms%3D1", &doc, NULL);
    cr_expect_eq(answer_status(answers, 0), 200, "%s", LOG(s));
    json_decref(doc);
}

Test(handles, a_call_from_init_is_refused_with_a_reason)
{
    h_serve *s = h_serve_new();
    h_serve_write_apps(s,
                       "{\"name\": \"c\", \"plugin\": \"caller.so\", \"ingress\": \"InitCaller\", "
                       "\"deployments\": [{\"name\": \"InitCaller\", \"init_args\": {\"target\": "
                       "{\"deployment\": \"Other\"}}}, {\"name\": \"Other\"}]}");
    cr_assert_eq(h_serve_start(s), 0);
    cr_assert_eq(h_serve_wait_exit(s, 20), 1, "%s", LOG(s));
    char *log = h_serve_log(s);
    cr_expect(strstr(log, "c/Other cannot be called now: calls are made from handle") != NULL, "%s",
              log);
    free(log);
}

Test(handles, a_binding_to_a_missing_deployment_is_refused_at_start)
{
    h_serve *s = h_serve_new();
    h_serve_write_apps(s, "{\"name\": \"c\", \"plugin\": \"caller.so\", \"deployments\": "
                          "[{\"name\": \"Caller\", \"init_args\": {\"target\": {\"deployment\": "
                          "\"Ghost\"}}}]}");
    cr_assert_eq(h_serve_start(s), 0);
    cr_assert_eq(h_serve_wait_exit(s, 10), 2, "%s", LOG(s));
    char *log = h_serve_log(s);
    cr_expect(strstr(log, "applications[0].deployments[0].init_args.target: binds to deployment "
                          "'Ghost', which application 'c' does not have") != NULL,
              "%s", log);
    free(log);
}
