/*
 * metrics.c - see metrics.h.
 */
#include "common/metrics.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>

const metrics_buckets metrics_latency_buckets = {
    16, {0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 1, 2, 5, 10, 60}};

const metrics_buckets metrics_batch_buckets = {
    13, {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096}};

void metrics_hist_observe(metrics_hist *h, const metrics_buckets *b, double value)
{
    size_t i = 0;
    while (i < b->n && value > b->le[i]) i++;
    h->counts[i]++;
    h->count++;
    h->sum += value;
}

void metrics_hist_add(metrics_hist *dst, const metrics_hist *src)
{
    for (size_t i = 0; i <= METRICS_MAX_BUCKETS; i++) dst->counts[i] += src->counts[i];
    dst->count += src->count;
    dst->sum += src->sum;
}

json_t *metrics_hist_to_json(const metrics_hist *h, const metrics_buckets *b)
{
    json_t *counts = json_array();
    for (size_t i = 0; counts && i <= b->n; i++)
        if (json_array_append_new(counts, json_integer((json_int_t)h->counts[i])) != 0) {
            json_decref(counts);
            return NULL;
        }
    return counts ? json_pack("{s:o, s:f}", "counts", counts, "sum", h->sum) : NULL;
}

int metrics_hist_from_json(const json_t *obj, const metrics_buckets *b, metrics_hist *h)
{
    const json_t *counts = json_object_get(obj, "counts");
    const json_t *sum = json_object_get(obj, "sum");
    if (!json_is_array(counts) || json_array_size(counts) != b->n + 1 || !json_is_number(sum))
        return -EPROTO;
    metrics_hist out = {.sum = json_number_value(sum)};
    for (size_t i = 0; i <= b->n; i++) {
        const json_t *v = json_array_get(counts, i);
        if (!json_is_integer(v) || json_integer_value(v) < 0) return -EPROTO;
        out.counts[i] = (uint64_t)json_integer_value(v);
        out.count += out.counts[i];
    }
    *h = out;
    return 0;
}

/* ---- Exposition -------------------------------------------------------- */

void metrics_family(FILE *f, const char *name, const char *type, const char *help)
{
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A label value with \, " and newline escaped, as the format asks. */
static void put_label_value(FILE *f, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\' || *s == '"')
            fputc('\\', f), fputc(*s, f);
        else if (*s == '\n')
            fputs("\\n", f);
        else
            fputc(*s, f);
    }
}

/* name{a="x",b="y"[,extra="v"]}; `extra` may be NULL. */
static void put_series(FILE *f, const char *name, const char *suffix, const char *const *labels,
                       const char *extra, const char *extra_value)
{
    fprintf(f, "%s%s", name, suffix);
    int any = 0;
    for (size_t i = 0; labels && labels[i]; i += 2) {
        fprintf(f, "%s%s=\"", any++ ? "," : "{", labels[i]);
        put_label_value(f, labels[i + 1]);
        fputc('"', f);
    }
    if (extra) fprintf(f, "%s%s=\"%s\"", any++ ? "," : "{", extra, extra_value);
    if (any) fputc('}', f);
}

/* Whole numbers as integers (counters stay exact past 1e17), the rest
   with enough digits to read back the same double. */
static void put_value(FILE *f, double v)
{
    if (isnan(v))
        fputs(" NaN\n", f);
    else if (isinf(v))
        fputs(v > 0 ? " +Inf\n" : " -Inf\n", f);
    else if (v == floor(v) && fabs(v) < 9007199254740992.0)
        fprintf(f, " %" PRId64 "\n", (int64_t)v);
    else
        fprintf(f, " %.17g\n", v);
}

void metrics_sample(FILE *f, const char *name, const char *const *labels, double value)
{
    put_series(f, name, "", labels, NULL, NULL);
    put_value(f, value);
}

void metrics_histogram(FILE *f, const char *name, const char *const *labels, const metrics_hist *h,
                       const metrics_buckets *b)
{
    uint64_t cumulative = 0;
    char le[32];
    for (size_t i = 0; i <= b->n; i++) {
        cumulative += h->counts[i];
        if (i < b->n)
            snprintf(le, sizeof(le), "%g", b->le[i]);
        else
            snprintf(le, sizeof(le), "+Inf");
        put_series(f, name, "_bucket", labels, "le", le);
        fprintf(f, " %" PRIu64 "\n", cumulative);
    }
    put_series(f, name, "_sum", labels, NULL, NULL);
    put_value(f, h->sum);
    put_series(f, name, "_count", labels, NULL, NULL);
    fprintf(f, " %" PRIu64 "\n", h->count);
}
