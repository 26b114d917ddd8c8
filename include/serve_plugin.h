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

#define SERVE_PLUGIN_ABI_VERSION 2u

/* ---- Tensors (the Open Inference Protocol v2) ------------------------- */

/*
 * A deployment that declares its input and output tensors is a model: the
 * proxy serves it at /v2/models/{application}/infer (KServe's and Triton's
 * protocol), decodes the JSON or binary tensors of each request, checks
 * them against the declaration, and hands them to `handle` (or
 * `handle_batch`) typed, in req->inputs. The outputs the handler adds with
 * serve_response_output* go back to the client in the protocol's form.
 *
 * Data layout: row-major, native byte order, densely packed. BOOL is one
 * byte per element (0 or 1). BYTES holds, per element, a 4-byte
 * little-endian length and then that many bytes (Triton's layout).
 */
typedef enum serve_datatype {
    SERVE_INVALID = 0,
    SERVE_BOOL,
    SERVE_UINT8,
    SERVE_UINT16,
    SERVE_UINT32,
    SERVE_UINT64,
    SERVE_INT8,
    SERVE_INT16,
    SERVE_INT32,
    SERVE_INT64,
    SERVE_FP32,
    SERVE_FP64,
    SERVE_BYTES,
} serve_datatype;

#define SERVE_MAX_DIMS 8

/* A declared tensor. A dimension of -1 takes any size (a batch, a
   sequence). An input marked optional may be left out of a request. */
typedef struct serve_tensor_spec {
    const char *name;
    serve_datatype datatype;
    int ndim; /* 1..SERVE_MAX_DIMS */
    int64_t shape[SERVE_MAX_DIMS];
    int optional;
} serve_tensor_spec;

/* A tensor of a request: its shape has the actual sizes (no -1), and
   `size` is the byte length of `data`. */
typedef struct serve_tensor {
    const char *name;
    serve_datatype datatype;
    int ndim;
    int64_t shape[SERVE_MAX_DIMS];
    const void *data;
    size_t size;
} serve_tensor;

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
    /* Tensors of a /v2/models/.../infer request, decoded and checked
       against the deployment's `inputs`; none (0) for other requests. */
    const serve_tensor *inputs;
    size_t n_inputs;
} serve_request;

/* Callbacks of a deployment. Only `name`, `init` and `handle` are required. */
typedef int (*serve_init_fn)(serve_context *ctx, const char *args_json, void **state);
typedef int (*serve_handle_fn)(void *state, const serve_request *req, serve_response *res);
typedef int (*serve_reconfigure_fn)(void *state, const char *user_config_json);
typedef int (*serve_check_health_fn)(void *state);
typedef void (*serve_finalize_fn)(void *state);
typedef int (*serve_handle_batch_fn)(void *state, const serve_request *const *reqs,
                                     serve_response *const *res, size_t n);

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
    /* Optional: answer `n` requests at once (dynamic batching, Ray's
       @serve.batch, Triton's dynamic batcher). Used when the config gives
       the deployment a `batching` object: the replica collects requests
       until batching.max_batch_size of them wait or the first has waited
       batching.batch_wait_timeout_s, then makes one call; n is 1..max.
       Each res[i] answers reqs[i]; fail one item alone with
       serve_response_error. Return -1 (with serve_set_error) to fail them
       all with 500. Batches run one at a time; responses cannot stream. */
    serve_handle_batch_fn handle_batch;
    /* Optional: the tensors this deployment takes and gives. Declaring
       inputs makes the application's ingress deployment a v2 model. */
    const serve_tensor_spec *inputs;
    size_t n_inputs;
    const serve_tensor_spec *outputs;
    size_t n_outputs;
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

/* Answer with `status` (400..599) and the JSON body {"error": message},
   replacing anything written so far: the way to fail one item of a batch,
   or to refuse a bad request with a 4xx. Returns 0, or -1 for a bad
   status or after the first flush. */
