/*
 * balancer.c - replica choice strategies (see router.h).
 *
 * Power of two choices: sample two distinct replicas at random and take the
 * one with fewer ongoing requests. It follows load almost as well as
 * "least loaded" while touching two replicas instead of all, and, unlike
 * least-loaded, it does not send a burst of simultaneous requests to the
 * same momentarily idle replica. A full replica (ongoing == capacity) is
 * never chosen; when both samples are full, a scan finds the least loaded
 * one with room, so a request only waits when every replica is full.
 */
#include "router/router.h"

#include <string.h>

#include "common/util.h"

static int has_room(const lb_candidate *c)
{
    return c->ongoing < c->capacity;
}

/* xorshift64*: fast, good enough to sample replicas; state never 0. */
static uint64_t next_random(uint64_t *state)
{
    uint64_t x = *state ? *state : 0x9e3779b97f4a7c15ull;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545f4914f6cdd1dull;
}

static int least_loaded(lb_candidate *const *c, size_t n)
{
    int best = -1;
    for (size_t i = 0; i < n; i++)
        if (has_room(c[i]) && (best < 0 || c[i]->ongoing < c[best]->ongoing)) best = (int)i;
    return best;
}

static int p2c_pick(lb_candidate *const *c, size_t n, uint64_t *state)
{
    if (n < 2) return n == 1 && has_room(c[0]) ? 0 : -1;
    uint64_t r = next_random(state);
    size_t i = (size_t)(r % n);
    size_t j = (size_t)((r >> 32) % (n - 1));
    if (j >= i) j++;
    int a = has_room(c[i]) ? (int)i : -1;
    int b = has_room(c[j]) ? (int)j : -1;
    if (a >= 0 && b >= 0) return c[b]->ongoing < c[a]->ongoing ? b : a;
    if (a >= 0 || b >= 0) return a >= 0 ? a : b;
    return least_loaded(c, n);
}

/* Round-robin among replicas with room: the cursor is the state. */
static int rr_pick(lb_candidate *const *c, size_t n, uint64_t *state)
{
    for (size_t k = 0; k < n; k++) {
        size_t i = (size_t)((*state)++ % n);
        if (has_room(c[i])) return (int)i;
    }
    return -1;
}

const balancer_ops balancer_p2c = {"power_of_two_choices", p2c_pick};
const balancer_ops balancer_round_robin = {"round_robin", rr_pick};

const balancer_ops *balancer_find(const char *name)
{
    static const balancer_ops *const all[] = {&balancer_p2c, &balancer_round_robin};
    for (size_t i = 0; i < UTIL_ARRAY_LEN(all); i++)
        if (strcmp(all[i]->name, name) == 0) return all[i];
    return NULL;
}
