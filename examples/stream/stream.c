/*
 * stream - a streamed response, the way a text generator sends tokens as
 * they come: each line is flushed to the client as soon as it is written.
 *
 *   curl -N 'localhost:8000/stream?n=5&ms=200'
 *
 * prints "token 1 of 5" ... one line every 200 ms (n <= 10000, ms <= 10000).
 */
#include <serve_plugin.h>
#include <stdlib.h>
#include <time.h>

#define STREAM_MAX_N  10000
#define STREAM_MAX_MS 10000

static int stream_init(serve_context *ctx, const char *args_json, void **state)
{
    *state = NULL;
    return 0;
}

/* An integer query parameter within [0, max], or `def` when absent. */
static long query_long(const serve_request *req, const char *name, long def, long max)
{
    char buf[24];
    if (serve_request_query(req, name, buf, sizeof(buf)) < 0) return def;
    long v = strtol(buf, NULL, 10);
    return v < 0 ? 0 : v > max ? max : v;
}

static int stream_handle(void *state, const serve_request *req, serve_response *res)
{
    long n = query_long(req, "n", 5, STREAM_MAX_N);
    long ms = query_long(req, "ms", 100, STREAM_MAX_MS);
    struct timespec pause = {ms / 1000, (ms % 1000) * 1000000L};
    serve_response_set_header(res, "content-type", "text/plain; charset=utf-8");
    for (long i = 1; i <= n; i++) {
        if (i > 1) nanosleep(&pause, NULL);
        if (serve_response_printf(res, "token %ld of %ld\n", i, n) != 0 ||
            serve_response_flush(res) != 0)
            return serve_set_error("cannot send token %ld", i);
    }
    return 0;
}

static const serve_deployment deployments[] = {
    {.name = "Streamer", .init = stream_init, .handle = stream_handle},
};

SERVE_PLUGIN(deployments)
