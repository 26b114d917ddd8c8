/*
 * autoscaler.h - the autoscaling policy: how many replicas a deployment
 * should have, from its recent load.
 *
 * A pure function of (parameters, a window of metric samples, the clock):
 * no I/O, no global state, time passed in by the caller, so unit tests drive
 * it with a simulated clock. The controller records samples of the metric
 * (requests ongoing at the replicas plus queued at the router), asks for a
 * decision, and applies it like a manual change of num_replicas.
 *
 * The rules are Ray Serve's defaults:
 *   - the metric is averaged over look_back_period_s;
 *   - desired = ceil(average / target_ongoing_requests), clamped to
 *     [min_replicas, max_replicas];
 *   - a move covers upscaling_factor / downscaling_factor of the gap,
 *     rounded up, and at least one replica when a decrease is due;
 *   - a move happens only once its signal has held for upscale_delay_s /
 *     downscale_delay_s; an opposite (or no) signal resets the timer;
 *   - to zero only from one replica, after downscale_to_zero_delay_s (or
 *     downscale_delay_s when that is negative);
 *   - from zero, up at once as soon as any load is seen.
 */
#ifndef SERVE_AUTOSCALER_H
#define SERVE_AUTOSCALER_H

#include <stddef.h>

typedef struct as_params {
    int min_replicas;
    int max_replicas;
    double target_ongoing_requests;
    double look_back_period_s;
    double upscale_delay_s;
    double downscale_delay_s;
    double downscale_to_zero_delay_s; /* < 0: use downscale_delay_s */
    double upscaling_factor;
    double downscaling_factor;
} as_params;

typedef struct as_sample {
    double t;     /* seconds, the caller's clock */
    double value; /* ongoing + queued requests at that time */
} as_sample;

/* The window of samples and the pending signal's timer. Zero-initialise,
   then call as_free when done. */
typedef struct as_state {
    as_sample *samples; /* oldest first */
    size_t n, cap;
    double up_since;   /* when the current upscale signal began, or -1 */
    double down_since; /* likewise for downscale */
} as_state;

typedef struct as_decision {
    int target;       /* replicas to have now */
    double metric;    /* the averaged metric the decision used */
    int desired;      /* where the metric points, clamped */
    char reason[160]; /* one line, for logs and status */
} as_decision;

void as_init(as_state *s);
void as_free(as_state *s);

/* Add a sample taken at `now`; samples older than the look-back period
   are dropped. Returns 0 or -ENOMEM. */
int as_record(as_state *s, const as_params *p, double now, double value);

/* The decision for a deployment that has `current` replicas, at `now`. */
as_decision as_decide(as_state *s, const as_params *p, double now, int current);

#endif
