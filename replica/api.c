/*
 * api.c - the framework side of serve_plugin.h: the functions a plugin
 * calls. They live in the replica process and are exported from the `serve`
 * executable (linked with --export-dynamic), so plugins link nothing.
 */
#include "replica/internal.h"

#include <ctype.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/log.h"
#include "infer/infer.h"

#define API_ERROR_LEN 1024

static _Thread_local char last_error[API_ERROR_LEN];

/* ---- Responses --------------------------------------------------------- */

void api_response_init(serve_response *res, const serve_deployment *dep)
{
    memset(res, 0, sizeof(*res));
    res->status = 200;
    res->dep = dep;
}

static void free_headers(serve_response *res)
{
    for (size_t i = 0; i < res->n_headers; i++) {
        free((char *)res->headers[i].name);
        free((char *)res->headers[i].value);
    }
    free(res->headers);
    res->headers = NULL;
    res->n_headers = res->cap_headers = 0;
}

void api_response_release(serve_response *res)
{
    free_headers(res);
    for (size_t i = 0; i < res->n_outputs; i++) {
        free((char *)res->outputs[i].name);
        free((void *)res->outputs[i].data);
    }
    free(res->outputs);
    ipc_buf_free(&res->body);
    memset(res, 0, sizeof(*res));
}

void api_response_drop_header(serve_response *res, const char *name)
{
    size_t kept = 0;
    for (size_t i = 0; i < res->n_headers; i++) {
        if (strcasecmp(res->headers[i].name, name) == 0) {
            free((char *)res->headers[i].name);
            free((char *)res->headers[i].value);
        } else {
            res->headers[kept++] = res->headers[i];
        }
    }
    res->n_headers = kept;
}

int serve_response_set_status(serve_response *res, int status)
{
    if (status < 100 || status > 599 || res->streamed) return -1;
    res->status = status;
    return 0;
}

/* Header names and values travel into an HTTP response: refuse anything
   that could split it. */
static int header_text_ok(const char *s, int is_name)
{
    if (!s || (is_name && !*s)) return 0;
    for (; *s; s++)
        if (*s == '\r' || *s == '\n' || (is_name && (*s == ':' || isspace((unsigned char)*s))))
            return 0;
    return 1;
}

int serve_response_set_header(serve_response *res, const char *name, const char *value)
{
    if (!header_text_ok(name, 1) || !header_text_ok(value, 0) || res->streamed) return -1;
    if (res->n_headers == res->cap_headers) {
        size_t cap = res->cap_headers ? res->cap_headers * 2 : 4;
        serve_header *h = realloc(res->headers, cap * sizeof(*h));
        if (!h) return -1;
        res->headers = h;
        res->cap_headers = cap;
    }
    char *n = strdup(name), *v = strdup(value);
    if (!n || !v) {
        free(n);
        free(v);
        return -1;
    }
    res->headers[res->n_headers++] = (serve_header){n, v};
    return 0;
}

int serve_response_write(serve_response *res, const void *data, size_t len)
{
    ipc_buf_put(&res->body, data, len);
    return res->body.oom ? -1 : 0;
}

int serve_response_printf(serve_response *res, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || ipc_buf_reserve(&res->body, (size_t)n + 1) != 0) return -1;
    va_start(ap, fmt);
    vsnprintf(res->body.data + res->body.len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    res->body.len += (size_t)n;
    return 0;
}

int serve_response_flush(serve_response *res)
{
    return res->flush ? res->flush(res) : -1;
}

int serve_response_error(serve_response *res, int status, const char *fmt, ...)
{
    char msg[API_ERROR_LEN];
    va_list ap;
    if (status < 400 || status > 599 || res->streamed) return -1;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    json_t *obj = json_pack("{s:s}", "error", msg);
    char *text = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
    json_decref(obj);
    free_headers(res);
    res->body.len = 0;
    res->status = status;
    int rc = serve_response_set_header(res, "content-type", "application/json");
    if (rc == 0)
        rc = serve_response_write(res, text ? text : "{\"error\":\"out of memory\"}",
                                  text ? strlen(text) : 28);
    free(text);
    return rc;
}

/* ---- Output tensors ------------------------------------------------------ */

/* Check an output against the deployment's declaration and make room for
   it, with its element count in *count; NULL (with serve_set_error) when
   it does not fit. */
static serve_tensor *new_output(serve_response *res, const char *name, serve_datatype dt,
                                const int64_t *shape, int ndim, size_t *count)
{
    char why[256];
    const serve_deployment *dep = res->dep;
    const serve_tensor_spec *spec =
        dep && name ? infer_spec_find(dep->outputs, dep->n_outputs, name) : NULL;
    if (!spec) {
        serve_set_error("output \"%s\" is not among the deployment's declared outputs",
                        name ? name : "(null)");
        return NULL;
    }
    for (size_t i = 0; i < res->n_outputs; i++)
        if (strcmp(res->outputs[i].name, name) == 0) {
            serve_set_error("output \"%s\" added twice", name);
            return NULL;
        }
    if (infer_shape_check(spec, dt, shape, ndim, why, sizeof(why)) != 0) {
        serve_set_error("output \"%s\": %s", name, why);
        return NULL;
    }
    if (infer_shape_elements(shape, ndim, count) != 0) {
        serve_set_error("output \"%s\": too many elements to address", name);
        return NULL;
    }
    if (res->n_outputs == res->cap_outputs) {
        size_t cap = res->cap_outputs ? res->cap_outputs * 2 : 2;
        serve_tensor *t = realloc(res->outputs, cap * sizeof(*t));
        if (!t) goto oom;
        res->outputs = t;
        res->cap_outputs = cap;
    }
    serve_tensor *t = &res->outputs[res->n_outputs];
    memset(t, 0, sizeof(*t));
    if (!(t->name = strdup(name))) goto oom;
    t->datatype = dt;
    t->ndim = ndim;
    memcpy(t->shape, shape, (size_t)ndim * sizeof(*shape));
    return t;
oom:
    serve_set_error("out of memory adding output \"%s\"", name);
    return NULL;
}

