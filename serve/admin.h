/*
 * admin.h - the admin HTTP API (Ray Serve's REST API) on admin.host:port.
 *
 *   GET    /api/serve/applications/   the status document (ctl_status)
 *   PUT    /api/serve/applications/   the whole desired config (ctl_apply)
 *   DELETE /api/serve/applications/   remove every application
 *   GET    /metrics                   Prometheus text format (ctl_write_metrics)
 *   GET    /                          the dashboard page (serve/dashboard.html)
 *
 * With an auth token every request but the page needs "Authorization:
 * Bearer TOKEN" (else 401); the page asks for the token itself. Without one the API must listen on
 * a loopback address; the caller checks that (admin_host_is_loopback) before starting it.
 */
#ifndef SERVE_ADMIN_H
#define SERVE_ADMIN_H

#include <stddef.h>
#include <uv.h>

typedef struct admin admin;
typedef struct ctl ctl;

/* Is `host` a loopback name or address (localhost, 127.0.0.0/8, ::1)? */
int admin_host_is_loopback(const char *host);

/* Listen and serve on `loop`. `token` may be NULL (then no auth). Returns
   0 or a negative errno with a message in `err`. */
int admin_start(uv_loop_t *loop, ctl *c, const char *host, int port, const char *token, admin **out,
                char *err, size_t errlen);

/* Stop serving; `done(arg)` once the loop has closed everything. */
void admin_close(admin *a, void (*done)(void *), void *arg);

#endif
