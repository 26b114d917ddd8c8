/*
 * test_json.c - the strict JSON reader of infer/: grammar, strings and
 * their escapes, numbers converted exactly (the fast path agrees with
 * strtod bit for bit), errors with their byte offsets, the depth limit.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "infer/json.h"

static ijson reader(const char *s)
{
    ijson j;
    ijson_init(&j, s, strlen(s));
    return j;
}

/* Skip the one value of s and require that nothing follows. */
static int valid(const char *s)
{
    ijson j = reader(s);
    return ijson_skip(&j) == 0 && ijson_end(&j) == 0;
}

static ijson_num number(const char *s)
{
    ijson j = reader(s);
    ijson_num n;
    cr_assert_eq(ijson_number(&j, &n), 0, "%s: %s", s, j.err);
    cr_assert_eq(ijson_end(&j), 0, "%s", s);
    return n;
}

static float to_float(const char *s)
{
    ijson_num n = number(s);
    float v;
    cr_assert_eq(ijson_num_float(&n, &v), 0, "%s", s);
    return v;
}

/* Decode the string value s into buf. */
static size_t decoded(const char *s, char *buf)
{
    ijson j = reader(s);
    ijson_str str;
    cr_assert_eq(ijson_string(&j, &str), 0, "%s: %s", s, j.err);
    return ijson_str_decode(&str, buf);
}

Test(json, peek_names_the_type_of_the_next_value_after_whitespace)
{
    const struct {
        const char *text;
        ijson_type type;
    } cases[] = {
        {" \t\r\n{}", IJSON_OBJECT}, {"[1]", IJSON_ARRAY}, {"\"s\"", IJSON_STRING},
        {"-1", IJSON_NUMBER},        {"7", IJSON_NUMBER},  {"true", IJSON_TRUE},
        {"false", IJSON_FALSE},      {"null", IJSON_NULL}, {"", IJSON_NONE},
        {"+1", IJSON_NONE},          {"NaN", IJSON_NONE},  {"'s'", IJSON_NONE},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        ijson j = reader(cases[i].text);
        cr_expect_eq(ijson_peek(&j), cases[i].type, "%s", cases[i].text);
    }
}

Test(json, well_formed_documents_are_skipped_whole)
{
    const char *ok[] = {
        "{}",
        "[]",
        " { \"a\" : [ 1 , -2.5e+3 , true , false , null , \"x\" , { } , [ ] ] } ",
        "\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\ud83d\\ude00\"",
        "0",
        "-0.0e-0",
        "1E5",
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) cr_expect(valid(ok[i]), "%s", ok[i]);
}

