/*
 * config.c - parse and validate the serve config file (see config.h).
 *
 * Every field is described once, in the declarative tables below: its JSON
 * name, type, place in the C struct, default and bounds. One generic walker
 * (fill_object) applies the tables to a JSON document, so adding a field is
 * one table row. Rules that tie several fields together live in small
 * per-object "finish" hooks that run once an object's fields are filled.
 *
 * Memory: everything a config owns hangs off struct fields named in the
 * tables, and arrays record their length as soon as they are allocated, so
 * one generic walker (free_object) frees a config whether it was filled
 * completely or abandoned half way through by an error.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "serve/config.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "common/log.h"

#define CFG_PATH_LEN      256         /* longest JSON path kept for messages */
#define CFG_MAX_PORT      65535       /* TCP ports are 16-bit */
#define CFG_MAX_REPLICAS  1024        /* sanity bound on a fixed replica count */
#define CFG_MAX_ONGOING   100000      /* sanity bound on max_ongoing_requests */
#define CFG_MAX_BATCH     4096        /* sanity bound on batching.max_batch_size */
#define CFG_READ_CHUNK    4096        /* first buffer size when reading a file */
#define CFG_MAX_FILE_SIZE (16 << 20)  /* a config larger than this is a mistake */
#define CFG_ROOT_NAME     "top level" /* how messages name the document itself */

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* ---- Tables ---------------------------------------------------------------------------------- */

typedef enum cfg__type {
    T_INT,    /* int; a JSON integer */
    T_DOUBLE, /* double; any JSON number */
    T_BOOL,   /* int 0/1; a JSON boolean */
    T_STRING, /* char *, owned */
    T_JSON,   /* char *, owned: any JSON value kept as compact text */
    T_OBJECT, /* a nested object filled into base + offset */
    T_ARRAY,  /* a pointer + count, each element an object */
} cfg__type;

typedef enum cfg__bound { B_NONE, B_INCL, B_EXCL } cfg__bound;

typedef struct cfg__ctx {
    char *err;
    size_t errlen;
} cfg__ctx;

struct cfg__kind;

/* One row: a JSON field and where and how it lands in a C struct. */
typedef struct cfg__field {
    const char *name;                    /* JSON key */
    cfg__type type;                      /* value type, see cfg__type */
    size_t offset;                       /* offsetof the member in the enclosing struct */
    size_t count_offset;                 /* T_ARRAY: offsetof the element count */
    const struct cfg__kind *kind;        /* T_OBJECT, T_ARRAY: shape of the value */
    double def;                          /* T_INT, T_DOUBLE: default */
    const char *sdef;                    /* T_STRING, T_JSON: default text, NULL for none */
    double min, max;                     /* bounds, used per lo / hi */
    cfg__bound lo, hi;                   /* T_ARRAY: lo bounds the element count */
    bool required;                       /* absence is an error */
    bool nonempty;                       /* T_STRING: "" is an error */
    bool object_only;                    /* T_JSON: the value must be an object */
    const char *(*check)(const char *s); /* T_STRING: extra rule, returns a message */
} cfg__field;

/* Finish hook: cross-field rules for one object, after its fields are set. */
typedef int (*cfg__finish)(cfg__ctx *ctx, void *base, json_t *json, const char *path);
/* Release hook: free what a finish hook allocated outside the table. */
typedef void (*cfg__release)(void *base);

/* One kind of JSON object: its fields and the C struct they fill. */
typedef struct cfg__kind {
    const cfg__field *fields;
    size_t n_fields;
    size_t size;          /* sizeof the struct, for arrays of this kind */
    long enabled;         /* offsetof an int set to 1 when the object is present, or -1 */
    cfg__finish finish;   /* may be NULL */
    cfg__release release; /* may be NULL */
} cfg__kind;

/* Row helpers, so each table row reads as one line. */
#define ROW(json, t, st, member, ...)                                                              \
    {                                                                                              \
        .name = (json), .type = (t), .offset = offsetof(st, member), __VA_ARGS__                   \
    }
#define GE(v)        .min = (v), .lo = B_INCL
#define GT(v)        .min = (v), .lo = B_EXCL
#define LE(v)        .max = (v), .hi = B_INCL
#define REQUIRED     .required = true
#define NONEMPTY     .nonempty = true
#define DEF(v)       .def = (v)
#define SDEF(s)      .sdef = (s)
#define SUB(k)       .kind = &(k)
#define COUNT(st, m) .count_offset = offsetof(st, m)

static const char *check_route_prefix(const char *s);
static const char *check_name(const char *s);
static const char *check_log_level(const char *s);
static const char *check_log_encoding(const char *s);
static int finish_autoscaling(cfg__ctx *ctx, void *base, json_t *json, const char *path);
static int finish_deployment(cfg__ctx *ctx, void *base, json_t *json, const char *path);
static void release_deployment(void *base);
static int finish_app(cfg__ctx *ctx, void *base, json_t *json, const char *path);
static int finish_config(cfg__ctx *ctx, void *base, json_t *json, const char *path);

static const cfg__field autoscaling_fields[] = {
    ROW("min_replicas", T_INT, cfg_autoscaling, min_replicas, DEF(1), GE(0), LE(CFG_MAX_REPLICAS)),
    ROW("initial_replicas", T_INT, cfg_autoscaling, initial_replicas, GE(0),
        LE(CFG_MAX_REPLICAS)), /* default set in finish */
    ROW("max_replicas", T_INT, cfg_autoscaling, max_replicas, DEF(1), GE(1), LE(CFG_MAX_REPLICAS)),
    ROW("target_ongoing_requests", T_DOUBLE, cfg_autoscaling, target_ongoing_requests, DEF(2),
        GT(0)),
    ROW("metrics_interval_s", T_DOUBLE, cfg_autoscaling, metrics_interval_s, DEF(10), GT(0)),
    ROW("look_back_period_s", T_DOUBLE, cfg_autoscaling, look_back_period_s, DEF(30), GT(0)),
    ROW("upscale_delay_s", T_DOUBLE, cfg_autoscaling, upscale_delay_s, DEF(30), GE(0)),
    ROW("downscale_delay_s", T_DOUBLE, cfg_autoscaling, downscale_delay_s, DEF(600), GE(0)),
    /* -1 means "use downscale_delay_s"; a value given explicitly must be >= 0 */
    ROW("downscale_to_zero_delay_s", T_DOUBLE, cfg_autoscaling, downscale_to_zero_delay_s, DEF(-1),
        GE(0)),
    ROW("upscaling_factor", T_DOUBLE, cfg_autoscaling, upscaling_factor, DEF(1.0), GT(0)),
    ROW("downscaling_factor", T_DOUBLE, cfg_autoscaling, downscaling_factor, DEF(1.0), GT(0)),
};
static const cfg__kind autoscaling_kind = {autoscaling_fields, ARRAY_LEN(autoscaling_fields),
                                           sizeof(cfg_autoscaling),
                                           offsetof(cfg_autoscaling, enabled), finish_autoscaling};

