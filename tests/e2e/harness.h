/*
 * harness.h - run the real `serve` binary from end-to-end tests.
 *
 * One h_serve is one `serve run CONFIG` child with its own scratch folder
 * (mkdtemp), its own free ports, a log file holding the child's stdout and
 * stderr, and a keep-alive libcurl handle to talk to its proxy:
 *
 *     h_serve *s = h_serve_new();
 *     h_serve_write_apps(s, "{\"name\": \"echo\", \"route_prefix\": \"/echo\", "
 *                           "\"plugin\": \"echo.so\", \"deployments\": [{\"name\": \"Echo\"}]}");
 *     h_serve_start(s);
 *     h_serve_wait_ready(s, "/echo", 10);
 *     h_response r;
 *     h_get(s, "/echo/x?y=1", &r);      // r.status, r.body, r.request_id, ...
 *     h_response_free(&r);
 *     int code = h_serve_stop(s, SIGTERM, 30);
 *
 * Environment (set by `meson test`):
 *   SERVE_BIN        the `serve` binary to run (required)
 *   SERVE_BUILD_DIR  the build tree; the child gets
 *                    SERVE_PLUGIN_PATH=$SERVE_BUILD_DIR/examples:$SERVE_BUILD_DIR/tests/plugins
 *                    so configs can name plugins relatively ("echo.so", "faulty.so"),
 *                    and TMPDIR=<its scratch folder>, so that log session
 *                    folders ($TMPDIR/serve/...) are removed with it
 *   SERVE_SOURCE_DIR the source tree (for tests that need source files)
 *   SERVE_E2E_KEEP   when set, scratch folders (config, serve.log) are kept
 *                    for inspection instead of being removed
 *
 * Cleanup. Every h_serve is registered; h_cleanup_all() (meant as the
 * criterion .fini of every suite) SIGKILLs each child's process group and
 * removes its folder, so a failed assertion never leaves processes behind.
 * As further safety nets the child gets PR_SET_PDEATHSIG (it dies with the
 * test process) and the test process makes itself a child subreaper, so
 * that replicas orphaned by an exiting `serve` are re-parented to the test:
 * h_orphan_replicas() finds them and cleanup kills them.
 *
 * Conventions: functions returning int give 0 on success and -1 on failure
 * unless said otherwise; times are in seconds (double). Nothing here calls
 * criterion: tests decide what a failure means, and can quote the server's
 * log with h_serve_log_tail().
 */
#ifndef SERVE_E2E_HARNESS_H
#define SERVE_E2E_HARNESS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define H_DIR_MAX       256
#define H_PATH_MAX      512
#define H_HEADER_MAX    256
#define H_HTTP_TIMEOUT  10.0 /* default per-request timeout, seconds */
#define H_MAX_REPLICAS  64   /* bound of the pid arrays filled below */
#define H_LOG_TAIL_SIZE 4096

/* One `serve run` child and its scratch folder. */
typedef struct h_serve {
    char dir[H_DIR_MAX];          /* scratch folder, removed by h_serve_free */
    char config_path[H_PATH_MAX]; /* dir/config.json */
    char log_path[H_PATH_MAX];    /* dir/serve.log: the child's stdout + stderr */
    int port;                     /* http_options.port, free when picked */
    int admin_port;               /* admin.port, free when picked */
    pid_t pid;                    /* the child (kept after it exits), or -1 */
    int exit_code;                /* after exit: code, 128 + signal, or -1 */
    double http_timeout_s;        /* per request; H_HTTP_TIMEOUT by default */
    void *curl;                   /* keep-alive CURL handle, made on first use */
    struct h_serve *next;         /* registry of live instances */
    /* The binary to run instead of $SERVE_BIN (e.g. an installed one), or
       "": it then gets no SERVE_PLUGIN_PATH and finds plugins by itself. */
    char bin[H_PATH_MAX];
} h_serve;

/* The build tree installed into a scratch folder (meson install --destdir):
   its serve binary, the folder of serve-plugin.pc (for PKG_CONFIG_PATH),
   the include and plugin folders, and the installed examples' config. */
typedef struct h_install {
    char bin[H_PATH_MAX];
    char pkgconfig[H_PATH_MAX];
    char include[H_PATH_MAX];
    char plugindir[H_PATH_MAX];
    char demo_config[H_PATH_MAX];
} h_install;

