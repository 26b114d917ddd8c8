/*
 * autoscale - a deployment whose requests cost what you tell them to, for
 * watching the autoscaler work (see examples/autoscale/README.md).
 *
 *   init_args / user_config: {"cost_ms": 50, "spin_ms": 0}   (both optional)
 *
 *   GET /work          waits cost_ms, burns spin_ms of CPU, then answers
 *                      {"pid": 1234, "cost_ms": 50, "spin_ms": 0}
 *   GET /work?ms=5     this request waits 5 ms instead
 *
 * The default cost is waiting, not computing: a model that waits on I/O or
 * on an accelerator. Waiting requests keep replicas busy without using the
 * CPU, so scaling to a dozen replicas pays off even on a two-core machine.
 * `spin_ms` adds CPU work for those who want to see where cores run out.
 * `user_config` changes apply live: raise cost_ms with `serve deploy` while
 * a load runs and watch the replica count follow.
 */
#include <errno.h>
#include <jansson.h>
#include <serve_plugin.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define WORK_MAX_MS 60000 /* one minute: beyond it a request is a mistake */

typedef struct work {
    int cost_ms;
    int spin_ms;
} work;

/* Read an optional integer member in [0, WORK_MAX_MS] into *out. */
static int read_ms(json_t *obj, const char *key, const char *what, int *out)
{
    json_t *v = json_object_get(obj, key);
    if (!v) return 0;
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > WORK_MAX_MS)
        return serve_set_error("%s.%s: must be an integer from 0 to %d", what, key, WORK_MAX_MS);
    *out = (int)json_integer_value(v);
    return 0;
}

/* Apply {"cost_ms", "spin_ms"} from JSON text to w; on error w is unchanged. */
static int read_costs(work *w, const char *json_text, const char *what)
{
    json_error_t jerr;
    json_t *obj = json_loads(json_text, JSON_DECODE_ANY, &jerr);
    if (!obj) return serve_set_error("%s: invalid JSON: %s", what, jerr.text);
    work next = *w;
    int rc = -1;
    if (!json_is_object(obj) && !json_is_null(obj))
        serve_set_error("%s: must be an object", what);
    else if (read_ms(obj, "cost_ms", what, &next.cost_ms) == 0 &&
             read_ms(obj, "spin_ms", what, &next.spin_ms) == 0)
        rc = 0;
    json_decref(obj);
    if (rc == 0) *w = next;
    return rc;
}

static int work_init(serve_context *ctx, const char *args_json, void **state)
{
    work *w = calloc(1, sizeof(*w));
    if (!w) return serve_set_error("out of memory");
    w->cost_ms = 50;
    if (read_costs(w, args_json, "init_args") != 0) {
        free(w);
        return -1;
    }
    *state = w;
    return 0;
}

static int work_reconfigure(void *state, const char *user_config_json)
{
    return read_costs(state, user_config_json, "user_config");
}

static double now_ms(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Sleep ms milliseconds, resuming after signals. */
static void wait_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* Use ms milliseconds of this thread's CPU time. */
static void spin_ms(int ms)
{
    double end = now_ms(CLOCK_THREAD_CPUTIME_ID) + ms;
    volatile unsigned x = 0;
    while (now_ms(CLOCK_THREAD_CPUTIME_ID) < end)
        for (int i = 0; i < 10000; i++) x += i;
}

static int work_handle(void *state, const serve_request *req, serve_response *res)
{
    const work *w = state;
    int cost = w->cost_ms;
    char arg[16];
    if (serve_request_query(req, "ms", arg, sizeof(arg)) >= 0) {
        char *end;
        long v = strtol(arg, &end, 10);
        if (*arg == '\0' || *end != '\0' || v < 0 || v > WORK_MAX_MS) {
            serve_response_set_status(res, 400);
            return serve_response_printf(res, "ms: must be an integer from 0 to %d\n", WORK_MAX_MS);
        }
        cost = (int)v;
    }
    if (cost > 0) wait_ms(cost);
    if (w->spin_ms > 0) spin_ms(w->spin_ms);
    serve_response_set_header(res, "content-type", "application/json");
    return serve_response_printf(res, "{\"pid\": %d, \"cost_ms\": %d, \"spin_ms\": %d}\n",
                                 (int)getpid(), cost, w->spin_ms);
}

static void work_finalize(void *state)
{
    free(state);
}

static const serve_deployment deployments[] = {
    {
        .name = "Work",
        .init = work_init,
        .handle = work_handle,
        .reconfigure = work_reconfigure,
        .finalize = work_finalize,
    },
};

SERVE_PLUGIN(deployments)
