/*
 * test_autoscaler.c - the autoscaling policy, rule by rule, on a simulated
 * clock: samples every 0.1 s, decisions at chosen times.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "autoscaler/autoscaler.h"

static as_params params(void)
{
    return (as_params){.min_replicas = 1,
                       .max_replicas = 10,
                       .target_ongoing_requests = 2,
                       .look_back_period_s = 0.15, /* about the last sample */
                       .upscale_delay_s = 1,
                       .downscale_delay_s = 2,
                       .downscale_to_zero_delay_s = -1,
                       .upscaling_factor = 1,
                       .downscaling_factor = 1};
}

static as_state st;
static double clock_s;
static char moves[4096]; /* the reasons of the moves run() made */

static void setup(void)
{
    as_init(&st);
    clock_s = 0;
    moves[0] = '\0';
}

static void teardown(void)
{
    as_free(&st);
}

TestSuite(autoscaler, .init = setup, .fini = teardown);

/* Feed `load` every 0.1 s for `seconds`, deciding after each sample and
   applying each decision to *current, as the controller does. Returns the
   last decision; `moves` collects the reasons of the moves made. */

static as_decision run(const as_params *p, double load, double seconds, int *current)
{
    as_decision d = {0};
    for (double end = clock_s + seconds; clock_s < end - 1e-9;) {
        clock_s += 0.1;
        cr_assert_eq(as_record(&st, p, clock_s, load), 0);
        d = as_decide(&st, p, clock_s, *current);
        if (d.target != *current) {
            strncat(moves, d.reason, sizeof(moves) - strlen(moves) - 2);
            strcat(moves, "\n");
        }
        *current = d.target;
    }
    return d;
}

Test(autoscaler, desired_is_the_load_over_the_target_rounded_up)
{
    as_params p = params();
    int cur = 1;
    as_decision d = run(&p, 7, 1.5, &cur);
    cr_expect_eq(d.desired, 4, "7 ongoing / 2 per replica -> 4");
    cr_expect_eq(cur, 4);
    cr_expect(d.metric > 6.99 && d.metric < 7.01);
    cr_expect(strstr(moves, "scale up 1 -> 4"), "%s", moves);
}

Test(autoscaler, an_upscale_waits_for_its_delay)
{
    as_params p = params();
    int cur = 1;
    as_decision d = run(&p, 8, 0.8, &cur);
    cr_expect_eq(cur, 1, "not before upscale_delay_s");
    cr_expect(strstr(d.reason, "pending"), "%s", d.reason);
    run(&p, 8, 0.3, &cur);
    cr_expect_eq(cur, 4, "after upscale_delay_s");
}

Test(autoscaler, an_opposite_signal_resets_the_timer)
{
    as_params p = params();
    int cur = 2;
    run(&p, 8, 0.7, &cur); /* up signal held 0.7 s */
    run(&p, 0, 0.5, &cur); /* a down signal */
    run(&p, 8, 0.7, &cur);
    cr_expect_eq(cur, 2, "the up timer started again: 0.7 s is not enough");
    /* The first sample after a change averages old and new load in the
       window, so the new timer starts one sample late: 1.1 s in all. */
    run(&p, 8, 0.5, &cur);
    cr_expect_eq(cur, 4);
}

Test(autoscaler, a_steady_load_keeps_the_count_and_clears_timers)
{
    as_params p = params();
    int cur = 2;
    as_decision d = run(&p, 4, 5, &cur);
    cr_expect_eq(cur, 2);
    cr_expect(strstr(d.reason, "steady"), "%s", d.reason);
    cr_expect_lt(st.up_since, 0);
    cr_expect_lt(st.down_since, 0);
}

Test(autoscaler, factors_move_part_of_the_gap_rounding_up)
{
    as_params p = params();
    p.upscaling_factor = 0.5;
    int cur = 1;
    run(&p, 18, 1.2, &cur); /* desired 9, gap 8 -> a step of 4 */
    cr_expect_eq(cur, 5);
    run(&p, 18, 1.0, &cur); /* gap 4 -> 2 */
    cr_expect_eq(cur, 7);
    p.downscaling_factor = 0.1;
    run(&p, 2, 2.1, &cur); /* desired 1, gap 6 -> 0.6 -> at least one */
    cr_expect_eq(cur, 6);
}

Test(autoscaler, the_count_stays_within_min_and_max)
{
    as_params p = params();
    p.max_replicas = 3;
    int cur = 1;
    run(&p, 100, 1.5, &cur);
    cr_expect_eq(cur, 3);
    p.min_replicas = 2;
    run(&p, 0, 4.5, &cur);
    cr_expect_eq(cur, 2);
}

Test(autoscaler, a_downscale_waits_for_its_own_delay)
{
    as_params p = params();
    int cur = 3;
    run(&p, 0, 1.5, &cur);
    cr_expect_eq(cur, 3, "downscale_delay_s is 2 s");
    run(&p, 0, 0.6, &cur);
    cr_expect_eq(cur, 1);
}

Test(autoscaler, zero_only_from_one_replica_after_the_to_zero_delay)
{
    as_params p = params();
    p.min_replicas = 0;
    p.downscale_to_zero_delay_s = 4;
    int cur = 3;
    run(&p, 0, 2.1, &cur);
    cr_expect_eq(cur, 1, "first down to one, after downscale_delay_s: %s", moves);
    run(&p, 0, 3.5, &cur);
    cr_expect_eq(cur, 1, "then zero only after downscale_to_zero_delay_s");
    run(&p, 0, 0.6, &cur);
    cr_expect_eq(cur, 0);
}

Test(autoscaler, without_a_to_zero_delay_the_downscale_delay_applies)
{
    as_params p = params();
    p.min_replicas = 0;
    int cur = 1;
    run(&p, 0, 1.9, &cur);
    cr_expect_eq(cur, 1);
    run(&p, 0, 0.2, &cur);
    cr_expect_eq(cur, 0);
}

Test(autoscaler, from_zero_a_request_scales_up_at_once)
{
    as_params p = params();
    p.min_replicas = 0;
    p.upscale_delay_s = 30;
    int cur = 0;
    as_decision d = run(&p, 1, 0.1, &cur);
    cr_expect_eq(cur, 1, "no upscale delay from zero");
    cr_expect(strstr(d.reason, "from zero"), "%s", d.reason);
}

Test(autoscaler, the_average_covers_only_the_look_back_period)
{
    as_params p = params();
    p.look_back_period_s = 0.5;
    int cur = 1;
    p.upscale_delay_s = 100; /* only the metric is looked at here */
    run(&p, 100, 1, &cur);   /* a burst before the window */
    as_decision d = run(&p, 2, 0.6, &cur);
    cr_expect(d.metric > 1.99 && d.metric < 2.01, "old samples must not count: %f", d.metric);
    cr_expect_eq(d.desired, 1);
}