void *serve_response_output(serve_response *res, const char *name, serve_datatype datatype,
                            const int64_t *shape, int ndim)
{
    size_t esize = serve_datatype_size(datatype);
    if (esize == 0) {
        serve_set_error("serve_response_output: datatype %s has no fixed size; "
                        "use serve_response_add_output",
                        infer_datatype_name(datatype) ? infer_datatype_name(datatype) : "INVALID");
        return NULL;
    }
    size_t n;
    serve_tensor *t = new_output(res, name, datatype, shape, ndim, &n);
    if (!t) return NULL;
    void *data = calloc(n ? n : 1, esize);
    if (!data) {
        free((char *)t->name);
        serve_set_error("out of memory for output \"%s\"", name);
        return NULL;
    }
    t->data = data;
    t->size = n * esize;
    res->n_outputs++;
    return data;
}

int serve_response_add_output(serve_response *res, const char *name, serve_datatype datatype,
                              const int64_t *shape, int ndim, const void *data, size_t size)
{
    size_t esize = serve_datatype_size(datatype);
    size_t n;
    serve_tensor *t = new_output(res, name, datatype, shape, ndim, &n);
    if (!t) return -1;
    int fits = esize ? size == n * esize : infer_bytes_elements(data, size) == (long)n;
    if (!fits) {
        free((char *)t->name);
        return serve_set_error("output \"%s\": %zu bytes do not hold the %zu elements of its "
                               "shape",
                               name, size, n);
    }
    void *copy = malloc(size ? size : 1);
    if (!copy) {
        free((char *)t->name);
        return serve_set_error("out of memory for output \"%s\"", name);
    }
    memcpy(copy, data, size);
    t->data = copy;
    t->size = size;
    res->n_outputs++;
    return 0;
}

/* ---- Requests ---------------------------------------------------------- */

const char *serve_request_header(const serve_request *req, const char *name)
{
    for (size_t i = 0; i < req->n_headers; i++)
        if (strcasecmp(req->headers[i].name, name) == 0) return req->headers[i].value;
    return NULL;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    c = tolower(c);
    return (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
}

/* Decode one form-encoded value of `len` bytes into buf; -1 if too long. */
static int decode_component(const char *s, size_t len, char *buf, size_t size)
{
    size_t o = 0;
    if (size == 0) return -1;
    for (size_t i = 0; i < len; i++) {
        int c = (unsigned char)s[i];
        if (c == '+') {
            c = ' ';
        } else if (c == '%' && i + 2 < len && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
            c = hexval(s[i + 1]) * 16 + hexval(s[i + 2]);
            i += 2;
        }
        if (o + 1 >= size) return -1;
        buf[o++] = (char)c;
    }
    buf[o] = '\0';
    return (int)o;
}

int serve_request_query(const serve_request *req, const char *name, char *buf, size_t size)
{
    size_t name_len = strlen(name);
    const char *p = req->query ? req->query : "";
    while (*p) {
        const char *end = strchr(p, '&');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        const char *eq = memchr(p, '=', len);
        size_t key_len = eq ? (size_t)(eq - p) : len;
        if (key_len == name_len && memcmp(p, name, name_len) == 0) {
            const char *v = eq ? eq + 1 : p + len;
            return decode_component(v, (size_t)(p + len - v), buf, size);
        }
        p += len + (end ? 1 : 0);
    }
    return -1;
}

const serve_tensor *serve_request_input(const serve_request *req, const char *name)
{
    for (size_t i = 0; i < req->n_inputs; i++)
        if (strcmp(req->inputs[i].name, name) == 0) return &req->inputs[i];
    return NULL;
}

/* ---- Context, errors, logs --------------------------------------------- */

const char *serve_context_deployment(const serve_context *ctx)
{
    return ctx->deployment;
}

const char *serve_context_app(const serve_context *ctx)
{
    return ctx->app;
}

const char *serve_context_replica_id(const serve_context *ctx)
{
    return ctx->replica_id;
}

int serve_set_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof(last_error), fmt, ap);
    va_end(ap);
    return -1;
}

const char *api_last_error(void)
{
    return last_error;
}

void api_clear_error(void)
{
    last_error[0] = '\0';
}

void serve_log(const serve_context *ctx, serve_log_level level, const char *fmt, ...)
{
    log_level lvl = (log_level)level;
    if (lvl < log_min_level || lvl > LOG_ERROR) return;
    va_list ap;
    va_start(ap, fmt);
    log_vwrite(lvl, NULL, fmt, ap); /* the process's fields are this replica's */
    va_end(ap);
}