/* One HTTP answer. `body` is malloc'd and NUL-terminated (body[body_len]). */
typedef struct h_response {
    long status; /* HTTP status, 0 when no answer */
    char *body;  /* never NULL after a request */
    size_t body_len;
    char content_type[H_HEADER_MAX]; /* "" when absent */
    char request_id[H_HEADER_MAX];   /* x-request-id, "" when absent */
    char *headers;                   /* raw header block of the final answer */
    double elapsed_s;                /* wall time of the request */
    char error[H_HEADER_MAX];        /* libcurl's error text, "" on success */
} h_response;

/* ---- Small utilities --------------------------------------------------- */

/* Seconds on a monotonic clock. */
double h_now(void);

/* Sleep `ms` milliseconds (resumes after signals). */
void h_sleep_ms(int ms);

/* A TCP port on 127.0.0.1 that was free a moment ago (bind port 0, read it,
   close). Returns the port or -1. */
int h_free_port(void);

/* A TCP connection to 127.0.0.1:`port`, or -1. */
int h_connect(int port);

/* Read from `fd` into buf (NUL-terminated) until the peer closes or resets
   the connection (*closed = 1) or h_now() passes `deadline`. Returns the
   bytes read. */
ssize_t h_read_until_close(int fd, double deadline, char *buf, size_t size, int *closed);

/* FNV-1a 64 of `len` bytes: what examples/echo reports as body_fnv1a64. */
uint64_t h_fnv1a64(const void *data, size_t len);

/* 1 when `pid` exists and is not a zombie, else 0. */
int h_pid_alive(pid_t pid);

/* 1 once `pid` is gone (or a zombie), polling for up to `timeout_s`; else 0.
   A replica the controller has just killed or reaped still takes a moment
   to disappear. */
int h_pid_gone_within(pid_t pid, double timeout_s);

/*
 * Fill `out` (up to `max`) with the live, non-zombie children of `parent`
 * whose command line contains `needle` (any argument). Returns how many
 * there are (may exceed `max`; only `max` are stored).
 */
size_t h_children(pid_t parent, const char *needle, pid_t *out, size_t max);

/* Whether `pid` appears in pids[0..n). */
int h_pid_in(pid_t pid, const pid_t *pids, size_t n);

/* Read a whole file; NUL-terminated, malloc'd; NULL on error. */
char *h_read_file(const char *path, size_t *len);

/* ---- One serve instance ------------------------------------------------ */

/* Make a scratch folder, pick the ports and register the instance for
   h_cleanup_all(). Returns NULL on failure (errors on stderr). */
h_serve *h_serve_new(void);

/* Write the config file from a printf-style template; pass s->port (and
   s->admin_port) among the arguments where the template wants them. */
