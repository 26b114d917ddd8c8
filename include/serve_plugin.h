/*
 * serve_plugin.h - the plugin API: write a deployment in C, serve it with
 * `serve run`.
 *
 * A plugin is a shared object that exports one symbol, `serve_plugin`, made
 * with the SERVE_PLUGIN() macro below. It lists one or more deployments,
 * each a name plus callbacks. The config file names the plugin and the
 * deployments to run; every replica of a deployment is a separate process
 * that loads the plugin, calls `init` once, then `handle` for each request.
 *
 *     #include <serve_plugin.h>
 *
 *     static int hello_init(serve_context *ctx, const char *args_json, void **state)
 *     {
 *         *state = ctx;
 *         return 0;
 *     }
 *
 *     static int hello_handle(void *state, const serve_request *req, serve_response *res)
 *     {
 *         serve_response_set_header(res, "content-type", "text/plain");
 *         return serve_response_printf(res, "hello from %s\n", req->route_path);
 *     }
 *
 *     static const serve_deployment deployments[] = {
 *         {.name = "Hello", .init = hello_init, .handle = hello_handle},
 *     };
 *     SERVE_PLUGIN(deployments)
 *
 * Build: cc -shared -fPIC -I<serve>/include hello.c -o hello.so
 * The framework's functions declared here (serve_response_*, serve_log, ...)
 * are resolved from the replica process when the plugin is loaded: do not
 * link anything for them.
 *
 * ABI. SERVE_PLUGIN_ABI_VERSION is stored in the exported descriptor and
 * compared at load time; a plugin built against another version is refused
 * with an error naming the plugin and both versions. It changes whenever a
 * struct in this file changes layout.
 *
 * Lifecycle of one replica:
 *   init -> [reconfigure(user_config)] -> handle* / check_health* /
 *   reconfigure* -> finalize
 * `reconfigure` is called right after `init` when the deployment has a
 * user_config, before any request, and again whenever the user_config changes.
 *
 * Threading rule (what may run at the same time in one replica):
 *   - `init` runs alone, before anything else, on a worker thread.
 *   - `handle` runs on worker threads: up to max_ongoing_requests calls (at
 *     most 256 threads) may run at the same time, each request on one
 *     thread from start to end; a fast handler may also run on the
 *     replica's I/O thread. Guard shared mutable state yourself.
 *   - `check_health` may run at the same time as `handle`.
 *   - `reconfigure` never runs at the same time as `handle`, `check_health`
 *     or itself: the replica holds new requests and waits for running ones
 *     to return first. It may therefore update state without locks.
 *   - `finalize` runs alone, last, after every other call has returned.
 *
 * Ownership:
 *   - `args_json` and `user_config_json` are owned by the framework and valid
 *     only during the call; copy what you keep.
 *   - A serve_request and every string and buffer it points to are owned by
 *     the framework and valid until `handle` returns.
 *   - A serve_response is owned by the framework; serve_response_* functions
 *     copy what you give them, so your buffers may be freed or reused at once.
 *     It is valid until `handle` returns; serve_response_flush sends its
 *     parts from the handling thread.
 *   - Your state (`*state` from init) is yours: free it in `finalize`.
 *   - The serve_context stays valid from `init` until `finalize` returns.
 *
 * Errors: callbacks return 0 on success and -1 on failure. Call
 * serve_set_error() first to say why: for `init` and `reconfigure` the
 * message goes to the log (and stops `serve run` when the deployment never
 * started); for `handle` it goes to the client as HTTP 500 with a JSON body
 * {"error": message}.
 */
#ifndef SERVE_PLUGIN_H
#define SERVE_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SERVE_PLUGIN_ABI_VERSION 1u

/* Opaque framework objects. */
typedef struct serve_context serve_context;
typedef struct serve_response serve_response;

/* One HTTP header: a name (as the client sent it) and a value. */
typedef struct serve_header {
    const char *name;
    const char *value;
} serve_header;

/*
 * One request, read-only. Strings are NUL-terminated; `body` is followed by
 * a NUL byte too (body[body_len] == 0) so a text body can be used as a C
 * string, but it may also contain NULs: trust body_len.
 */
typedef struct serve_request {
    const char *method;     /* "GET", "POST", ... */
    const char *path;       /* full decoded path, without the query */
    const char *route_path; /* path after the route prefix; starts with '/' */
    const char *query;      /* raw query string without '?', "" if none */
    const char *request_id; /* the x-request-id of this request */
    const serve_header *headers;
    size_t n_headers;
    const void *body;
    size_t body_len;
} serve_request;

