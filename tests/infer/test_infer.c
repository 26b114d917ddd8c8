/*
 * test_infer.c - the v2 codec: requests decode into the exact bytes of
 * typed tensors whatever the form (nested or flat, JSON or binary, members
 * in any order), every kind of bad request is refused with a message that
 * says what is wrong, and responses are encoded as the protocol says and
 * decode back to the same values.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <float.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "infer/infer.h"

/* ---- Fixtures ----------------------------------------------------------- */

/* A model with one input and two outputs. */
static const serve_tensor_spec model_inputs[] = {
    {.name = "x", .datatype = SERVE_FP32, .ndim = 2, .shape = {-1, 3}},
    {.name = "mask", .datatype = SERVE_BOOL, .ndim = 1, .shape = {-1}, .optional = 1},
};
static const serve_tensor_spec model_outputs[] = {
    {.name = "probs", .datatype = SERVE_FP32, .ndim = 2, .shape = {-1, 3}},
    {.name = "label", .datatype = SERVE_INT64, .ndim = 1, .shape = {-1}},
};
static const serve_deployment model = {
    .name = "m",
    .inputs = model_inputs,
    .n_inputs = 2,
    .outputs = model_outputs,
    .n_outputs = 2,
};

/* One optional input of each datatype, named after it ("FP32" ...), any
   length. */
static serve_tensor_spec typed_inputs[SERVE_BYTES];
static serve_deployment typed = {.name = "typed", .inputs = typed_inputs, .n_inputs = SERVE_BYTES};

static void make_typed(void)
{
    for (int dt = SERVE_BOOL; dt <= SERVE_BYTES; dt++)
        typed_inputs[dt - 1] = (serve_tensor_spec){.name = infer_datatype_name(dt),
                                                   .datatype = dt,
                                                   .ndim = 1,
                                                   .shape = {-1},
                                                   .optional = 1};
}

static char err[512];

static int decode(const serve_deployment *dep, const char *json, infer_request *r)
{
    err[0] = '\0';
    return infer_request_decode(json, strlen(json), -1, dep, r, err, sizeof(err));
}

/* Decode `data` as the one input of datatype dt of `typed`, `n` long. */
static int decode_typed(serve_datatype dt, size_t n, const char *data, infer_request *r)
{
    char json[4096];
    const char *name = infer_datatype_name(dt);
    snprintf(json, sizeof(json),
             "{\"inputs\":[{\"name\":\"%s\",\"datatype\":\"%s\",\"shape\":[%zu],\"data\":%s}]}",
             name, name, n, data);
    return decode(&typed, json, r);
}

static int is_zeroed(const infer_request *r)
{
    static const infer_request zero;
    return memcmp(r, &zero, sizeof(zero)) == 0;
}

/* The request must be refused as a bad request, with `needle` in the
   message, and nothing left allocated. */
static void expect_refused(const serve_deployment *dep, const char *json, const char *needle)
{
    infer_request r;
    cr_expect_eq(decode(dep, json, &r), -EINVAL, "%s", json);
    cr_expect(strstr(err, needle), "%s\n  message: %s\n  wanted: %s", json, err, needle);
    cr_expect(is_zeroed(&r));
}

static void expect_typed_refused(serve_datatype dt, size_t n, const char *data, const char *needle)
{
    infer_request r;
    cr_expect_eq(decode_typed(dt, n, data, &r), -EINVAL, "%s", data);
    cr_expect(strstr(err, needle), "%s\n  message: %s\n  wanted: %s", data, err, needle);
}

/* ---- Datatypes and declarations ----------------------------------------- */

Test(infer, datatype_names_round_trip_and_others_are_unsupported)
{
    const char *names[] = {"BOOL",  "UINT8", "UINT16", "UINT32", "UINT64", "INT8",
                           "INT16", "INT32", "INT64",  "FP32",   "FP64",   "BYTES"};
    for (int dt = SERVE_BOOL; dt <= SERVE_BYTES; dt++) {
        cr_expect_str_eq(infer_datatype_name(dt), names[dt - 1]);
        cr_expect_eq((int)infer_datatype_parse(names[dt - 1], strlen(names[dt - 1])), dt);
    }
    cr_expect_null(infer_datatype_name(SERVE_INVALID));
    cr_expect_null(infer_datatype_name((serve_datatype)99));
    cr_expect_eq(infer_datatype_parse("FP16", 4), SERVE_INVALID);
    cr_expect_eq(infer_datatype_parse("BF16", 4), SERVE_INVALID);
    cr_expect_eq(infer_datatype_parse("fp32", 4), SERVE_INVALID);
    cr_expect_eq(infer_datatype_parse("FP32x", 4), SERVE_FP32, "only n bytes count");
    cr_expect_eq(infer_datatype_parse("FP3", 3), SERVE_INVALID);
    cr_expect_eq(infer_datatype_parse("", 0), SERVE_INVALID);
}

Test(infer, datatype_sizes_are_bytes_per_element)
{
    const size_t sizes[] = {0, 1, 1, 2, 4, 8, 1, 2, 4, 8, 4, 8, 0};
    for (int dt = SERVE_INVALID; dt <= SERVE_BYTES; dt++)
        cr_expect_eq(serve_datatype_size(dt), sizes[dt], "%d", dt);
    cr_expect_eq(serve_datatype_size((serve_datatype)99), 0);
}

static void expect_specs_refused(const serve_tensor_spec *in, size_t n_in,
                                 const serve_tensor_spec *out, size_t n_out, const char *needle)
{
    serve_deployment dep = {
        .name = "d", .inputs = in, .n_inputs = n_in, .outputs = out, .n_outputs = n_out};
    char msg[256] = "";
    cr_expect_eq(infer_specs_check(&dep, msg, sizeof(msg)), -EINVAL, "%s", needle);
    cr_expect(strstr(msg, needle), "message: %s\n wanted: %s", msg, needle);
}

Test(infer, declarations_are_checked_and_errors_name_the_tensor)
{
    char msg[256];
    cr_expect_eq(infer_specs_check(&model, msg, sizeof(msg)), 0);
    serve_tensor_spec good = {.name = "a", .datatype = SERVE_FP32, .ndim = 1, .shape = {4}};
    serve_tensor_spec two[2] = {good, good};
    two[1].name = "probabilities";
    two[1].shape[0] = 0;
    expect_specs_refused(&good, 1, two, 2, "outputs[1] (probabilities): dimension 0 is 0");
    two[1] = good;
    expect_specs_refused(two, 2, NULL, 0, "inputs[1] (a): inputs[0] has the same name");
    two[1].name = "";
    expect_specs_refused(two, 2, NULL, 0, "inputs[1]: no name");
    two[1].name = NULL;
    expect_specs_refused(two, 2, NULL, 0, "inputs[1]: no name");
    serve_tensor_spec bad = good;
    bad.datatype = SERVE_INVALID;
    expect_specs_refused(&bad, 1, NULL, 0, "inputs[0] (a): invalid datatype 0");
    bad = good;
    bad.ndim = 0;
    expect_specs_refused(&bad, 1, NULL, 0, "0 dimensions");
    bad.ndim = SERVE_MAX_DIMS + 1;
    expect_specs_refused(&bad, 1, NULL, 0, "9 dimensions");
    bad = good;
    bad.shape[0] = -2;
    expect_specs_refused(&bad, 1, NULL, 0, "dimension 0 is -2");
    bad = good;
    bad.optional = 1;
    expect_specs_refused(&good, 1, &bad, 1, "outputs[0] (a): optional, but only an input can be");
    expect_specs_refused(&good, 1, (serve_tensor_spec[]){good, good}, 2,
                         "outputs[1] (a): outputs[0] has the same name");
}

