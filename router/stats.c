/*
 * stats.c - the proxy's HTTP counters: requests by (application, route,
 * method, status code) and a latency histogram per (application, route).
 *
 * Entries are created when a route is set up and never freed before the
 * table: counters must only go up, so an application that is redeployed
 * keeps counting where it was. The label sets are bounded by what the
 * config names (methods outside the common ones count as OTHER), so a
 * client cannot grow the table by inventing paths or methods.
 */
#include "router/router.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const char *const method_names[] = {"GET",    "HEAD",    "POST",  "PUT",
                                           "DELETE", "OPTIONS", "PATCH", "OTHER"};
#define N_METHODS (sizeof(method_names) / sizeof(method_names[0]))

/* A count of requests with one method and status code. */
typedef struct status_count {
    unsigned short status;
    unsigned char method; /* index into method_names */
    uint64_t n;
} status_count;

struct http_route_stats {
    http_route_stats *next;
    char *app;
    char *route;
    metrics_hist latency;
    status_count *counts;
    size_t n_counts, cap_counts;
};

struct http_stats {
    http_route_stats *head, *tail; /* in creation order: a stable output */
};

int http_stats_new(http_stats **out)
{
    *out = calloc(1, sizeof(**out));
    return *out ? 0 : -ENOMEM;
}

void http_stats_free(http_stats *s)
{
    if (!s) return;
    for (http_route_stats *e = s->head, *next; e; e = next) {
        next = e->next;
        free(e->app);
        free(e->route);
        free(e->counts);
        free(e);
    }
    free(s);
}

http_route_stats *http_stats_route(http_stats *s, const char *app, const char *route)
{
    for (http_route_stats *e = s->head; e; e = e->next)
        if (strcmp(e->app, app) == 0 && strcmp(e->route, route) == 0) return e;
    http_route_stats *e = calloc(1, sizeof(*e));
    if (!e || !(e->app = strdup(app)) || !(e->route = strdup(route))) {
        if (e) free(e->app);
        free(e);
        return NULL;
    }
    if (s->tail)
        s->tail->next = e;
    else
        s->head = e;
    s->tail = e;
    return e;
}

static unsigned char method_index(const char *method)
{
    for (unsigned char i = 0; i < N_METHODS - 1; i++)
        if (strcmp(method, method_names[i]) == 0) return i;
    return N_METHODS - 1;
}

void http_stats_record(http_route_stats *e, const char *method, int status, double seconds)
{
    unsigned char m = method_index(method ? method : "");
    metrics_hist_observe(&e->latency, &metrics_latency_buckets, seconds);
    for (size_t i = 0; i < e->n_counts; i++)
        if (e->counts[i].status == status && e->counts[i].method == m) {
            e->counts[i].n++;
            return;
        }
    if (e->n_counts == e->cap_counts) {
        size_t cap = e->cap_counts ? e->cap_counts * 2 : 4;
        status_count *c = realloc(e->counts, cap * sizeof(*c));
        if (!c) return; /* the latency still counts; this one request is not shown */
        e->counts = c;
        e->cap_counts = cap;
    }
    e->counts[e->n_counts++] = (status_count){(unsigned short)status, m, 1};
}

/* requests_total, or errors_total (the 4xx and 5xx of it). */
static void write_counts(const http_stats *s, FILE *f, const char *name, int errors_only)
{
    for (const http_route_stats *e = s->head; e; e = e->next)
        for (size_t i = 0; i < e->n_counts; i++) {
            const status_count *c = &e->counts[i];
            if (errors_only && c->status < 400) continue;
            char code[8];
            snprintf(code, sizeof(code), "%u", c->status);
            metrics_sample(f, name,
                           (const char *[]){"application", e->app, "route", e->route, "method",
                                            method_names[c->method], "status_code", code, NULL},
                           (double)c->n);
        }
}

void http_stats_write(const http_stats *s, FILE *f)
{
    metrics_family(f, "serve_http_requests_total", "counter",
                   "HTTP requests answered by the proxy, by application, route prefix, method "
                   "and status code.");
    write_counts(s, f, "serve_http_requests_total", 0);
    metrics_family(f, "serve_http_request_errors_total", "counter",
                   "HTTP requests answered with a 4xx or 5xx status.");
    write_counts(s, f, "serve_http_request_errors_total", 1);
    metrics_family(f, "serve_http_request_duration_seconds", "histogram",
                   "Time from a request's arrival at the proxy to its completion.");
    for (const http_route_stats *e = s->head; e; e = e->next)
        metrics_histogram(f, "serve_http_request_duration_seconds",
                          (const char *[]){"application", e->app, "route", e->route, NULL},
                          &e->latency, &metrics_latency_buckets);
}