Test(json, what_rfc_8259_forbids_is_refused)
{
    const char *bad[] = {
        "[1,]",
        "{\"a\":1,}",
        "[,1]",
        "{,}",
        "[1 2]",
        "{\"a\" 1}",
        "{a:1}",
        "{'a':1}",
        "01",
        "-01",
        "-",
        "-a",
        "1.",
        ".5",
        "1.e5",
        "1e",
        "1e+",
        "+1",
        "NaN",
        "Infinity",
        "-Infinity",
        "tru",
        "nul",
        "True",
        "[1]]",
        "{} {}",
        "\"a",
        "\"\\x\"",
        "\"\\u12\"",
        "\"\\ud800\"",
        "\"\\udc00\"",
        "\"\\ud800\\u0041\"",
        "\"tab\there\"",
        "/* c */1",
        "0x10",
        "[",
        "{\"a\":",
        "",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_expect_not(valid(bad[i]), "%s", bad[i]);
}

Test(json, invalid_utf8_in_a_string_is_refused)
{
    const char *bad[] = {
        "\"\xc0\x80\"",         /* overlong NUL */
        "\"\xe0\x80\xaf\"",     /* overlong '/' */
        "\"\xed\xa0\x80\"",     /* a surrogate, encoded */
        "\"\xf4\x90\x80\x80\"", /* above U+10FFFF */
        "\"\xf5\x80\x80\x80\"", /* no such lead byte */
        "\"\x80\"",             /* a lone continuation byte */
        "\"\xc3\"",             /* truncated */
        "\"\xe2\x82\"",         /* truncated */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_expect_not(valid(bad[i]), "case %zu", i);
    cr_expect(valid("\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf\""));
}

Test(json, escapes_decode_to_utf8_and_surrogate_pairs_join)
{
    char buf[64];
    size_t n = decoded("\"a\\\"\\\\\\/\\b\\f\\n\\r\\t\"", buf);
    cr_assert_eq(n, 9);
    cr_expect_eq(memcmp(buf, "a\"\\/\b\f\n\r\t", 9), 0);
    n = decoded("\"\\u0041\\u00e9\\u20AC\\ud83d\\ude00\\u0000\"", buf);
    cr_assert_eq(n, 1 + 2 + 3 + 4 + 1);
    cr_expect_eq(memcmp(buf, "A\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\0", n), 0);
    n = decoded("\"plain \xc3\xa9\"", buf);
    cr_expect_eq(n, 8);
    cr_expect_eq(memcmp(buf, "plain \xc3\xa9", n), 0);
}

Test(json, keys_compare_by_their_decoded_text)
{
    ijson j = reader("\"\\u006eam\\u0065\"");
    ijson_str s;
    cr_assert_eq(ijson_string(&j, &s), 0);
    cr_expect(s.escaped);
    cr_expect(ijson_str_eq(&s, "name"));
    cr_expect_not(ijson_str_eq(&s, "nam"));
    cr_expect_not(ijson_str_eq(&s, "names"));
    cr_expect_not(ijson_str_eq(&s, "nbme"));
}

Test(json, objects_and_arrays_are_stepped_through_in_order)
{
    ijson j = reader("{\"a\": [1, [2, 3]], \"b\": {}, \"c\": []}");
    size_t i = 0, k = 0;
    ijson_str key;
    cr_assert_eq(ijson_member(&j, &i, &key), 1);
    cr_expect(ijson_str_eq(&key, "a"));
    cr_assert_eq(ijson_element(&j, &k), 1);
    cr_assert_eq(ijson_skip(&j), 0);
    cr_assert_eq(ijson_element(&j, &k), 1);
    cr_expect_eq(j.depth, 2);
    cr_assert_eq(ijson_skip(&j), 0);
    cr_assert_eq(ijson_element(&j, &k), 0);
    cr_expect_eq(k, 2);
    cr_assert_eq(ijson_member(&j, &i, &key), 1);
    cr_expect(ijson_str_eq(&key, "b"));
    size_t empty = 0;
    cr_expect_eq(ijson_member(&j, &empty, &key), 0);
    cr_assert_eq(ijson_member(&j, &i, &key), 1);
    empty = 0;
    cr_expect_eq(ijson_element(&j, &empty), 0);
    cr_expect_eq(ijson_member(&j, &i, &key), 0);
    cr_expect_eq(i, 3);
    cr_expect_eq(j.depth, 0);
    cr_expect_eq(ijson_end(&j), 0);
}

Test(json, errors_carry_the_byte_offset_of_the_problem)
{
    const struct {
        const char *text;
        size_t at;
        const char *what;
    } cases[] = {
        {"[1 2]", 3, "expected ',' or ']'"},
        {"{\"a\" 1}", 5, "expected ':'"},
        {"[01]", 1, "leading zero"},
        {"[-x]", 2, "expected a digit after '-'"},
        {"[1.]", 3, "expected a digit after '.'"},
        {"[1e]", 3, "exponent"},
        {"[\"ab\\q\"]", 4, "invalid escape"},
        {"[\"a\tb\"]", 3, "control character"},
        {"[1", 2, "unexpected end of input"},
        {"\"abc", 4, "unexpected end of input"},
        {"[1,]", 3, "expected a value"},
        {"{\"a\":1} x", 8, "unexpected data after"},
        {"{1:2}", 1, "expected a member name"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        ijson j = reader(cases[i].text);
        cr_expect(ijson_skip(&j) < 0 || ijson_end(&j) < 0, "%s", cases[i].text);
        cr_assert(j.err, "%s", cases[i].text);
        cr_expect_eq(j.err_at, cases[i].at, "%s: at %zu", cases[i].text, j.err_at);
        cr_expect(strstr(j.err, cases[i].what), "%s: %s", cases[i].text, j.err);
    }
}

Test(json, nesting_deeper_than_the_limit_is_refused_without_recursing_further)
{
    char deep[2 * IJSON_MAX_DEPTH + 3];
    memset(deep, '[', IJSON_MAX_DEPTH);
    memset(deep + IJSON_MAX_DEPTH, ']', IJSON_MAX_DEPTH);
    deep[2 * IJSON_MAX_DEPTH] = '\0';
    cr_expect(valid(deep), "exactly the limit is fine");

    size_t n = 100000;
    char *hostile = malloc(n + 1);
    cr_assert_not_null(hostile);
    memset(hostile, '[', n);
    hostile[n] = '\0';
    ijson j = reader(hostile);
    cr_expect_eq(ijson_skip(&j), -EINVAL);
    cr_expect(strstr(j.err, "nesting deeper"), "%s", j.err);
    cr_expect_eq(j.err_at, IJSON_MAX_DEPTH);
    free(hostile);
}

Test(json, integers_are_exact_to_the_limits_of_64_bits)
{
    int64_t i;
    uint64_t u;
    ijson_num n = number("18446744073709551615");
    cr_expect_eq(ijson_num_uint64(&n, &u), 0);
    cr_expect_eq(u, UINT64_MAX);
    cr_expect_eq(ijson_num_int64(&n, &i), -ERANGE);
    n = number("18446744073709551616");
    cr_expect_eq(ijson_num_uint64(&n, &u), -ERANGE);
    n = number("-9223372036854775808");
    cr_expect_eq(ijson_num_int64(&n, &i), 0);
    cr_expect_eq(i, INT64_MIN);
    cr_expect_eq(ijson_num_uint64(&n, &u), -ERANGE);
    n = number("-9223372036854775809");
    cr_expect_eq(ijson_num_int64(&n, &i), -ERANGE);
    n = number("9223372036854775807");
    cr_expect_eq(ijson_num_int64(&n, &i), 0);
    cr_expect_eq(i, INT64_MAX);
    n = number("123456789012345678901234567890");
    cr_expect_eq(ijson_num_int64(&n, &i), -ERANGE);
    n = number("-0");
    cr_expect_eq(ijson_num_uint64(&n, &u), 0);
    cr_expect_eq(u, 0);
    cr_expect_eq(ijson_num_int64(&n, &i), 0);
    cr_expect_eq(i, 0);
}

Test(json, integers_written_with_a_fraction_or_exponent_are_not_integers)
{
    const char *cases[] = {"1.5", "1.0", "1e2", "0E0"};
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        ijson_num n = number(cases[k]);
        int64_t i;
        uint64_t u;
        cr_expect_eq(ijson_num_int64(&n, &i), -EDOM, "%s", cases[k]);
        cr_expect_eq(ijson_num_uint64(&n, &u), -EDOM, "%s", cases[k]);
    }
}

/* Both conversions, compared bit for bit with the C library's; where it
   overflows to infinity, out of range. */
static void expect_as_strtod(const char *s)
{
    ijson_num n = number(s);
    double want = strtod(s, NULL), got;
    float wantf = strtof(s, NULL), gotf;
    cr_assert_eq(ijson_num_double(&n, &got), isinf(want) ? -ERANGE : 0, "%s", s);
    if (!isinf(want))
        cr_expect_eq(memcmp(&want, &got, sizeof(want)), 0, "%s: %.17g, not %.17g", s, got, want);
    cr_assert_eq(ijson_num_float(&n, &gotf), isinf(wantf) ? -ERANGE : 0, "%s", s);
    if (!isinf(wantf))
        cr_expect_eq(memcmp(&wantf, &gotf, sizeof(wantf)), 0, "%s: %.9g, not %.9g", s, gotf, wantf);
}

Test(json, numbers_convert_exactly_as_strtod_does)
{
    const char *cases[] = {
        "0",
        "-0",
        "-0.0",
        "0.1",
        "0.123456",
        "1",
        "-2.5",
        "3.14159265358979311600",
        "9007199254740993",
        "1e22",
        "1e23",
        "1e-22",
        "1e-23",
        "2.2250738585072014e-308",
        "4.9e-324",
        "1.7976931348623157e308",
        "1.2345678901234567e-300",
        "123456789012345678901",
        "0.000000000000000000000000000001",
        "1.00000000000000000000000000000000000001",
        "1e-400",
        "16777217",
        "3.4028235e38",
        "1.17549435e-38",
        "1.40129846e-45",
        "7.0064923e-46",
        "0.100000001490116119384765625",
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) expect_as_strtod(cases[i]);
}

Test(json, random_decimals_convert_exactly_as_strtod_does)
{
    srand(42);
    char text[64];
    const char *formats[] = {"%.6f", "%.9g", "%.17g", "%.3e", "%.15g"};
    for (int i = 0; i < 20000; i++) {
        double mag = pow(10, rand() % 40 - 20);
        double v = ((double)rand() / RAND_MAX - 0.5) * mag;
        snprintf(text, sizeof(text), formats[i % 5], v);
        expect_as_strtod(text);
    }
}

Test(json, a_decimal_just_past_a_float_midpoint_rounds_as_strtof_does)
{
    /* 1 + 2^-24 is halfway between 1 and the next float; a decimal a hair
       above it rounds to that double, which a float cast would round to
       even (1), while the right answer is the float above. */
    const char *above = "1.0000000596046447753906250000000001";
    cr_expect_eq(to_float(above), strtof(above, NULL));
    cr_expect_eq(to_float(above), nextafterf(1.0f, 2.0f));
    const char *below = "1.0000000596046447753906249999999999";
    cr_expect_eq(to_float(below), 1.0f);
    cr_expect_eq(to_float("1.000000059604644775390625"), 1.0f, "exactly halfway: to even");
    const char *denormal = "2.10194769e-45"; /* 1.5 * 2^-149 */
    cr_expect_eq(to_float(denormal), strtof(denormal, NULL));
}

Test(json, overflow_to_infinity_is_out_of_range)
{
    double d;
    float f;
    ijson_num n = number("1e400");
    cr_expect_eq(ijson_num_double(&n, &d), -ERANGE);
    n = number("-3.5e38");
    cr_expect_eq(ijson_num_double(&n, &d), 0);
    cr_expect_eq(ijson_num_float(&n, &f), -ERANGE);
    n = number("3.4028235e38");
    cr_expect_eq(ijson_num_float(&n, &f), 0);
    cr_expect_eq(f, FLT_MAX);
}

Test(json, long_tokens_take_the_heap_copy_of_the_slow_path)
{
    char text[400] = "0.";
    memset(text + 2, '3', 300);
    text[302] = '\0';
    expect_as_strtod(text);
}

/* The inline fast path reads what it takes exactly as ijson_number does,
   and leaves everything else (errors included) untouched for it. */
Test(json, the_number_fast_path_agrees_with_the_full_reader_or_declines)
{
    static const char *const taken[] = {"0",
                                        "-0",
                                        "7",
                                        "0.5",
                                        "-12.250",
                                        "0.123456",
                                        "1234567890123456789",
                                        "123456789.0123456789",
                                        " 42,"};
    static const char *const declined[] = {
        "12345678901234567890",   "1e5", "-1.5E-3", "01", "-", "1.", ".5", "-x",
        "0.12345678901234567890", "true"};
    for (size_t i = 0; i < sizeof(taken) / sizeof(*taken); i++) {
        ijson fast = reader(taken[i]), full = reader(taken[i]);
        ijson_num a, b;
        cr_assert_eq(ijson_number_fast(&fast, &a), 1, "%s declined", taken[i]);
        cr_assert_eq(ijson_number(&full, &b), 0, "%s", taken[i]);
        cr_expect(a.mantissa == b.mantissa && a.exp10 == b.exp10 && a.negative == b.negative &&
                      a.integer == b.integer && a.truncated == b.truncated && a.len == b.len &&
                      fast.p == full.p,
                  "%s: the fast path read it differently", taken[i]);
    }
    for (size_t i = 0; i < sizeof(declined) / sizeof(*declined); i++) {
        ijson j = reader(declined[i]);
        ijson_num n;
        cr_expect_eq(ijson_number_fast(&j, &n), 0, "%s taken", declined[i]);
        cr_expect_eq(j.p, declined[i], "%s: the cursor moved", declined[i]);
    }
}