Test(infer, the_declaration_becomes_v2_metadata_json)
{
    char *json = infer_specs_json(&model);
    cr_assert_not_null(json);
    cr_expect_str_eq(json,
                     "{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[-1,3]},"
                     "{\"name\":\"mask\",\"datatype\":\"BOOL\",\"shape\":[-1],\"optional\":true}],"
                     "\"outputs\":[{\"name\":\"probs\",\"datatype\":\"FP32\",\"shape\":[-1,3]},"
                     "{\"name\":\"label\",\"datatype\":\"INT64\",\"shape\":[-1]}]}");
    free(json);
}

Test(infer, spec_find_looks_up_by_name)
{
    cr_expect_eq(infer_spec_find(model_outputs, 2, "label"), &model_outputs[1]);
    cr_expect_null(infer_spec_find(model_outputs, 2, "x"));
    cr_expect_null(infer_spec_find(NULL, 0, "x"));
}

Test(infer, shape_check_explains_what_does_not_fit)
{
    char msg[256];
    const serve_tensor_spec *x = &model_inputs[0];
    cr_expect_eq(infer_shape_check(x, SERVE_FP32, (int64_t[]){7, 3}, 2, msg, sizeof(msg)), 0);
    cr_expect_eq(infer_shape_check(x, SERVE_FP64, (int64_t[]){7, 3}, 2, msg, sizeof(msg)), -EINVAL);
    cr_expect_str_eq(msg, "datatype FP64, the model declares FP32");
    cr_expect_eq(infer_shape_check(x, SERVE_FP32, (int64_t[]){21}, 1, msg, sizeof(msg)), -EINVAL);
    cr_expect_str_eq(msg, "shape [21] has 1 dimensions, the model declares [-1,3]");
    cr_expect_eq(infer_shape_check(x, SERVE_FP32, (int64_t[]){7, 4}, 2, msg, sizeof(msg)), -EINVAL);
    cr_expect_str_eq(msg, "shape [7,4]: dimension 1 is 4, the model declares [-1,3]");
    cr_expect_eq(infer_shape_check(x, SERVE_FP32, (int64_t[]){-1, 3}, 2, msg, sizeof(msg)), -EINVAL,
                 "an actual shape has no -1");
}

/* ---- Decoding: values --------------------------------------------------- */

Test(infer, every_datatype_decodes_to_its_native_bytes_including_the_limits, .init = make_typed)
{
    infer_request r;
    cr_assert_eq(decode_typed(SERVE_BOOL, 3, "[true,false,true]", &r), 0, "%s", err);
    cr_expect_eq(memcmp(r.inputs[0].data, "\1\0\1", 3), 0);
    infer_request_free(&r);

#define EXPECT_VALUES(dt, type, json, ...)                                                         \
    do {                                                                                           \
        const type want[] = {__VA_ARGS__};                                                         \
        size_t n = sizeof(want) / sizeof(want[0]);                                                 \
        cr_assert_eq(decode_typed(dt, n, json, &r), 0, "%s: %s", json, err);                       \
        cr_expect_eq(r.inputs[0].datatype, dt);                                                    \
        cr_expect_eq(r.inputs[0].size, sizeof(want), "%s", json);                                  \
        cr_expect_eq(memcmp(r.inputs[0].data, want, sizeof(want)), 0, "%s", json);                 \
        cr_expect_eq((uintptr_t)r.inputs[0].data % _Alignof(type), 0, "aligned");                  \
        infer_request_free(&r);                                                                    \
    } while (0)

    EXPECT_VALUES(SERVE_UINT8, uint8_t, "[0,1,255]", 0, 1, 255);
    EXPECT_VALUES(SERVE_UINT16, uint16_t, "[0,65535]", 0, 65535);
    EXPECT_VALUES(SERVE_UINT32, uint32_t, "[4294967295,7]", 4294967295u, 7);
    EXPECT_VALUES(SERVE_UINT64, uint64_t, "[18446744073709551615,0,-0]", UINT64_MAX, 0, 0);
    EXPECT_VALUES(SERVE_INT8, int8_t, "[-128,127,0]", -128, 127, 0);
    EXPECT_VALUES(SERVE_INT16, int16_t, "[-32768,32767]", -32768, 32767);
    EXPECT_VALUES(SERVE_INT32, int32_t, "[-2147483648,2147483647]", INT32_MIN, INT32_MAX);
    EXPECT_VALUES(SERVE_INT64, int64_t, "[-9223372036854775808,9223372036854775807]", INT64_MIN,
                  INT64_MAX);
    EXPECT_VALUES(SERVE_FP32, float, "[1,-2.5,0.1,3.4028235e38,1e-45]", 1.0f, -2.5f, 0.1f, FLT_MAX,
                  1e-45f);
    EXPECT_VALUES(SERVE_FP64, double, "[1,-2.5,0.1,1.7976931348623157e308,5e-324]", 1.0, -2.5, 0.1,
                  DBL_MAX, 5e-324);
#undef EXPECT_VALUES

    cr_assert_eq(decode_typed(SERVE_BYTES, 3, "[\"ab\",\"\",\"\\u00e9\\n\"]", &r), 0, "%s", err);
    cr_expect_eq(r.inputs[0].size, 4 + 2 + 4 + 0 + 4 + 3);
    cr_expect_eq(memcmp(r.inputs[0].data, "\2\0\0\0ab\0\0\0\0\3\0\0\0\xc3\xa9\n", 17), 0);
    infer_request_free(&r);
}

Test(infer, values_out_of_range_for_their_datatype_are_refused, .init = make_typed)
{
    expect_typed_refused(SERVE_UINT8, 1, "[300]",
                         "input \"UINT8\": 300 is out of range for UINT8 (element 0)");
    expect_typed_refused(SERVE_UINT8, 2, "[0,-1]", "-1 is out of range for UINT8 (element 1)");
    expect_typed_refused(SERVE_INT8, 1, "[128]", "128 is out of range for INT8");
    expect_typed_refused(SERVE_INT8, 1, "[-129]", "-129 is out of range for INT8");
    expect_typed_refused(SERVE_UINT16, 1, "[65536]", "out of range for UINT16");
    expect_typed_refused(SERVE_INT32, 1, "[2147483648]", "out of range for INT32");
    expect_typed_refused(SERVE_UINT64, 1, "[18446744073709551616]", "out of range for UINT64");
    expect_typed_refused(SERVE_INT64, 1, "[-9223372036854775809]", "out of range for INT64");
    expect_typed_refused(SERVE_FP32, 1, "[3.5e38]", "3.5e38 is out of range for FP32");
    expect_typed_refused(SERVE_FP64, 1, "[1e400]", "1e400 is out of range for FP64");
}

