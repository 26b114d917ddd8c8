/* test_v2.c - which Open Inference Protocol endpoint a /v2 path names. */
#include <criterion/criterion.h>

#include "router/router.h"

static v2_endpoint parse(const char *url, char *model)
{
    return v2_parse_path(url, model, 16);
}

Test(v2, server_and_health_paths_are_recognised)
{
    char m[16];
    cr_expect_eq(parse("/v2", m), V2_SERVER);
    cr_expect_eq(parse("/v2/", m), V2_SERVER);
    cr_expect_eq(parse("/v2/health/live", m), V2_LIVE);
    cr_expect_eq(parse("/v2/health/ready", m), V2_READY);
    cr_expect_eq(parse("/v2/health", m), V2_NOT_FOUND);
    cr_expect_eq(parse("/v2/health/live/", m), V2_NOT_FOUND);
    cr_expect_eq(parse("/v2/health/dead", m), V2_NOT_FOUND);
}

Test(v2, model_paths_give_the_model_name)
{
    char m[16];
    cr_expect_eq(parse("/v2/models/mlp", m), V2_MODEL);
    cr_expect_str_eq(m, "mlp");
    cr_expect_eq(parse("/v2/models/mlp/ready", m), V2_MODEL_READY);
    cr_expect_eq(parse("/v2/models/markov/infer", m), V2_INFER);
    cr_expect_str_eq(m, "markov");
}

Test(v2, version_one_is_the_only_version)
{
    char m[16];
    cr_expect_eq(parse("/v2/models/mlp/versions/1", m), V2_MODEL);
    cr_expect_eq(parse("/v2/models/mlp/versions/1/infer", m), V2_INFER);
    cr_expect_eq(parse("/v2/models/mlp/versions/2/infer", m), V2_NOT_FOUND);
}

Test(v2, malformed_paths_are_not_found)
{
    char m[16];
    cr_expect_eq(parse("/v2/models", m), V2_NOT_FOUND);
    cr_expect_eq(parse("/v2/models/", m), V2_NOT_FOUND);
    cr_expect_eq(parse("/v2/models//infer", m), V2_NOT_FOUND);
    cr_expect_eq(parse("/v2/models/mlp/infer/x", m), V2_NOT_FOUND);
    cr_expect_eq(parse("/v2/models/mlp/explain", m), V2_NOT_FOUND);
    cr_expect_eq(parse("/v2/models/a-name-longer-than-16/infer", m), V2_NOT_FOUND,
                 "a name that does not fit is not found, not cut short");
    cr_expect_eq(parse("/v2x", m), V2_NOT_FOUND);
}

Test(v2, model_metadata_carries_the_declared_tensors)
{
    json_t *specs = json_loads("{\"inputs\": [{\"name\": \"x\", \"datatype\": \"FP32\", "
                               "\"shape\": [-1, 784]}], \"outputs\": []}",
                               0, NULL);
    cr_assert(v2_is_model(specs));
    json_t *doc = v2_model_metadata("mlp", specs);
    cr_expect_str_eq(json_string_value(json_object_get(doc, "name")), "mlp");
    json_t *x = json_array_get(json_object_get(doc, "inputs"), 0);
    cr_expect_str_eq(json_string_value(json_object_get(x, "datatype")), "FP32");
    cr_expect_eq(json_integer_value(json_array_get(json_object_get(x, "shape"), 1)), 784);
    json_decref(doc);
    json_decref(specs);
    json_t *none = json_loads("{\"inputs\": [], \"outputs\": []}", 0, NULL);
    cr_expect_not(v2_is_model(none));
    json_decref(none);
}
