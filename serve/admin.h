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
 * Bearer TOKEN" (else 401); the page asks for the token itself. Without one
 * the API must be bound to a loopback address (admin_start refuses
 * anything else once it knows the address), and every request, the page
 * included, must name admin.host or a loopback address in its Host header
 * (else 403: DNS rebinding), and a write from a browser must come from the
 * same origin. Refusals (403, 401, 413) are answered from the headers,
 * before any body is read. docs/security.md has the whole threat model.
 */
#ifndef SERVE_ADMIN_H
#define SERVE_ADMIN_H

#include <stddef.h>
#include <uv.h>

typedef struct admin admin;
typedef struct ctl ctl;

/* Is `host` `localhost` (any case), an IPv4 literal in 127.0.0.0/8, or
   the IPv6 literal ::1 or ::ffff:127.x.x.x? Only literals count: the text
   "127.example.com" is a name like any other. */
int admin_host_is_loopback(const char *host);

/* Can `host` turn out to be a loopback address? 0 only for an address
   literal outside loopback (0.0.0.0, 10.1.2.3, ::): a name is known only
   once resolved, and admin_start checks the address it bound. For an early
   refusal of configs that cannot work without a token. */
int admin_host_may_be_loopback(const char *host);

/* Listen and serve on `loop`. `token` may be NULL (then no auth, and the
   bound address must be loopback, else -EACCES). `host` and `token` are
   copied. Returns 0 or a negative errno with a message in `err`. */
int admin_start(uv_loop_t *loop, ctl *c, const char *host, int port, const char *token, admin **out,
                char *err, size_t errlen);

/* Stop serving; `done(arg)` once the loop has closed everything. */
void admin_close(admin *a, void (*done)(void *), void *arg);

#endif