static const cfg__field batching_fields[] = {
    ROW("max_batch_size", T_INT, cfg_batching, max_batch_size, DEF(10), GE(1), LE(CFG_MAX_BATCH)),
    ROW("batch_wait_timeout_s", T_DOUBLE, cfg_batching, batch_wait_timeout_s, DEF(0.01), GE(0),
        LE(60)),
};
static const cfg__kind batching_kind = {batching_fields, ARRAY_LEN(batching_fields),
                                        sizeof(cfg_batching), offsetof(cfg_batching, enabled),
                                        NULL};

/* logging_config: every field at the top level, level and encoding below. */
#define LOGGING_ROWS                                                                               \
    ROW("log_level", T_STRING, cfg_logging, log_level, .check = check_log_level),                  \
        ROW("encoding", T_STRING, cfg_logging, encoding, .check = check_log_encoding)
static const cfg__field logging_fields[] = {
    LOGGING_ROWS,
    ROW("logs_dir", T_STRING, cfg_logging, logs_dir, NONEMPTY),
};
static const cfg__kind logging_kind = {logging_fields, ARRAY_LEN(logging_fields), 0, -1, NULL};
static const cfg__field scoped_logging_fields[] = {LOGGING_ROWS};
static const cfg__kind scoped_logging_kind = {scoped_logging_fields,
                                              ARRAY_LEN(scoped_logging_fields), 0, -1, NULL};

static const cfg__field deployment_fields[] = {
    ROW("name", T_STRING, cfg_deployment, name, REQUIRED, NONEMPTY, .check = check_name),
    ROW("num_replicas", T_INT, cfg_deployment, num_replicas, DEF(1), GE(0), LE(CFG_MAX_REPLICAS)),
    ROW("max_ongoing_requests", T_INT, cfg_deployment, max_ongoing_requests, DEF(5), GE(1),
        LE(CFG_MAX_ONGOING)),
    ROW("max_queued_requests", T_INT, cfg_deployment, max_queued_requests, DEF(-1), GE(-1)),
    ROW("init_args", T_JSON, cfg_deployment, init_args_json, SDEF("{}"), .object_only = true),
    ROW("user_config", T_JSON, cfg_deployment, user_config_json),
    ROW("graceful_shutdown_timeout_s", T_DOUBLE, cfg_deployment, graceful_shutdown_timeout_s,
        DEF(20), GE(0)),
    ROW("health_check_period_s", T_DOUBLE, cfg_deployment, health_check_period_s, DEF(10), GT(0)),
    ROW("health_check_timeout_s", T_DOUBLE, cfg_deployment, health_check_timeout_s, DEF(30), GT(0)),
    ROW("max_replica_memory_mb", T_INT, cfg_deployment, max_replica_memory_mb, DEF(0), GE(0)),
    ROW("autoscaling_config", T_OBJECT, cfg_deployment, autoscaling, SUB(autoscaling_kind)),
    ROW("batching", T_OBJECT, cfg_deployment, batching, SUB(batching_kind)),
    ROW("logging_config", T_OBJECT, cfg_deployment, logging, SUB(scoped_logging_kind)),
};
static const cfg__kind deployment_kind = {deployment_fields,      ARRAY_LEN(deployment_fields),
                                          sizeof(cfg_deployment), -1,
                                          finish_deployment,      release_deployment};

static const cfg__field app_fields[] = {
    ROW("name", T_STRING, cfg_app, name, REQUIRED, NONEMPTY, .check = check_name),
    ROW("route_prefix", T_STRING, cfg_app, route_prefix, SDEF("/"), .check = check_route_prefix),
    ROW("plugin", T_STRING, cfg_app, plugin, REQUIRED, NONEMPTY),
    ROW("ingress", T_STRING, cfg_app, ingress, NONEMPTY), /* default: see finish_app */
    ROW("deployments", T_ARRAY, cfg_app, deployments, COUNT(cfg_app, n_deployments),
        SUB(deployment_kind), REQUIRED, GE(1)),
    ROW("logging_config", T_OBJECT, cfg_app, logging, SUB(scoped_logging_kind)),
};
static const cfg__kind app_kind = {app_fields, ARRAY_LEN(app_fields), sizeof(cfg_app), -1,
                                   finish_app};

/* http_options and admin are flattened into cfg_config itself. */
static const cfg__field http_fields[] = {
    ROW("host", T_STRING, cfg_config, http_host, SDEF("127.0.0.1"), NONEMPTY),
    ROW("port", T_INT, cfg_config, http_port, DEF(8000), GE(1), LE(CFG_MAX_PORT)),
    ROW("request_timeout_s", T_DOUBLE, cfg_config, request_timeout_s, DEF(0), GE(0),
        LE(7 * 24 * 3600)),
    ROW("max_body_bytes", T_INT, cfg_config, max_body_bytes, DEF(64 << 20), GE(0)),
    ROW("max_header_bytes", T_INT, cfg_config, max_header_bytes, DEF(8 << 10), GE(1024),
        LE(1 << 20)),
    ROW("access_log", T_BOOL, cfg_config, access_log, DEF(1)),
    ROW("keep_alive_timeout_s", T_DOUBLE, cfg_config, keep_alive_timeout_s, DEF(5), GT(0),
        LE(24 * 3600)),
    ROW("max_connections", T_INT, cfg_config, max_connections, DEF(16384), GE(1), LE(1 << 20)),
    ROW("client_header_timeout_s", T_DOUBLE, cfg_config, client_header_timeout_s, DEF(10), GT(0),
        LE(3600)),
};
static const cfg__kind http_kind = {http_fields, ARRAY_LEN(http_fields), 0, -1, NULL};

