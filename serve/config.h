/*
 * config.h - the serve config file: parse, validate, free.
 *
 * The schema is Ray Serve's (http_options, admin, applications[] with
 * deployments[]) with a C plugin path in place of import_path. Parsing is
 * pure: no file is opened and nothing is started, so the parser can be unit
 * tested and fuzzed, and a bad config is refused whole before anything runs.
 *
 * Every field is described once, in a declarative table in config.c (name,
 * type, default, bounds). Errors name the field by its JSON path, e.g.
 * "applications[0].deployments[1].num_replicas: must be >= 0".
 *
 * Error convention: functions return 0 or a negative errno-style code and,
 * on error, write a one-line NUL-terminated message into the caller's `err`
 * buffer (truncated to `errlen`).
 */
#ifndef SERVE_CONFIG_H
#define SERVE_CONFIG_H

#include <stddef.h>

#define CFG_ERR_LEN 512

/* autoscaling_config; `enabled` is 0 when the deployment has none. */
typedef struct cfg_autoscaling {
    int enabled;
    int min_replicas;                 /* default 1 */
    int initial_replicas;             /* default min_replicas */
    int max_replicas;                 /* default 1; must be >= min and >= 1 */
    double target_ongoing_requests;   /* default 2; > 0 */
    double metrics_interval_s;        /* default 10 */
    double look_back_period_s;        /* default 30 */
    double upscale_delay_s;           /* default 30 */
    double downscale_delay_s;         /* default 600 */
    double downscale_to_zero_delay_s; /* default -1: use downscale_delay_s */
    double upscaling_factor;          /* default 1.0; > 0 */
    double downscaling_factor;        /* default 1.0; > 0 */
} cfg_autoscaling;

/* Dynamic batching; `enabled` is 0 when the deployment has none. */
typedef struct cfg_batching {
    int enabled;
    int max_batch_size;          /* default 10; 1..4096 */
    double batch_wait_timeout_s; /* default 0.01; 0..60 */
} cfg_batching;

/*
 * logging_config, as in Ray Serve: at the top level for every process, and
 * on an application or a deployment for its replicas (the nearest level
 * that sets a field wins). Fields not set are NULL.
 */
typedef struct cfg_logging {
    char *log_level; /* "DEBUG", "INFO", "WARN" or "WARNING", "ERROR", "OFF" (any case) */
    char *encoding;  /* "TEXT" or "JSON" (any case) */
    char *logs_dir;  /* top level only: the log files' folder */
} cfg_logging;

/*
 * A handle binding: a top-level init_args value {"deployment": D} or
 * {"deployment": D, "app": A} gives the replica a handle named by its key
 * to deployment D of application A (by default its own application).
 */
typedef struct cfg_binding {
    char *name;       /* the init_args key */
    char *app;        /* the target's application */
    char *deployment; /* the target deployment */
} cfg_binding;

typedef struct cfg_deployment {
    char *name;
    int num_replicas;                   /* default 1; >= 0 (autoscaling: initial count) */
    int max_ongoing_requests;           /* default 5; >= 1 */
    int max_queued_requests;            /* default -1 (unbounded); >= -1 */
    char *init_args_json;               /* compact JSON text; "{}" when absent */
    char *user_config_json;             /* compact JSON text, or NULL when absent */
    double graceful_shutdown_timeout_s; /* default 20; >= 0 */
    double health_check_period_s;       /* default 10; > 0 */
    double health_check_timeout_s;      /* default 30; > 0 */
    int max_replica_memory_mb;          /* default 0 = no limit; resident MiB */
    cfg_autoscaling autoscaling;
    cfg_batching batching;
    cfg_binding *bindings; /* from init_args, in key order */
    size_t n_bindings;
    cfg_logging logging;
} cfg_deployment;

typedef struct cfg_app {
    char *name;
    char *route_prefix; /* default "/" as in Ray; starts with '/', no trailing
                           '/' except "/" itself */
    char *plugin;       /* as written; absolute after cfg_resolve_plugins */
    char *ingress;      /* deployment receiving HTTP; default: the only one */
    cfg_deployment *deployments;
    size_t n_deployments;
    cfg_logging logging;
} cfg_app;

