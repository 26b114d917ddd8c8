/*
 * httpd.h - a libmicrohttpd daemon driven by a libuv loop.
 *
 * libmicrohttpd runs in its external epoll mode: its epoll fd is watched by
 * a uv_poll, a uv_timer follows MHD_get_timeout, and an idle handle runs MHD
 * at the start of the next loop turn after connections were resumed (MHD
 * has no wake-up channel of its own in this mode, and an idle handle keeps
 * the loop from blocking before it runs). Everything happens on the loop's
 * thread: request handlers can read and change loop-owned state directly.
 * The proxy and the admin API both use it.
 */
#ifndef SERVE_HTTPD_H
#define SERVE_HTTPD_H

#include <microhttpd.h>
#include <stddef.h>
#include <uv.h>

typedef struct httpd httpd;

/* The MHD flags every daemon driven this way needs. */
#define HTTPD_MHD_FLAGS                                                                            \
    (MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_TURBO | MHD_USE_ERROR_LOG)

/* Bind and listen on host:port. Returns the socket, or a negative errno
   with a message naming `what` (e.g. "http_options"), host and port. */
int httpd_listen(const char *what, const char *host, int port, char *err, size_t errlen);

/* Drive `mhd` (started with HTTPD_MHD_FLAGS; ownership passes here) from
   `loop`. Returns 0 or -ENOMEM (then mhd is stopped). */
int httpd_start(uv_loop_t *loop, struct MHD_Daemon *mhd, httpd **out);

struct MHD_Daemon *httpd_daemon(const httpd *h);

/* Run MHD at the start of the next loop turn: call after resuming
   connections, so that all resumes of this turn are served together. */
void httpd_wake(httpd *h);

/* Stop accepting new connections; open ones go on. */
void httpd_quiesce(httpd *h);

/* Stop the daemon and free everything once the loop has closed its handles;
   then `done(arg)` if given. No connection may still be suspended. */
void httpd_close(httpd *h, void (*done)(void *), void *arg);

#endif