static const cfg__field admin_fields[] = {
    ROW("host", T_STRING, cfg_config, admin_host, SDEF("127.0.0.1"), NONEMPTY),
    ROW("port", T_INT, cfg_config, admin_port, DEF(8265), GE(1), LE(CFG_MAX_PORT)),
    ROW("auth_token", T_STRING, cfg_config, admin_auth_token, NONEMPTY),
};
static const cfg__kind admin_kind = {admin_fields, ARRAY_LEN(admin_fields), 0, -1, NULL};

static const cfg__field config_fields[] = {
    {.name = "http_options", .type = T_OBJECT, .offset = 0, SUB(http_kind)},
    {.name = "admin", .type = T_OBJECT, .offset = 0, SUB(admin_kind)},
    ROW("logging_config", T_OBJECT, cfg_config, logging, SUB(logging_kind)),
    ROW("applications", T_ARRAY, cfg_config, apps, COUNT(cfg_config, n_apps), SUB(app_kind),
        REQUIRED),
};
static const cfg__kind config_kind = {config_fields, ARRAY_LEN(config_fields), sizeof(cfg_config),
                                      -1, finish_config};

/* ---- Messages and paths ---------------------------------------------------------------------- */

/* Write "PATH: message" into the caller's buffer and return `code`. */
static int fail_code(cfg__ctx *ctx, int code, const char *path, const char *fmt, ...)
{
    if (!ctx->err || ctx->errlen == 0) return code;
    int n = snprintf(ctx->err, ctx->errlen, "%s: ", path[0] ? path : CFG_ROOT_NAME);
    if (n >= 0 && (size_t)n < ctx->errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(ctx->err + n, ctx->errlen - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return code;
}

#define fail(ctx, path, ...) fail_code((ctx), -EINVAL, (path), __VA_ARGS__)

/* Format a JSON path into a CFG_PATH_LEN buffer; a long one is cut short. */
static void set_path(char *out, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out, CFG_PATH_LEN, fmt, ap);
    va_end(ap);
}

/* "a.b" from "a" and "b"; a key of the document itself has no leading dot. */
static void join_key(char *out, const char *path, const char *key)
{
    set_path(out, path[0] ? "%s.%s" : "%s%s", path, key);
}

static void join_index(char *out, const char *path, size_t i)
{
    set_path(out, "%s[%zu]", path, i);
}

/* Print a bound the way a user wrote it: "65535", not "65535.000000". */
static const char *fmt_num(char *buf, size_t len, double v)
{
    snprintf(buf, len, "%.15g", v);
    return buf;
}

/* ---- Field rules ----------------------------------------------------------------------------- */

/* Ray's rules for route prefixes: "/" or "/a/b", never "/a/", no query. */
static const char *check_route_prefix(const char *s)
{
    size_t n = strlen(s);
    if (s[0] != '/') return "must start with '/'";
    if (n > 1 && s[n - 1] == '/') return "must not end with '/'";
    if (strpbrk(s, "?#")) return "must not contain '?' or '#'";
    if (strcmp(s, "/v2") == 0 || strncmp(s, "/v2/", 4) == 0)
        return "must not be /v2 or under it: the proxy serves the inference protocol there";
    return NULL;
}

/* Application and deployment names appear in URLs, metrics, log lines,
   file names and handles: keep them plain. */
static const char *check_name(const char *s)
{
    static const char extra[] = "_-.";
    for (const char *p = s; *p; p++) {
        unsigned char c = (unsigned char)*p;
        bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        if (!alnum && !strchr(extra, c)) return "may only contain letters, digits, '_', '-', '.'";
    }
    return NULL;
}

static const char *check_log_level(const char *s)
{
    return log_level_parse(s) < 0 ? "must be DEBUG, INFO, WARNING, ERROR or OFF" : NULL;
}

static const char *check_log_encoding(const char *s)
{
    return log_encoding_parse(s) < 0 ? "must be TEXT or JSON" : NULL;
}

/* Check a number against a row's bounds; the message says the rule broken. */
static int check_bounds(cfg__ctx *ctx, const cfg__field *f, double v, const char *path)
{
    char num[32];
    if (f->lo == B_INCL && v < f->min)
        return fail(ctx, path, "must be >= %s", fmt_num(num, sizeof num, f->min));
    if (f->lo == B_EXCL && v <= f->min)
        return fail(ctx, path, "must be > %s", fmt_num(num, sizeof num, f->min));
    if (f->hi == B_INCL && v > f->max)
        return fail(ctx, path, "must be <= %s", fmt_num(num, sizeof num, f->max));
    return 0;
}

/* ---- The walker ------------------------------------------------------------------------------ */

static int fill_object(cfg__ctx *ctx, const cfg__kind *k, char *base, json_t *obj,
                       const char *path);

/* An int field: JSON integers only (1.0 and true are refused), within int. */
static int fill_int(cfg__ctx *ctx, const cfg__field *f, int *dst, json_t *v, const char *path)
{
    if (!v) {
        *dst = (int)f->def;
        return 0;
    }
    if (!json_is_integer(v)) return fail(ctx, path, "must be an integer");
    json_int_t n = json_integer_value(v);
    int rc = check_bounds(ctx, f, (double)n, path);
    if (rc) return rc;
    if (n > INT_MAX) return fail(ctx, path, "must be <= %d", INT_MAX);
    if (n < INT_MIN) return fail(ctx, path, "must be >= %d", INT_MIN);
    *dst = (int)n;
    return 0;
}

/* A double field: any JSON number, integer or real; booleans are refused. */
static int fill_double(cfg__ctx *ctx, const cfg__field *f, double *dst, json_t *v, const char *path)
{
    if (!v) {
        *dst = f->def;
        return 0;
    }
    if (!json_is_number(v)) return fail(ctx, path, "must be a number");
    double d = json_number_value(v);
    int rc = check_bounds(ctx, f, d, path);
    if (rc) return rc;
    *dst = d;
    return 0;
}

/* A boolean field: JSON true or false only (1 and "yes" are refused). */
static int fill_bool(cfg__ctx *ctx, const cfg__field *f, int *dst, json_t *v, const char *path)
{
    if (!v) {
        *dst = f->def != 0;
        return 0;
    }
    if (!json_is_boolean(v)) return fail(ctx, path, "must be true or false");
    *dst = json_is_true(v);
    return 0;
}

/* A string field: copied; absent means the default or, if required, an error. */
static int fill_string(cfg__ctx *ctx, const cfg__field *f, char **dst, json_t *v, const char *path)
{
    const char *s = f->sdef;
    if (v) {
        if (!json_is_string(v)) return fail(ctx, path, "must be a string");
        s = json_string_value(v);
        if (f->nonempty && !s[0]) return fail(ctx, path, "must not be empty");
        const char *why = f->check ? f->check(s) : NULL;
        if (why) return fail(ctx, path, "%s", why);
    } else if (f->required) {
        return fail(ctx, path, "required");
    }
    if (s && !(*dst = strdup(s))) return fail_code(ctx, -ENOMEM, path, "out of memory");
    return 0;
}

/* A free-form JSON field (init_args, user_config): kept as compact text.
   null counts as absent, as in Ray Serve. */
static int fill_json(cfg__ctx *ctx, const cfg__field *f, char **dst, json_t *v, const char *path)
{
    if (!v || json_is_null(v)) {
        if (f->sdef && !(*dst = strdup(f->sdef)))
            return fail_code(ctx, -ENOMEM, path, "out of memory");
        return 0;
    }
    if (f->object_only && !json_is_object(v)) return fail(ctx, path, "must be an object");
    if (!(*dst = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY)))
        return fail_code(ctx, -ENOMEM, path, "out of memory");
    return 0;
}

