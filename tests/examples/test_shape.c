/*
 * test_shape.c - the load generator's load shapes (examples/autoscale/shape.h).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "examples/autoscale/shape.h"

static shape parsed(const char *spec)
{
    shape s;
    char err[256] = "";
    cr_assert_eq(shape_parse(&s, spec, err, sizeof(err)), 0, "%s: %s", spec, err);
    return s;
}

/* The error shape_parse gives for `spec` (the test fails if it accepts it). */
static const char *refused(const char *spec)
{
    static char err[256];
    shape s;
    err[0] = '\0';
    cr_assert_eq(shape_parse(&s, spec, err, sizeof(err)), -EINVAL, "'%s' was accepted", spec);
    cr_assert_neq(err[0], '\0');
    return err;
}

Test(shape, segments_keep_their_labels_length_and_peak)
{
    shape s = parsed("ramp:0..16/20,hold:16/15,spike:40/6.5,idle:0/20");
    cr_assert_eq(s.n, 4);
    cr_assert_str_eq(s.seg[0].label, "ramp");
    cr_assert_str_eq(s.seg[2].label, "spike");
    cr_assert_float_eq(s.seg[0].from, 0, 1e-9);
    cr_assert_float_eq(s.seg[0].to, 16, 1e-9);
    cr_assert_float_eq(s.seg[2].seconds, 6.5, 1e-9);
    cr_assert_float_eq(s.total_s, 61.5, 1e-9);
    cr_assert_eq(s.peak, 40);
}

Test(shape, unlabelled_segments_are_named_from_their_numbers)
{
    shape s = parsed("0..4/1,4/1,0/1,4..1/1");
    cr_assert_str_eq(s.seg[0].label, "ramp");
    cr_assert_str_eq(s.seg[1].label, "hold");
    cr_assert_str_eq(s.seg[2].label, "idle");
    cr_assert_str_eq(s.seg[3].label, "ramp");
}

Test(shape, a_ramp_is_linear_and_rounded)
{
    shape s = parsed("up:0..10/10,down:10..0/10");
    const char *label = NULL;
    cr_assert_eq(shape_clients_at(&s, 0, &label), 0);
    cr_assert_str_eq(label, "up");
    cr_assert_eq(shape_clients_at(&s, 2.4, NULL), 2);
    cr_assert_eq(shape_clients_at(&s, 2.6, NULL), 3);
    cr_assert_eq(shape_clients_at(&s, 5, NULL), 5);
    cr_assert_eq(shape_clients_at(&s, 9.99, NULL), 10);
    cr_assert_eq(shape_clients_at(&s, 10, &label), 10);
    cr_assert_str_eq(label, "down");
    cr_assert_eq(shape_clients_at(&s, 17, NULL), 3);
}

Test(shape, a_hold_keeps_its_count_and_the_end_is_zero_clients)
{
    shape s = parsed("hold:7/2,last:3/1");
    const char *label = NULL;
    cr_assert_eq(shape_clients_at(&s, 0, NULL), 7);
    cr_assert_eq(shape_clients_at(&s, 1.999, NULL), 7);
    cr_assert_eq(shape_clients_at(&s, 2.5, NULL), 3);
    cr_assert_eq(shape_clients_at(&s, 3, &label), 0);
    cr_assert_str_eq(label, "last");
    cr_assert_eq(shape_clients_at(&s, 1e6, NULL), 0);
    cr_assert_eq(shape_clients_at(&s, -1, NULL), 7, "before the start is the first segment");
}

Test(shape, malformed_segments_are_refused_by_number)
{
    cr_assert(strstr(refused(""), "segment 1") != NULL);
    cr_assert(strstr(refused("4/1,"), "segment 2") != NULL);
    cr_assert(strstr(refused("4/1,,2/1"), "segment 2") != NULL);
    cr_assert(strstr(refused("4/1,5"), "segment 2 ('5')") != NULL);
    refused("5/0");
    refused("5/-1");
    refused("5/1x");
    refused("-1/1");
    refused("x..2/1");
    refused("1..x/1");
    refused("1...2/1");
    refused(":4/1");
    refused("4/3601");
    refused("1025/1");
    refused("a_label_far_too_long:1/1");
}

Test(shape, at_most_the_segment_limit)
{
    char spec[SHAPE_MAX_SEGMENTS * 8 + 16] = "";
    for (int i = 0; i < SHAPE_MAX_SEGMENTS; i++) strcat(spec, i ? ",1/1" : "1/1");
    shape s = parsed(spec);
    cr_assert_eq(s.n, SHAPE_MAX_SEGMENTS);
    strcat(spec, ",1/1");
    cr_assert(strstr(refused(spec), "more than") != NULL);
}