Test(infer, values_of_the_wrong_kind_are_refused, .init = make_typed)
{
    expect_typed_refused(SERVE_INT32, 1, "[1.5]",
                         "input \"INT32\": 1.5 is not written as an integer, as INT32 requires");
    expect_typed_refused(SERVE_INT32, 1, "[1e2]", "1e2 is not written as an integer");
    expect_typed_refused(SERVE_UINT8, 1, "[1.0]", "1.0 is not written as an integer");
    expect_typed_refused(SERVE_FP32, 2, "[1,\"2\"]",
                         "input \"FP32\": a string in FP32 data (element 1)");
    expect_typed_refused(SERVE_INT64, 1, "[true]", "true in INT64 data");
    expect_typed_refused(SERVE_FP64, 1, "[null]", "null in FP64 data");
    expect_typed_refused(SERVE_BOOL, 1, "[1]", "a number in BOOL data");
    expect_typed_refused(SERVE_BYTES, 1, "[1]", "a number in BYTES data");
    expect_typed_refused(SERVE_FP32, 1, "[{}]", "an object in FP32 data");
    expect_typed_refused(SERVE_FP32, 1, "1",
                         "input \"FP32\": \"data\" must be an array, not a number");
}

Test(infer, fp_datatypes_take_integers_and_numbers_that_need_strtod, .init = make_typed)
{
    infer_request r;
    cr_assert_eq(
        decode_typed(SERVE_FP64, 3,
                     "[1.2345678901234567e-300,123456789012345678901,12345678901234567890123e-3]",
                     &r),
        0, "%s", err);
    const double *v = r.inputs[0].data;
    cr_expect_eq(v[0], strtod("1.2345678901234567e-300", NULL));
    cr_expect_eq(v[1], strtod("123456789012345678901", NULL));
    cr_expect_eq(v[2], strtod("12345678901234567890123e-3", NULL));
    infer_request_free(&r);
    cr_assert_eq(
        decode_typed(SERVE_FP32, 2, "[123456789012345678901,1.00000005960464477539062501]", &r), 0,
        "%s", err);
    const float *f = r.inputs[0].data;
    cr_expect_eq(f[0], strtof("123456789012345678901", NULL));
    cr_expect_eq(f[1], strtof("1.00000005960464477539062501", NULL));
    infer_request_free(&r);
}

Test(infer, nested_and_flat_data_give_identical_bytes)
{
    infer_request flat, nested;
    cr_assert_eq(decode(&model,
                        "{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[2,3],"
                        "\"data\":[1,2,3,4,5,6]}]}",
                        &flat),
                 0, "%s", err);
    cr_assert_eq(decode(&model,
                        "{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[2,3],"
                        "\"data\":[[1,2,3],[4,5,6]]}]}",
                        &nested),
                 0, "%s", err);
    cr_assert_eq(flat.inputs[0].size, 24);
    cr_assert_eq(nested.inputs[0].size, 24);
    cr_expect_eq(memcmp(flat.inputs[0].data, nested.inputs[0].data, 24), 0);
    cr_expect_eq(((const float *)flat.inputs[0].data)[5], 6.0f);
    infer_request_free(&flat);
    infer_request_free(&nested);
}

Test(infer, members_may_come_in_any_order)
{
    const char *orders[] = {
        "{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[1,3],\"data\":[1,2,3]}],"
        "\"id\":\"a\"}",
        "{\"id\":\"a\",\"inputs\":[{\"data\":[1,2,3],\"shape\":[1,3],\"datatype\":\"FP32\","
        "\"name\":\"x\"}]}",
        "{\"inputs\":[{\"datatype\":\"FP32\",\"data\":[[1,2,3]],\"name\":\"x\",\"shape\":[1,3]}],"
        "\"id\":\"a\"}",
        "{\"inputs\":[{\"name\":\"x\",\"data\":[1,2,3],\"datatype\":\"FP32\",\"shape\":[1,3]}],"
        "\"id\":\"a\"}",
    };
    const float want[] = {1, 2, 3};
    for (size_t i = 0; i < sizeof(orders) / sizeof(orders[0]); i++) {
        infer_request r;
        cr_assert_eq(decode(&model, orders[i], &r), 0, "%s: %s", orders[i], err);
        cr_expect_str_eq(r.id, "a");
        cr_expect_str_eq(r.inputs[0].name, "x");
        cr_expect_eq(r.inputs[0].ndim, 2);
        cr_expect_eq(r.inputs[0].shape[1], 3);
        cr_assert_eq(r.inputs[0].size, sizeof(want));
        cr_expect_eq(memcmp(r.inputs[0].data, want, sizeof(want)), 0, "%s", orders[i]);
        infer_request_free(&r);
    }
}

Test(infer, unknown_members_are_ignored_everywhere_and_optional_inputs_may_be_left_out)
{
    infer_request r;
    cr_assert_eq(decode(&model,
                        "{\"extra\":{\"deep\":[1,{\"x\":null}]},\"parameters\":{\"sequence_id\":5,"
                        "\"binary_data_output\":false},\"inputs\":[{\"name\":\"x\",\"datatype\":"
                        "\"FP32\",\"shape\":[0,3],\"parameters\":{\"content_type\":\"x\"},"
                        "\"data\":[],\"more\":true}],\"outputs\":[{\"name\":\"label\","
                        "\"parameters\":{\"classification\":2},\"other\":1}]}",
                        &r),
                 0, "%s", err);
    cr_expect_null(r.id);
    cr_expect_eq(r.n_inputs, 1);
    cr_expect_eq(r.inputs[0].size, 0, "a 0 dimension means no elements");
    cr_expect_not_null(r.inputs[0].data);
    cr_expect_eq(r.n_outputs, 1);
    cr_expect_str_eq(r.outputs[0].name, "label");
    cr_expect_eq(r.outputs[0].binary, 0);
    infer_request_free(&r);
}

