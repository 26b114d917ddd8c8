/*
 * controller.h - the controller: turns a config into running replicas.
 *
 * For each deployment it keeps num_replicas replica processes alive: it
 * spawns `serve __replica` with a control and a data socketpair, sends INIT,
 * and on READY hands the data socket to the router. A replica that exits is
 * replaced (with exponential backoff while it keeps failing). On shutdown it
 * drains the router, asks every replica to STOP, kills the ones that do not
 * exit within graceful_shutdown_timeout_s, reaps them all, and closes the
 * router, so that the loop ends with nothing left behind.
 */
#ifndef SERVE_CONTROLLER_H
#define SERVE_CONTROLLER_H

#include <stddef.h>
#include <stdio.h>
#include <uv.h>

#include <jansson.h>

#include "serve/config.h"

typedef struct ctl ctl;

/* Called once when the controller has stopped everything; `exit_code` is 0
   after a requested shutdown, 1 when a deployment could not start. */
typedef void (*ctl_done_cb)(void *arg, int exit_code);

/*
 * Start the router and every deployment of `cfg`. Ownership of cfg passes
 * to the controller, even on failure. `exe` is the path of the serve binary
 * used to start replicas. Returns 0, or a negative errno with a message in
 * `err` (e.g. the port is taken); on failure run the loop until it ends to
 * let handles close (the done callback may still come, with exit code 1).
 */
int ctl_start(uv_loop_t *loop, cfg_config *cfg, const char *exe, ctl_done_cb done, void *arg,
              ctl **out, char *err, size_t errlen);

/* The status document of GET /api/serve/applications/, in Ray Serve's
   shape: applications with status, deployed config and deployments, each
   with its replicas (id, state, pid, start time). A new reference. */
json_t *ctl_status(const ctl *c);

/* Write every metric (the proxy's and the deployments') in the Prometheus
   text format: what the admin API serves at /metrics. */
void ctl_write_metrics(const ctl *c, FILE *f);

/*
 * Apply a new config to the running controller (ownership of `next`
 * passes, even on failure), as a diff, matching deployments by application
 * and deployment name: new ones start; missing ones drain and stop;
 * num_replicas, user_config (reconfigure), limits, health settings and
 * route prefixes change in place; a new plugin (path or rebuilt file) or
 * init_args rolls the replicas over. A change of http_options or admin is
 * refused whole: -ENOTSUP with the field named in `err`.
 */
int ctl_apply(ctl *c, cfg_config *next, char *err, size_t errlen);

/*
 * Record that the current config comes from the operator's own file, in
 * folder `config_dir` (serve run's CONFIG, also after a --watch reload).
 * Configs sent through the admin API then look up relative plugin names
 * there first, and may name plugins in the folders of this and every
 * earlier such file's plugins, besides the plugin search path: so that
 * `serve deploy` of the same file works. Returns 0 or -ENOMEM.
 */
int ctl_trust_file(ctl *c, const char *config_dir);

/* What ctl_trust_file recorded: the folder (NULL before any), and the
   plugin folders, ':'-separated (NULL when none). */
const char *ctl_file_dir(const ctl *c);
const char *ctl_trusted_folders(const ctl *c);

/* Remove every application (Ray's DELETE /api/serve/applications/): their
   replicas drain and stop; the proxy and admin API keep running. */
int ctl_delete_all(ctl *c, char *err, size_t errlen);

/* Begin a graceful shutdown (idempotent; a second call stops replicas at
   once). The done callback follows; the ctl is freed after it returns. */
void ctl_shutdown(ctl *c);

#endif
