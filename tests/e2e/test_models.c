/*
 * test_models.c - dynamic batching and the Open Inference Protocol v2, end
 * to end: batches that never exceed max_batch_size, a lone request that
 * waits at most batch_wait_timeout_s, errors per item, and every v2
 * endpoint and error case against the test plugin's identity model
 * (tests/plugins/batcher.c), with JSON and binary tensors.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "expect.h"
#include "harness.h"

TestSuite(models, .fini = h_cleanup_all, .timeout = TEST_TIMEOUT_S);

/* The Batcher at /b with these batching settings and init_args. */
static h_serve *batcher_up(int max_batch, double wait_s, int delay_ms)
{
    char apps[512];
    snprintf(apps, sizeof(apps),
             APP("b", "/b", "batcher.so",
                 "{\"name\": \"Batcher\", \"init_args\": {\"delay_ms\": %d}, "
                 "\"batching\": {\"max_batch_size\": %d, \"batch_wait_timeout_s\": %g}}"),
             delay_ms, max_batch, wait_s);
    return serve_up(NULL, ", \"access_log\": false", apps);
}

/* Send `n` POST /b with these bodies at once; answers land in r[]. */
static void post_all(h_serve *s, const char *const *bodies, int n, h_response *r)
{
    h_async *a[64];
    cr_assert(n <= 64);
    for (int i = 0; i < n; i++)
        a[i] = h_request_async(s, "POST", "/b", NULL, bodies[i], strlen(bodies[i]));
    for (int i = 0; i < n; i++)
        cr_assert_eq(h_async_wait(a[i], &r[i]), 0, "request %d: %s\n%s", i, r[i].error, LOG(s));
}

static long json_int(const h_serve *s, const h_response *r, const char *key)
{
    json_t *doc = body_json(s, r);
    long v = (long)json_integer_value(json_object_get(doc, key));
    json_decref(doc);
    return v;
}

Test(models, batches_form_under_load_and_never_exceed_max_batch_size)
{
    h_serve *s = batcher_up(4, 0.05, 30);
    const char *bodies[24];
    h_response r[24];
    for (int i = 0; i < 24; i++) bodies[i] = "x";
    post_all(s, bodies, 24, r);
    long largest = 0;
    for (int i = 0; i < 24; i++) {
        cr_assert_eq(r[i].status, 200, "%s", r[i].body);
        long size = json_int(s, &r[i], "batch_size");
        cr_expect(size >= 1 && size <= 4, "a batch of %ld with max_batch_size 4", size);
        largest = size > largest ? size : largest;
        h_response_free(&r[i]);
    }
    cr_expect_eq(largest, 4, "24 requests at once should fill batches of 4");
}

Test(models, a_lone_request_waits_for_company_at_most_batch_wait_timeout_s)
{
    h_serve *s = batcher_up(8, 0.3, 0);
    h_response r;
    request_ok(s, "POST", "/b", NULL, "alone", 5, &r);
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_expect_eq(json_int(s, &r, "batch_size"), 1);
    cr_expect(r.elapsed_s >= 0.25, "answered after %.3f s: it did not wait for a batch",
              r.elapsed_s);
    cr_expect(r.elapsed_s < 0.3 + 0.4, "answered after %.3f s: waited past the timeout",
              r.elapsed_s);
    h_response_free(&r);
}

Test(models, a_zero_timeout_runs_whatever_is_there_at_once)
{
    h_serve *s = batcher_up(8, 0, 0);
    h_response r;
    request_ok(s, "POST", "/b", NULL, "warm", 4, &r); /* a first call may be slow (ASan) */
    h_response_free(&r);
    request_ok(s, "POST", "/b", NULL, "now", 3, &r);
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_expect(r.elapsed_s < 0.2, "answered after %.3f s", r.elapsed_s);
    h_response_free(&r);
}

Test(models, an_item_that_fails_fails_alone)
{
    h_serve *s = batcher_up(4, 0.5, 0);
    const char *bodies[] = {"a", "fail", "b", "c"};
    h_response r[4];
    post_all(s, bodies, 4, r);
    for (int i = 0; i < 4; i++) {
        if (i == 1) {
            cr_expect_eq(r[i].status, 422, "%s", r[i].body);
            cr_expect(strstr(r[i].body, "failed on its own") != NULL, "%s", r[i].body);
        } else {
            cr_expect_eq(r[i].status, 200, "%s", r[i].body);
            cr_expect_eq(json_int(s, &r[i], "batch_size"), 4, "%s", r[i].body);
        }
        h_response_free(&r[i]);
    }
}

