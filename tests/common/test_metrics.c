/*
 * test_metrics.c - histograms and the Prometheus text format.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/metrics.h"

/* What the writer printed, through a memory stream. */
typedef struct capture {
    FILE *f;
    char *text;
    size_t len;
} capture;

static void capture_open(capture *c)
{
    c->f = open_memstream(&c->text, &c->len);
    cr_assert_not_null(c->f);
}

static const char *capture_close(capture *c)
{
    fclose(c->f);
    return c->text;
}

Test(metrics, an_observation_lands_in_the_first_bucket_whose_bound_holds_it)
{
    metrics_hist h = {0};
    const metrics_buckets *b = &metrics_latency_buckets;
    metrics_hist_observe(&h, b, 0.0005); /* <= 1 ms */
    metrics_hist_observe(&h, b, 0.001);  /* on the bound: le is inclusive */
    metrics_hist_observe(&h, b, 0.0011); /* <= 2 ms */
    metrics_hist_observe(&h, b, 75);     /* past 60 s: +Inf */
    cr_assert_eq(h.counts[0], 2);
    cr_assert_eq(h.counts[1], 1);
    cr_assert_eq(h.counts[b->n], 1);
    cr_assert_eq(h.count, 4);
    cr_assert_float_eq(h.sum, 75.0026, 1e-9);
}

Test(metrics, ray_serve_latency_buckets_are_kept_in_seconds)
{
    static const double ms[] = {1,   2,   5,   10,   20,   50,   100,   200,
                                300, 400, 500, 1000, 2000, 5000, 10000, 60000};
    cr_assert_eq(metrics_latency_buckets.n, 16);
    for (size_t i = 0; i < 16; i++)
        cr_assert_float_eq(metrics_latency_buckets.le[i] * 1000, ms[i], 1e-9);
}

Test(metrics, histograms_add_bucket_by_bucket)
{
    metrics_hist a = {0}, b = {0};
    metrics_hist_observe(&a, &metrics_batch_buckets, 3);
    metrics_hist_observe(&b, &metrics_batch_buckets, 3);
    metrics_hist_observe(&b, &metrics_batch_buckets, 4096);
    metrics_hist_add(&a, &b);
    cr_assert_eq(a.counts[2], 2); /* 3 <= 4 */
    cr_assert_eq(a.counts[12], 1);
    cr_assert_eq(a.count, 3);
    cr_assert_float_eq(a.sum, 4102, 1e-9);
}

Test(metrics, a_histogram_survives_its_json_form)
{
    metrics_hist h = {0}, back = {0};
    for (int i = 1; i <= 100; i++) metrics_hist_observe(&h, &metrics_latency_buckets, i * 0.01);
    json_t *obj = metrics_hist_to_json(&h, &metrics_latency_buckets);
    cr_assert_eq(metrics_hist_from_json(obj, &metrics_latency_buckets, &back), 0);
    cr_assert_eq(memcmp(back.counts, h.counts, sizeof(h.counts)), 0);
    cr_assert_eq(back.count, 100);
    cr_assert_float_eq(back.sum, h.sum, 1e-9);
    json_decref(obj);
}

Test(metrics, a_malformed_histogram_document_is_refused_and_changes_nothing)
{
    metrics_hist h = {.count = 7};
    const char *bad[] = {
        "{}",
        "{\"counts\": [1, 2], \"sum\": 1}",                               /* wrong length */
        "{\"counts\": [0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,-1], \"sum\": 1}", /* negative */
        "{\"counts\": [0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,\"x\"], \"sum\": 1}",
        "{\"counts\": [0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]}", /* no sum */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        json_t *obj = json_loads(bad[i], 0, NULL);
        cr_assert_not_null(obj, "%s", bad[i]);
        cr_assert_eq(metrics_hist_from_json(obj, &metrics_latency_buckets, &h), -EPROTO, "%s",
                     bad[i]);
        json_decref(obj);
    }
    cr_assert_eq(h.count, 7);
}

Test(metrics, a_family_has_help_and_type_then_its_samples)
{
    capture c;
    capture_open(&c);
    metrics_family(c.f, "serve_x_total", "counter", "Things.");
    metrics_sample(c.f, "serve_x_total", (const char *[]){"application", "a", NULL}, 3);
    metrics_sample(c.f, "serve_x_total", NULL, 0.25);
    cr_assert_str_eq(capture_close(&c), "# HELP serve_x_total Things.\n"
                                        "# TYPE serve_x_total counter\n"
                                        "serve_x_total{application=\"a\"} 3\n"
                                        "serve_x_total 0.25\n");
    free(c.text);
}

Test(metrics, label_values_escape_backslash_quote_and_newline)
{
    capture c;
    capture_open(&c);
    metrics_sample(c.f, "m", (const char *[]){"route", "/a\"b\\c\nd", "x", "", NULL}, 1);
    cr_assert_str_eq(capture_close(&c), "m{route=\"/a\\\"b\\\\c\\nd\",x=\"\"} 1\n");
    free(c.text);
}

Test(metrics, large_counters_print_exactly_and_odd_values_print_as_the_format_spells_them)
{
    capture c;
    capture_open(&c);
    metrics_sample(c.f, "m", NULL, 123456789012345.0);
    metrics_sample(c.f, "m", NULL, 0.1);
    metrics_sample(c.f, "m", NULL, NAN);
    metrics_sample(c.f, "m", NULL, INFINITY);
    metrics_sample(c.f, "m", NULL, -2);
    cr_assert_str_eq(capture_close(&c),
                     "m 123456789012345\nm 0.10000000000000001\nm NaN\nm +Inf\nm -2\n");
    free(c.text);
}

Test(metrics, histogram_buckets_are_cumulative_and_end_with_inf_sum_and_count)
{
    metrics_hist h = {0};
    metrics_buckets b = {2, {1, 5}};
    metrics_hist_observe(&h, &b, 0.5);
    metrics_hist_observe(&h, &b, 3);
    metrics_hist_observe(&h, &b, 9);
    capture c;
    capture_open(&c);
    metrics_histogram(c.f, "lat", (const char *[]){"app", "a", NULL}, &h, &b);
    cr_assert_str_eq(capture_close(&c), "lat_bucket{app=\"a\",le=\"1\"} 1\n"
                                        "lat_bucket{app=\"a\",le=\"5\"} 2\n"
                                        "lat_bucket{app=\"a\",le=\"+Inf\"} 3\n"
                                        "lat_sum{app=\"a\"} 12.5\n"
                                        "lat_count{app=\"a\"} 3\n");
    free(c.text);
}

Test(metrics, a_histogram_without_labels_has_only_le)
{
    metrics_hist h = {0};
    metrics_buckets b = {1, {0.005}};
    capture c;
    capture_open(&c);
    metrics_histogram(c.f, "lat", NULL, &h, &b);
    cr_assert_str_eq(capture_close(&c), "lat_bucket{le=\"0.005\"} 0\n"
                                        "lat_bucket{le=\"+Inf\"} 0\n"
                                        "lat_sum 0\n"
                                        "lat_count 0\n");
    free(c.text);
}
