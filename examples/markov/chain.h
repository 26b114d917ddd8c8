/*
 * chain.h - the limit distribution of a Markov chain, by repeated squaring
 * of its transition matrix on OpenBLAS.
 *
 * For an irreducible aperiodic chain, P^k tends to a matrix whose rows are
 * all the stationary distribution pi (pi = pi P). Squaring reaches P^(2^k)
 * in k matrix products, so a chain that mixes in a million steps takes 20.
 * A periodic or reducible chain has no such limit: its rows never agree.
 *
 * Matrices are n x n doubles, row-major. Pure computation, no plugin API.
 * Errors are 0 or a negative errno, with the reason in the caller's buffer.
 */
#ifndef MARKOV_CHAIN_H
#define MARKOV_CHAIN_H

#include <stddef.h>
#include <stdint.h>

#define MARKOV_MAX_SQUARINGS 64    /* P^(2^64): beyond any chain that mixes */
#define MARKOV_TOLERANCE     1e-12 /* rows agree: largest difference from row 0 */

/*
 * Check that p (rows x cols) is a transition matrix: square, every entry
 * finite and >= 0, every row summing to 1 within 1e-9 * n. Returns 0, or
 * -EINVAL with the first fault in `err` ("row 2, column 0: -0.5 is
 * negative", "row 1 sums to 1.2, not 1", "3x2: not square").
 */
int markov_check(const double *p, size_t rows, size_t cols, char *err, size_t err_size);

/*
 * The limit distribution of the checked n x n transition matrix p (left
 * as is): square it until every row of P^(2^k) agrees with the first within
 * MARKOV_TOLERANCE, then renormalise the mean row to sum 1 into dist (n
 * doubles). *products gets k, the matrix products done (0 when the rows of
 * p already agree). Returns 0; -EDOM when the rows still differ after
 * MARKOV_MAX_SQUARINGS products (a periodic or reducible chain), with
 * *products set and the reason in `err`; -ENOMEM.
 */
int markov_limit(const double *p, size_t n, double *dist, int *products, char *err,
                 size_t err_size);

/* Fill p (n x n) with a random transition matrix drawn from `seed`, the same
   for the same seed; every entry is > 0, so the chain has a limit. */
void markov_random(double *p, size_t n, uint64_t seed);

#endif
