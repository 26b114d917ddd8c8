/*
 * autoscaler.h - the autoscaling policy.
 *
 * The policy will be a pure function of (autoscaling_config, a window of
 * ongoing-request samples, the clock) returning the desired replica count,
 * so that it can be unit tested with a simulated clock; the controller feeds
 * it the router's metrics and applies its decisions like a manual change of
 * num_replicas. Until it lands, `autoscaling_config` is parsed and validated
 * and a deployment runs its `initial_replicas`.
 */
#ifndef SERVE_AUTOSCALER_H
#define SERVE_AUTOSCALER_H

#endif