Test(models, a_failed_batch_answers_500_to_each_of_its_items)
{
    h_serve *s = batcher_up(3, 0.5, 0);
    const char *bodies[] = {"a", "fail-all", "b"};
    h_response r[3];
    post_all(s, bodies, 3, r);
    for (int i = 0; i < 3; i++) {
        cr_expect_eq(r[i].status, 500, "%s", r[i].body);
        cr_expect(strstr(r[i].body, "failed the batch") != NULL, "%s", r[i].body);
        h_response_free(&r[i]);
    }
    h_response ok; /* the replica lives on */
    request_ok(s, "POST", "/b", NULL, "after", 5, &ok);
    cr_expect_eq(ok.status, 200, "%s", ok.body);
    h_response_free(&ok);
}

Test(models, batching_a_deployment_without_handle_batch_is_refused_at_start)
{
    h_serve *s = h_serve_new();
    h_serve_write_apps(s, APP("e", "/e", "echo.so",
                              "{\"name\": \"Echo\", \"batching\": {\"max_batch_size\": 4}}"));
    cr_assert_eq(h_serve_start(s), 0);
    cr_assert_eq(h_serve_wait_exit(s, 20), 1, "%s", LOG(s));
    char *log = h_serve_log(s);
    cr_expect(strstr(log, "Echo: batching is set but the deployment has no handle_batch "
                          "callback") != NULL,
              "%s", log);
    free(log);
}

/* ---- Open Inference Protocol v2 ------------------------------------------ */

#define TENSORS_APP(extra)                                                                         \
    APP("t", "/t", "batcher.so", "{\"name\": \"Tensors\"" extra "}")                               \
    ", " APP("e", "/e", "echo.so", "{\"name\": \"Echo\"}")

/* The identity model at "t" and an echo (not a model) at "e", both up. */
static h_serve *tensors_up(void)
{
    h_serve *s = serve_up("/e", ", \"access_log\": false", TENSORS_APP(""));
    cr_assert_eq(h_serve_wait_ready(s, "/v2/models/t/ready", READY_TIMEOUT_S), 0, "%s", LOG(s));
    return s;
}

/* POST a v2 infer request to model `model`; headers may be NULL. */
static void infer(h_serve *s, const char *model, const char *const *headers, const void *body,
                  size_t len, h_response *r)
{
    char path[128];
    snprintf(path, sizeof(path), "/v2/models/%s/infer", model);
    request_ok(s, "POST", path, headers, body, len, r);
}

/* Infer with a JSON text body; expect `status` and return the JSON. */
static json_t *infer_json_of(h_serve *s, const char *model, const char *body, long status)
{
    h_response r;
    infer(s, model, NULL, body, strlen(body), &r);
    cr_assert_eq(r.status, status, "status %ld, expected %ld: %s\nrequest: %s", r.status, status,
                 r.body, body);
    cr_expect_str_eq(r.content_type, "application/json");
    const char *ct = strcasestr(r.headers, "content-type:");
    cr_expect(ct && !strcasestr(ct + 1, "content-type:"), "one content-type: %s", r.headers);
    json_t *doc = body_json(s, &r);
    h_response_free(&r);
    return doc;
}

static json_t *infer_json(h_serve *s, const char *body, long status)
{
    return infer_json_of(s, "t", body, status);
}

/* The error message of a v2 error answer with `status` to `body`. */
static void expect_infer_error_of(h_serve *s, const char *model, const char *body, long status,
                                  const char *needle)
{
    json_t *doc = infer_json_of(s, model, body, status);
    const char *msg = jstr(doc, "error");
    cr_expect(strstr(msg, needle) != NULL, "error \"%s\" does not say \"%s\"", msg, needle);
    json_decref(doc);
}

static void expect_infer_error(h_serve *s, const char *body, long status, const char *needle)
{
    expect_infer_error_of(s, "t", body, status, needle);
}