int serve_response_error(serve_response *res, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * Add output tensor `name`, which the deployment must declare in
 * `outputs`, with this datatype and a shape that fits the declaration.
 * serve_response_output allocates the tensor (zeroed) and returns its
 * data for you to fill (fixed-size datatypes only: not BYTES);
 * serve_response_add_output copies `size` bytes of `data` (any datatype).
 * Both return NULL / -1 with serve_set_error when the name, datatype or
 * shape does not fit, or when out of memory. For a v2 infer request the
 * framework answers with these outputs (those the client asked for) in the
 * protocol's form; for any other request whose body is left empty, it
 * answers with them as a v2 JSON response too.
 */
void *serve_response_output(serve_response *res, const char *name, serve_datatype datatype,
                            const int64_t *shape, int ndim);
int serve_response_add_output(serve_response *res, const char *name, serve_datatype datatype,
                              const int64_t *shape, int ndim, const void *data, size_t size);

/* ---- Requests ---------------------------------------------------------- */

/* The value of header `name` (case-insensitive), or NULL. */
const char *serve_request_header(const serve_request *req, const char *name);

/*
 * Copy the decoded value of query parameter `name` into buf (NUL-terminated,
 * '+' and %XX decoded). Returns the value's length, or -1 when the parameter
 * is absent or does not fit in `size` bytes.
 */
int serve_request_query(const serve_request *req, const char *name, char *buf, size_t size);

/* The input tensor called `name`, or NULL (not a v2 request, or an
   optional input the client left out). */
const serve_tensor *serve_request_input(const serve_request *req, const char *name);

/* Bytes per element of a fixed-size datatype; 0 for BYTES and INVALID. */
size_t serve_datatype_size(serve_datatype datatype);

/* ---- Handles: calling other deployments -------------------------------- */

/*
 * A deployment calls another through a handle, as a Ray Serve deployment
 * does through the DeploymentHandle it was bound to. The config binds it:
 * a top-level init_args value {"deployment": "NAME"} (or {"deployment":
 * "NAME", "app": "APP"} for another application's) becomes the handle of
 * that name, and `init` still sees the object in args_json:
 *
 *     "init_args": {"french": {"deployment": "French"}, "greeting": "hi"}
 *
 *     serve_handle *fr = serve_get_handle(ctx, "french");      // in init
 *     serve_call_options call = {.path = "/", .body = text, .body_len = n};
 *     serve_future *f = serve_call(fr, req, &call, 5.0);      // in handle
 *     if (serve_future_status(f) == 200) ... serve_future_body(f, &len) ...
 *     serve_future_free(f);
 *
 * A call is a request to one of the callee's replicas, chosen as the proxy
 * chooses for HTTP, within its max_ongoing_requests, waiting in its queue
 * when every replica is full, and counted in its autoscaling load; a callee
 * scaled to zero starts on demand. It does not go through HTTP: it is one
 * frame to the serve process and one to the callee. The callee's `handle`
 * sees the call as a request with the caller's request id.
 *
 * serve_call_async starts a call and returns at once, so one `handle` can
 * fan out to many calls and then wait for all (serve_future_wait_all).
 * Calls may be made from `handle` only (not from `init`, which runs before
 * the replica is reachable). A replica with bindings never runs `handle` on
 * its I/O thread, so waiting for a future there is always allowed.
 *
 * Ownership: a handle is owned by the framework and valid until `finalize`
 * returns; a future is the caller's, freed with serve_future_free (which
 * cancels the call if it has no answer yet). A future may be waited for on
 * one thread at a time. Everything serve_call_options points to is copied.
 */
typedef struct serve_handle serve_handle;
typedef struct serve_future serve_future;

typedef struct serve_call_options {
    const char *method;          /* NULL: "POST" with a body, else "GET" */
    const char *path;            /* the callee's route_path; NULL: "/" */
    const char *query;           /* without '?'; NULL: none */
    const serve_header *headers; /* may be NULL */
    size_t n_headers;
    const void *body; /* may be NULL */
    size_t body_len;
    double timeout_s; /* the serve process answers 408 after this; 0: none */
} serve_call_options;

/* The handle bound to init_args key `name`, or NULL (with serve_set_error)
   when there is no such binding. */
serve_handle *serve_get_handle(serve_context *ctx, const char *name);

/* The "app/deployment" a handle calls. */
const char *serve_handle_target(const serve_handle *h);

/*
 * Start a call. `parent` is the request being handled (its request id
 * travels with the call) or NULL; `opts` may be NULL (GET /). Never blocks.
 * Returns a future, or NULL with serve_set_error (out of memory, called
 * outside `handle`, the replica stopping).
 */
serve_future *serve_call_async(serve_handle *h, const serve_request *parent,
                               const serve_call_options *opts);

/*
 * Wait for the answer, at most `timeout_s` seconds (< 0: no limit). Returns
 * 0 once answered, or -1 on timeout: the call goes on, and can be waited
 * for again or freed.
 */
int serve_future_wait(serve_future *f, double timeout_s);

/* Wait until every one of `n` futures is answered; as serve_future_wait.
   The timeout covers the whole wait. */
int serve_future_wait_all(serve_future *const *fs, size_t n, double timeout_s);

/*
 * serve_call_async, then wait `timeout_s` (< 0: no limit). Always returns a
 * future with an answer, or NULL as serve_call_async does. When the wait
 * times out the call is cancelled and the future answers 504.
 */
serve_future *serve_call(serve_handle *h, const serve_request *parent,
                         const serve_call_options *opts, double timeout_s);

/*
 * The answer (valid until serve_future_free). Status is the callee's HTTP
 * status, or the serve process's when the call failed on the way: 404 (no
 * such deployment any more), 408 (timeout), 502 (the callee's replica
 * died), 503 (queue full, or shutting down); 0 while unanswered. The body
 * is followed by a NUL byte. A streamed answer is collected whole.
 */
int serve_future_status(const serve_future *f);
const void *serve_future_body(const serve_future *f, size_t *len);
const char *serve_future_header(const serve_future *f, const char *name);

/* For an answer with status >= 400: the "error" member of its JSON body
   (what the callee passed to serve_set_error), else the body itself. NULL
   for a success or while unanswered. */
const char *serve_future_error(const serve_future *f);

/* Release a future, cancelling the call if it has no answer yet. NULL is
   fine. */
void serve_future_free(serve_future *f);

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

/* Log a line tagged with the app, deployment and replica id and, when
   called from handle, the id of the request being handled. Goes to the
   terminal of `serve run` and to the replica's log file. `ctx` may be
   NULL (the fields are the replica's either way). Thread-safe. */
void serve_log(const serve_context *ctx, serve_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#ifdef __cplusplus
}
#endif

#endif