/*
 * An array of objects: allocate every element zeroed and record the count
 * at once, so that free_object can release a half-filled array after an
 * error in element i.
 */
static int fill_array(cfg__ctx *ctx, const cfg__field *f, char *base, json_t *v, const char *path)
{
    if (!v) return f->required ? fail(ctx, path, "required") : 0;
    if (!json_is_array(v)) return fail(ctx, path, "must be an array");
    size_t n = json_array_size(v);
    if (f->lo == B_INCL && (double)n < f->min)
        return fail(ctx, path, "must have at least %.0f element(s)", f->min);

    char *elems = calloc(n ? n : 1, f->kind->size);
    if (!elems) return fail_code(ctx, -ENOMEM, path, "out of memory");
    memcpy(base + f->offset, &elems, sizeof elems); /* stored as the member's pointer type */
    *(size_t *)(base + f->count_offset) = n;

    for (size_t i = 0; i < n; i++) {
        char sub[CFG_PATH_LEN];
        join_index(sub, path, i);
        int rc = fill_object(ctx, f->kind, elems + i * f->kind->size, json_array_get(v, i), sub);
        if (rc) return rc;
    }
    return 0;
}

/* Fill one table row from its JSON value (NULL when the key is absent). */
static int fill_field(cfg__ctx *ctx, const cfg__field *f, char *base, json_t *v, const char *path)
{
    char *dst = base + f->offset;
    switch (f->type) {
    case T_INT:
        return fill_int(ctx, f, (int *)dst, v, path);
    case T_DOUBLE:
        return fill_double(ctx, f, (double *)dst, v, path);
    case T_BOOL:
        return fill_bool(ctx, f, (int *)dst, v, path);
    case T_STRING:
        return fill_string(ctx, f, (char **)dst, v, path);
    case T_JSON:
        return fill_json(ctx, f, (char **)dst, v, path);
    case T_OBJECT:
        if (v && !json_is_object(v)) return fail(ctx, path, "must be an object");
        return fill_object(ctx, f->kind, dst, v, path);
    case T_ARRAY:
        return fill_array(ctx, f, base, v, path);
    }
    return fail(ctx, path, "internal error: bad field type");
}

static const cfg__field *find_field(const cfg__kind *k, const char *name)
{
    for (size_t i = 0; i < k->n_fields; i++)
        if (!strcmp(k->fields[i].name, name)) return &k->fields[i];
    return NULL;
}

/* Levenshtein distance between a and b, for names under 64 bytes (else a
   large number): how far a typo is from a field's name. */
static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), row[64];
    if (la >= 64 || lb >= 64) return SIZE_MAX;
    for (size_t j = 0; j <= lb; j++) row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j], best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best) best = up + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            diag = up;
            row[j] = best;
        }
    }
    return row[lb];
}

/* "unknown field", with the nearest field of `k` when it looks like a typo
   of it (at most 2 edits, or a different case). */
static int fail_unknown(cfg__ctx *ctx, const cfg__kind *k, const char *path, const char *key)
{
    const char *near = NULL;
    size_t best = 3;
    for (size_t i = 0; i < k->n_fields; i++) {
        size_t d =
            strcasecmp(k->fields[i].name, key) == 0 ? 0 : edit_distance(k->fields[i].name, key);
        if (d < best && d < strlen(key)) best = d, near = k->fields[i].name;
    }
    if (strcmp(key, "import_path") == 0 && find_field(k, "plugin"))
        return fail(ctx, path, "unknown field; serve runs C plugins: name the .so in \"plugin\"");
    if (!near) return fail(ctx, path, "unknown field (docs/config.md lists every field)");
    return fail(ctx, path, "unknown field; did you mean \"%s\"?", near);
}

/*
 * Fill the struct at `base` from the JSON object `obj` following table `k`.
 * A NULL `obj` (the object is absent) still applies every default, so that
 * e.g. a config without http_options gets the default host and port. Keys
 * not in the table are refused so that typos do not pass silently. The
 * kind's finish hook then checks the rules that span several fields.
 */
