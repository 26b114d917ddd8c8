/*
 * shape.h - a load shape: how many concurrent clients the load generator
 * runs at each moment.
 *
 * A shape is written as segments separated by commas, each
 *
 *     [label:]CLIENTS/SECONDS          hold CLIENTS for SECONDS
 *     [label:]FROM..TO/SECONDS         go linearly from FROM to TO clients
 *
 * e.g. "ramp:0..16/20,hold:16/15,spike:40/6,idle:0/20". Labels (up to
 * SHAPE_LABEL_MAX - 1 characters) name the phase in the live view; without
 * one a segment is called "ramp", "hold" or "idle" from its numbers.
 *
 * Pure functions, no I/O: the tests drive them directly.
 */
#ifndef SERVE_EXAMPLES_SHAPE_H
#define SERVE_EXAMPLES_SHAPE_H

#include <stddef.h>

#define SHAPE_MAX_SEGMENTS 32
#define SHAPE_LABEL_MAX    16
#define SHAPE_MAX_CLIENTS  1024
#define SHAPE_MAX_SECONDS  3600.0

typedef struct shape_segment {
    char label[SHAPE_LABEL_MAX];
    double from, to; /* clients at the start and at the end */
    double seconds;  /* > 0 */
} shape_segment;

typedef struct shape {
    shape_segment seg[SHAPE_MAX_SEGMENTS];
    int n;
    double total_s; /* sum of the segments' seconds */
    int peak;       /* the most clients at any moment */
} shape;

/* Parse `spec` into `s`. Returns 0, or -EINVAL with a message naming the
   segment in err (errlen bytes). */
int shape_parse(shape *s, const char *spec, char *err, size_t errlen);

/* Clients at `t` seconds from the start (rounded to the nearest), 0 from
   the end on. When label is not NULL it gets the segment's label (the last
   one's from the end on). */
int shape_clients_at(const shape *s, double t, const char **label);

#endif
