/*
 * test_stats.c - the proxy's HTTP counters and their exposition.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "router/router.h"

/* The exposition of `s` as one string (free it). */
static char *render(const http_stats *s)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    cr_assert_not_null(f);
    http_stats_write(s, f);
    fclose(f);
    return text;
}

static http_stats *new_stats(void)
{
    http_stats *s;
    cr_assert_eq(http_stats_new(&s), 0);
    return s;
}

Test(stats, one_entry_per_application_and_route)
{
    http_stats *s = new_stats();
    http_route_stats *a = http_stats_route(s, "lang", "/lang");
    cr_assert_not_null(a);
    cr_assert_eq(http_stats_route(s, "lang", "/lang"), a);
    cr_assert_neq(http_stats_route(s, "lang", "/other"), a);
    cr_assert_neq(http_stats_route(s, "other", "/lang"), a);
    http_stats_free(s);
}

Test(stats, requests_count_by_method_and_status)
{
    http_stats *s = new_stats();
    http_route_stats *e = http_stats_route(s, "lang", "/lang");
    for (int i = 0; i < 3; i++) http_stats_record(e, "GET", 200, 0.0005);
    http_stats_record(e, "POST", 200, 0.003);
    http_stats_record(e, "GET", 503, 0.2);
    char *text = render(s);
    cr_assert(strstr(text, "serve_http_requests_total{application=\"lang\",route=\"/lang\","
                           "method=\"GET\",status_code=\"200\"} 3\n"));
    cr_assert(strstr(text, "serve_http_requests_total{application=\"lang\",route=\"/lang\","
                           "method=\"POST\",status_code=\"200\"} 1\n"));
    cr_assert(strstr(text, "serve_http_requests_total{application=\"lang\",route=\"/lang\","
                           "method=\"GET\",status_code=\"503\"} 1\n"));
    free(text);
    http_stats_free(s);
}

Test(stats, only_4xx_and_5xx_count_as_errors)
{
    http_stats *s = new_stats();
    http_route_stats *e = http_stats_route(s, "a", "/");
    http_stats_record(e, "GET", 200, 0.001);
    http_stats_record(e, "GET", 304, 0.001);
    http_stats_record(e, "GET", 404, 0.001);
    http_stats_record(e, "GET", 502, 0.001);
    char *text = render(s);
    const char *errors = strstr(text, "# TYPE serve_http_request_errors_total counter\n");
    cr_assert_not_null(errors);
    const char *end = strstr(errors, "# HELP serve_http_request_duration_seconds");
    cr_assert_not_null(end);
    char *section = strndup(errors, (size_t)(end - errors));
    cr_assert(strstr(section, "status_code=\"404\"} 1\n"));
    cr_assert(strstr(section, "status_code=\"502\"} 1\n"));
    cr_assert_null(strstr(section, "status_code=\"200\""));
    cr_assert_null(strstr(section, "status_code=\"304\""));
    free(section);
    free(text);
    http_stats_free(s);
}

Test(stats, unusual_methods_share_one_label_so_clients_cannot_add_series)
{
    http_stats *s = new_stats();
    http_route_stats *e = http_stats_route(s, "a", "/");
    http_stats_record(e, "BREW", 405, 0.001);
    http_stats_record(e, "PROPFIND", 405, 0.001);
    http_stats_record(e, "get", 405, 0.001); /* methods are case-sensitive */
    char *text = render(s);
    cr_assert(strstr(text, "method=\"OTHER\",status_code=\"405\"} 3\n"));
    cr_assert_null(strstr(text, "BREW"));
    free(text);
    http_stats_free(s);
}

Test(stats, latency_is_one_histogram_per_route_in_seconds)
{
    http_stats *s = new_stats();
    http_route_stats *e = http_stats_route(s, "a", "/a");
    http_stats_record(e, "GET", 200, 0.0015); /* 1.5 ms: the 2 ms bucket */
    http_stats_record(e, "POST", 500, 0.25);  /* 250 ms: the 300 ms bucket */
    char *text = render(s);
    const char *p = "serve_http_request_duration_seconds_bucket{application=\"a\",route=\"/a\",";
    char line[256];
    snprintf(line, sizeof(line), "%sle=\"0.001\"} 0\n", p);
    cr_assert(strstr(text, line), "%s", text);
    snprintf(line, sizeof(line), "%sle=\"0.002\"} 1\n", p);
    cr_assert(strstr(text, line));
    snprintf(line, sizeof(line), "%sle=\"0.2\"} 1\n", p);
    cr_assert(strstr(text, line));
    snprintf(line, sizeof(line), "%sle=\"0.3\"} 2\n", p);
    cr_assert(strstr(text, line));
    cr_assert(strstr(text, "serve_http_request_duration_seconds_count{application=\"a\","
                           "route=\"/a\"} 2\n"));
    free(text);
    http_stats_free(s);
}

Test(stats, an_empty_table_still_declares_its_families)
{
    http_stats *s = new_stats();
    char *text = render(s);
    cr_assert(strstr(text, "# TYPE serve_http_requests_total counter\n"));
    cr_assert(strstr(text, "# TYPE serve_http_request_errors_total counter\n"));
    cr_assert(strstr(text, "# TYPE serve_http_request_duration_seconds histogram\n"));
    free(text);
    http_stats_free(s);
}