static int fill_object(cfg__ctx *ctx, const cfg__kind *k, char *base, json_t *obj, const char *path)
{
    char sub[CFG_PATH_LEN];
    const char *key;
    json_t *val;
    int rc;

    if (obj && !json_is_object(obj)) return fail(ctx, path, "must be an object");
    json_object_foreach(obj, key, val)
    {
        if (find_field(k, key)) continue;
        join_key(sub, path, key);
        return fail_unknown(ctx, k, sub, key);
    }
    for (size_t i = 0; i < k->n_fields; i++) {
        const cfg__field *f = &k->fields[i];
        join_key(sub, path, f->name);
        if ((rc = fill_field(ctx, f, base, json_object_get(obj, f->name), sub))) return rc;
    }
    if (obj && k->enabled >= 0) *(int *)(base + k->enabled) = 1;
    return k->finish ? k->finish(ctx, base, obj, path) : 0;
}

/* Free what the table `k` says the struct at `base` owns (not base itself). */
static void free_object(const cfg__kind *k, char *base)
{
    for (size_t i = 0; i < k->n_fields; i++) {
        const cfg__field *f = &k->fields[i];
        char *dst = base + f->offset;
        if (f->type == T_STRING || f->type == T_JSON) {
            free(*(char **)dst);
        } else if (f->type == T_OBJECT) {
            free_object(f->kind, dst);
        } else if (f->type == T_ARRAY) {
            char *elems;
            memcpy(&elems, dst, sizeof elems);
            size_t n = *(size_t *)(base + f->count_offset);
            for (size_t j = 0; j < n; j++) free_object(f->kind, elems + j * f->kind->size);
            free(elems);
        }
    }
    if (k->release) k->release(base);
}

/* ---- Cross-field rules ----------------------------------------------------------------------- */

/* initial_replicas defaults to min_replicas; min <= initial <= max. */
static int finish_autoscaling(cfg__ctx *ctx, void *base, json_t *json, const char *path)
{
    cfg_autoscaling *as = base;
    char sub[CFG_PATH_LEN];

    if (!json_object_get(json, "initial_replicas")) as->initial_replicas = as->min_replicas;
    join_key(sub, path, "max_replicas");
    if (as->max_replicas < as->min_replicas) return fail(ctx, sub, "must be >= min_replicas");
    join_key(sub, path, "initial_replicas");
    if (as->initial_replicas < as->min_replicas) return fail(ctx, sub, "must be >= min_replicas");
    if (as->initial_replicas > as->max_replicas) return fail(ctx, sub, "must be <= max_replicas");
    return 0;
}

/* Read one binding, init_args.KEY = {"deployment": D[, "app": A]}, into b. */
static int read_binding(cfg__ctx *ctx, cfg_binding *b, const char *key, json_t *v, const char *path)
{
    char sub[CFG_PATH_LEN];
    const char *member;
    json_t *m;
    json_object_foreach(v, member, m)
    {
        join_key(sub, path, member);
        if (strcmp(member, "deployment") && strcmp(member, "app"))
            return fail(ctx, sub, "unknown field: a binding has only \"deployment\" and \"app\"");
        if (!json_is_string(m) || json_string_length(m) == 0)
            return fail(ctx, sub, "must be a non-empty string");
    }
    const char *app = json_string_value(json_object_get(v, "app"));
    b->name = strdup(key);
    b->deployment = strdup(json_string_value(json_object_get(v, "deployment")));
    b->app = app ? strdup(app) : NULL;
    if (!b->name || !b->deployment || (app && !b->app))
        return fail_code(ctx, -ENOMEM, path, "out of memory");
    return 0;
}

/* Top-level init_args values holding a "deployment" key are bindings. */
static int read_bindings(cfg__ctx *ctx, cfg_deployment *d, json_t *args, const char *path)
{
    char sub[CFG_PATH_LEN];
    const char *key;
    json_t *v;
    size_t n = 0;
    json_object_foreach(args, key, v) n += json_is_object(v) && json_object_get(v, "deployment");
    if (n == 0) return 0;
    if (!(d->bindings = calloc(n, sizeof(*d->bindings))))
        return fail_code(ctx, -ENOMEM, path, "out of memory");
    json_object_foreach(args, key, v)
    {
        if (!json_is_object(v) || !json_object_get(v, "deployment")) continue;
        join_key(sub, path, key);
        int rc = read_binding(ctx, &d->bindings[d->n_bindings++], key, v, sub);
        if (rc != 0) return rc;
    }
    return 0;
}

static void release_deployment(void *base)
{
    cfg_deployment *d = base;
    for (size_t i = 0; i < d->n_bindings; i++) {
        free(d->bindings[i].name);
        free(d->bindings[i].app);
        free(d->bindings[i].deployment);
    }
    free(d->bindings);
}

/*
 * A batching deployment needs room for a batch to fill while the one
 * before it runs: max_ongoing_requests defaults to twice max_batch_size
 * (at least Ray's 5), and one set below max_batch_size would keep every
 * batch short, so it is refused.
 */
static int finish_batching(cfg__ctx *ctx, cfg_deployment *d, json_t *json, const char *path)
{
    char sub[CFG_PATH_LEN];
    int n = d->batching.max_batch_size;
    if (!d->batching.enabled) return 0;
    if (!json_object_get(json, "max_ongoing_requests")) {
        d->max_ongoing_requests = 2 * n > d->max_ongoing_requests ? 2 * n : d->max_ongoing_requests;
        return 0;
    }
    join_key(sub, path, "max_ongoing_requests");
    if (d->max_ongoing_requests < n)
        return fail(ctx, sub, "must be >= batching.max_batch_size (%d), or batches never fill", n);
    return 0;
}

/* Bindings come from init_args. An autoscaled deployment starts with
   initial_replicas and owns its count. */
static int finish_deployment(cfg__ctx *ctx, void *base, json_t *json, const char *path)
{
    cfg_deployment *d = base;
    char sub[CFG_PATH_LEN];

    join_key(sub, path, "init_args");
    int rc = read_bindings(ctx, d, json_object_get(json, "init_args"), sub);
    if (rc == 0) rc = finish_batching(ctx, d, json, path);
    if (rc != 0) return rc;
    if (!d->autoscaling.enabled) return 0;
    if (json_object_get(json, "num_replicas")) {
        join_key(sub, path, "num_replicas");
        return fail(ctx, sub, "cannot be set together with autoscaling_config");
    }
    d->num_replicas = d->autoscaling.initial_replicas;
    return 0;
}

