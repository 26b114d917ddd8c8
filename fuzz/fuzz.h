/*
 * fuzz.h - what the libFuzzer targets share: a check that stays on in
 * every build type (assert would vanish under NDEBUG), so that a broken
 * invariant is a crash libFuzzer saves and reports.
 */
#ifndef SERVE_FUZZ_H
#define SERVE_FUZZ_H

#include <stdio.h>
#include <stdlib.h>

#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: invariant broken: %s\n", __FILE__, __LINE__, #cond);           \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#endif
