/*
 * shape.c - parse and evaluate load shapes (see shape.h).
 */
#include "shape.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Parse a client count in [0, SHAPE_MAX_CLIENTS] at *p, advancing it. */
static int parse_clients(const char **p, double *out)
{
    char *end;
    long v = strtol(*p, &end, 10);
    if (end == *p || v < 0 || v > SHAPE_MAX_CLIENTS) return -1;
    *out = (double)v;
    *p = end;
    return 0;
}

/* The default name of a segment without a label. */
static const char *default_label(const shape_segment *g)
{
    if (g->from != g->to) return "ramp";
    return g->to == 0 ? "idle" : "hold";
}

/* Parse one segment, text [p, end), into g. */
static int parse_segment(shape_segment *g, const char *p, const char *end)
{
    const char *colon = memchr(p, ':', (size_t)(end - p));
    if (colon) {
        size_t len = (size_t)(colon - p);
        if (len == 0 || len >= SHAPE_LABEL_MAX) return -1;
        memcpy(g->label, p, len);
        g->label[len] = '\0';
        p = colon + 1;
    }
    if (parse_clients(&p, &g->from) != 0) return -1;
    g->to = g->from;
    if (strncmp(p, "..", 2) == 0) {
        p += 2;
        if (parse_clients(&p, &g->to) != 0) return -1;
    }
    if (*p++ != '/') return -1;
    char *num_end;
    g->seconds = strtod(p, &num_end);
    if (num_end == p || num_end != end || !(g->seconds > 0) || g->seconds > SHAPE_MAX_SECONDS)
        return -1;
    if (!colon) snprintf(g->label, sizeof(g->label), "%s", default_label(g));
    return 0;
}

int shape_parse(shape *s, const char *spec, char *err, size_t errlen)
{
    memset(s, 0, sizeof(*s));
    const char *p = spec;
    for (;;) {
        const char *end = strchr(p, ',');
        if (!end) end = p + strlen(p);
        if (s->n == SHAPE_MAX_SEGMENTS) {
            snprintf(err, errlen, "more than %d segments", SHAPE_MAX_SEGMENTS);
            return -EINVAL;
        }
        shape_segment *g = &s->seg[s->n];
        if (parse_segment(g, p, end) != 0) {
            snprintf(err, errlen,
                     "segment %d ('%.*s'): expected [label:]CLIENTS[..CLIENTS]/SECONDS with "
                     "clients 0-%d, seconds > 0 and at most %.0f, a label under %d characters",
                     s->n + 1, (int)(end - p), p, SHAPE_MAX_CLIENTS, SHAPE_MAX_SECONDS,
                     SHAPE_LABEL_MAX);
            return -EINVAL;
        }
        s->n++;
        s->total_s += g->seconds;
        if (g->from > s->peak) s->peak = (int)g->from;
        if (g->to > s->peak) s->peak = (int)g->to;
        if (*end == '\0') return 0;
        p = end + 1;
    }
}

int shape_clients_at(const shape *s, double t, const char **label)
{
    double start = 0;
    for (int i = 0; i < s->n; i++) {
        const shape_segment *g = &s->seg[i];
        if (t < start + g->seconds) {
            if (label) *label = g->label;
            double x = t <= start ? 0 : (t - start) / g->seconds;
            return (int)lround(g->from + (g->to - g->from) * x);
        }
        start += g->seconds;
    }
    if (label) *label = s->n ? s->seg[s->n - 1].label : "";
    return 0;
}