/* Callbacks of a deployment. Only `name`, `init` and `handle` are required. */
typedef int (*serve_init_fn)(serve_context *ctx, const char *args_json, void **state);
typedef int (*serve_handle_fn)(void *state, const serve_request *req, serve_response *res);
typedef int (*serve_reconfigure_fn)(void *state, const char *user_config_json);
typedef int (*serve_check_health_fn)(void *state);
typedef void (*serve_finalize_fn)(void *state);

typedef struct serve_deployment {
    const char *name;
    /* Build the replica's state from the config's init_args (a JSON object
       as text, "{}" when absent). Return 0 and set *state, or -1. */
    serve_init_fn init;
    /* Answer one request. The response starts as 200 with no headers and an
       empty body. Return 0, or -1 to answer 500 with serve_set_error's text. */
    serve_handle_fn handle;
    /* Optional: apply a new user_config (JSON text) without a restart.
       Return -1 to reject it; the previous state must then stay usable. */
    serve_reconfigure_fn reconfigure;
    /* Optional: return 0 when healthy, -1 (with serve_set_error) when not. */
    serve_check_health_fn check_health;
    /* Optional: release the state. */
    serve_finalize_fn finalize;
} serve_deployment;

/* The descriptor a plugin exports as `serve_plugin`. */
typedef struct serve_plugin_desc {
    uint32_t abi_version;
    uint32_t n_deployments;
    const serve_deployment *deployments;
} serve_plugin_desc;

/* Export an array of serve_deployment as this plugin's deployments. */
#define SERVE_PLUGIN(deployment_array)                                                             \
    __attribute__((visibility("default"))) const serve_plugin_desc serve_plugin = {                \
        SERVE_PLUGIN_ABI_VERSION,                                                                  \
        (uint32_t)(sizeof(deployment_array) / sizeof((deployment_array)[0])), deployment_array};

/* ---- Responses (from inside `handle`) ---------------------------------- */

/* Set the HTTP status (100..599). Returns 0, or -1 for a bad status or
   after the first serve_response_flush. */
int serve_response_set_status(serve_response *res, int status);

/* Add a header; both strings are copied. Returns 0, or -1 for an empty
   name, a name holding ':' or white space, a value holding CR or LF, after
   the first serve_response_flush, or when out of memory. */
int serve_response_set_header(serve_response *res, const char *name, const char *value);

/* Append `len` bytes to the body (copied). Returns 0 or -1 (out of memory). */
int serve_response_write(serve_response *res, const void *data, size_t len);

/* Append formatted text to the body. Returns 0 or -1. */
int serve_response_printf(serve_response *res, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/*
 * Stream: send what has been written so far to the client now, as one
 * chunk of a chunked HTTP response (the status and headers go with the
 * first flush and can no longer change). Later writes go out with the next
 * flush or when `handle` returns, which ends the response. A `handle` that
 * fails after its first flush cuts the response short: the client sees an
 * incomplete chunked body, not a 500. Returns 0 or -1 (out of memory).
 */
int serve_response_flush(serve_response *res);

/* ---- Requests ---------------------------------------------------------- */

/* The value of header `name` (case-insensitive), or NULL. */
const char *serve_request_header(const serve_request *req, const char *name);

/*
 * Copy the decoded value of query parameter `name` into buf (NUL-terminated,
 * '+' and %XX decoded). Returns the value's length, or -1 when the parameter
 * is absent or does not fit in `size` bytes.
 */
int serve_request_query(const serve_request *req, const char *name, char *buf, size_t size);

/* ---- Context, errors and logs ------------------------------------------ */

/* This deployment's name, its application's name, and this replica's id
   (8 hex digits, unique among the replicas one controller started). */
const char *serve_context_deployment(const serve_context *ctx);
const char *serve_context_app(const serve_context *ctx);
const char *serve_context_replica_id(const serve_context *ctx);

/* Record why the current callback is failing (per thread; the last call
   wins). Returns -1 so that `return serve_set_error(...)` reads well. */
int serve_set_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

typedef enum serve_log_level {
    SERVE_LOG_DEBUG,
    SERVE_LOG_INFO,
    SERVE_LOG_WARN,
    SERVE_LOG_ERROR,
} serve_log_level;

/* Log a line tagged with the app, deployment and replica id. `ctx` may be
   NULL (the line then gets the replica process's tag, the same one). */
void serve_log(const serve_context *ctx, serve_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#ifdef __cplusplus
}
#endif

#endif
