/*
 * test_balancer.c - replica choice: never a full replica, -1 only when all
 * are full, and power of two choices follows load.
 */
#include <criterion/criterion.h>

#include "router/router.h"

#define N 4

static lb_candidate slots[N];
static lb_candidate *view[N];

static void setup(void)
{
    for (int i = 0; i < N; i++) {
        slots[i] = (lb_candidate){0, 2};
        view[i] = &slots[i];
    }
}

TestSuite(balancer, .init = setup);

static void never_full_and_never_refuses_with_room(const balancer_ops *b)
{
    uint64_t state = 42;
    /* Fill the replicas one request at a time: every pick must land on a
       replica with room until all are full, then -1. */
    for (int k = 0; k < N * 2; k++) {
        int i = b->pick(view, N, &state);
        cr_assert(i >= 0 && i < N, "%s refused with room left (pick %d)", b->name, k);
        cr_assert_lt(slots[i].ongoing, slots[i].capacity, "%s chose a full replica", b->name);
        slots[i].ongoing++;
    }
    cr_expect_eq(b->pick(view, N, &state), -1, "%s: all full must give -1", b->name);
}

Test(balancer, p2c_never_picks_a_full_replica_and_fills_all_before_refusing)
{
    never_full_and_never_refuses_with_room(&balancer_p2c);
}

Test(balancer, round_robin_never_picks_a_full_replica_and_fills_all_before_refusing)
{
    never_full_and_never_refuses_with_room(&balancer_round_robin);
}

Test(balancer, p2c_prefers_the_less_loaded_of_its_two_samples)
{
    /* Replica 0 idle, the others busy: over many picks 0 wins every pair it
       is in, i.e. about half of all picks (3 of the 6 pairs), while each
       busy one can only win pairs against another busy one. */
    for (int i = 0; i < N; i++) slots[i] = (lb_candidate){5, 100};
    slots[0].ongoing = 0;
    uint64_t state = 7;
    int wins[N] = {0};
    for (int k = 0; k < 12000; k++) wins[balancer_p2c.pick(view, N, &state)]++;
    cr_expect(wins[0] > 5400 && wins[0] < 6600, "idle replica won %d of 12000", wins[0]);
    for (int i = 1; i < N; i++) cr_expect(wins[i] > 1500, "replica %d won %d", i, wins[i]);
}

Test(balancer, p2c_spreads_evenly_over_equal_replicas)
{
    for (int i = 0; i < N; i++) slots[i] = (lb_candidate){0, 1000};
    uint64_t state = 1;
    int wins[N] = {0};
    for (int k = 0; k < 8000; k++) wins[balancer_p2c.pick(view, N, &state)]++;
    for (int i = 0; i < N; i++) cr_expect(wins[i] > 1500, "replica %d won %d of 8000", i, wins[i]);
}

Test(balancer, one_or_zero_replicas)
{
    uint64_t state = 3;
    cr_expect_eq(balancer_p2c.pick(view, 0, &state), -1);
    cr_expect_eq(balancer_p2c.pick(view, 1, &state), 0);
    slots[0].ongoing = slots[0].capacity;
    cr_expect_eq(balancer_p2c.pick(view, 1, &state), -1);
    cr_expect_eq(balancer_round_robin.pick(view, 1, &state), -1);
}

Test(balancer, when_both_samples_are_full_another_replica_with_room_is_found)
{
    for (int i = 0; i < N; i++) slots[i] = (lb_candidate){1, 1};
    slots[3].ongoing = 0;
    for (uint64_t seed = 1; seed < 200; seed++) {
        uint64_t state = seed;
        cr_assert_eq(balancer_p2c.pick(view, N, &state), 3, "seed %lu", (unsigned long)seed);
    }
}

Test(balancer, strategies_are_found_by_name)
{
    cr_expect_eq(balancer_find("power_of_two_choices"), &balancer_p2c);
    cr_expect_eq(balancer_find("round_robin"), &balancer_round_robin);
    cr_expect_null(balancer_find("random"));
}
