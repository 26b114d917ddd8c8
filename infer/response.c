/*
 * response.c - encoding a v2 infer response (see infer.h): the text is
 * written straight into the output buffer, binary outputs after it.
 */
#include "infer/infer.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "infer/internal.h"

/* ---- Response encoding -------------------------------------------------- */

/* The widest element text: "-1.2345678901234567e-308" and a comma, with
   room for snprintf's NUL. */
#define ELEMENT_MAX 32

static void put_lit(ipc_buf *b, const char *s)
{
    ipc_buf_put(b, s, strlen(s));
}

/* s as a JSON string at w (which has room for 6 * n + 2 bytes): quotes,
   backslashes and control characters escaped, valid UTF-8 as it is, and
   each byte that is not valid UTF-8 (BYTES data may hold any) as U+FFFD,
   the replacement character: JSON text must be UTF-8, and a client's
   parser refuses anything else. */
static char *escape(char *w, const unsigned char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    *w++ = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char c = s[i];
        const char *short_form = c == '"'    ? "\\\""
                                 : c == '\\' ? "\\\\"
                                 : c == '\n' ? "\\n"
                                 : c == '\r' ? "\\r"
                                 : c == '\t' ? "\\t"
                                 : c == '\b' ? "\\b"
                                 : c == '\f' ? "\\f"
                                             : NULL;
        if (short_form) {
            memcpy(w, short_form, 2);
            w += 2;
        } else if (c < 0x20) {
            memcpy(w, "\\u00", 4);
            w[4] = hex[c >> 4];
            w[5] = hex[c & 15];
            w += 6;
        } else if (c >= 0x80) {
            size_t k = infer__utf8_len(s + i, s + n);
            if (k == 0) {
                memcpy(w, "\\ufffd", 6);
                w += 6;
            } else {
                memcpy(w, s + i, k);
                w += k;
                i += k - 1;
            }
        } else {
            *w++ = (char)c;
        }
    }
    *w++ = '"';
    return w;
}

static void put_string(ipc_buf *b, const char *s, size_t n)
{
    if (n > (SIZE_MAX - 2) / 6 || ipc_buf_reserve(b, 6 * n + 2) < 0) {
        b->oom = 1;
        return;
    }
    b->len = (size_t)(escape(b->data + b->len, (const unsigned char *)s, n) - b->data);
}

static char *put_u64(char *w, uint64_t v)
{
    char tmp[20];
    int n = 0;
    do tmp[n++] = (char)('0' + v % 10);
    while ((v /= 10) != 0);
    while (n) *w++ = tmp[--n];
    return w;
}

static char *put_i64(char *w, int64_t v)
{
    if (v >= 0) return put_u64(w, (uint64_t)v);
    *w++ = '-';
    return put_u64(w, (uint64_t) - (v + 1) + 1); /* INT64_MIN too */
}

/* %.9g for FP32 and %.17g for FP64 round-trip exactly. Infinities and
   NaN have no JSON form: they are written as null. */
static char *put_real(char *w, double v, int digits)
{
    if (!isfinite(v)) {
        memcpy(w, "null", 4);
        return w + 4;
    }
    return w + snprintf(w, ELEMENT_MAX, "%.*g", digits, v);
}

/* Element i of fixed-size data p as JSON text at w. */
static char *put_element(char *w, const unsigned char *p, serve_datatype dt)
{
    union {
        uint8_t u8;
        uint16_t u16;
        uint32_t u32;
        uint64_t u64;
        int8_t i8;
        int16_t i16;
        int32_t i32;
        int64_t i64;
        float f;
        double d;
    } v;
    memcpy(&v, p, infer__dtypes[dt].size);
    switch (dt) {
    case SERVE_BOOL:
        memcpy(w, v.u8 ? "true" : "false", 5);
        return w + (v.u8 ? 4 : 5);
    case SERVE_UINT8:
        return put_u64(w, v.u8);
    case SERVE_UINT16:
        return put_u64(w, v.u16);
    case SERVE_UINT32:
        return put_u64(w, v.u32);
    case SERVE_UINT64:
        return put_u64(w, v.u64);
    case SERVE_INT8:
        return put_i64(w, v.i8);
    case SERVE_INT16:
        return put_i64(w, v.i16);
    case SERVE_INT32:
        return put_i64(w, v.i32);
    case SERVE_INT64:
        return put_i64(w, v.i64);
    case SERVE_FP32:
        return put_real(w, v.f, 9);
    default:
        return put_real(w, v.d, 17);
    }
}