/* The output called `name` of a v2 response. */
static json_t *output(json_t *doc, const char *name)
{
    size_t i;
    json_t *o;
    json_array_foreach(json_object_get(doc, "outputs"), i,
                       o) if (strcmp(jstr(o, "name"), name) == 0) return o;
    cr_assert_fail("no output %s", name);
    return NULL;
}

Test(models, server_health_and_metadata_endpoints_answer)
{
    h_serve *s = tensors_up();
    h_response r;
    get_expect(s, "/v2/health/live", 200, &r);
    cr_expect(strstr(r.body, "\"live\":true") != NULL, "%s", r.body);
    h_response_free(&r);
    get_expect(s, "/v2/health/ready", 200, &r);
    cr_expect(strstr(r.body, "\"ready\":true") != NULL, "%s", r.body);
    h_response_free(&r);
    get_expect(s, "/v2", 200, &r);
    json_t *doc = body_json(s, &r);
    cr_expect_str_eq(jstr(doc, "name"), "serve");
    cr_expect(strstr(r.body, "binary_tensor_data") != NULL, "%s", r.body);
    json_decref(doc);
    h_response_free(&r);
}

Test(models, model_metadata_lists_the_declared_tensors)
{
    h_serve *s = tensors_up();
    h_response r;
    get_expect(s, "/v2/models/t", 200, &r);
    json_t *doc = body_json(s, &r);
    cr_expect_str_eq(jstr(doc, "name"), "t");
    json_t *in = json_array_get(json_object_get(doc, "inputs"), 9);
    cr_expect_str_eq(jstr(in, "name"), "fp32");
    cr_expect_str_eq(jstr(in, "datatype"), "FP32");
    cr_expect_eq(json_integer_value(json_array_get(json_object_get(in, "shape"), 0)), -1);
    cr_expect_eq(json_array_size(json_object_get(doc, "outputs")), 12);
    json_decref(doc);
    h_response_free(&r);
    get_expect(s, "/v2/models/t/ready", 200, &r);
    h_response_free(&r);
    get_expect(s, "/v2/models/t/versions/1", 200, &r);
    h_response_free(&r);
}

Test(models, unknown_models_and_non_models_are_404_with_a_reason)
{
    h_serve *s = tensors_up();
    h_response r;
    get_expect(s, "/v2/models/nope", 404, &r);
    cr_expect(strstr(r.body, "unknown model \\\"nope\\\"") != NULL, "%s", r.body);
    h_response_free(&r);
    get_expect(s, "/v2/models/e/ready", 404, &r);
    cr_expect(strstr(r.body, "is not a model") != NULL, "%s", r.body);
    h_response_free(&r);
    infer(s, "nope", NULL, "{}", 2, &r);
    cr_expect_eq(r.status, 404, "%s", r.body);
    h_response_free(&r);
    get_expect(s, "/v2/models/t/explain", 404, &r);
    h_response_free(&r);
    get_expect(s, "/v2/models/t/infer", 405, &r);
    h_response_free(&r);
}

Test(models, a_model_still_starting_is_503_not_ready)
{
    h_serve *s = h_serve_new();
    h_serve_write_apps(s, APP("t", "/t", "batcher.so",
                              "{\"name\": \"Tensors\", \"init_args\": {\"init_delay_ms\": 3000}}"));
    cr_assert_eq(h_serve_start(s), 0);
    cr_assert_eq(h_serve_wait_ready(s, NULL, READY_TIMEOUT_S), 0, "%s", LOG(s));
    h_response r;
    get_expect(s, "/v2/models/t/ready", 503, &r);
    h_response_free(&r);
    get_expect(s, "/v2/health/ready", 503, &r);
    h_response_free(&r);
    const char *body = "{\"inputs\": [{\"name\": \"int8\", \"datatype\": \"INT8\", "
                       "\"shape\": [1, 1], \"data\": [1]}]}";
    infer(s, "t", NULL, body, strlen(body), &r);
    cr_expect_eq(r.status, 503, "%s", r.body);
    cr_expect(strstr(r.body, "not ready") != NULL, "%s", r.body);
    h_response_free(&r);
    cr_assert_eq(h_serve_wait_ready(s, "/v2/models/t/ready", READY_TIMEOUT_S), 0, "%s", LOG(s));
}

/* The data a model answered equal the data sent (`sent`, JSON text):
   exactly, or as floats for FP32 (answered with 9 digits). */
