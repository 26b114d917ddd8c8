/*
 * faulty - deployments that misbehave on purpose, for failure-path tests.
 *
 *   FailInit  init fails with the message in init_args {"message": "..."}
 *   Crash     handle aborts the replica process (every request kills it)
 *   Sleepy    handle sleeps ?ms=N milliseconds, then answers its pid
 *   Fail      handle returns -1 with a message
 *   Gauge     handle sleeps ?ms=N milliseconds and answers JSON
 *             {"pid", "inflight", "max_inflight", "calls"}: the handle calls
 *             running in this replica at entry (this one included), the most
 *             ever seen at once, and how many calls this replica has started
 *             (this one included). Each replica is its own process, so the
 *             counters are per replica.
 *   Unhealthy  answers like Sleepy, but check_health always fails ("disk full")
 *   StreamFail handle flushes one line, writes part of another, then fails:
 *             the stream must be cut at the flushed line, at once
 *   Segv      handle dereferences a null pointer
 *   Spin      handle spins forever on ?spin=1 (never checks for cancel),
 *             else answers its pid
 *   Leak      handle leaks ?mb=N MiB (touched, so resident), answers its pid
 *   Garbage   handle misbehaves as ?kind= says: rc (returns 42), header
 *             (sets a header with CR LF in it and ignores the refusal),
 *             frame (writes bytes that are no frame to the data socket, fd 4)
 */
#include <errno.h>
#include <jansson.h>
#include <serve_plugin.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static int init_ok(serve_context *ctx, const char *args, void **state)
{
    *state = NULL;
    return 0;
}

static int init_fail(serve_context *ctx, const char *args, void **state)
{
    json_t *obj = json_loads(args, 0, NULL);
    const char *msg = json_string_value(json_object_get(obj, "message"));
    serve_set_error("%s", msg ? msg : "init refused");
    json_decref(obj);
    return -1;
}

static int handle_crash(void *state, const serve_request *req, serve_response *res)
{
    abort();
}

static int handle_sleepy(void *state, const serve_request *req, serve_response *res)
{
    char ms[16];
    long n = serve_request_query(req, "ms", ms, sizeof(ms)) > 0 ? atol(ms) : 0;
    struct timespec ts = {n / 1000, (n % 1000) * 1000000L};
    nanosleep(&ts, NULL);
    return serve_response_printf(res, "%d\n", (int)getpid());
}

static int handle_fail(void *state, const serve_request *req, serve_response *res)
{
    return serve_set_error("the model is on fire");
}

static atomic_int gauge_inflight, gauge_max_inflight, gauge_calls;

static int handle_gauge(void *state, const serve_request *req, serve_response *res)
{
    int calls = atomic_fetch_add(&gauge_calls, 1) + 1;
    int now = atomic_fetch_add(&gauge_inflight, 1) + 1;
    int max = atomic_load(&gauge_max_inflight);
    while (now > max && !atomic_compare_exchange_weak(&gauge_max_inflight, &max, now)) continue;
    if (now > max) max = now;
    char ms[16];
    long n = serve_request_query(req, "ms", ms, sizeof(ms)) > 0 ? atol(ms) : 0;
    struct timespec ts = {n / 1000, (n % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) continue;
    atomic_fetch_sub(&gauge_inflight, 1);
    serve_response_set_header(res, "content-type", "application/json");
    return serve_response_printf(res,
                                 "{\"pid\": %d, \"inflight\": %d, \"max_inflight\": %d, "
                                 "\"calls\": %d}\n",
                                 (int)getpid(), now, max, calls);
}

static int handle_stream_fail(void *state, const serve_request *req, serve_response *res)
{
    serve_response_printf(res, "first line\n");
    serve_response_flush(res);
    serve_response_printf(res, "never sent");
    return serve_set_error("failed mid-stream");
}

static int handle_segv(void *state, const serve_request *req, serve_response *res)
{
    volatile int *nowhere = NULL;
    return *nowhere;
}

static int handle_spin(void *state, const serve_request *req, serve_response *res)
{
    char spin[4];
    if (serve_request_query(req, "spin", spin, sizeof(spin)) > 0)
        for (volatile unsigned long n = 0;; n++) continue;
    return serve_response_printf(res, "%d\n", (int)getpid());
}

/* The leak is mapped pages rather than malloc'd memory: resident all the
   same, but not reported by LeakSanitizer at exit (make test-asan), which
   could not even name this plugin once it is unloaded. */
static int handle_leak(void *state, const serve_request *req, serve_response *res)
{
    char mb[16];
    size_t n = serve_request_query(req, "mb", mb, sizeof(mb)) > 0 ? (size_t)atol(mb) << 20 : 0;
    if (n) {
        char *lost = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (lost != MAP_FAILED) memset(lost, 1, n); /* resident, never unmapped */
    }
    return serve_response_printf(res, "%d\n", (int)getpid());
}

static int handle_garbage(void *state, const serve_request *req, serve_response *res)
{
    char kind[16] = "";
    serve_request_query(req, "kind", kind, sizeof(kind));
    if (strcmp(kind, "rc") == 0) return 42;
    if (strcmp(kind, "header") == 0) {
        serve_response_set_header(res, "x-split", "a\r\nset-cookie: stolen=1");
        return serve_response_printf(res, "%d\n", (int)getpid());
    }
    if (strcmp(kind, "frame") == 0) {
        static const char junk[64] = "\xff\xff\xff\x7fthis is not a frame";
        if (write(4, junk, sizeof(junk)) < 0) return -1;
        return serve_response_printf(res, "after the junk\n");
    }
    return serve_response_printf(res, "%d\n", (int)getpid());
}

static int check_unhealthy(void *state)
{
    return serve_set_error("disk full");
}

static const serve_deployment deployments[] = {
    {.name = "FailInit", .init = init_fail, .handle = handle_fail},
    {.name = "Crash", .init = init_ok, .handle = handle_crash},
    {.name = "Sleepy", .init = init_ok, .handle = handle_sleepy},
    {.name = "Fail", .init = init_ok, .handle = handle_fail},
    {.name = "Gauge", .init = init_ok, .handle = handle_gauge},
    {.name = "StreamFail", .init = init_ok, .handle = handle_stream_fail},
    {.name = "Segv", .init = init_ok, .handle = handle_segv},
    {.name = "Spin", .init = init_ok, .handle = handle_spin},
    {.name = "Leak", .init = init_ok, .handle = handle_leak},
    {.name = "Garbage", .init = init_ok, .handle = handle_garbage},
    {.name = "Unhealthy",
     .init = init_ok,
     .handle = handle_sleepy,
     .check_health = check_unhealthy},
};

SERVE_PLUGIN(deployments)
