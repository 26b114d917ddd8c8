/*
 * test_deadlines.c - the deadline heap always yields the earliest deadline,
 * through pushes and removals in any order.
 */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdlib.h>

#include "router/router.h"

#define N 500

Test(deadlines, the_top_is_always_the_earliest_through_random_removals)
{
    static dheap_node nodes[N];
    static int in_heap[N];
    dheap h = {0};
    uint64_t x = 12345;
    for (int i = 0; i < N; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        nodes[i].at = x >> 40;
        cr_assert_eq(dheap_push(&h, &nodes[i]), 0);
        in_heap[i] = 1;
    }
    /* remove every third node from the middle of the heap */
    for (int i = 0; i < N; i += 3) {
        dheap_remove(&h, &nodes[i]);
        in_heap[i] = 0;
        cr_assert_eq(nodes[i].index, SIZE_MAX);
    }
    uint64_t last = 0;
    size_t popped = 0;
    dheap_node *top;
    while ((top = dheap_top(&h))) {
        cr_assert_geq(top->at, last, "deadlines come out in order");
        last = top->at;
        int i = (int)(top - nodes);
        cr_assert(in_heap[i], "a removed node came back");
        in_heap[i] = 0;
        dheap_remove(&h, top);
        popped++;
    }
    cr_expect_eq(popped, (size_t)(N - (N + 2) / 3));
    dheap_free(&h);
}

Test(deadlines, removing_a_node_twice_or_one_never_pushed_is_harmless)
{
    dheap h = {0};
    dheap_node a = {.at = 5}, b = {.at = 1, .index = SIZE_MAX};
    cr_assert_eq(dheap_push(&h, &a), 0);
    dheap_remove(&h, &b);
    cr_expect_eq(dheap_top(&h), &a);
    dheap_remove(&h, &a);
    dheap_remove(&h, &a);
    cr_expect_null(dheap_top(&h));
    dheap_free(&h);
}
