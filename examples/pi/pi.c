/*
 * pi - fan-out through a handle: the ingress splits a Monte Carlo estimate
 * of pi over N calls to a worker deployment, made at once, and adds up the
 * answers.
 *
 *   Pi      the ingress; init_args {"worker": {"deployment": "Worker"}}
 *   Worker  throws `samples` random points at the unit square and counts
 *           those inside the quarter circle
 *
 *   GET /pi?n=8&samples=4000000
 *     -> {"pi": 3.1415..., "n": 8, "samples": 4000000, "seconds": 0.05,
 *         "workers": [pid, ...]}     (the replica that ran each part)
 *
 * n is 1 to 256 (default 8); samples 1 to 10^9 in all (default 10^6). With
 * several Worker replicas (or autoscaling) the parts run in parallel, on
 * as many cores as there are.
 */
#include <jansson.h>
#include <serve_plugin.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PI_MAX_CALLS   256
#define PI_MAX_SAMPLES 1000000000LL
#define PI_TIMEOUT_S   60.0

static int pi_init(serve_context *ctx, const char *args_json, void **state)
{
    serve_handle *worker = serve_get_handle(ctx, "worker");
    if (!worker) return -1;
    *state = worker;
    return 0;
}

/* Query parameter `name` as an integer in [lo, hi], or `def` when absent.
   -1 when present but not such a number. */
static long long query_int(const serve_request *req, const char *name, long long def, long long lo,
                           long long hi)
{
    char buf[32], *end;
    if (serve_request_query(req, name, buf, sizeof(buf)) < 0) return def;
    long long v = strtoll(buf, &end, 10);
    return *buf && !*end && v >= lo && v <= hi ? v : -1;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int bad_request(serve_response *res, const char *msg)
{
    serve_response_set_status(res, 400);
    return serve_response_printf(res, "%s\n", msg);
}

/* Wait for every part and add them up into the answer. */
static int gather(serve_future **parts, int n, long long samples, double start, serve_response *res)
{
    serve_future_wait_all(parts, (size_t)n, -1);
    long long inside = 0;
    json_t *pids = json_array();
    for (int i = 0; i < n; i++) {
        if (serve_future_status(parts[i]) != 200)
            return serve_set_error("part %d failed (%d): %s", i, serve_future_status(parts[i]),
                                   serve_future_error(parts[i]));
        json_t *ans = json_loads(serve_future_body(parts[i], NULL), 0, NULL);
        inside += json_integer_value(json_object_get(ans, "inside"));
        json_array_append(pids, json_object_get(ans, "pid"));
        json_decref(ans);
    }
    json_t *out =
        json_pack("{s:f, s:i, s:I, s:f, s:o}", "pi", 4.0 * (double)inside / (double)samples, "n", n,
                  "samples", (json_int_t)samples, "seconds", now_s() - start, "workers", pids);
    char *text = out ? json_dumps(out, JSON_COMPACT | JSON_REAL_PRECISION(10)) : NULL;
    json_decref(out);
    serve_response_set_header(res, "content-type", "application/json");
    int rc = text ? serve_response_printf(res, "%s\n", text) : serve_set_error("out of memory");
    free(text);
    return rc;
}

static int pi_handle(void *state, const serve_request *req, serve_response *res)
{
    long long n = query_int(req, "n", 8, 1, PI_MAX_CALLS);
    long long samples = query_int(req, "samples", 1000000, 1, PI_MAX_SAMPLES);
    if (n < 0) return bad_request(res, "n: must be an integer from 1 to 256");
    if (samples < 0) return bad_request(res, "samples: must be an integer from 1 to 10^9");
    if (samples < n) n = samples;
    double start = now_s();
    serve_future *parts[PI_MAX_CALLS] = {0};
    int started = 0, rc = 0;
    for (; started < n; started++) {
        char query[64];
        long long share = samples / n + (started < samples % n);
        snprintf(query, sizeof(query), "samples=%lld&seed=%d", share, started);
        serve_call_options call = {.query = query, .timeout_s = PI_TIMEOUT_S};
        if (!(parts[started] = serve_call_async(state, req, &call))) break;
    }
    rc = started == n ? gather(parts, (int)n, samples, start, res) : -1;
    for (int i = 0; i < started; i++) serve_future_free(parts[i]);
    return rc;
}

/* ---- Worker ------------------------------------------------------------ */

static int worker_init(serve_context *ctx, const char *args_json, void **state)
{
    *state = NULL;
    return 0;
}

/* splitmix64: a small, good generator; one state per call, no locks. */
static uint64_t next_random(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static int worker_handle(void *state, const serve_request *req, serve_response *res)
{
    long long samples = query_int(req, "samples", 1000000, 1, PI_MAX_SAMPLES);
    long long seed = query_int(req, "seed", 0, 0, INT32_MAX);
    if (samples < 0 || seed < 0) return bad_request(res, "samples, seed: out of range");
    uint64_t s = (uint64_t)seed * 0x2545f4914f6cdd1dULL ^ (uint64_t)now_s() ^ (uint64_t)getpid();
    long long inside = 0;
    for (long long i = 0; i < samples; i++) {
        double x = (double)(next_random(&s) >> 11) * 0x1.0p-53;
        double y = (double)(next_random(&s) >> 11) * 0x1.0p-53;
        inside += x * x + y * y <= 1.0;
    }
    serve_response_set_header(res, "content-type", "application/json");
    return serve_response_printf(res, "{\"inside\": %lld, \"samples\": %lld, \"pid\": %d}\n",
                                 inside, samples, (int)getpid());
}

static const serve_deployment deployments[] = {
    {.name = "Pi", .init = pi_init, .handle = pi_handle},
    {.name = "Worker", .init = worker_init, .handle = worker_handle},
};

SERVE_PLUGIN(deployments)