Test(infer, unicode_escapes_decode_in_ids_names_and_bytes)
{
    static const serve_tensor_spec in[] = {
        {.name = "caf\xc3\xa9", .datatype = SERVE_BYTES, .ndim = 1, .shape = {-1}}};
    serve_deployment dep = {.name = "u", .inputs = in, .n_inputs = 1};
    infer_request r;
    cr_assert_eq(decode(&dep,
                        "{\"id\":\"\\ud83d\\ude00-\\u0041\",\"inputs\":[{\"name\":\"caf\\u00e9\","
                        "\"datatype\":\"BYTES\",\"shape\":[2],\"data\":[\"\\u20ac\\\"\\\\\","
                        "\"\\u0000x\"]}]}",
                        &r),
                 0, "%s", err);
    cr_expect_str_eq(r.id, "\xf0\x9f\x98\x80-A");
    cr_expect_str_eq(r.inputs[0].name, "caf\xc3\xa9");
    cr_assert_eq(r.inputs[0].size, 4 + 5 + 4 + 2);
    cr_expect_eq(memcmp(r.inputs[0].data, "\5\0\0\0\xe2\x82\xac\"\\\2\0\0\0\0x", 15), 0);
    infer_request_free(&r);
}

/* ---- Decoding: what is refused ------------------------------------------ */

Test(infer, malformed_json_is_refused_with_the_byte_offset)
{
    expect_refused(&model, "{\"inputs\" [1]}", "malformed JSON at byte 10: expected ':'");
    expect_refused(&model, "{\"id\":\"a\" \"b\"}",
                   "malformed JSON at byte 10: expected ',' or '}'");
    expect_refused(&model, "{\"outputs\":[{\"name\":\"label\"} 2]}",
                   "malformed JSON at byte 29: expected ',' or ']'");
    expect_refused(&model, "", "malformed JSON at byte 0: unexpected end of input");
    expect_refused(&model, "{\"id\":\"a\",}", "malformed JSON at byte 10: expected a member name");
    expect_refused(&model,
                   "{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[1,3],"
                   "\"data\":[1,2,3,]}]}",
                   "expected a value");
    expect_refused(&model, "{\"id\":\"a\"} {}", "malformed JSON at byte 11: unexpected data");
    expect_refused(&model, "{\"id\":NaN}", "malformed JSON at byte 6: expected a value");
    expect_refused(&model, "[]", "the request must be an object, not an array");
}

Test(infer, a_request_without_inputs_is_refused)
{
    expect_refused(&model, "{}", "the request has no \"inputs\"");
    expect_refused(&model, "{\"inputs\":[]}", "\"inputs\" is empty");
    expect_refused(&model, "{\"inputs\":{}}", "\"inputs\" must be an array, not an object");
    expect_refused(&model, "{\"inputs\":[1]}", "inputs[0] must be an object, not a number");
}

Test(infer, inputs_that_the_model_does_not_declare_or_requires_are_refused)
{
    expect_refused(
        &model, "{\"inputs\":[{\"name\":\"y\",\"datatype\":\"FP32\",\"shape\":[1],\"data\":[1]}]}",
        "unknown input \"y\"; the model takes \"x\", \"mask\"");
    expect_refused(
        &model,
        "{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[1,3],\"data\":[1,"
        "2,3]},{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[1,3],\"data\":[1,2,3]}]}",
        "input \"x\" is given twice");
    expect_refused(&model,
                   "{\"inputs\":[{\"name\":\"mask\",\"datatype\":\"BOOL\",\"shape\":[1],\"data\":["
                   "true]}]}",
                   "missing input \"x\"");
    expect_refused(&model,
                   "{\"inputs\":[{\"datatype\":\"FP32\",\"shape\":[1,3],\"data\":[1,2,3]}]}",
                   "inputs[0] has no \"name\"");
    expect_refused(&model, "{\"inputs\":[{\"name\":\"x\\u0000\",\"datatype\":\"FP32\"}]}",
                   "inputs[0].name contains a NUL character");
}

Test(infer, datatypes_and_shapes_other_than_declared_are_refused)
{
    expect_refused(&model,
                   "{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP64\",\"shape\":[1,3],\"data\":[1,"
                   "2,3]}]}",
                   "input \"x\": datatype FP64, the model declares FP32");
    expect_refused(&model,
                   "{\"inputs\":[{\"data\":[1,2,3],\"name\":\"x\",\"datatype\":\"FP64\",\"shape\":["
                   "1,3]}]}",
                   "input \"x\": datatype FP64, the model declares FP32");
    expect_refused(&model,
                   "{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP16\",\"shape\":[1,3],\"data\":[1,"
                   "2,3]}]}",
                   "input \"x\": unsupported datatype \"FP16\"");
    expect_refused(&model, "{\"inputs\":[{\"name\":\"x\",\"shape\":[1,3],\"data\":[1,2,3]}]}",
                   "input \"x\" has no \"datatype\"");
    expect_refused(&model, "{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"data\":[1,2,3]}]}",
                   "input \"x\" has no \"shape\"");
    expect_refused(&model,
                   "{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[3],\"data\":[1,2,"
                   "3]}]}",
                   "input \"x\": shape [3] has 1 dimensions, the model declares [-1,3]");
    expect_refused(&model,
                   "{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[1,4],\"data\":[1,"
                   "2,3,4]}]}",
                   "input \"x\": shape [1,4]: dimension 1 is 4, the model declares [-1,3]");
    expect_refused(&model,
                   "{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[1,-3],\"data\":[]"
                   "}]}",
                   "inputs[0].shape[1] must be a non-negative integer, not -3");
    expect_refused(&model,
                   "{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[1,1,1,1,1,1,1,1,"
                   "1],\"data\":[1]}]}",
                   "inputs[0].shape has more than 8 dimensions");
    expect_refused(&model,
                   "{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":\"1,3\",\"data\":"
                   "[]}]}",
                   "inputs[0].shape must be an array, not a string");
}

Test(infer, data_that_do_not_fill_the_shape_are_refused)
{
    expect_refused(&model,
                   "{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[2,3],\"data\":[1,"
                   "2,3,4,5]}]}",
                   "input \"x\": shape [2,3] holds 6 elements, data has 5");
    expect_refused(&model,
                   "{\"inputs\":[{\"data\":[[1,2,3],[4,5,6],[7,8,9]],\"name\":\"x\",\"datatype\":"
                   "\"FP32\",\"shape\":[2,3]}]}",
                   "input \"x\": shape [2,3] holds 6 elements, data has 9");
    expect_refused(
        &model,
        "{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[4611686018427387904,"
        "3],\"data\":[]}]}",
        "input \"x\": shape [4611686018427387904,3] is too large");
    expect_refused(&model, "{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[1,3]}]}",
                   "input \"x\" has no \"data\"");
}

Test(infer, members_given_twice_and_values_of_the_wrong_type_are_refused)
{
    expect_refused(&model, "{\"id\":\"a\",\"id\":\"b\",\"inputs\":[]}",
                   "the request has \"id\" twice");
    expect_refused(&model, "{\"id\":5}", "\"id\" must be a string, not a number");
    expect_refused(&model, "{\"parameters\":{\"binary_data_output\":1}}",
                   "parameters.binary_data_output must be true or false, not a number");
    expect_refused(&model, "{\"inputs\":[{\"name\":\"x\",\"name\":\"x\",\"datatype\":\"FP32\"}]}",
                   "inputs[0] has \"name\" twice");
    expect_refused(&model,
                   "{\"outputs\":[{\"name\":\"label\",\"parameters\":{\"binary_data\":\"yes\"}}]}",
                   "outputs[0].parameters.binary_data must be true or false, not a string");
}

