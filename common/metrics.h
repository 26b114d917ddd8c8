/*
 * metrics.h - histograms and the Prometheus text exposition format.
 *
 * Pure code, unit tested: a histogram is a fixed array of counts over a
 * bucket layout given at each call (the layouts are constants below), so
 * it can live in a struct, be added to another and cross a process
 * boundary as JSON. The writer prints families and samples into a FILE
 * (open_memstream makes that a growing buffer) following the text format
 * 0.0.4: one "# HELP" and "# TYPE" per family, then its samples, label
 * values escaped.
 *
 * Units follow Prometheus's naming rules (promtool checks them): latencies
 * are in seconds, even where Ray Serve names its buckets in milliseconds.
 */
#ifndef SERVE_METRICS_H
#define SERVE_METRICS_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define METRICS_MAX_BUCKETS 16

/* Upper bounds of the finite buckets, increasing; +Inf is implied. */
typedef struct metrics_buckets {
    size_t n;
    double le[METRICS_MAX_BUCKETS];
} metrics_buckets;

/* Ray Serve's latency buckets (1 ms ... 60 s), in seconds. */
extern const metrics_buckets metrics_latency_buckets;
/* Batch sizes: 1, 2, 4, ... 4096 (the largest max_batch_size). */
extern const metrics_buckets metrics_batch_buckets;

/* Counts per bucket (not cumulative; counts[n] is the +Inf bucket), and
   the sum and count of every observation. Zero-initialise. */
typedef struct metrics_hist {
    uint64_t counts[METRICS_MAX_BUCKETS + 1];
    uint64_t count;
    double sum;
} metrics_hist;

void metrics_hist_observe(metrics_hist *h, const metrics_buckets *b, double value);
/* dst += src, bucket by bucket. */
void metrics_hist_add(metrics_hist *dst, const metrics_hist *src);

/* {"counts": [...], "sum": s} (a new reference; NULL when out of memory),
   and back: 0, or -EPROTO when `obj` is not such a document for layout
   `b` (then *h is left as it was). */
json_t *metrics_hist_to_json(const metrics_hist *h, const metrics_buckets *b);
int metrics_hist_from_json(const json_t *obj, const metrics_buckets *b, metrics_hist *h);

/* ---- Exposition -------------------------------------------------------- */

/* Labels are NULL-terminated arrays of name, value pairs:
   (const char *[]){"application", app, "route", route, NULL}. */

/* "# HELP name help" and "# TYPE name type" (counter, gauge, histogram). */
void metrics_family(FILE *f, const char *name, const char *type, const char *help);

/* One sample: name{labels} value. Whole numbers print as integers. */
void metrics_sample(FILE *f, const char *name, const char *const *labels, double value);

/* A histogram's samples: name_bucket{labels,le=..} (cumulative), name_sum
   and name_count. */
void metrics_histogram(FILE *f, const char *name, const char *const *labels, const metrics_hist *h,
                       const metrics_buckets *b);

#endif
