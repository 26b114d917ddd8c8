/*
 * noop - the no-op deployments of the benchmarks.
 *
 *   Noop  answers every request with 200, content-type text/plain and the
 *         2-byte body "ok": the same bytes as bench/mhd_noop.c and
 *         bench/fastapi_noop.py, so that what bench/proxy.sh measures is the
 *         cost of the path in front of the handler. No state and no work:
 *         init sets a NULL state, handle writes two bytes. An optional ?ms=M
 *         (0..10000) sleeps M milliseconds first: a callee of known cost and
 *         no CPU for the fan-out of bench/handles.sh.
 *   Hop   init_args {"callee": {"deployment": "Noop"}}: one serve_call to the
 *         callee, answered with the callee's status, content-type and body.
 *         bench/handles.sh compares it with Noop over HTTP: the difference
 *         is the cost of one handle hop.
 *   Fan   the same binding; ?n=N (1..64, default 8) calls made at once with
 *         serve_call_async, ?ms=M passed on to each, then waited for
 *         together; 200 "ok", or 500 naming the first call that failed.
 */
#include <errno.h>
#include <serve_plugin.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define NOOP_MAX_MS    10000
#define FAN_MAX_CALLS  64
#define CALL_TIMEOUT_S 10.0

/* Query parameter `name` as an integer in [lo, hi], or `def` when absent;
   -1 when present but not such a number. */
static long query_int(const serve_request *req, const char *name, long def, long lo, long hi)
{
    char buf[24], *end;
    if (serve_request_query(req, name, buf, sizeof(buf)) < 0) return def;
    long v = strtol(buf, &end, 10);
    return *buf && !*end && v >= lo && v <= hi ? v : -1;
}

static int bad_request(serve_response *res, const char *msg)
{
    serve_response_set_status(res, 400);
    return serve_response_printf(res, "%s\n", msg);
}

/* Sleep the whole `ms`, resuming after a signal with what is left. */
static void sleep_ms(long ms)
{
    struct timespec left = {.tv_sec = ms / 1000, .tv_nsec = ms % 1000 * 1000000L};
    while (nanosleep(&left, &left) != 0 && errno == EINTR) {
    }
}

/* A NULL state: each handle call stands alone. Shared by all three. */
static int noop_init(serve_context *ctx, const char *args_json, void **state)
{
    *state = NULL;
    return 0;
}

static int noop_handle(void *state, const serve_request *req, serve_response *res)
{
    /* Only look at a query when there is one: the plain path stays two writes. */
    if (req->query[0]) {
        long ms = query_int(req, "ms", 0, 0, NOOP_MAX_MS);
        if (ms < 0) return bad_request(res, "ms: must be an integer from 0 to 10000");
        if (ms > 0) sleep_ms(ms);
    }
    if (serve_response_set_header(res, "content-type", "text/plain") != 0) return -1;
    return serve_response_write(res, "ok", 2);
}

/* ---- Hop and Fan: the state is the handle of init_args "callee" ---------- */

static int callee_init(serve_context *ctx, const char *args_json, void **state)
{
    serve_handle *callee = serve_get_handle(ctx, "callee");
    if (!callee) return -1;
    *state = callee;
    return 0;
}

static int hop_handle(void *state, const serve_request *req, serve_response *res)
{
    serve_future *f = serve_call(state, req, NULL, CALL_TIMEOUT_S);
    if (!f) return -1;
    size_t len;
    const void *body = serve_future_body(f, &len);
    const char *type = serve_future_header(f, "content-type");
    int rc = serve_response_set_status(res, serve_future_status(f));
    if (rc == 0 && type) rc = serve_response_set_header(res, "content-type", type);
    if (rc == 0) rc = serve_response_write(res, body, len);
    serve_future_free(f);
    return rc;
}

/* Wait for the n calls; -1 with the first failure's status and message. */
static int fan_gather(serve_future **calls, int n)
{
    if (serve_future_wait_all(calls, (size_t)n, CALL_TIMEOUT_S + 1) != 0)
        return serve_set_error("calls not answered within %.0f s", CALL_TIMEOUT_S + 1);
    for (int i = 0; i < n; i++) {
        int status = serve_future_status(calls[i]);
        if (status != 200)
            return serve_set_error("call %d of %d failed (%d): %s", i + 1, n, status,
                                   serve_future_error(calls[i]));
    }
    return 0;
}

static int fan_handle(void *state, const serve_request *req, serve_response *res)
{
    long n = query_int(req, "n", 8, 1, FAN_MAX_CALLS);
    long ms = query_int(req, "ms", -2, 0, NOOP_MAX_MS); /* -2: absent */
    if (n < 0) return bad_request(res, "n: must be an integer from 1 to 64");
    if (ms == -1) return bad_request(res, "ms: must be an integer from 0 to 10000");
    char query[32];
    snprintf(query, sizeof(query), "ms=%ld", ms);
    /* Without ?ms the callee gets no query at all: the cheap path of Noop. */
    serve_call_options call = {.query = ms >= 0 ? query : NULL, .timeout_s = CALL_TIMEOUT_S};
    serve_future *calls[FAN_MAX_CALLS];
    int started = 0;
    while (started < n && (calls[started] = serve_call_async(state, req, &call))) started++;
    int rc = started == n ? fan_gather(calls, (int)n) : -1;
    for (int i = 0; i < started; i++) serve_future_free(calls[i]);
    if (rc != 0) return -1;
    if (serve_response_set_header(res, "content-type", "text/plain") != 0) return -1;
    return serve_response_write(res, "ok", 2);
}

static const serve_deployment deployments[] = {
    {.name = "Noop", .init = noop_init, .handle = noop_handle},
    {.name = "Hop", .init = callee_init, .handle = hop_handle},
    {.name = "Fan", .init = callee_init, .handle = fan_handle},
};
SERVE_PLUGIN(deployments)