Test(infer, outputs_that_the_model_does_not_declare_are_refused)
{
    const char *in = "{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[1,3],"
                     "\"data\":[1,2,3]}],";
    char json[512];
    snprintf(json, sizeof(json), "%s\"outputs\":[{\"name\":\"z\"}]}", in);
    expect_refused(&model, json, "unknown output \"z\"; the model gives \"probs\", \"label\"");
    snprintf(json, sizeof(json), "%s\"outputs\":[{\"name\":\"label\"},{\"name\":\"label\"}]}", in);
    expect_refused(&model, json, "output \"label\" is requested twice");
    snprintf(json, sizeof(json), "%s\"outputs\":[{\"parameters\":{}}]}", in);
    expect_refused(&model, json, "outputs[0] has no \"name\"");
}

Test(infer, deep_nesting_is_refused)
{
    size_t depth = 100000;
    char *json = malloc(depth + 200);
    cr_assert_not_null(json);
    int n = sprintf(json, "{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[1,3],"
                          "\"data\":");
    memset(json + n, '[', depth);
    json[n + depth] = '\0';
    expect_refused(&model, json, "nesting deeper than 64 levels");
    /* the same, where the data are skipped for later */
    n = sprintf(json, "{\"inputs\":[{\"data\":");
    memset(json + n, '[', depth);
    json[n + depth] = '\0';
    expect_refused(&model, json, "nesting deeper than 64 levels");
    n = sprintf(json, "{\"unknown\":");
    memset(json + n, '{', depth);
    json[n + depth] = '\0';
    expect_refused(&model, json, "malformed JSON");
    free(json);
}

/* A valid request with a bit of everything. */
static const char full_request[] =
    "{\"id\":\"r\\u00e9q-1\",\"parameters\":{\"binary_data_output\":true,\"x\":[1,{}]},"
    "\"inputs\":[{\"name\":\"mask\",\"datatype\":\"BOOL\",\"shape\":[2],\"data\":[true,false]},"
    "{\"data\":[[0.5,-1e-3,3],[4.25,5E2,-6]],\"name\":\"x\",\"shape\":[2,3],"
    "\"datatype\":\"FP32\",\"parameters\":{\"k\":\"v\"}}],"
    "\"outputs\":[{\"name\":\"label\",\"parameters\":{\"binary_data\":false}},{\"name\":\"probs\"}]"
    "}";

Test(infer, every_truncation_of_a_valid_request_fails_cleanly)
{
    size_t len = strlen(full_request);
    infer_request r;
    cr_assert_eq(infer_request_decode(full_request, len, -1, &model, &r, err, sizeof(err)), 0, "%s",
                 err);
    cr_expect_str_eq(r.id, "r\xc3\xa9q-1");
    cr_expect_eq(r.n_inputs, 2);
    cr_expect_eq(r.binary_output, 1);
    cr_expect_eq(r.outputs[0].binary, 0);
    cr_expect_eq(r.outputs[1].binary, 1, "the request's binary_data_output applies");
    infer_request_free(&r);
    for (size_t k = 0; k < len; k++) {
        /* a copy of exactly k bytes, so that ASan sees any read past them */
        char *copy = malloc(k ? k : 1);
        cr_assert_not_null(copy);
        memcpy(copy, full_request, k);
        err[0] = '\0';
        cr_expect_eq(infer_request_decode(copy, k, -1, &model, &r, err, sizeof(err)), -EINVAL,
                     "prefix %zu", k);
        cr_expect(err[0], "prefix %zu has a message", k);
        cr_expect(is_zeroed(&r));
        free(copy);
    }
}

Test(infer, free_is_safe_on_a_zeroed_request_and_twice)
{
    infer_request r;
    memset(&r, 0, sizeof(r));
    infer_request_free(&r);
    cr_assert_eq(decode(&model, full_request, &r), 0, "%s", err);
    infer_request_free(&r);
    cr_expect(is_zeroed(&r));
    infer_request_free(&r);
}

/* ---- Decoding: the binary extension ------------------------------------- */

/* body = json + bin; the header length is the JSON's. */
static int decode_binary(const serve_deployment *dep, const char *json, const void *bin,
                         size_t bin_len, infer_request *r)
{
    size_t n = strlen(json);
    char *body = malloc(n + bin_len + 1);
    cr_assert_not_null(body);
    memcpy(body, json, n);
    memcpy(body + n, bin, bin_len);
    err[0] = '\0';
    int rc = infer_request_decode(body, n + bin_len, (long)n, dep, r, err, sizeof(err));
    free(body); /* the request must not point into the body */
    return rc;
}

Test(infer, binary_input_data_give_the_same_tensor_as_json)
{
    const float v[6] = {0.5f, -1e-3f, 3, 4.25f, 500, -6};
    const char *mask = "\1\0";
    infer_request r, j;
    cr_assert_eq(
        decode(&model,
               "{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[2,3],\"data\":"
               "[0.5,-1e-3,3,4.25,5E2,-6]}]}",
               &j),
        0, "%s", err);
    unsigned char bin[26];
    memcpy(bin, mask, 2);
    memcpy(bin + 2, v, sizeof(v));
    cr_assert_eq(
        decode_binary(&model,
                      "{\"inputs\":[{\"name\":\"mask\",\"datatype\":\"BOOL\",\"shape\":[2],"
                      "\"parameters\":{\"binary_data_size\":2}},{\"name\":\"x\","
                      "\"datatype\":\"FP32\",\"shape\":[2,3],\"parameters\":{"
                      "\"binary_data_size\":24}}]}",
                      bin, sizeof(bin), &r),
        0, "%s", err);
    cr_assert_eq(r.n_inputs, 2);
    cr_expect_eq(memcmp(r.inputs[0].data, mask, 2), 0);
    cr_assert_eq(r.inputs[1].size, j.inputs[0].size);
    cr_expect_eq(memcmp(r.inputs[1].data, j.inputs[0].data, sizeof(v)), 0);
    cr_expect_eq(memcmp(r.inputs[1].shape, j.inputs[0].shape, sizeof(r.inputs[1].shape)), 0);
    cr_expect_eq((uintptr_t)r.inputs[1].data % _Alignof(float), 0);
    infer_request_free(&r);
    infer_request_free(&j);
}