/* Deployment names are unique in an app; ingress defaults to the only one. */
static int finish_app(cfg__ctx *ctx, void *base, json_t *json, const char *path)
{
    cfg_app *app = base;
    char sub[CFG_PATH_LEN], field[CFG_PATH_LEN];
    (void)json;

    for (size_t i = 1; i < app->n_deployments; i++) {
        const char *name = app->deployments[i].name;
        for (size_t j = 0; j < i; j++) {
            if (strcmp(app->deployments[j].name, name)) continue;
            set_path(field, "%s.deployments[%zu].name", path, i);
            return fail(ctx, field, "duplicate deployment name '%s'", name);
        }
    }
    join_key(sub, path, "ingress");
    if (!app->ingress) {
        if (app->n_deployments != 1)
            return fail(ctx, sub, "required when an application has several deployments");
        if (!(app->ingress = strdup(app->deployments[0].name)))
            return fail_code(ctx, -ENOMEM, sub, "out of memory");
    }
    if (!cfg_app_deployment(app, app->ingress))
        return fail(ctx, sub, "no deployment named '%s'", app->ingress);
    for (size_t i = 0; i < app->n_deployments; i++) /* a binding's app defaults to its own */
        for (size_t j = 0; j < app->deployments[i].n_bindings; j++) {
            cfg_binding *b = &app->deployments[i].bindings[j];
            if (!b->app && !(b->app = strdup(app->name)))
                return fail_code(ctx, -ENOMEM, path, "out of memory");
        }
    return 0;
}

/* ---- Bindings: targets exist, and no cycle ----------------------------- */

/* Deployments as graph nodes: node = first[app] + index in the app. */
typedef struct bind_graph {
    const cfg_config *cfg;
    size_t *first;  /* per app */
    int *color;     /* per node: 0 unseen, 1 on the current path, 2 done */
    size_t *target; /* per binding, in app/deployment/binding order */
    size_t *path;   /* the DFS path, for the cycle's message */
    size_t depth;
} bind_graph;

static const cfg_deployment *node_dep(const bind_graph *g, size_t node, const cfg_app **app)
{
    size_t a = 0;
    while (a + 1 < g->cfg->n_apps && g->first[a + 1] <= node) a++;
    *app = &g->cfg->apps[a];
    return &(*app)->deployments[node - g->first[a]];
}

/* Find every binding's target node; fail naming the field when absent. */
static int resolve_targets(cfg__ctx *ctx, bind_graph *g)
{
    const cfg_config *cfg = g->cfg;
    char sub[CFG_PATH_LEN];
    size_t k = 0;
    for (size_t a = 0; a < cfg->n_apps; a++)
        for (size_t d = 0; d < cfg->apps[a].n_deployments; d++)
            for (size_t i = 0; i < cfg->apps[a].deployments[d].n_bindings; i++, k++) {
                const cfg_binding *b = &cfg->apps[a].deployments[d].bindings[i];
                size_t t = 0;
                while (t < cfg->n_apps && strcmp(cfg->apps[t].name, b->app)) t++;
                set_path(sub, "applications[%zu].deployments[%zu].init_args.%s", a, d, b->name);
                if (t == cfg->n_apps)
                    return fail(ctx, sub, "binds to application '%s', which does not exist",
                                b->app);
                const cfg_deployment *target = cfg_app_deployment(&cfg->apps[t], b->deployment);
                if (!target)
                    return fail(ctx, sub,
                                "binds to deployment '%s', which application '%s' does "
                                "not have",
                                b->deployment, b->app);
                g->target[k] = g->first[t] + (size_t)(target - cfg->apps[t].deployments);
            }
    return 0;
}

/* The index in g->target of node's first binding. */
static size_t first_binding(const bind_graph *g, size_t node)
{
    size_t k = 0;
    for (size_t n = 0; n < node; n++) {
        const cfg_app *app;
        k += node_dep(g, n, &app)->n_bindings;
    }
    return k;
}

/* Report the cycle that closes at `node`, from where it is on the path. */
static int fail_cycle(cfg__ctx *ctx, const bind_graph *g, size_t node, const char *field)
{
    char chain[CFG_ERR_LEN] = "";
    size_t at = 0, len = 0;
    while (g->path[at] != node) at++;
    for (size_t i = at; i <= g->depth; i++) {
        const cfg_app *app;
        const cfg_deployment *d = node_dep(g, i < g->depth ? g->path[i] : node, &app);
        len += (size_t)snprintf(chain + len, len < sizeof(chain) ? sizeof(chain) - len : 0,
                                "%s%s/%s", i > at ? " -> " : "", app->name, d->name);
        if (len >= sizeof(chain)) break;
    }
    return fail(ctx, field, "bindings form a cycle: %s", chain);
}

static int visit(cfg__ctx *ctx, bind_graph *g, size_t node)
{
    const cfg_app *app;
    const cfg_deployment *d = node_dep(g, node, &app);
    size_t k = first_binding(g, node);
    g->color[node] = 1;
    g->path[g->depth++] = node;
    for (size_t i = 0; i < d->n_bindings; i++) {
        size_t t = g->target[k + i];
        if (g->color[t] == 2) continue;
        if (g->color[t] == 1) {
            char sub[CFG_PATH_LEN];
            set_path(sub, "applications[%zu].deployments[%zu].init_args.%s",
                     (size_t)(app - g->cfg->apps), (size_t)(d - app->deployments),
                     d->bindings[i].name);
            return fail_cycle(ctx, g, t, sub);
        }
        int rc = visit(ctx, g, t);
        if (rc != 0) return rc;
    }
    g->depth--;
    g->color[node] = 2;
    return 0;
}

static int check_bindings(cfg__ctx *ctx, const cfg_config *cfg)
{
    size_t nodes = 0, edges = 0;
    for (size_t a = 0; a < cfg->n_apps; a++)
        for (size_t d = 0; d < cfg->apps[a].n_deployments; d++, nodes++)
            edges += cfg->apps[a].deployments[d].n_bindings;
    if (edges == 0) return 0;
    bind_graph g = {cfg,
                    calloc(cfg->n_apps + 1, sizeof(size_t)),
                    calloc(nodes, sizeof(int)),
                    calloc(edges, sizeof(size_t)),
                    calloc(nodes + 1, sizeof(size_t)),
                    0};
    int rc =
        g.first && g.color && g.target && g.path ? 0 : fail_code(ctx, -ENOMEM, "", "out of memory");
    for (size_t a = 1; rc == 0 && a <= cfg->n_apps; a++)
        g.first[a] = g.first[a - 1] + cfg->apps[a - 1].n_deployments;
    if (rc == 0) rc = resolve_targets(ctx, &g);
    for (size_t n = 0; rc == 0 && n < nodes; n++)
        if (g.color[n] == 0) rc = visit(ctx, &g, n);
    free(g.first);
    free(g.color);
    free(g.target);
    free(g.path);
    return rc;
}