typedef struct cfg_config {
    char *http_host;                /* default "127.0.0.1" */
    int http_port;                  /* default 8000; 1..65535 */
    double request_timeout_s;       /* default 0 = no timeout; >= 0 */
    int max_body_bytes;             /* default 64 MiB; larger bodies get 413 */
    int max_header_bytes;           /* default 8 KiB (as nginx); 1 KiB..1 MiB; larger get 431 */
    double keep_alive_timeout_s;    /* default 5 (Ray's): no request this long, closed */
    int max_connections;            /* default 16384 client connections */
    double client_header_timeout_s; /* default 10: request line to end of headers */
    int access_log;                 /* default true: one INFO log line per request */
    char *admin_host;               /* default "127.0.0.1" */
    int admin_port;                 /* default 8265; 1..65535 */
    char *admin_auth_token;         /* NULL: none (the admin API must be on loopback) */
    cfg_logging logging;            /* logs_dir NULL: a new session folder (see docs) */
    char *source_json;              /* the whole document, compact: deployed configs */
    cfg_app *apps;
    size_t n_apps;
} cfg_config;

/*
 * Parse and validate `len` bytes of JSON text. On success *out owns a new
 * config (free with cfg_free) and 0 is returned. On failure *out is NULL,
 * -EINVAL is returned and `err` names the field and the rule it broke.
 * Unknown fields are errors. Cross-field rules checked here: unique app
 * names, unique route prefixes, unique deployment names within an app,
 * ingress names an existing deployment, num_replicas and autoscaling_config
 * are not both set, min_replicas <= initial_replicas <= max_replicas, every
 * handle binding names an existing deployment, and bindings form no cycle.
 */
int cfg_parse(const char *text, size_t len, cfg_config **out, char *err, size_t errlen);

/*
 * Read the file at `path` and cfg_parse it. I/O errors return the negative
 * errno and a message naming the path. JSON syntax errors give line and
 * column.
 */
int cfg_load_file(const char *path, cfg_config **out, char *err, size_t errlen);

/*
 * Resolve every app's plugin path to an absolute, existing, readable file:
 * an absolute path is taken as is; a relative one is tried against
 * `config_dir` (the config file's folder; NULL means the working directory),
 * then against each folder of `search_path` (colon-separated, may be NULL).
 * On failure returns -ENOENT and names the field, the path and the folders
 * tried: "applications[0].plugin: no such file: x.so (looked in: /a, /b)".
 */
int cfg_resolve_plugins(cfg_config *cfg, const char *config_dir, const char *search_path, char *err,
                        size_t errlen);

/*
 * The plugin search path of a process whose binary is `exe`:
 * $SERVE_PLUGIN_PATH, then <bindir>/../examples (a build tree), then
 * the install's plugin folder, <libdir>/serve/plugins, as seen from
 * <bindir> (SERVE_PLUGINDIR_FROM_BIN, set by meson). A new string, or NULL.
 */
char *cfg_plugin_search_path(const char *exe);

/*
 * Configs sent through the admin API may only name plugins inside known
 * folders: relative names are looked up in `base_dir` (the first folder of
 * search_path when NULL), then in search_path, and every resolved path
 * must lie inside one of the folders of search_path or of `allowed` (both
 * ':'-separated; allowed may be NULL). Else -EPERM, the field named.
 */
int cfg_resolve_plugins_within(cfg_config *cfg, const char *base_dir, const char *search_path,
                               const char *allowed, char *err, size_t errlen);

/* Fill admin.auth_token from $SERVE_ADMIN_TOKEN when the config has none. */
void cfg_admin_token_from_env(cfg_config *cfg);

/* Free a config and everything it owns. NULL is fine. */
void cfg_free(cfg_config *cfg);

/* The log level and encoding of a deployment's replicas (`app` and `dep`
   may be NULL for the top level's): the nearest logging_config that sets
   them, else "INFO" and "TEXT". */
const char *cfg_log_level(const cfg_config *cfg, const cfg_app *app, const cfg_deployment *dep);
const char *cfg_log_encoding(const cfg_config *cfg, const cfg_app *app, const cfg_deployment *dep);

/* Find a deployment of `app` by name, or NULL. */
const cfg_deployment *cfg_app_deployment(const cfg_app *app, const char *name);

#endif
