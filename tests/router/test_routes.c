/*
 * test_routes.c - the route table: longest prefix wins, on segment
 * boundaries, and the route path is what follows the prefix.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "router/router.h"

static int target_a, target_b, target_c, target_root;

static routes *make(const route_entry *e, size_t n)
{
    routes *t = NULL;
    cr_assert_eq(routes_new(e, n, &t), 0);
    return t;
}

/* Match `path`; return the app name or NULL, and the rest in *rest. */
static const char *app_of(const routes *t, const char *path, const char **rest)
{
    const route_entry *e = routes_match(t, path, rest);
    return e ? e->app : NULL;
}

Test(routes, longest_prefix_wins_whatever_the_order_given)
{
    route_entry e[] = {
        {"/a", "a", &target_a}, {"/a/b/c", "c", &target_c}, {"/a/b", "b", &target_b}};
    routes *t = make(e, 3);
    const char *rest;
    cr_expect_str_eq(app_of(t, "/a/b/c/d", &rest), "c");
    cr_expect_str_eq(rest, "/d");
    cr_expect_str_eq(app_of(t, "/a/b/x", &rest), "b");
    cr_expect_str_eq(rest, "/x");
    cr_expect_str_eq(app_of(t, "/a/x", &rest), "a");
    cr_expect_eq(routes_match(t, "/a/b", &rest)->target, &target_b);
    routes_free(t);
}

Test(routes, a_prefix_matches_only_on_a_segment_boundary)
{
    route_entry e[] = {{"/echo", "echo", &target_a}};
    routes *t = make(e, 1);
    const char *rest = NULL;
    cr_expect_null(app_of(t, "/echoes", &rest));
    cr_expect_null(app_of(t, "/ech", &rest));
    cr_expect_null(app_of(t, "/", &rest));
    cr_expect_str_eq(app_of(t, "/echo", &rest), "echo");
    cr_expect_str_eq(rest, "/", "an exact match leaves the root as route path");
    cr_expect_str_eq(app_of(t, "/echo/", &rest), "echo");
    cr_expect_str_eq(rest, "/");
    routes_free(t);
}

Test(routes, the_root_prefix_catches_what_nothing_longer_matches)
{
    route_entry e[] = {{"/", "root", &target_root}, {"/api", "api", &target_a}};
    routes *t = make(e, 2);
    const char *rest;
    cr_expect_str_eq(app_of(t, "/api/v1", &rest), "api");
    cr_expect_str_eq(rest, "/v1");
    cr_expect_str_eq(app_of(t, "/apix", &rest), "root");
    cr_expect_str_eq(rest, "/apix", "under / the route path is the whole path");
    cr_expect_str_eq(app_of(t, "/", &rest), "root");
    cr_expect_str_eq(rest, "/");
    routes_free(t);
}

Test(routes, an_empty_table_matches_nothing)
{
    routes *t = make(NULL, 0);
    const char *rest;
    cr_expect_null(routes_match(t, "/", &rest));
    cr_expect_eq(routes_count(t), 0);
    cr_expect_null(routes_at(t, 0));
    routes_free(t);
}

Test(routes, duplicate_or_malformed_prefixes_are_refused)
{
    routes *t = NULL;
    route_entry dup[] = {{"/a", "x", NULL}, {"/a", "y", NULL}};
    cr_expect_eq(routes_new(dup, 2, &t), -EINVAL);
    const char *bad[] = {"", "a", "/a/", NULL};
    for (int i = 0; i < 4; i++) {
        route_entry e = {bad[i], "x", NULL};
        cr_expect_eq(routes_new(&e, 1, &t), -EINVAL, "prefix '%s' should be refused",
                     bad[i] ? bad[i] : "(null)");
    }
}

Test(routes, entries_are_copied_and_listed_longest_first)
{
    char prefix[] = "/short", app[] = "s";
    route_entry e[] = {{prefix, app, NULL}, {"/much/longer", "l", NULL}};
    routes *t = make(e, 2);
    strcpy(prefix, "/xxxxx");
    strcpy(app, "z");
    cr_expect_eq(routes_count(t), 2);
    cr_expect_str_eq(routes_at(t, 0)->prefix, "/much/longer");
    cr_expect_str_eq(routes_at(t, 1)->prefix, "/short");
    cr_expect_str_eq(routes_at(t, 1)->app, "s");
    routes_free(t);
}