/* The elements of a checked tensor, comma-separated. */
static void put_data(ipc_buf *b, const serve_tensor *t)
{
    const unsigned char *p = t->data;
    size_t size = infer__dtypes[t->datatype].size;
    if (t->datatype == SERVE_BYTES) {
        for (size_t off = 0; off < t->size; off += 4 + infer__le32(p + off)) {
            if (off) ipc_buf_put(b, ",", 1);
            put_string(b, (const char *)p + off + 4, infer__le32(p + off));
        }
        return;
    }
    size_t n = t->size / size;
    if (n > (SIZE_MAX - ELEMENT_MAX) / ELEMENT_MAX || ipc_buf_reserve(b, n * ELEMENT_MAX + 1) < 0) {
        b->oom = 1;
        return;
    }
    char *w = b->data + b->len;
    for (size_t i = 0; i < n; i++) {
        if (i) *w++ = ',';
        w = put_element(w, p + i * size, t->datatype);
    }
    b->len = (size_t)(w - b->data);
}

static void put_output(ipc_buf *b, const serve_tensor *t, int binary)
{
    char num[24];
    put_lit(b, "{\"name\":");
    put_string(b, t->name, strlen(t->name));
    put_lit(b, ",\"datatype\":\"");
    put_lit(b, infer__dtypes[t->datatype].name);
    put_lit(b, "\",\"shape\":[");
    for (int k = 0; k < t->ndim; k++) {
        if (k) ipc_buf_put(b, ",", 1);
        ipc_buf_put(b, num, (size_t)(put_i64(num, t->shape[k]) - num));
    }
    if (binary) {
        put_lit(b, "],\"parameters\":{\"binary_data_size\":");
        ipc_buf_put(b, num, (size_t)(put_u64(num, t->size) - num));
        put_lit(b, "}}");
    } else {
        put_lit(b, "],\"data\":[");
        put_data(b, t);
        put_lit(b, "]}");
    }
}

/* Is the tensor whole: a valid datatype and shape, and data that fill the
   shape exactly (for BYTES: well-formed elements, as many as the shape)?
   Encoding reads its data by these. */
static int check_output(const serve_tensor *t, char *err, size_t errlen)
{
    char shape[INFER_SHAPE_STR_MAX];
    size_t count;
    const char *name = t->name ? t->name : "(unnamed)";
    if (!t->name || !infer__dtype_valid(t->datatype) || t->ndim < 0 || t->ndim > SERVE_MAX_DIMS ||
        infer_shape_elements(t->shape, t->ndim, &count) < 0 || (t->size && !t->data))
        return infer__errf(err, errlen, "output \"%s\": not a valid tensor", name);
    size_t size = infer__dtypes[t->datatype].size;
    long elements = size ? (long)(t->size / size) : infer_bytes_elements(t->data, t->size);
    if ((size && t->size % size) || elements < 0 || (size_t)elements != count)
        return infer__errf(err, errlen, "output \"%s\": %zu bytes of %s data do not fill shape %s",
                           name, t->size, infer__dtypes[t->datatype].name,
                           infer__shape_str(shape, t->shape, t->ndim));
    return 0;
}

/* The i-th output the response carries, and whether as binary: every
   output produced when the client listed none, else the i-th it listed
   (NULL when the handler did not produce it). */
static const serve_tensor *selected(const infer_request *req, const serve_tensor *outputs,
                                    size_t n_outputs, size_t i, int *binary)
{
    if (!req || req->n_outputs == 0) {
        *binary = req ? req->binary_output : 0;
        return &outputs[i];
    }
    *binary = req->outputs[i].binary;
    for (size_t k = 0; k < n_outputs; k++)
        if (strcmp(outputs[k].name, req->outputs[i].name) == 0) return &outputs[k];
    return NULL;
}

/* Check everything first, so that a failure writes nothing; then the
   JSON, then the binary outputs' bytes in the same order. */
int infer_response_encode(ipc_buf *out, const char *model_name, const infer_request *req,
                          const serve_tensor *outputs, size_t n_outputs, size_t *json_len,
                          char *err, size_t errlen)
{
    size_t n = req && req->n_outputs ? req->n_outputs : n_outputs, start = out->len;
    int binary, rc;
    for (size_t i = 0; i < n; i++) {
        const serve_tensor *t = selected(req, outputs, n_outputs, i, &binary);
        if (!t) {
            infer__errf(err, errlen,
                        "output \"%s\" was requested, but the model did not produce it",
                        req->outputs[i].name);
            return -ENOENT;
        }
        if ((rc = check_output(t, err, errlen)) < 0) return rc;
    }
    put_lit(out, "{\"model_name\":");
    put_string(out, model_name, strlen(model_name));
    if (req && req->id) {
        put_lit(out, ",\"id\":");
        put_string(out, req->id, strlen(req->id));
    }
    put_lit(out, ",\"outputs\":[");
    for (size_t i = 0; i < n; i++) {
        const serve_tensor *t = selected(req, outputs, n_outputs, i, &binary);
        if (i) ipc_buf_put(out, ",", 1);
        put_output(out, t, binary);
    }
    put_lit(out, "]}");
    *json_len = out->len - start;
    for (size_t i = 0; i < n; i++) {
        const serve_tensor *t = selected(req, outputs, n_outputs, i, &binary);
        if (binary) ipc_buf_put(out, t->data, t->size);
    }
    if (!out->oom) return 0;
    infer__errf(err, errlen, "out of memory");
    return -ENOMEM;
}