Test(infer, binary_bytes_data_give_the_same_tensor_as_json, .init = make_typed)
{
    const unsigned char bin[] = "\2\0\0\0ab\0\0\0\0\1\0\0\0z";
    infer_request r, j;
    cr_assert_eq(decode_typed(SERVE_BYTES, 3, "[\"ab\",\"\",\"z\"]", &j), 0, "%s", err);
    cr_assert_eq(decode_binary(&typed,
                               "{\"inputs\":[{\"name\":\"BYTES\",\"datatype\":\"BYTES\",\"shape\":["
                               "3],\"parameters\":{\"binary_data_size\":15}}]}",
                               bin, 15, &r),
                 0, "%s", err);
    cr_assert_eq(r.inputs[0].size, 15);
    cr_assert_eq(j.inputs[0].size, 15);
    cr_expect_eq(memcmp(r.inputs[0].data, j.inputs[0].data, 15), 0);
    infer_request_free(&r);
    infer_request_free(&j);

    cr_expect_eq(decode_binary(&typed,
                               "{\"inputs\":[{\"name\":\"BYTES\",\"datatype\":\"BYTES\",\"shape\":["
                               "2],\"parameters\":{\"binary_data_size\":15}}]}",
                               bin, 15, &r),
                 -EINVAL);
    cr_expect(strstr(err, "input \"BYTES\": shape [2] holds 2 elements, binary data has 3"), "%s",
              err);
    cr_expect_eq(decode_binary(&typed,
                               "{\"inputs\":[{\"name\":\"BYTES\",\"datatype\":\"BYTES\",\"shape\":["
                               "3],\"parameters\":{\"binary_data_size\":14}}]}",
                               bin, 14, &r),
                 -EINVAL);
    cr_expect(strstr(err, "malformed BYTES data"), "%s", err);
}

Test(infer, binary_sizes_must_match_the_shape_and_the_body)
{
    const float v[3] = {1, 2, 3};
    infer_request r;
    const char *json12 = "{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[1,3],"
                         "\"parameters\":{\"binary_data_size\":12}}]}";
    cr_expect_eq(decode_binary(&model,
                               "{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[1,3],"
                               "\"parameters\":{\"binary_data_size\":8}}]}",
                               v, 8, &r),
                 -EINVAL);
    cr_expect(strstr(err, "input \"x\": binary_data_size is 8, shape [1,3] of FP32 takes 12 bytes"),
              "%s", err);
    cr_expect_eq(decode_binary(&model, json12, v, 8, &r), -EINVAL);
    cr_expect(strstr(err, "binary_data_size 12 runs past the end of the body (8 bytes left)"), "%s",
              err);
    cr_expect_eq(decode_binary(&model, json12, (const float[]){1, 2, 3, 4}, 16, &r), -EINVAL);
    cr_expect(strstr(err,
                     "the body has 16 bytes of binary data, the inputs' binary_data_size add up "
                     "to 12"),
              "%s", err);
    cr_expect_eq(decode(&model, json12, &r), -EINVAL);
    cr_expect(strstr(err, "the request has no binary data (no Inference-Header-Content-Length)"),
              "%s", err);
    cr_expect_eq(decode_binary(&model,
                               "{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[1,3],"
                               "\"data\":[1,2,3],\"parameters\":{\"binary_data_size\":12}}]}",
                               v, 12, &r),
                 -EINVAL);
    cr_expect(strstr(err, "input \"x\" has both \"data\" and parameters.binary_data_size"), "%s",
              err);
    cr_expect_eq(infer_request_decode(json12, strlen(json12), 1000, &model, &r, err, sizeof(err)),
                 -EINVAL);
    cr_expect(strstr(err, "Inference-Header-Content-Length is 1000, but the body has only"), "%s",
              err);
    cr_expect(is_zeroed(&r));
    cr_expect_eq(decode_binary(&model, json12, v, 12, &r), 0, "%s", err);
    infer_request_free(&r);
}

Test(infer, every_truncation_of_a_binary_request_fails_cleanly)
{
    const char *json = "{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[1,3],"
                       "\"parameters\":{\"binary_data_size\":12}}]}";
    size_t n = strlen(json);
    char body[256];
    memcpy(body, json, n);
    memcpy(body + n, (const float[]){1, 2, 3}, 12);
    infer_request r;
    for (size_t k = 0; k < n + 12; k++) {
        cr_expect_eq(
            infer_request_decode(body, k, k < n ? (long)k : (long)n, &model, &r, err, sizeof(err)),
            -EINVAL, "%zu bytes", k);
        cr_expect(is_zeroed(&r));
    }
}

/* ---- Encoding ----------------------------------------------------------- */

static const float probs[6] = {0.1f, 0.2f, 0.7f, 1, 0, -0.0f};
static const int64_t labels[2] = {2, -9223372036854775807 - 1};

static const serve_tensor produced[] = {
    {.name = "probs",
     .datatype = SERVE_FP32,
     .ndim = 2,
     .shape = {2, 3},
     .data = probs,
     .size = sizeof(probs)},
    {.name = "label",
     .datatype = SERVE_INT64,
     .ndim = 1,
     .shape = {2},
     .data = labels,
     .size = sizeof(labels)},
};

static const char probs_json[] =
    "{\"name\":\"probs\",\"datatype\":\"FP32\",\"shape\":[2,3],\"data\":[0.100000001,"
    "0.200000003,0.699999988,1,0,-0]}";
static const char label_json[] =
    "{\"name\":\"label\",\"datatype\":\"INT64\",\"shape\":[2],\"data\":[2,-9223372036854775808]}";

/* Encode into a fresh buffer, NUL-terminated after the whole response. */
static int encode(const infer_request *req, const serve_tensor *out, size_t n, ipc_buf *b,
                  size_t *json_len)
{
    memset(b, 0, sizeof(*b));
    err[0] = '\0';
    int rc = infer_response_encode(b, "m", req, out, n, json_len, err, sizeof(err));
    ipc_buf_put(b, "", 1);
    return rc;
}

Test(infer, without_a_request_every_output_is_sent_as_json)
{
    ipc_buf b;
    size_t json_len;
    cr_assert_eq(encode(NULL, produced, 2, &b, &json_len), 0, "%s", err);
    char want[1024];
    snprintf(want, sizeof(want), "{\"model_name\":\"m\",\"outputs\":[%s,%s]}", probs_json,
             label_json);
    cr_expect_str_eq(b.data, want);
    cr_expect_eq(json_len, strlen(want));
    ipc_buf_free(&b);
}

Test(infer, the_request_id_is_echoed_and_its_output_list_selects_and_orders)
{
    infer_request r;
    cr_assert_eq(decode(&model,
                        "{\"id\":\"q\\\"1\",\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\","
                        "\"shape\":[1,3],\"data\":[1,2,3]}],\"outputs\":[{\"name\":\"label\"}]}",
                        &r),
                 0, "%s", err);
    ipc_buf b;
    size_t json_len;
    cr_assert_eq(encode(&r, produced, 2, &b, &json_len), 0, "%s", err);
    char want[1024];
    snprintf(want, sizeof(want), "{\"model_name\":\"m\",\"id\":\"q\\\"1\",\"outputs\":[%s]}",
             label_json);
    cr_expect_str_eq(b.data, want);
    ipc_buf_free(&b);
    infer_request_free(&r);
}

