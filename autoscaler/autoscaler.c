/*
 * autoscaler.c - the autoscaling policy (see autoscaler.h).
 */
#include "autoscaler/autoscaler.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void as_init(as_state *s)
{
    memset(s, 0, sizeof(*s));
    s->up_since = s->down_since = -1;
}

void as_free(as_state *s)
{
    free(s->samples);
    as_init(s);
}

/* Drop the samples taken before the look-back window. */
static void trim(as_state *s, const as_params *p, double now)
{
    size_t drop = 0;
    while (drop < s->n && s->samples[drop].t < now - p->look_back_period_s) drop++;
    if (drop == 0) return; /* also: no memmove on a window never allocated */
    memmove(s->samples, s->samples + drop, (s->n - drop) * sizeof(*s->samples));
    s->n -= drop;
}

int as_record(as_state *s, const as_params *p, double now, double value)
{
    trim(s, p, now);
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        as_sample *v = realloc(s->samples, cap * sizeof(*v));
        if (!v) return -ENOMEM;
        s->samples = v;
        s->cap = cap;
    }
    s->samples[s->n++] = (as_sample){now, value};
    return 0;
}

static double window_average(as_state *s, const as_params *p, double now)
{
    trim(s, p, now);
    double sum = 0;
    for (size_t i = 0; i < s->n; i++) sum += s->samples[i].value;
    return s->n ? sum / (double)s->n : 0;
}

static int clamp(int v, int lo, int hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

/* Where the metric points: ceil(metric / target), within the bounds. */
static int desired_count(const as_params *p, double metric)
{
    double raw = ceil(metric / p->target_ongoing_requests - 1e-9);
    int n = raw > (double)p->max_replicas ? p->max_replicas : (int)raw;
    return clamp(n, p->min_replicas, p->max_replicas);
}

/* The next count on the way from `current` to `desired`. */
static int step_toward(const as_params *p, int current, int desired)
{
    if (desired > current) {
        int step = (int)ceil((desired - current) * p->upscaling_factor - 1e-9);
        return clamp(current + (step < 1 ? 1 : step), current, desired);
    }
    int step = (int)ceil((current - desired) * p->downscaling_factor - 1e-9);
    int next = current - (step < 1 ? 1 : step);
    next = next < desired ? desired : next;
    return next == 0 && current > 1 ? 1 : next; /* zero only from one */
}

/* Has a signal begun at *since held for `delay` seconds? Starts the timer
   if it was not running. */
static int held(double *since, double now, double delay)
{
    if (*since < 0) *since = now;
    return now - *since >= delay - 1e-9;
}

as_decision as_decide(as_state *s, const as_params *p, double now, int current)
{
    as_decision d = {.target = current};
    d.metric = window_average(s, p, now);
    d.desired = desired_count(p, d.metric);
    if (current == 0 && d.metric > 0) { /* a request is waiting: no delay */
        d.target = d.desired > 0 ? step_toward(p, 0, d.desired) : 1;
        s->up_since = s->down_since = -1;
        snprintf(d.reason, sizeof(d.reason), "scale up from zero: load %.2f", d.metric);
        return d;
    }
    if (d.desired == current) {
        s->up_since = s->down_since = -1;
        snprintf(d.reason, sizeof(d.reason), "steady: load %.2f, %d replica(s)", d.metric, current);
        return d;
    }
    int up = d.desired > current;
    int next = step_toward(p, current, d.desired);
    double delay = up ? p->upscale_delay_s : p->downscale_delay_s;
    if (!up && next == 0 && p->downscale_to_zero_delay_s >= 0) delay = p->downscale_to_zero_delay_s;
    double *since = up ? &s->up_since : &s->down_since;
    *(up ? &s->down_since : &s->up_since) = -1; /* the opposite signal resets */
    if (!held(since, now, delay)) {
        snprintf(d.reason, sizeof(d.reason), "%s to %d pending: load %.2f held %.1f of %.1f s",
                 up ? "scale up" : "scale down", next, d.metric, now - *since, delay);
        return d;
    }
    *since = -1; /* the next move waits its own delay */
    d.target = next;
    snprintf(d.reason, sizeof(d.reason), "%s %d -> %d: load %.2f, target %.2f per replica",
             up ? "scale up" : "scale down", current, next, d.metric, p->target_ongoing_requests);
    return d;
}