int h_serve_write_config(h_serve *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * Write a config made of http_options and admin on this instance's ports
 * and the applications given as a printf-style template of the contents of
 * the "applications" array, e.g. "{\"name\": \"a\", ...}, {...}".
 */
int h_serve_write_apps(h_serve *s, const char *apps_fmt, ...) __attribute__((format(printf, 2, 3)));

/* Write an extra file into the scratch folder (e.g. a second config). The
   full path is stored in `path_out` when not NULL. */
int h_serve_write_file(h_serve *s, const char *name, const void *data, size_t len,
                       char path_out[H_PATH_MAX]);

/* Start `serve run [extra_args...] CONFIG` (extra_args NULL-terminated, or
   NULL) in the scratch folder, in its own process group, with stdout and
   stderr appended to the log file. */
int h_serve_start(h_serve *s);
int h_serve_start_args(h_serve *s, const char *const *extra_args);

/* The whole log so far (malloc'd, "" when empty). */
char *h_serve_log(const h_serve *s);

/* The last `H_LOG_TAIL_SIZE` bytes of the log, for assertion messages. The
   string lives in a static buffer until the next call. */
const char *h_serve_log_tail(const h_serve *s);

/* Copy the log to stderr, framed, so a failing test shows what serve said. */
void h_serve_print_log(const h_serve *s);

/* 1 when the child is still running (reaps it, and records exit_code, if
   it has exited). */
int h_serve_running(h_serve *s);

/*
 * Wait up to `timeout_s` for GET /-/healthz to answer 200 and, when `path`
 * is not NULL, for GET `path` to answer 200 too. Fails early when the
 * child exits.
 */
int h_serve_wait_ready(h_serve *s, const char *path, double timeout_s);

/* The replica processes: children of serve whose command line holds
   "__replica". Same return convention as h_children. */
size_t h_serve_replicas(const h_serve *s, pid_t *out, size_t max);

/* Wait up to `timeout_s` until exactly `n` replica processes are alive;
   stores them in `out` (room for H_MAX_REPLICAS). */
int h_serve_wait_replicas(const h_serve *s, size_t n, double timeout_s, pid_t *out);

/*
 * Run a tool to completion: argv[0] is its path, `env_extra` one more
 * "NAME=value" environment entry (or NULL). Its stdout and stderr go to
 * `out_name` in the scratch folder; `output` (when not NULL) gets them,
 * malloc'd. Returns the exit code (128 + signal number when killed), or -1
 * when it cannot be started.
 */
int h_run(const h_serve *s, const char *const *argv, const char *env_extra, const char *out_name,
          char **output);

/*
 * Install the build tree ($SERVE_BUILD_DIR, without rebuilding) into
 * s->dir/install, with the prefix and folders meson was configured with
 * ($SERVE_INSTALL_PREFIX, _BINDIR, _LIBDIR, _INCLUDEDIR, _DATADIR), and
 * fill `out`.
 * Returns 0, or -1 with meson's output in s->dir/install.out.
 */
int h_install_into(const h_serve *s, h_install *out);

/* Run `sh -c command` in folder `cwd` (NULL: the scratch folder) with one
   more environment entry (or NULL), as h_run does. */
int h_sh(const h_serve *s, const char *cwd, const char *command, const char *env_extra,
         const char *out_name, char **output);

/* Send `sig` to the serve process (not its group). */
int h_serve_signal(h_serve *s, int sig);

/*
 * Wait up to `timeout_s` for the child to exit and return its exit code
 * (128 + signal number when killed). On timeout, SIGKILL it, reap it and
 * return -1.
 */
int h_serve_wait_exit(h_serve *s, double timeout_s);

/* h_serve_signal + h_serve_wait_exit. */
int h_serve_stop(h_serve *s, int sig, double timeout_s);

/* Kill the child's process group and orphans, reap, remove the folder,
   unregister and free. NULL is fine. */
void h_serve_free(h_serve *s);

/* h_serve_free every registered instance: the .fini of e2e suites. Also
   kills replica processes orphaned to this (subreaper) test process. */
void h_cleanup_all(void);

/* Replica processes re-parented to the test process after their serve
   exited: processes that outlived it. Same convention as h_children. */
size_t h_orphan_replicas(pid_t *out, size_t max);

/* ---- HTTP -------------------------------------------------------------- */

/*
 * Send one request to this instance's proxy: `method` ("GET", "POST", ...),
 * `path` with the query ("/echo/a?x=1"), `headers` a NULL-terminated array
 * of "Name: value" strings (or NULL), `body` of `body_len` bytes (NULL for
 * none; for GET/HEAD without a body nothing is sent). Reuses a keep-alive
 * connection. Returns 0 when an HTTP answer arrived (any status), -1 on a
 * transport error or timeout (out->error says which). `out` must be freed
 * with h_response_free either way.
 */
int h_request(h_serve *s, const char *method, const char *path, const char *const *headers,
              const void *body, size_t body_len, h_response *out);

/* GET `path` without headers. */
int h_get(h_serve *s, const char *path, h_response *out);

/* Free what a response owns; it can be reused after. */
void h_response_free(h_response *r);

/* The value of response header `name` (case-insensitive) copied into buf,
   or -1 when absent. */
int h_response_header(const h_response *r, const char *name, char *buf, size_t size);

/*
 * A request running on its own thread and connection, to have one in flight
 * while the test does something else (e.g. sends a signal). Arguments as for
 * h_request; they are copied. h_async_wait joins it, stores the answer and
 * returns h_request's result; it frees the h_async.
 */
typedef struct h_async h_async;
h_async *h_request_async(h_serve *s, const char *method, const char *path,
                         const char *const *headers, const void *body, size_t body_len);
int h_async_wait(h_async *a, h_response *out);

#endif