Test(infer, an_output_asked_for_but_not_produced_is_enoent_and_writes_nothing)
{
    infer_request r;
    cr_assert_eq(decode(&model,
                        "{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[1,3],"
                        "\"data\":[1,2,3]}],\"outputs\":[{\"name\":\"probs\"},{\"name\":\"label\"}"
                        "]}",
                        &r),
                 0, "%s", err);
    ipc_buf b = {0};
    size_t json_len;
    cr_expect_eq(infer_response_encode(&b, "m", &r, produced, 1, &json_len, err, sizeof(err)),
                 -ENOENT);
    cr_expect_str_eq(err, "output \"label\" was requested, but the model did not produce it");
    cr_expect_eq(b.len, 0);
    ipc_buf_free(&b);
    infer_request_free(&r);
}

Test(infer, binary_outputs_follow_the_json_per_output_or_by_default)
{
    infer_request r;
    cr_assert_eq(
        decode(&model,
               "{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[1,3],\"data\":"
               "[1,2,3]}],\"outputs\":[{\"name\":\"label\",\"parameters\":{\"binary_data\":"
               "true}},{\"name\":\"probs\"}]}",
               &r),
        0, "%s", err);
    ipc_buf b;
    size_t json_len;
    cr_assert_eq(encode(&r, produced, 2, &b, &json_len), 0, "%s", err);
    char want[1024];
    snprintf(want, sizeof(want),
             "{\"model_name\":\"m\",\"outputs\":[{\"name\":\"label\",\"datatype\":\"INT64\","
             "\"shape\":[2],\"parameters\":{\"binary_data_size\":16}},%s]}",
             probs_json);
    cr_assert_eq(json_len, strlen(want), "%.*s", (int)json_len, b.data);
    cr_expect_eq(memcmp(b.data, want, json_len), 0, "%.*s", (int)json_len, b.data);
    cr_assert_eq(b.len, json_len + 16 + 1);
    cr_expect_eq(memcmp(b.data + json_len, labels, 16), 0);
    ipc_buf_free(&b);
    infer_request_free(&r);

    /* binary_data_output for all, but one output says no */
    cr_assert_eq(
        decode(&model,
               "{\"outputs\":[{\"name\":\"probs\"},{\"name\":\"label\",\"parameters\":{"
               "\"binary_data\":false}}],\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\","
               "\"shape\":[1,3],\"data\":[1,2,3]}],\"parameters\":{\"binary_data_output\":"
               "true}}",
               &r),
        0, "%s", err);
    cr_assert_eq(encode(&r, produced, 2, &b, &json_len), 0, "%s", err);
    snprintf(want, sizeof(want),
             "{\"model_name\":\"m\",\"outputs\":[{\"name\":\"probs\",\"datatype\":\"FP32\","
             "\"shape\":[2,3],\"parameters\":{\"binary_data_size\":24}},%s]}",
             label_json);
    cr_assert_eq(json_len, strlen(want));
    cr_expect_eq(memcmp(b.data, want, json_len), 0, "%.*s", (int)json_len, b.data);
    cr_expect_eq(memcmp(b.data + json_len, probs, 24), 0);
    ipc_buf_free(&b);

    /* binary_data_output and no list: every output, binary, in order */
    r.n_outputs = 0;
    cr_assert_eq(encode(&r, produced, 2, &b, &json_len), 0, "%s", err);
    cr_assert_eq(b.len, json_len + 24 + 16 + 1);
    cr_expect_eq(memcmp(b.data + json_len, probs, 24), 0);
    cr_expect_eq(memcmp(b.data + json_len + 24, labels, 16), 0);
    ipc_buf_free(&b);
    infer_request_free(&r);
}

Test(infer, every_datatype_encodes_as_v2_json)
{
    const uint8_t bools[] = {1, 0};
    const uint8_t u8[] = {255};
    const uint16_t u16[] = {65535};
    const uint32_t u32[] = {4294967295u};
    const uint64_t u64[] = {UINT64_MAX};
    const int8_t i8[] = {-128};
    const int16_t i16[] = {-32768};
    const int32_t i32[] = {INT32_MIN};
    const double f64[] = {0.1, INFINITY};
    const float f32[] = {NAN, -INFINITY};
    const char bytes[] = "\4\0\0\0a\"\\\n\1\0\0\0\x01\2\0\0\0\xc3\xa9";
    const serve_tensor t[] = {
        {"b", SERVE_BOOL, 1, {2}, bools, 2},     {"u8", SERVE_UINT8, 1, {1}, u8, 1},
        {"u16", SERVE_UINT16, 1, {1}, u16, 2},   {"u32", SERVE_UINT32, 1, {1}, u32, 4},
        {"u64", SERVE_UINT64, 1, {1}, u64, 8},   {"i8", SERVE_INT8, 1, {1}, i8, 1},
        {"i16", SERVE_INT16, 1, {1}, i16, 2},    {"i32", SERVE_INT32, 1, {1}, i32, 4},
        {"f64", SERVE_FP64, 1, {2}, f64, 16},    {"f32", SERVE_FP32, 1, {2}, f32, 8},
        {"s\t", SERVE_BYTES, 1, {3}, bytes, 19}, {"empty", SERVE_FP32, 2, {0, 3}, NULL, 0},
    };
    ipc_buf b;
    size_t json_len;
    cr_assert_eq(encode(NULL, t, sizeof(t) / sizeof(t[0]), &b, &json_len), 0, "%s", err);
    cr_expect_str_eq(
        b.data,
        "{\"model_name\":\"m\",\"outputs\":["
        "{\"name\":\"b\",\"datatype\":\"BOOL\",\"shape\":[2],\"data\":[true,false]},"
        "{\"name\":\"u8\",\"datatype\":\"UINT8\",\"shape\":[1],\"data\":[255]},"
        "{\"name\":\"u16\",\"datatype\":\"UINT16\",\"shape\":[1],\"data\":[65535]},"
        "{\"name\":\"u32\",\"datatype\":\"UINT32\",\"shape\":[1],\"data\":[4294967295]},"
        "{\"name\":\"u64\",\"datatype\":\"UINT64\",\"shape\":[1],\"data\":[18446744073709551615]},"
        "{\"name\":\"i8\",\"datatype\":\"INT8\",\"shape\":[1],\"data\":[-128]},"
        "{\"name\":\"i16\",\"datatype\":\"INT16\",\"shape\":[1],\"data\":[-32768]},"
        "{\"name\":\"i32\",\"datatype\":\"INT32\",\"shape\":[1],\"data\":[-2147483648]},"
        "{\"name\":\"f64\",\"datatype\":\"FP64\",\"shape\":[2],\"data\":[0.10000000000000001,null]}"
        ","
        "{\"name\":\"f32\",\"datatype\":\"FP32\",\"shape\":[2],\"data\":[null,null]},"
        "{\"name\":\"s\\t\",\"datatype\":\"BYTES\",\"shape\":[3],\"data\":[\"a\\\"\\\\\\n\","
        "\"\\u0001\",\"\xc3\xa9\"]},"
        "{\"name\":\"empty\",\"datatype\":\"FP32\",\"shape\":[0,3],\"data\":[]}]}");
    ipc_buf_free(&b);
}