/* Apps are told apart by name and routed by prefix: both must be unique. */
static int finish_config(cfg__ctx *ctx, void *base, json_t *json, const char *path)
{
    cfg_config *cfg = base;
    char sub[CFG_PATH_LEN];
    (void)json, (void)path;

    for (size_t i = 1; i < cfg->n_apps; i++) {
        const cfg_app *a = &cfg->apps[i];
        for (size_t j = 0; j < i; j++) {
            const cfg_app *b = &cfg->apps[j];
            if (!strcmp(a->name, b->name)) {
                set_path(sub, "applications[%zu].name", i);
                return fail(ctx, sub, "duplicate application name '%s'", a->name);
            }
            if (!strcmp(a->route_prefix, b->route_prefix)) {
                set_path(sub, "applications[%zu].route_prefix", i);
                return fail(ctx, sub, "'%s' is already used by application '%s'", a->route_prefix,
                            b->name);
            }
        }
    }
    return check_bindings(ctx, cfg);
}

/* ---- Public API ------------------------------------------------------------------------------ */

/*
 * Parse `text`; `source` names it in syntax errors ("PATH:LINE:COL: ...")
 * or is NULL for text that came from memory ("line L, column C: ...").
 */
static int parse_text(const char *text, size_t len, const char *source, cfg_config **out, char *err,
                      size_t errlen)
{
    cfg__ctx ctx = {err, errlen};
    json_error_t jerr;
    int rc;

    *out = NULL;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        rc = json_error_code(&jerr) == json_error_out_of_memory ? -ENOMEM : -EINVAL;
        if (err && errlen && source)
            snprintf(err, errlen, "%s:%d:%d: %s", source, jerr.line, jerr.column, jerr.text);
        else if (err && errlen)
            snprintf(err, errlen, "line %d, column %d: %s", jerr.line, jerr.column, jerr.text);
        return rc;
    }
    cfg_config *cfg = calloc(1, sizeof *cfg);
    if (!cfg) {
        rc = fail_code(&ctx, -ENOMEM, "", "out of memory");
        goto fail_alloc;
    }
    if ((rc = fill_object(&ctx, &config_kind, (char *)cfg, root, ""))) goto fail_fill;
    if (!(cfg->source_json = json_dumps(root, JSON_COMPACT))) {
        rc = fail_code(&ctx, -ENOMEM, "", "out of memory");
        goto fail_fill;
    }
    json_decref(root);
    *out = cfg;
    return 0;

fail_fill:
    cfg_free(cfg);
fail_alloc:
    json_decref(root);
    return rc;
}

int cfg_parse(const char *text, size_t len, cfg_config **out, char *err, size_t errlen)
{
    return parse_text(text, len, NULL, out, err, errlen);
}

/*
 * Read a whole stream into a malloc'd buffer, doubling it as needed up to
 * CFG_MAX_FILE_SIZE. Returns 0 or -errno (-EFBIG past the limit).
 */
static int read_all(FILE *fp, char **buf_out, size_t *len_out)
{
    size_t cap = CFG_READ_CHUNK, len = 0;
    char *buf = malloc(cap), *bigger;
    int rc = -ENOMEM;

    if (!buf) return rc;
    while ((len += fread(buf + len, 1, cap - len, fp)) == cap) {
        rc = -EFBIG;
        if (cap >= CFG_MAX_FILE_SIZE) goto fail_read;
        rc = -ENOMEM;
        if (!(bigger = realloc(buf, cap * 2))) goto fail_read;
        buf = bigger;
        cap *= 2;
    }
    if (ferror(fp)) {
        rc = errno ? -errno : -EIO;
        goto fail_read;
    }
    *buf_out = buf;
    *len_out = len;
    return 0;

fail_read:
    free(buf);
    return rc;
}

int cfg_load_file(const char *path, cfg_config **out, char *err, size_t errlen)
{
    cfg__ctx ctx = {err, errlen};
    char *text;
    size_t len;
    int rc;

    *out = NULL;
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        int e = errno;
        return fail_code(&ctx, -e, path, "%s", strerror(e));
    }
    errno = 0;
    rc = read_all(fp, &text, &len);
    fclose(fp);
    if (rc) return fail_code(&ctx, rc, path, "%s", strerror(-rc));
    rc = parse_text(text, len, path, out, err, errlen);
    free(text);
    return rc;
}

/* Is `path` a regular file we may read? */
static bool readable_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, R_OK) == 0;
}

/* Try `dir`/`rel`; on success return its malloc'd absolute real path. */
static char *try_dir(const char *dir, size_t dirlen, const char *rel)
{
    char buf[PATH_MAX];
    int n = snprintf(buf, sizeof buf, "%.*s/%s", (int)dirlen, dir, rel);
    if (n < 0 || (size_t)n >= sizeof buf || !readable_file(buf)) return NULL;
    return realpath(buf, NULL);
}

/* Append to a message buffer, keeping it NUL-terminated when it overflows. */
static void append(char *buf, size_t len, const char *fmt, ...)
{
    size_t used = strnlen(buf, len);
    if (used + 1 >= len) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + used, len - used, fmt, ap);
    va_end(ap);
}

/*
 * Find one plugin: an absolute path as is, else config_dir (the working
 * directory when NULL), then each folder of search_path in order. Returns
 * a malloc'd real path, or NULL with the message written.
 */