static void expect_same_data(const char *name, const char *sent, json_t *got)
{
    char *text = json_dumps(got, JSON_COMPACT);
    json_t *want = json_loads(sent, 0, NULL);
    cr_assert_not_null(want);
    int fp32 = strcmp(name, "fp32") == 0;
    int same = json_array_size(want) == json_array_size(got);
    for (size_t i = 0; same && i < json_array_size(want); i++)
        same = fp32 ? (float)json_number_value(json_array_get(want, i)) ==
                          (float)json_number_value(json_array_get(got, i))
                    : json_equal(json_array_get(want, i), json_array_get(got, i));
    cr_expect(same, "%s: sent %s, got %s", name, sent, text);
    json_decref(want);
    free(text);
}

/* One input of each datatype, its answer echoed back as the output of the
   same name with the same shape and values. */
Test(models, every_datatype_round_trips_through_json)
{
    h_serve *s = tensors_up();
    static const char *const cases[][3] = {
        {"bool", "BOOL", "[true, false, true, true]"},
        {"uint8", "UINT8", "[0, 1, 254, 255]"},
        {"uint16", "UINT16", "[0, 1, 65534, 65535]"},
        {"uint32", "UINT32", "[0, 1, 4294967294, 4294967295]"},
        {"uint64", "UINT64", "[0, 1, 9007199254740993, 9223372036854775807]"},
        {"int8", "INT8", "[-128, -1, 0, 127]"},
        {"int16", "INT16", "[-32768, -1, 0, 32767]"},
        {"int32", "INT32", "[-2147483648, -1, 0, 2147483647]"},
        {"int64", "INT64", "[-9223372036854775808, -1, 0, 9223372036854775807]"},
        {"fp32", "FP32", "[0.1, -2.5, 3.4028235e+38, 1.17549435e-38]"},
        {"fp64", "FP64", "[0.1, -2.5, 1.7976931348623157e+308, 5e-324]"},
        {"bytes", "BYTES", "[\"a\", \"\", \"caf\\u00e9\", \"q\\\"uote\"]"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char body[512];
        snprintf(body, sizeof(body),
                 "{\"id\": \"req-%zu\", \"inputs\": [{\"name\": \"%s\", \"datatype\": \"%s\", "
                 "\"shape\": [2, 2], \"data\": %s}]}",
                 i, cases[i][0], cases[i][1], cases[i][2]);
        json_t *doc = infer_json(s, body, 200);
        char id[16];
        snprintf(id, sizeof(id), "req-%zu", i);
        cr_expect_str_eq(jstr(doc, "id"), id);
        cr_expect_str_eq(jstr(doc, "model_name"), "t");
        json_t *o = output(doc, cases[i][0]);
        cr_expect_str_eq(jstr(o, "datatype"), cases[i][1]);
        json_t *shape = json_pack("[i, i]", 2, 2);
        cr_expect(json_equal(json_object_get(o, "shape"), shape), "%s", cases[i][0]);
        expect_same_data(cases[i][0], cases[i][2], json_object_get(o, "data"));
        json_decref(shape);
        json_decref(doc);
    }
}

Test(models, uint64_keeps_its_full_range)
{
    h_serve *s = tensors_up();
    const char *body = "{\"inputs\": [{\"name\": \"uint64\", \"datatype\": \"UINT64\", "
                       "\"shape\": [1, 1], \"data\": [18446744073709551615]}]}";
    h_response r;
    infer(s, "t", NULL, body, strlen(body), &r);
    cr_expect_eq(r.status, 200, "%s", r.body);
    cr_expect(strstr(r.body, "[18446744073709551615]") != NULL, "%s", r.body);
    h_response_free(&r);
}

Test(models, nested_and_flat_data_give_the_same_tensor)
{
    h_serve *s = tensors_up();
    json_t *flat = infer_json(s,
                              "{\"inputs\": [{\"name\": \"fp64\", \"datatype\": \"FP64\", "
                              "\"shape\": [2, 3], \"data\": [1, 2, 3, 4, 5, 6]}]}",
                              200);
    json_t *nested = infer_json(s,
                                "{\"inputs\": [{\"name\": \"fp64\", \"datatype\": \"FP64\", "
                                "\"shape\": [2, 3], \"data\": [[1, 2, 3], [4, 5, 6]]}]}",
                                200);
    cr_expect(json_equal(output(flat, "fp64"), output(nested, "fp64")));
    json_decref(flat);
    json_decref(nested);
}

Test(models, the_outputs_member_selects_what_comes_back)
{
    h_serve *s = tensors_up();
    json_t *doc = infer_json(s,
                             "{\"inputs\": [{\"name\": \"int8\", \"datatype\": \"INT8\", "
                             "\"shape\": [1, 1], \"data\": [7]}, {\"name\": \"int16\", "
                             "\"datatype\": \"INT16\", \"shape\": [1, 1], \"data\": [8]}], "
                             "\"outputs\": [{\"name\": \"int16\"}]}",
                             200);
    json_t *outs = json_object_get(doc, "outputs");
    cr_expect_eq(json_array_size(outs), 1);
    cr_expect_str_eq(jstr(json_array_get(outs, 0), "name"), "int16");
    json_decref(doc);
}

Test(models, bad_inputs_are_400_with_a_reason)
{
    h_serve *s = tensors_up();
    expect_infer_error(s,
                       "{\"inputs\": [{\"name\": \"fp32\", \"datatype\": \"FP32\", "
                       "\"shape\": [2, 2], \"data\": [1, 2, 3]}]}",
                       400, "4");
    expect_infer_error(s,
                       "{\"inputs\": [{\"name\": \"nope\", \"datatype\": \"FP32\", "
                       "\"shape\": [1, 1], \"data\": [1]}]}",
                       400, "nope");
    expect_infer_error(s,
                       "{\"inputs\": [{\"name\": \"fp32\", \"datatype\": \"FP64\", "
                       "\"shape\": [1, 1], \"data\": [1]}]}",
                       400, "FP64");
    expect_infer_error(s,
                       "{\"inputs\": [{\"name\": \"fp32\", \"datatype\": \"FLOAT\", "
                       "\"shape\": [1, 1], \"data\": [1]}]}",
                       400, "FLOAT");
    expect_infer_error(s,
                       "{\"inputs\": [{\"name\": \"uint8\", \"datatype\": \"UINT8\", "
                       "\"shape\": [1, 1], \"data\": [300]}]}",
                       400, "300");
    expect_infer_error(s,
                       "{\"inputs\": [{\"name\": \"fp32\", \"datatype\": \"FP32\", "
                       "\"shape\": [3], \"data\": [1, 2, 3]}]}",
                       400, "fp32");
    expect_infer_error(s, "{\"inputs\": [{\"name\": \"fp32\", ", 400, "malformed JSON");
    expect_infer_error(s, "{\"inputs\": []}", 400, "inputs");
    expect_infer_error(s,
                       "{\"inputs\": [{\"name\": \"int8\", \"datatype\": \"INT8\", "
                       "\"shape\": [1, 1], \"data\": [1]}], \"outputs\": [{\"name\": \"x\"}]}",
                       400, "x");
}

Test(models, a_handler_error_keeps_the_v2_error_shape)
{
    h_serve *s = tensors_up();
    expect_infer_error(s,
                       "{\"inputs\": [{\"name\": \"status\", \"datatype\": \"INT32\", "
                       "\"shape\": [1], \"data\": [429]}]}",
                       429, "asked for status 429");
}

/* A v2 request for input "fp32" [2, 3] whose data travel as binary; the
   response wants binary output when `binary_out`. */
static size_t binary_request(char *buf, const float *data, int binary_out, size_t *json_len)
{
    int n =
        snprintf(buf, 512,
                 "{\"inputs\": [{\"name\": \"fp32\", \"datatype\": \"FP32\", \"shape\": [2, 3], "
                 "\"parameters\": {\"binary_data_size\": 24}}], \"parameters\": "
                 "{\"binary_data_output\": %s}}",
                 binary_out ? "true" : "false");
    memcpy(buf + n, data, 24);
    *json_len = (size_t)n;
    return (size_t)n + 24;
}

Test(models, binary_tensors_in_and_out_match_json)
{
    h_serve *s = tensors_up();
    const float data[6] = {0.1f, -1.5f, 3.25f, 1e-20f, 7.0f, -0.0f};
    char body[600], hdr[64];
    size_t json_len, len = binary_request(body, data, 1, &json_len);
    snprintf(hdr, sizeof(hdr), "Inference-Header-Content-Length: %zu", json_len);
    const char *headers[] = {hdr, "Content-Type: application/octet-stream", NULL};
    h_response r;
    infer(s, "t", headers, body, len, &r);
    cr_assert_eq(r.status, 200, "%s", r.body);
    char hl[32];
    cr_assert_gt(h_response_header(&r, "inference-header-content-length", hl, sizeof(hl)), 0,
                 "no Inference-Header-Content-Length in the binary answer");
    size_t out_json = strtoul(hl, NULL, 10);
    cr_assert_eq(r.body_len, out_json + 24, "JSON %zu + 24 bytes expected, got %zu", out_json,
                 r.body_len);
    cr_expect_eq(memcmp(r.body + out_json, data, 24), 0, "binary output differs from the input");
    json_t *head = json_loadb(r.body, out_json, 0, NULL);
    json_t *o = output(head, "fp32");
    cr_expect_eq(
        json_integer_value(json_object_get(json_object_get(o, "parameters"), "binary_data_size")),
        24);
    json_decref(head);
    h_response_free(&r);

    /* the same tensor as JSON data gives the same values */
    len = binary_request(body, data, 0, &json_len);
    snprintf(hdr, sizeof(hdr), "Inference-Header-Content-Length: %zu", json_len);
    infer(s, "t", headers, body, len, &r);
    cr_assert_eq(r.status, 200, "%s", r.body);
    json_t *doc = body_json(s, &r);
    json_t *vals = json_object_get(output(doc, "fp32"), "data");
    for (size_t i = 0; i < 6; i++)
        cr_expect_eq((float)json_number_value(json_array_get(vals, i)), data[i], "element %zu", i);
    json_decref(doc);
    h_response_free(&r);
}

Test(models, binary_sizes_that_do_not_add_up_are_400)
{
    h_serve *s = tensors_up();
    const float data[6] = {0};
    char body[600], hdr[64];
    size_t json_len, len = binary_request(body, data, 0, &json_len);
    snprintf(hdr, sizeof(hdr), "Inference-Header-Content-Length: %zu", json_len);
    const char *headers[] = {hdr, NULL};
    h_response r;
    infer(s, "t", headers, body, len - 4, &r);
    cr_expect_eq(r.status, 400, "%s", r.body);
    h_response_free(&r);
    const char *bad[] = {"Inference-Header-Content-Length: lots", NULL};
    infer(s, "t", bad, body, len, &r);
    cr_expect_eq(r.status, 400, "%s", r.body);
    cr_expect(strstr(r.body, "Inference-Header-Content-Length") != NULL, "%s", r.body);
    h_response_free(&r);
}

Test(models, a_batching_model_answers_each_request_with_its_own_tensors)
{
    h_serve *s =
        serve_up("/v2/models/t/ready", ", \"access_log\": false",
                 TENSORS_APP(", \"batching\": {\"max_batch_size\": 8, \"batch_wait_timeout_s\": "
                             "0.05}"));
    h_async *a[16];
    char bodies[16][160];
    for (int i = 0; i < 16; i++) {
        snprintf(bodies[i], sizeof(bodies[i]),
                 "{\"id\": \"%d\", \"inputs\": [{\"name\": \"int32\", \"datatype\": \"INT32\", "
                 "\"shape\": [1, 2], \"data\": [%d, %d]}]}",
                 i, i, -i);
        a[i] = h_request_async(s, "POST", "/v2/models/t/infer", NULL, bodies[i], strlen(bodies[i]));
    }
    for (int i = 0; i < 16; i++) {
        h_response r;
        cr_assert_eq(h_async_wait(a[i], &r), 0);
        cr_assert_eq(r.status, 200, "%s", r.body);
        json_t *doc = body_json(s, &r);
        json_t *d = json_object_get(output(doc, "int32"), "data");
        cr_expect_eq(atoi(jstr(doc, "id")), i);
        cr_expect_eq(json_integer_value(json_array_get(d, 0)), i);
        cr_expect_eq(json_integer_value(json_array_get(d, 1)), -i);
        json_decref(doc);
        h_response_free(&r);
    }
}

/* ---- The example models ----------------------------------------------- */

#define MODELS_APPS                                                                                \
    APP("mlp", "/mlp", "mlp.so",                                                                   \
        "{\"name\": \"MLP\", \"batching\": {\"max_batch_size\": 8, \"batch_wait_timeout_s\": "     \
        "0.002}}")                                                                                 \
    ", " APP("markov", "/markov", "markov.so", "{\"name\": \"Markov\"}")

static h_serve *models_up(void)
{
    h_serve *s = serve_up("/v2/models/markov/ready", ", \"access_log\": false", MODELS_APPS);
    cr_assert_eq(h_serve_wait_ready(s, "/v2/models/mlp/ready", READY_TIMEOUT_S), 0, "%s", LOG(s));
    return s;
}

/* The MLP of examples/mlp computed here in double, from the weights file
   the build put next to mlp.so: probabilities of one sample. */
static void mlp_direct(const float *x, double probs[10])
{
    char path[512];
    snprintf(path, sizeof(path), "%s/examples/weights.bin", getenv("SERVE_BUILD_DIR"));
    size_t len;
    char *file = h_read_file(path, &len);
    cr_assert(file && len == 16 + 4 * (256 * 784 + 256 + 10 * 256 + 10), "%s", path);
    const float *w1 = (const float *)(file + 16), *b1 = w1 + 256 * 784, *w2 = b1 + 256,
                *b2 = w2 + 10 * 256;
    double h[256], max = -1e300, sum = 0;
    for (int j = 0; j < 256; j++) {
        double a = b1[j];
        for (int i = 0; i < 784; i++) a += (double)w1[j * 784 + i] * x[i];
        h[j] = a > 0 ? a : 0;
    }
    for (int k = 0; k < 10; k++) {
        probs[k] = b2[k];
        for (int j = 0; j < 256; j++) probs[k] += (double)w2[k * 256 + j] * h[j];
        max = probs[k] > max ? probs[k] : max;
    }
    for (int k = 0; k < 10; k++) sum += probs[k] = exp(probs[k] - max);
    for (int k = 0; k < 10; k++) probs[k] /= sum;
    free(file);
}

/* A deterministic sample and its JSON array text. */
static void sample(float x[784], char *json, size_t size)
{
    size_t n = 0;
    for (int i = 0; i < 784; i++) {
        x[i] = (float)((i * 37 % 101) / 100.0);
        n += (size_t)snprintf(json + n, size - n, "%s%.9g", i ? "," : "[", x[i]);
    }
    snprintf(json + n, size - n, "]");
}

static void expect_probs(json_t *got, const double want[10], const char *how)
{
    cr_assert_eq(json_array_size(got), 10, "%s", how);
    for (size_t k = 0; k < 10; k++) {
        double g = json_number_value(json_array_get(got, k));
        cr_expect(fabs(g - want[k]) <= 1e-5 * want[k] + 1e-7, "%s: class %zu: %.9g, direct %.9g",
                  how, k, g, want[k]);
    }
}

Test(models, the_mlp_answers_as_a_direct_computation_over_v2_binary_and_plain_json)
{
    h_serve *s = models_up();
    float x[784];
    double want[10];
    char data[16384], body[20000];
    sample(x, data, sizeof(data));
    mlp_direct(x, want);

    snprintf(body, sizeof(body),
             "{\"inputs\": [{\"name\": \"input\", \"datatype\": \"FP32\", \"shape\": [1, 784], "
             "\"data\": %s}]}",
             data);
    h_response r;
    infer(s, "mlp", NULL, body, strlen(body), &r);
    cr_assert_eq(r.status, 200, "%s", r.body);
    json_t *doc = body_json(s, &r);
    expect_probs(json_object_get(output(doc, "probabilities"), "data"), want, "v2 JSON");
    json_decref(doc);
    h_response_free(&r);

    int n = snprintf(body, sizeof(body),
                     "{\"inputs\": [{\"name\": \"input\", \"datatype\": \"FP32\", \"shape\": [1, "
                     "784], \"parameters\": {\"binary_data_size\": 3136}}]}");
    memcpy(body + n, x, sizeof(x));
    char hdr[64];
    snprintf(hdr, sizeof(hdr), "Inference-Header-Content-Length: %d", n);
    const char *headers[] = {hdr, NULL};
    infer(s, "mlp", headers, body, (size_t)n + sizeof(x), &r);
    cr_assert_eq(r.status, 200, "%s", r.body);
    doc = body_json(s, &r);
    expect_probs(json_object_get(output(doc, "probabilities"), "data"), want, "v2 binary");
    json_decref(doc);
    h_response_free(&r);

    snprintf(body, sizeof(body), "{\"instances\": [%s]}", data);
    request_ok(s, "POST", "/mlp", NULL, body, strlen(body), &r);
    cr_assert_eq(r.status, 200, "%s", r.body);
    doc = body_json(s, &r);
    json_t *pred = json_array_get(json_object_get(doc, "predictions"), 0);
    expect_probs(json_object_get(pred, "probabilities"), want, "plain JSON");
    json_decref(doc);
    h_response_free(&r);
}

Test(models, the_mlp_refuses_a_short_sample_alone)
{
    h_serve *s = models_up();
    const char *bad = "{\"inputs\": [{\"name\": \"input\", \"datatype\": \"FP32\", "
                      "\"shape\": [1, 783], \"data\": [0]}]}";
    expect_infer_error_of(s, "mlp", bad, 400, "input");
    h_response r;
    request_ok(s, "POST", "/mlp", NULL, "{\"instances\": [[1, 2]]}", 23, &r);
    cr_expect_eq(r.status, 400, "%s", r.body);
    cr_expect(strstr(r.body, "expected 784 numbers") != NULL, "%s", r.body);
    h_response_free(&r);
}

/* The limit of a 3-state chain by power iteration (pi <- pi P). */
static void power_iteration(const double p[3][3], double pi[3])
{
    pi[0] = pi[1] = pi[2] = 1.0 / 3;
    for (int it = 0; it < 10000; it++) {
        double next[3] = {0, 0, 0};
        for (int j = 0; j < 3; j++)
            for (int i = 0; i < 3; i++) next[j] += pi[i] * p[i][j];
        memcpy(pi, next, sizeof(next));
    }
}

Test(models, markov_answers_the_power_iteration_limit_over_v2_and_plain_json)
{
    h_serve *s = models_up();
    static const double p[3][3] = {{0.5, 0.25, 0.25}, {0.2, 0.7, 0.1}, {0.3, 0.3, 0.4}};
    double pi[3];
    power_iteration(p, pi);
    const char *m = "[[0.5, 0.25, 0.25], [0.2, 0.7, 0.1], [0.3, 0.3, 0.4]]";
    char body[512];
    snprintf(body, sizeof(body),
             "{\"inputs\": [{\"name\": \"matrix\", \"datatype\": \"FP64\", \"shape\": [3, 3], "
             "\"data\": %s}]}",
             m);
    h_response r;
    infer(s, "markov", NULL, body, strlen(body), &r);
    cr_assert_eq(r.status, 200, "%s", r.body);
    json_t *doc = body_json(s, &r);
    json_t *d = json_object_get(output(doc, "distribution"), "data");
    for (size_t i = 0; i < 3; i++)
        cr_expect(fabs(json_number_value(json_array_get(d, i)) - pi[i]) < 1e-9, "state %zu: %s", i,
                  r.body);
    cr_expect_gt(
        json_integer_value(json_array_get(json_object_get(output(doc, "products"), "data"), 0)), 0);
    json_decref(doc);
    h_response_free(&r);

    snprintf(body, sizeof(body), "{\"matrix\": %s}", m);
    request_ok(s, "POST", "/markov", NULL, body, strlen(body), &r);
    cr_assert_eq(r.status, 200, "%s", r.body);
    doc = body_json(s, &r);
    d = json_object_get(doc, "distribution");
    for (size_t i = 0; i < 3; i++)
        cr_expect(fabs(json_number_value(json_array_get(d, i)) - pi[i]) < 1e-9, "state %zu", i);
    json_decref(doc);
    h_response_free(&r);
}

Test(models, markov_refuses_a_chain_without_a_limit)
{
    h_serve *s = models_up();
    h_response r;
    const char *body = "{\"matrix\": [[0, 1], [1, 0]]}";
    request_ok(s, "POST", "/markov", NULL, body, strlen(body), &r);
    cr_expect_eq(r.status, 422, "%s", r.body);
    h_response_free(&r);
    body = "{\"matrix\": [[0.5, 0.6], [1, 0]]}";
    request_ok(s, "POST", "/markov", NULL, body, strlen(body), &r);
    cr_expect_eq(r.status, 400, "%s", r.body);
    h_response_free(&r);
}
