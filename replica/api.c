/*
 * api.c - the framework side of serve_plugin.h: the functions a plugin
 * calls. They live in the replica process and are exported from the `serve`
 * executable (linked with --export-dynamic), so plugins link nothing.
 */
#include "replica/internal.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/log.h"

#define API_ERROR_LEN 1024

static _Thread_local char last_error[API_ERROR_LEN];

/* ---- Responses --------------------------------------------------------- */

void api_response_init(serve_response *res)
{
    memset(res, 0, sizeof(*res));
    res->status = 200;
}

void api_response_release(serve_response *res)
{
    for (size_t i = 0; i < res->n_headers; i++) {
        free((char *)res->headers[i].name);
        free((char *)res->headers[i].value);
    }
    free(res->headers);
    ipc_buf_free(&res->body);
    memset(res, 0, sizeof(*res));
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
    log_vwrite(lvl, ctx ? ctx->log_tag : NULL, fmt, ap);
    va_end(ap);
}