static char *resolve_one(const char *plugin, const char *config_dir, const char *search_path,
                         size_t app_index, char *err, size_t errlen)
{
    char field[CFG_PATH_LEN], tried[CFG_ERR_LEN] = "";
    set_path(field, "applications[%zu].plugin", app_index);
    cfg__ctx ctx = {err, errlen};

    if (plugin[0] == '/') {
        char *abs = readable_file(plugin) ? realpath(plugin, NULL) : NULL;
        if (!abs) fail_code(&ctx, -ENOENT, field, "no such file: %s", plugin);
        return abs;
    }
    const char *dir = config_dir ? config_dir : ".";
    char *abs = try_dir(dir, strlen(dir), plugin);
    append(tried, sizeof tried, "%s", dir);
    for (const char *p = search_path; !abs && p && *p;) {
        size_t n = strcspn(p, ":");
        if (n > 0 && !(n == strlen(dir) && strncmp(p, dir, n) == 0)) {
            abs = try_dir(p, n, plugin);
            append(tried, sizeof tried, ", %.*s", (int)n, p);
        }
        p += n + (p[n] == ':');
    }
    if (!abs) fail_code(&ctx, -ENOENT, field, "no such file: %s (looked in: %s)", plugin, tried);
    return abs;
}

/*
 * Resolve every plugin first into a side array, then swap them in: on
 * failure the config is left exactly as it was.
 */
int cfg_resolve_plugins(cfg_config *cfg, const char *config_dir, const char *search_path, char *err,
                        size_t errlen)
{
    cfg__ctx ctx = {err, errlen};
    int rc = 0;
    size_t i = 0;
    char **paths = calloc(cfg->n_apps ? cfg->n_apps : 1, sizeof *paths);
    if (!paths) return fail_code(&ctx, -ENOMEM, "applications", "out of memory");
    for (; i < cfg->n_apps; i++) {
        paths[i] = resolve_one(cfg->apps[i].plugin, config_dir, search_path, i, err, errlen);
        if (!paths[i]) {
            rc = -ENOENT;
            goto fail_resolve;
        }
    }
    for (i = 0; i < cfg->n_apps; i++) {
        free(cfg->apps[i].plugin);
        cfg->apps[i].plugin = paths[i];
    }
    free(paths);
    return 0;

fail_resolve:
    while (i-- > 0) free(paths[i]);
    free(paths);
    return rc;
}

void cfg_free(cfg_config *cfg)
{
    if (!cfg) return;
    free_object(&config_kind, (char *)cfg);
    free(cfg->source_json);
    free(cfg);
}

const cfg_deployment *cfg_app_deployment(const cfg_app *app, const char *name)
{
    if (!app || !name) return NULL;
    for (size_t i = 0; i < app->n_deployments; i++)
        if (app->deployments[i].name && !strcmp(app->deployments[i].name, name))
            return &app->deployments[i];
    return NULL;
}

/* ---- Process environment ---------------------------------------------------------------- */

char *cfg_plugin_search_path(const char *exe)
{
    char *copy = strdup(exe), *out = NULL;
    if (!copy) return NULL;
    char *slash = strrchr(copy, '/');
    const char *dir = slash ? (*slash = '\0', copy) : ".";
    const char *env = getenv("SERVE_PLUGIN_PATH");
    if (asprintf(&out, "%s%s%s/../examples:%s/" SERVE_PLUGINDIR_FROM_BIN, env ? env : "",
                 env ? ":" : "", dir, dir) < 0)
        out = NULL;
    free(copy);
    return out;
}

void cfg_admin_token_from_env(cfg_config *cfg)
{
    const char *env = getenv("SERVE_ADMIN_TOKEN");
    if (!cfg->admin_auth_token && env && *env) cfg->admin_auth_token = strdup(env);
}

/* Is `path` inside one of the folders of `search_path`? */
static int inside_search_path(const char *path, const char *search_path)
{
    char *copy = strdup(search_path), *save = NULL;
    int inside = 0;
    for (char *dir = copy ? strtok_r(copy, ":", &save) : NULL; dir && !inside;
         dir = strtok_r(NULL, ":", &save)) {
        char real[PATH_MAX];
        size_t n;
        if (!realpath(dir, real)) continue;
        n = strlen(real);
        inside = strncmp(path, real, n) == 0 && path[n] == '/';
    }
    free(copy);
    return inside;
}

int cfg_resolve_plugins_within(cfg_config *cfg, const char *base_dir, const char *search_path,
                               const char *allowed, char *err, size_t errlen)
{
    char first[PATH_MAX];
    snprintf(first, sizeof(first), "%s", base_dir ? base_dir : search_path);
    if (!base_dir) first[strcspn(first, ":")] = '\0';
    int rc = cfg_resolve_plugins(cfg, first, search_path, err, errlen);
    for (size_t i = 0; rc == 0 && i < cfg->n_apps; i++) {
        const char *plugin = cfg->apps[i].plugin;
        if (inside_search_path(plugin, search_path) ||
            (allowed && inside_search_path(plugin, allowed)))
            continue;
        snprintf(err, errlen,
                 "applications[%zu].plugin: %s is outside the plugin folders (%s%s%s); through "
                 "the admin API, serve loads plugins only from there and from the folders of "
                 "the plugins of the config it was started with: put the plugin in one of them, "
                 "or start serve with its folder in SERVE_PLUGIN_PATH",
                 i, plugin, search_path, allowed ? ":" : "", allowed ? allowed : "");
        rc = -EPERM;
    }
    return rc;
}

/* The nearest of the three levels that sets field `off` of cfg_logging. */
static const char *nearest(const cfg_config *cfg, const cfg_app *app, const cfg_deployment *dep,
                           size_t off, const char *def)
{
    const cfg_logging *levels[] = {dep ? &dep->logging : NULL, app ? &app->logging : NULL,
                                   &cfg->logging};
    for (size_t i = 0; i < ARRAY_LEN(levels); i++) {
        const char *v = levels[i] ? *(char *const *)((const char *)levels[i] + off) : NULL;
        if (v) return v;
    }
    return def;
}

const char *cfg_log_level(const cfg_config *cfg, const cfg_app *app, const cfg_deployment *dep)
{
    return nearest(cfg, app, dep, offsetof(cfg_logging, log_level), "INFO");
}

const char *cfg_log_encoding(const cfg_config *cfg, const cfg_app *app, const cfg_deployment *dep)
{
    return nearest(cfg, app, dep, offsetof(cfg_logging, encoding), "TEXT");
}
