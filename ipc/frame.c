/*
 * frame.c - the pure part of the IPC protocol: byte buffers, frame headers,
 * request and response payloads. No I/O here; see conn.c for that.
 */
#include "ipc/ipc.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* ---- Writer ------------------------------------------------------------ */

void ipc_buf_free(ipc_buf *b)
{
    free(b->data);
    memset(b, 0, sizeof(*b));
}

int ipc_buf_reserve(ipc_buf *b, size_t extra)
{
    if (b->oom) return -ENOMEM;
    if (b->cap - b->len >= extra) return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->len < extra) {
        if (cap > SIZE_MAX / 2) goto fail;
        cap *= 2;
    }
    char *data = realloc(b->data, cap);
    if (!data) goto fail;
    b->data = data;
    b->cap = cap;
    return 0;
fail:
    b->oom = 1;
    return -ENOMEM;
}

int ipc_buf_reserve_exact(ipc_buf *b, size_t extra)
{
    if (b->oom) return -ENOMEM;
    if (b->cap - b->len >= extra) return 0;
    char *data = extra <= SIZE_MAX - b->len ? realloc(b->data, b->len + extra) : NULL;
    if (!data) {
        b->oom = 1;
        return -ENOMEM;
    }
    b->data = data;
    b->cap = b->len + extra;
    return 0;
}

