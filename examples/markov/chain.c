/*
 * chain.c - the Markov chain computations of chain.h.
 */
#include "chain.h"

#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MARKOV_SUM_TOLERANCE 1e-9 /* per state: a row may sum to 1 +- this * n */

/* Check row i of an n x n matrix: finite entries >= 0 summing to 1. */
static int check_row(const double *row, size_t i, size_t n, char *err, size_t err_size)
{
    double sum = 0.0;
    for (size_t j = 0; j < n; j++) {
        if (!isfinite(row[j])) {
            snprintf(err, err_size, "row %zu, column %zu: not a finite number", i, j);
            return -EINVAL;
        }
        if (row[j] < 0.0) {
            snprintf(err, err_size, "row %zu, column %zu: %g is negative", i, j, row[j]);
            return -EINVAL;
        }
        sum += row[j];
    }
    if (fabs(sum - 1.0) > MARKOV_SUM_TOLERANCE * (double)n) {
        snprintf(err, err_size, "row %zu sums to %.17g, not 1", i, sum);
        return -EINVAL;
    }
    return 0;
}

int markov_check(const double *p, size_t rows, size_t cols, char *err, size_t err_size)
{
    if (rows == 0 || rows != cols) {
        snprintf(err, err_size, "%zux%zu: a transition matrix is square and not empty", rows, cols);
        return -EINVAL;
    }
    for (size_t i = 0; i < rows; i++) {
        int rc = check_row(p + i * cols, i, cols, err, err_size);
        if (rc != 0) return rc;
    }
    return 0;
}

/* The largest difference between an entry of q (n x n) and the entry of
   its first row in the same column: 0 when all rows agree. */
static double row_spread(const double *q, size_t n)
{
    double spread = 0.0;
    for (size_t i = 1; i < n; i++)
        for (size_t j = 0; j < n; j++) spread = fmax(spread, fabs(q[i * n + j] - q[j]));
    return spread;
}

/* The mean of q's rows, renormalised to sum 1 (rounding drifts with every
   product), into dist. */
static void mean_row(const double *q, size_t n, double *dist)
{
    double sum = 0.0;
    memset(dist, 0, n * sizeof(double));
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++) dist[j] += q[i * n + j];
    for (size_t j = 0; j < n; j++) sum += dist[j];
    for (size_t j = 0; j < n; j++) dist[j] /= sum;
}

/*
 * Square q (n x n) until its rows agree or MARKOV_MAX_SQUARINGS products
 * are done, using `next` as the second buffer (dgemm cannot work in
 * place). Returns the last power computed, which is q or next; *products
 * gets the products done and *spread how far its rows still are apart.
 */
static const double *square(double *q, double *next, size_t n, int *products, double *spread)
{
    blasint m = (blasint)n;
    *products = 0;
    while ((*spread = row_spread(q, n)) > MARKOV_TOLERANCE && *products < MARKOV_MAX_SQUARINGS) {
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, m, m, 1.0, q, m, q, m, 0.0, next,
                    m);
        double *t = q;
        q = next;
        next = t;
        ++*products;
    }
    return q;
}

int markov_limit(const double *p, size_t n, double *dist, int *products, char *err, size_t err_size)
{
    double *block = malloc(2 * n * n * sizeof(double)), spread;
    if (!block) {
        snprintf(err, err_size, "out of memory for two %zux%zu matrices", n, n);
        return -ENOMEM;
    }
    memcpy(block, p, n * n * sizeof(double));
    const double *power = square(block, block + n * n, n, products, &spread);
    int rc = spread <= MARKOV_TOLERANCE ? 0 : -EDOM;
    if (rc == 0)
        mean_row(power, n, dist);
    else
        snprintf(err, err_size,
                 "no limit distribution: the rows of P^(2^%d) still differ by %.3g; "
                 "the chain is periodic or reducible",
                 *products, spread);
    free(block);
    return rc;
}

/* splitmix64: a small, good generator with one 64-bit state. */
static uint64_t next_random(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void markov_random(double *p, size_t n, uint64_t seed)
{
    uint64_t s = seed;
    for (size_t i = 0; i < n; i++) {
        double *row = p + i * n, sum = 0.0;
        for (size_t j = 0; j < n; j++)
            sum += row[j] = (double)((next_random(&s) >> 11) + 1) * 0x1.0p-53;
        for (size_t j = 0; j < n; j++) row[j] /= sum;
    }
}