/* Found by fuzz/fuzz_tensor.c: BYTES that are not UTF-8 (binary input
   data echoed back, or a plugin's) went into the JSON response as they
   were, and clients' JSON parsers refused the whole response. */
Test(infer, bytes_that_are_not_utf8_are_sent_as_the_replacement_character)
{
    /* The fuzzer's "a\xa8\x9c", a lone continuation byte, a cut 3-byte
       sequence, an overlong '/', and valid 2- and 3-byte characters. */
    const char bytes[] = "\3\0\0\0a\xa8\x9c"
                         "\1\0\0\0\x80"
                         "\2\0\0\0\xe2\x82"
                         "\2\0\0\0\xc0\xaf"
                         "\5\0\0\0\xc3\xa9\xe2\x82\xac";
    const serve_tensor t = {"s", SERVE_BYTES, 1, {5}, bytes, sizeof(bytes) - 1};
    ipc_buf b;
    size_t json_len;
    cr_assert_eq(encode(NULL, &t, 1, &b, &json_len), 0, "%s", err);
    cr_expect_str_eq(b.data, "{\"model_name\":\"m\",\"outputs\":[{\"name\":\"s\",\"datatype\":"
                             "\"BYTES\",\"shape\":[5],\"data\":[\"a\\ufffd\\ufffd\",\"\\ufffd\","
                             "\"\\ufffd\\ufffd\",\"\\ufffd\\ufffd\",\"\xc3\xa9\xe2\x82\xac\"]}]}");
    json_t *doc = json_loadb(b.data, json_len, 0, NULL);
    cr_expect_not_null(doc, "the response is valid JSON");
    json_decref(doc);
    ipc_buf_free(&b);
}

Test(infer, tensors_whose_data_do_not_fill_their_shape_are_not_encoded)
{
    ipc_buf b = {0};
    size_t json_len;
    serve_tensor t = produced[0];
    t.size = 20;
    cr_expect_eq(infer_response_encode(&b, "m", NULL, &t, 1, &json_len, err, sizeof(err)), -EINVAL);
    cr_expect_str_eq(err, "output \"probs\": 20 bytes of FP32 data do not fill shape [2,3]");
    const char bad_bytes[] = "\5\0\0\0ab";
    t = (serve_tensor){"s", SERVE_BYTES, 1, {1}, bad_bytes, 6};
    cr_expect_eq(infer_response_encode(&b, "m", NULL, &t, 1, &json_len, err, sizeof(err)), -EINVAL);
    cr_expect_eq(b.len, 0);
    ipc_buf_free(&b);
}

/* Encode values as an FP32 (or FP64) output, put its "data" into a
   request, and decode that back. */
static void round_trip(serve_datatype dt, const void *values, size_t n)
{
    static const serve_tensor_spec in[] = {
        {.name = "FP32", .datatype = SERVE_FP32, .ndim = 1, .shape = {-1}, .optional = 1},
        {.name = "FP64", .datatype = SERVE_FP64, .ndim = 1, .shape = {-1}, .optional = 1},
    };
    static const serve_tensor_spec out[] = {
        {.name = "FP32", .datatype = SERVE_FP32, .ndim = 1, .shape = {-1}},
        {.name = "FP64", .datatype = SERVE_FP64, .ndim = 1, .shape = {-1}},
    };
    serve_deployment dep = {
        .name = "rt", .inputs = in, .n_inputs = 2, .outputs = out, .n_outputs = 2};
    size_t size = serve_datatype_size(dt);
    serve_tensor t = {infer_datatype_name(dt), dt, 1, {(int64_t)n}, values, n * size};
    ipc_buf b, req = {0};
    size_t json_len;
    cr_assert_eq(encode(NULL, &t, 1, &b, &json_len), 0, "%s", err);
    const char *data = strstr(b.data, "\"data\":");
    cr_assert_not_null(data);
    char head[128];
    snprintf(head, sizeof(head),
             "{\"inputs\":[{\"name\":\"%s\",\"datatype\":\"%s\",\"shape\":[%zu],", t.name, t.name,
             n);
    ipc_buf_put(&req, head, strlen(head));
    ipc_buf_put(&req, data, strlen(data) - 2);
    ipc_buf_put(&req, "]}", 2);
    infer_request r;
    cr_assert_eq(infer_request_decode(req.data, req.len, -1, &dep, &r, err, sizeof(err)), 0,
                 "%s\n%.*s", err, (int)(req.len > 300 ? 300 : req.len), req.data);
    cr_assert_eq(r.inputs[0].size, n * size);
    for (size_t i = 0; i < n; i++)
        cr_expect_eq(memcmp((const char *)r.inputs[0].data + i * size,
                            (const char *)values + i * size, size),
                     0, "element %zu", i);
    infer_request_free(&r);
    ipc_buf_free(&b);
    ipc_buf_free(&req);
}

Test(infer, fp32_values_survive_encode_then_decode_exactly)
{
    const float tricky[] = {
        0.1f,        1e-38f,      3.4e38f,     FLT_MAX,         FLT_MIN,
        -0.0f,       0.0f,        1e-45f,      1.17549421e-38f, 1.0f / 3,
        16777216.0f, 16777215.0f, 3.14159265f, -2.5e-40f,       0.30000001192092896f,
        123456.789f, 1.0000001f};
    round_trip(SERVE_FP32, tricky, sizeof(tricky) / sizeof(tricky[0]));

    /* and a spread of finite bit patterns */
    enum { N = 20000 };
    float *many = malloc(N * sizeof(float));
    cr_assert_not_null(many);
    uint32_t x = 12345;
    for (size_t i = 0; i < N;) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        memcpy(&many[i], &x, sizeof(x));
        i += isfinite(many[i]) != 0;
    }
    round_trip(SERVE_FP32, many, N);
    free(many);
}

Test(infer, fp64_values_survive_encode_then_decode_exactly)
{
    const double tricky[] = {0.1,
                             1e-308,
                             5e-324,
                             DBL_MAX,
                             DBL_MIN,
                             -0.0,
                             1.0 / 3,
                             9007199254740993.0,
                             1.2345678901234567e-300,
                             2.2250738585072009e-308};
    round_trip(SERVE_FP64, tricky, sizeof(tricky) / sizeof(tricky[0]));
    enum { N = 20000 };
    double *many = malloc(N * sizeof(double));
    cr_assert_not_null(many);
    uint64_t x = 987654321;
    for (size_t i = 0; i < N;) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        memcpy(&many[i], &x, sizeof(x));
        i += isfinite(many[i]) != 0;
    }
    round_trip(SERVE_FP64, many, N);
    free(many);
}
