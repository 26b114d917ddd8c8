/*
 * deadlines.c - a binary min-heap of deadlines (see router.h).
 *
 * Each node records its index in the heap, so removing a request that was
 * answered before its deadline is O(log n) with no search.
 */
#include "router/router.h"

#include <errno.h>
#include <stdlib.h>

static void place(dheap *h, size_t i, dheap_node *n)
{
    h->nodes[i] = n;
    n->index = i;
}

static void sift_up(dheap *h, size_t i)
{
    dheap_node *n = h->nodes[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (h->nodes[parent]->at <= n->at) break;
        place(h, i, h->nodes[parent]);
        i = parent;
    }
    place(h, i, n);
}

static void sift_down(dheap *h, size_t i)
{
    dheap_node *n = h->nodes[i];
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= h->n) break;
        if (child + 1 < h->n && h->nodes[child + 1]->at < h->nodes[child]->at) child++;
        if (n->at <= h->nodes[child]->at) break;
        place(h, i, h->nodes[child]);
        i = child;
    }
    place(h, i, n);
}

int dheap_push(dheap *h, dheap_node *n)
{
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 64;
        dheap_node **v = realloc(h->nodes, cap * sizeof(*v));
        if (!v) return -ENOMEM;
        h->nodes = v;
        h->cap = cap;
    }
    h->nodes[h->n] = n;
    sift_up(h, h->n++);
    return 0;
}

void dheap_remove(dheap *h, dheap_node *n)
{
    size_t i = n->index;
    if (i >= h->n || h->nodes[i] != n) return; /* not in the heap */
    dheap_node *last = h->nodes[--h->n];
    n->index = SIZE_MAX;
    if (last == n) return;
    place(h, i, last);
    if (i > 0 && h->nodes[(i - 1) / 2]->at > last->at)
        sift_up(h, i);
    else
        sift_down(h, i);
}

dheap_node *dheap_top(const dheap *h)
{
    return h->n ? h->nodes[0] : NULL;
}

void dheap_free(dheap *h)
{
    free(h->nodes);
    h->nodes = NULL;
    h->n = h->cap = 0;
}
