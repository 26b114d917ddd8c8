/*
 * routes.c - the route table: longest route prefix wins, on path segment
 * boundaries. Entries are sorted longest first once, so a match is the
 * first hit of a linear scan; applications are few, and a scan of a few
 * short strings beats hashing every prefix of the path.
 */
#include "router/router.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct routes {
    route_entry *entries;
    size_t *prefix_len;
    size_t n;
};

static int prefix_ok(const char *p)
{
    size_t n = p ? strlen(p) : 0;
    return n > 0 && p[0] == '/' && (n == 1 || p[n - 1] != '/');
}

static int by_length_desc(const void *a, const void *b)
{
    size_t la = strlen(((const route_entry *)a)->prefix);
    size_t lb = strlen(((const route_entry *)b)->prefix);
    return (la < lb) - (la > lb);
}

static void free_entries(route_entry *e, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free((char *)e[i].prefix);
        free((char *)e[i].app);
    }
    free(e);
}

int routes_new(const route_entry *entries, size_t n, routes **out)
{
    routes *t = calloc(1, sizeof(*t));
    if (!t) return -ENOMEM;
    t->entries = calloc(n ? n : 1, sizeof(*t->entries));
    t->prefix_len = calloc(n ? n : 1, sizeof(*t->prefix_len));
    if (!t->entries || !t->prefix_len) goto fail_nomem;
    for (; t->n < n; t->n++) {
        const route_entry *e = &entries[t->n];
        if (!prefix_ok(e->prefix)) goto fail_inval;
        for (size_t j = 0; j < t->n; j++)
            if (strcmp(t->entries[j].prefix, e->prefix) == 0) goto fail_inval;
        char *prefix = strdup(e->prefix), *app = strdup(e->app ? e->app : "");
        t->entries[t->n] = (route_entry){prefix, app, e->target};
        if (!prefix || !app) {
            t->n++;
            goto fail_nomem;
        }
    }
    qsort(t->entries, t->n, sizeof(*t->entries), by_length_desc);
    for (size_t i = 0; i < t->n; i++) t->prefix_len[i] = strlen(t->entries[i].prefix);
    *out = t;
    return 0;

fail_inval:
    routes_free(t);
    return -EINVAL;
fail_nomem:
    routes_free(t);
    return -ENOMEM;
}

void routes_free(routes *t)
{
    if (!t) return;
    free_entries(t->entries, t->n);
    free(t->prefix_len);
    free(t);
}

const route_entry *routes_match(const routes *t, const char *path, const char **rest)
{
    for (size_t i = 0; t && i < t->n; i++) {
        size_t len = t->prefix_len[i];
        if (len == 1) { /* "/" serves every path */
            *rest = path;
            return &t->entries[i];
        }
        if (strncmp(path, t->entries[i].prefix, len) == 0 &&
            (path[len] == '\0' || path[len] == '/')) {
            *rest = path[len] ? path + len : "/";
            return &t->entries[i];
        }
    }
    return NULL;
}

size_t routes_count(const routes *t)
{
    return t ? t->n : 0;
}

const route_entry *routes_at(const routes *t, size_t i)
{
    return i < routes_count(t) ? &t->entries[i] : NULL;
}
