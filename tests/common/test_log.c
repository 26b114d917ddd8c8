/*
 * test_log.c - the line format: fields, encodings, escaping, truncation.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <regex.h>
#include <string.h>

#include "common/log.h"

static size_t fmt(char *out, size_t size, log_level level, const log_fields *f, const char *format,
                  ...)
{
    va_list ap;
    va_start(ap, format);
    size_t n = log_format(out, size, level, f, format, ap);
    va_end(ap);
    return n;
}

static void reset(void)
{
    log_encoding_in_use = LOG_TEXT;
    log_set_process(&(log_fields){.component = "controller"});
    log_set_request_id(NULL);
}

TestSuite(log, .init = reset);

static void assert_matches(const char *line, const char *pattern)
{
    regex_t re;
    cr_assert_eq(regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB), 0, "%s", pattern);
    int rc = regexec(&re, line, 0, NULL, 0);
    regfree(&re);
    cr_assert_eq(rc, 0, "'%s' does not match %s", line, pattern);
}

Test(log, a_text_line_has_time_level_component_and_message)
{
    char line[256];
    size_t n = fmt(line, sizeof(line), LOG_WARN, NULL, "disk %d%% full", 93);
    cr_assert_eq(n, strlen(line));
    assert_matches(line, "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z "
                         "WARN  controller: disk 93% full\n$");
}

Test(log, a_replica_line_names_its_deployment_replica_and_request)
{
    char line[256];
    log_set_process(&(log_fields){"replica", "lang", "French", "ab12cd34"});
    log_set_request_id("5f3a");
    fmt(line, sizeof(line), LOG_INFO, NULL, "bonjour");
    assert_matches(line, "Z INFO  replica lang/French#ab12cd34 req=5f3a: bonjour\n$");
}

Test(log, a_line_may_name_other_fields_than_its_process)
{
    char line[256];
    log_fields f = {
        .component = "access", .app = "a", .deployment = "D", .replica = "r1", .request_id = "id9"};
    fmt(line, sizeof(line), LOG_INFO, &f, "GET / 200");
    assert_matches(line, "Z INFO  access a/D#r1 req=id9: GET / 200\n$");
    fmt(line, sizeof(line), LOG_INFO, &(log_fields){.app = "a", .deployment = "D"}, "x");
    assert_matches(line, "Z INFO  controller a/D: x\n$");
}

Test(log, the_request_id_is_per_thread)
{
    log_set_request_id("mine");
    char line[256];
    fmt(line, sizeof(line), LOG_INFO, NULL, "x");
    cr_assert(strstr(line, "req=mine"));
    log_set_request_id(NULL);
    fmt(line, sizeof(line), LOG_INFO, NULL, "x");
    cr_assert_null(strstr(line, "req="));
}

Test(log, a_json_line_is_one_object_with_every_field_set)
{
    char line[512];
    log_encoding_in_use = LOG_JSON;
    log_set_process(&(log_fields){"replica", "lang", "French", "ab12cd34"});
    log_set_request_id("5f3a");
    size_t n = fmt(line, sizeof(line), LOG_ERROR, NULL, "said \"%s\"\n\tthen\\left", "non");
    cr_assert_eq(line[n - 1], '\n');
    json_error_t err;
    json_t *obj = json_loadb(line, n, 0, &err);
    cr_assert_not_null(obj, "%s: %s", line, err.text);
    cr_assert_str_eq(json_string_value(json_object_get(obj, "level")), "ERROR");
    cr_assert_str_eq(json_string_value(json_object_get(obj, "component")), "replica");
    cr_assert_str_eq(json_string_value(json_object_get(obj, "app")), "lang");
    cr_assert_str_eq(json_string_value(json_object_get(obj, "deployment")), "French");
    cr_assert_str_eq(json_string_value(json_object_get(obj, "replica")), "ab12cd34");
    cr_assert_str_eq(json_string_value(json_object_get(obj, "request_id")), "5f3a");
    cr_assert_str_eq(json_string_value(json_object_get(obj, "message")),
                     "said \"non\"\n\tthen\\left");
    cr_assert_eq(strlen(json_string_value(json_object_get(obj, "time"))), 24);
    json_decref(obj);
}

Test(log, a_json_line_leaves_out_fields_that_are_not_set)
{
    char line[256];
    log_encoding_in_use = LOG_JSON;
    fmt(line, sizeof(line), LOG_INFO, NULL, "up");
    json_t *obj = json_loads(line, 0, NULL);
    cr_assert_not_null(obj, "%s", line);
    cr_assert_eq(json_object_size(obj), 4, "%s", line); /* time, level, component, message */
    json_decref(obj);
}

Test(log, a_long_message_is_cut_but_the_line_stays_whole)
{
    char big[3000], line[300];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    size_t n = fmt(line, sizeof(line), LOG_INFO, NULL, "%s", big);
    cr_assert_leq(n, sizeof(line));
    cr_assert_eq(line[n - 1], '\n');
    log_encoding_in_use = LOG_JSON;
    big[100] = '"'; /* an escape near the cut must not break the object */
    n = fmt(line, sizeof(line), LOG_INFO, NULL, "%s", big);
    cr_assert_leq(n, sizeof(line));
    json_t *obj = json_loadb(line, n, 0, NULL);
    cr_assert_not_null(obj, "%.*s", (int)n, line);
    json_decref(obj);
}

Test(log, level_and_encoding_names_parse_in_any_case)
{
    cr_assert_eq(log_level_parse("DEBUG"), LOG_DEBUG);
    cr_assert_eq(log_level_parse("info"), LOG_INFO);
    cr_assert_eq(log_level_parse("Warning"), LOG_WARN);
    cr_assert_eq(log_level_parse("warn"), LOG_WARN);
    cr_assert_eq(log_level_parse("ERROR"), LOG_ERROR);
    cr_assert_eq(log_level_parse("off"), LOG_OFF);
    cr_assert_eq(log_level_parse("verbose"), -1);
    cr_assert_eq(log_encoding_parse("json"), LOG_JSON);
    cr_assert_eq(log_encoding_parse("TEXT"), LOG_TEXT);
    cr_assert_eq(log_encoding_parse("xml"), -1);
}
