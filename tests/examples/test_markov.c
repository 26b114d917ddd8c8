/*
 * test_markov.c - the Markov example's chain computations
 * (examples/markov/chain.h) against power iteration and closed forms.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <string.h>

#include "examples/markov/chain.h"

#define MAX_N 8

/* The stationary distribution by power iteration, pi <- pi P from the
   uniform distribution until it stops moving. */
static void power_iteration(const double *p, size_t n, double *pi)
{
    double next[MAX_N], change = 1;
    for (size_t j = 0; j < n; j++) pi[j] = 1.0 / (double)n;
    for (int it = 0; it < 100000 && change > 1e-15; it++) {
        change = 0;
        for (size_t j = 0; j < n; j++) {
            next[j] = 0;
            for (size_t i = 0; i < n; i++) next[j] += pi[i] * p[i * n + j];
        }
        for (size_t j = 0; j < n; j++) change = fmax(change, fabs(next[j] - pi[j]));
        memcpy(pi, next, n * sizeof(double));
    }
    cr_assert_leq(change, 1e-15, "power iteration did not settle");
}

/* markov_limit's answer for a checked n x n matrix; *products its count. */
static void limit(const double *p, size_t n, double *dist, int *products)
{
    char err[256] = "";
    cr_assert_eq(markov_check(p, n, n, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(markov_limit(p, n, dist, products, err, sizeof(err)), 0, "%s", err);
}

static void assert_same_distribution(const double *p, size_t n)
{
    double dist[MAX_N], pi[MAX_N], sum = 0;
    int products;
    limit(p, n, dist, &products);
    power_iteration(p, n, pi);
    for (size_t j = 0; j < n; j++) {
        cr_assert_float_eq(dist[j], pi[j], 1e-9, "state %zu: %.17g, expected %.17g", j, dist[j],
                           pi[j]);
        sum += dist[j];
    }
    cr_assert_float_eq(sum, 1.0, 1e-12);
}

Test(markov, a_3x3_chain_has_the_power_iteration_distribution)
{
    const double p[] = {0.5, 0.3, 0.2, 0.1, 0.8, 0.1, 0.25, 0.25, 0.5};
    assert_same_distribution(p, 3);
}

Test(markov, a_random_5x5_chain_has_the_power_iteration_distribution)
{
    double p[25];
    markov_random(p, 5, 7);
    assert_same_distribution(p, 5);
}

/*
 * The two-state chain [[1-a, a], [b, 1-b]] has P^m = Pi + l^m (I - Pi)
 * with l = 1 - a - b, so the rows of P^m differ by |l|^m exactly. With
 * l = 0.5, 0.5^32 is above 1e-12 and 0.5^64 below: six squarings. With
 * l = 0.9, 0.9^256 = 1.9e-12 and 0.9^512 = 3.6e-24: nine.
 */
Test(markov, the_product_count_is_the_squarings_the_rows_need_to_agree)
{
    const double half[] = {0.75, 0.25, 0.25, 0.75}, slow[] = {0.95, 0.05, 0.05, 0.95};
    double dist[2];
    int products;
    limit(half, 2, dist, &products);
    cr_assert_eq(products, 6);
    cr_assert_float_eq(dist[0], 0.5, 1e-12);
    limit(slow, 2, dist, &products);
    cr_assert_eq(products, 9);
}

Test(markov, a_matrix_whose_rows_agree_needs_no_product)
{
    const double p[] = {0.2, 0.8, 0.2, 0.8};
    double dist[2];
    int products;
    limit(p, 2, dist, &products);
    cr_assert_eq(products, 0);
    cr_assert_float_eq(dist[1], 0.8, 1e-15);
}

/* The error markov_limit gives for a chain without a limit. */
static const char *no_limit(const double *p, size_t n)
{
    static char err[256];
    double dist[MAX_N];
    int products = -1;
    err[0] = '\0';
    cr_assert_eq(markov_check(p, n, n, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(markov_limit(p, n, dist, &products, err, sizeof(err)), -EDOM);
    cr_assert_eq(products, MARKOV_MAX_SQUARINGS);
    return err;
}

Test(markov, a_periodic_chain_does_not_converge)
{
    const double p[] = {0, 1, 1, 0};
    const char *err = no_limit(p, 2);
    cr_assert(strstr(err, "P^(2^64) still differ by 1; the chain is periodic or reducible"), "%s",
              err);
}

Test(markov, a_reducible_chain_does_not_converge)
{
    const double p[] = {1, 0, 0, 0, 0.5, 0.5, 0, 0.5, 0.5};
    no_limit(p, 3);
}

/* The error markov_check gives for `p` (the test fails if it accepts it). */
static const char *refused(const double *p, size_t rows, size_t cols)
{
    static char err[256];
    err[0] = '\0';
    cr_assert_eq(markov_check(p, rows, cols, err, sizeof(err)), -EINVAL, "accepted");
    return err;
}

Test(markov, non_stochastic_matrices_are_refused_with_the_first_fault)
{
    const double negative[] = {0.5, 0.5, 1.5, -0.5};
    const double heavy[] = {0.5, 0.5, 0.6, 0.6};
    const double nan[] = {0.5, 0.5, NAN, 1};
    cr_assert_str_eq(refused(negative, 2, 2), "row 1, column 1: -0.5 is negative");
    cr_assert_str_eq(refused(heavy, 2, 2), "row 1 sums to 1.2, not 1");
    cr_assert_str_eq(refused(nan, 2, 2), "row 1, column 0: not a finite number");
}

Test(markov, row_sums_may_be_off_by_a_billionth_per_state)
{
    const double p[] = {0.5, 0.5 + 1.5e-9, 0.5, 0.5 - 1.5e-9};
    const double q[] = {0.5, 0.5 + 2.5e-9, 0.5, 0.5};
    char err[256];
    cr_assert_eq(markov_check(p, 2, 2, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(markov_check(q, 2, 2, err, sizeof(err)), -EINVAL);
}

Test(markov, non_square_and_empty_matrices_are_refused)
{
    const double p[] = {0.5, 0.5, 0, 0.5, 0.5, 0};
    cr_assert_str_eq(refused(p, 2, 3), "2x3: a transition matrix is square and not empty");
    cr_assert_str_eq(refused(p, 0, 0), "0x0: a transition matrix is square and not empty");
}

Test(markov, a_random_chain_is_positive_stochastic_and_reproducible)
{
    double p[64], q[64];
    char err[256];
    markov_random(p, 8, 123);
    markov_random(q, 8, 123);
    cr_assert_eq(memcmp(p, q, sizeof(p)), 0);
    for (size_t i = 0; i < 64; i++) cr_assert_gt(p[i], 0);
    cr_assert_eq(markov_check(p, 8, 8, err, sizeof(err)), 0, "%s", err);
    markov_random(q, 8, 124);
    cr_assert_neq(memcmp(p, q, sizeof(p)), 0);
}