void ipc_buf_put(ipc_buf *b, const void *p, size_t n)
{
    if (n == 0 || ipc_buf_reserve(b, n) != 0) return;
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

static void put_le(ipc_buf *b, uint64_t v, int bytes)
{
    unsigned char tmp[8];
    for (int i = 0; i < bytes; i++) tmp[i] = (unsigned char)(v >> (8 * i));
    ipc_buf_put(b, tmp, (size_t)bytes);
}

void ipc_buf_put_u16(ipc_buf *b, uint16_t v)
{
    put_le(b, v, 2);
}

void ipc_buf_put_u32(ipc_buf *b, uint32_t v)
{
    put_le(b, v, 4);
}

void ipc_buf_put_str(ipc_buf *b, const char *s, size_t n)
{
    if (n > IPC_MAX_PAYLOAD) {
        b->oom = 1; /* cannot be framed; reported by ipc_frame_end */
        return;
    }
    ipc_buf_put_u32(b, (uint32_t)n);
    ipc_buf_put(b, s, n);
    ipc_buf_put(b, "", 1);
}

void ipc_buf_put_cstr(ipc_buf *b, const char *s)
{
    s = s ? s : "";
    ipc_buf_put_str(b, s, strlen(s));
}

size_t ipc_frame_begin(ipc_buf *b, uint8_t type, uint64_t id)
{
    size_t start = b->len;
    ipc_buf_put_u32(b, 0); /* length, patched by ipc_frame_end */
    unsigned char t[4] = {type, 0, 0, 0};
    ipc_buf_put(b, t, sizeof(t));
    put_le(b, id, 8);
    return start;
}

int ipc_frame_end(ipc_buf *b, size_t start)
{
    if (b->oom) {
        if (start <= b->len) b->len = start; /* drop the frame whole */
        return -ENOMEM;
    }
    size_t n = b->len - start - IPC_HEADER_SIZE;
    if (n > IPC_MAX_PAYLOAD) {
        b->len = start; /* drop the frame whole */
        return -EMSGSIZE;
    }
    unsigned char *p = (unsigned char *)b->data + start;
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(n >> (8 * i));
    return 0;
}

int ipc_frame_put_flags(ipc_buf *b, uint8_t type, uint8_t flags, uint64_t id, const void *payload,
                        size_t len)
{
    size_t start = ipc_frame_begin(b, type, id);
    if (!b->oom) b->data[start + 5] = (char)flags;
    ipc_buf_put(b, payload, len);
    return ipc_frame_end(b, start);
}

int ipc_frame_put(ipc_buf *b, uint8_t type, uint64_t id, const void *payload, size_t len)
{
    return ipc_frame_put_flags(b, type, 0, id, payload, len);
}

/* ---- Reader ------------------------------------------------------------ */

static uint64_t get_le(const unsigned char *p, int bytes)
{
    uint64_t v = 0;
    for (int i = bytes - 1; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

int ipc_frame_header_decode(const void *buf, size_t len, ipc_frame *f)
{
    const unsigned char *p = buf;
    if (len < IPC_HEADER_SIZE) return -EAGAIN;
    uint32_t n = (uint32_t)get_le(p, 4);
    if (n > IPC_MAX_PAYLOAD || p[6] != 0 || p[7] != 0) return -EPROTO;
    f->len = n;
    f->type = p[4];
    f->flags = p[5];
    f->id = get_le(p + 8, 8);
    f->payload = (const char *)p + IPC_HEADER_SIZE;
    return 0;
}

void ipc_reader_init(ipc_reader *r, const void *p, size_t n)
{
    r->p = p;
    r->left = n;
    r->bad = 0;
}

static const unsigned char *take(ipc_reader *r, size_t n)
{
    if (r->bad || r->left < n) {
        r->bad = 1;
        return NULL;
    }
    const unsigned char *p = (const unsigned char *)r->p;
    r->p += n;
    r->left -= n;
    return p;
}

uint16_t ipc_get_u16(ipc_reader *r)
{
    const unsigned char *p = take(r, 2);
    return p ? (uint16_t)get_le(p, 2) : 0;
}

uint32_t ipc_get_u32(ipc_reader *r)
{
    const unsigned char *p = take(r, 4);
    return p ? (uint32_t)get_le(p, 4) : 0;
}

const char *ipc_get_str(ipc_reader *r, size_t *len)
{
    uint32_t n = ipc_get_u32(r);
    if (r->bad || n == UINT32_MAX) goto bad;
    const char *s = (const char *)take(r, (size_t)n + 1);
    if (!s || s[n] != '\0') goto bad;
    if (len) *len = n;
    return s;
bad:
    r->bad = 1;
    if (len) *len = 0;
    return NULL;
}

/* ---- Headers, shared by requests and responses ------------------------- */

static void put_headers(ipc_buf *b, const serve_header *h, size_t n)
{
    ipc_buf_put_u32(b, (uint32_t)n);
    for (size_t i = 0; i < n; i++) {
        ipc_buf_put_cstr(b, h[i].name);
        ipc_buf_put_cstr(b, h[i].value);
    }
}

/* Read a header list into a new array (*out, NULL when empty). Each header
   takes at least 10 bytes on the wire, which bounds the allocation by the
   payload size whatever the count claims. */
static int get_headers(ipc_reader *r, serve_header **out, size_t *n_out)
{
    uint32_t n = ipc_get_u32(r);
    *out = NULL;
    *n_out = 0;
    if (r->bad || (size_t)n > r->left / 10) return -EPROTO;
    if (n == 0) return 0;
    serve_header *h = calloc(n, sizeof(*h));
    if (!h) return -ENOMEM;
    for (uint32_t i = 0; i < n; i++) {
        h[i].name = ipc_get_str(r, NULL);
        h[i].value = ipc_get_str(r, NULL);
    }
    if (r->bad) {
        free(h);
        return -EPROTO;
    }
    *out = h;
    *n_out = n;
    return 0;
}

/* ---- Requests ---------------------------------------------------------- */

static void put_request(ipc_buf *b, const serve_request *req)
{
    ipc_buf_put_cstr(b, req->method);
    ipc_buf_put_cstr(b, req->path);
    ipc_buf_put_cstr(b, req->route_path);
    ipc_buf_put_cstr(b, req->query);
    ipc_buf_put_cstr(b, req->request_id);
    put_headers(b, req->headers, req->n_headers);
    ipc_buf_put_str(b, req->body, req->body_len);
}

int ipc_request_encode(ipc_buf *b, uint64_t id, uint8_t flags, const serve_request *req)
{
    size_t start = ipc_frame_begin(b, IPC_REQUEST, id);
    if (!b->oom) b->data[start + 5] = (char)flags;
    put_request(b, req);
    return ipc_frame_end(b, start);
}

int ipc_call_encode(ipc_buf *b, uint64_t id, const char *app, const char *deployment,
                    uint32_t timeout_ms, const serve_request *req)
{
    size_t start = ipc_frame_begin(b, IPC_CALL, id);
    ipc_buf_put_cstr(b, app);
    ipc_buf_put_cstr(b, deployment);
    ipc_buf_put_u32(b, timeout_ms);
    put_request(b, req);
    return ipc_frame_end(b, start);
}

int ipc_call_decode(const char *payload, size_t len, ipc_call *call)
{
    ipc_reader r;
    ipc_reader_init(&r, payload, len);
    call->app = ipc_get_str(&r, NULL);
    call->deployment = ipc_get_str(&r, NULL);
    call->timeout_ms = ipc_get_u32(&r);
    call->request = r.p;
    call->request_len = r.left;
    return r.bad ? -EPROTO : 0;
}

int ipc_request_decode(const char *payload, size_t len, serve_request *req)
{
    ipc_reader r;
    ipc_reader_init(&r, payload, len);
    memset(req, 0, sizeof(*req));
    req->method = ipc_get_str(&r, NULL);
    req->path = ipc_get_str(&r, NULL);
    req->route_path = ipc_get_str(&r, NULL);
    req->query = ipc_get_str(&r, NULL);
    req->request_id = ipc_get_str(&r, NULL);
    serve_header *h;
    int rc = get_headers(&r, &h, &req->n_headers);
    if (rc != 0) return rc;
    req->headers = h;
    req->body = ipc_get_str(&r, &req->body_len);
    if (r.bad || r.left != 0) {
        free(h);
        req->headers = NULL;
        return -EPROTO;
    }
    return 0;
}

/* ---- Responses --------------------------------------------------------- */

int ipc_response_encode_frame(ipc_buf *b, uint8_t type, uint8_t flags, uint64_t id, int status,
                              const serve_header *headers, size_t n_headers, const void *body,
                              size_t body_len)
{
    size_t start = ipc_frame_begin(b, type, id);
    if (!b->oom) b->data[start + 5] = (char)flags;
    ipc_buf_put_u16(b, (uint16_t)status);
    put_headers(b, headers, n_headers);
    ipc_buf_put_str(b, body, body_len);
    return ipc_frame_end(b, start);
}

int ipc_response_encode(ipc_buf *b, uint64_t id, int status, const serve_header *headers,
                        size_t n_headers, const void *body, size_t body_len)
{
    return ipc_response_encode_frame(b, IPC_RESPONSE, 0, id, status, headers, n_headers, body,
                                     body_len);
}

int ipc_response_decode(const char *payload, size_t len, ipc_response *res)
{
    ipc_reader r;
    ipc_reader_init(&r, payload, len);
    memset(res, 0, sizeof(*res));
    res->status = ipc_get_u16(&r);
    int rc = get_headers(&r, &res->headers, &res->n_headers);
    if (rc != 0) return rc;
    res->body = ipc_get_str(&r, &res->body_len);
    if (r.bad || r.left != 0 || res->status < 100 || res->status > 599) {
        ipc_response_release(res);
        return -EPROTO;
    }
    return 0;
}

void ipc_response_release(ipc_response *res)
{
    free(res->headers);
    res->headers = NULL;
    res->n_headers = 0;
}
