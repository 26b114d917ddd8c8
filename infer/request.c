/*
 * request.c - decoding a v2 infer request (see infer.h).
 *
 * Decoding reads the request once with the strict reader of json.c and
 * writes each input's numbers straight into a typed buffer in the
 * request's arena. The members of an object may come in any order, so an
 * input's "data" is parsed on the spot only when its "name" and "datatype"
 * came before it (the usual order); otherwise its position is kept and it
 * is parsed once the input's object is complete.
 */
#include "infer/infer.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "infer/internal.h"
#include "infer/json.h"

/* ---- Arena -------------------------------------------------------------- */

/* Every allocation of a request, in a list of chunks freed at once. The
   newest chunk is first; its newest allocation can grow in place. */
struct infer_arena {
    struct infer_arena *next;
    size_t used, cap;
    size_t last; /* offset of the newest allocation */
    max_align_t data[];
};

#define ARENA_CHUNK 8192

static void *arena_alloc(struct infer_arena **ap, size_t n)
{
    struct infer_arena *a = *ap;
    size_t align = sizeof(max_align_t);
    if (n > SIZE_MAX / 2) return NULL;
    n = (n + align - 1) / align * align;
    if (!a || a->cap - a->used < n) {
        size_t cap = n > ARENA_CHUNK ? n : ARENA_CHUNK;
        struct infer_arena *c = malloc(sizeof(*c) + cap);
        if (!c) return NULL;
        *c = (struct infer_arena){.next = a, .cap = cap};
        *ap = a = c;
    }
    a->last = a->used;
    a->used += n;
    return (char *)a->data + a->last;
}

/* Resize p (old bytes, NULL for none) to n bytes: in place when it is the
   newest allocation and its chunk has room, else as a copy. */
static void *arena_grow(struct infer_arena **ap, void *p, size_t old, size_t n)
{
    struct infer_arena *a = *ap;
    size_t align = sizeof(max_align_t);
    if (p && p == (char *)a->data + a->last && n <= SIZE_MAX / 2 &&
        a->cap - a->last >= (n + align - 1) / align * align) {
        a->used = a->last + (n + align - 1) / align * align;
        return p;
    }
    void *q = arena_alloc(ap, n);
    if (q && old) memcpy(q, p, old);
    return q;
}

void infer_request_free(infer_request *r)
{
    struct infer_arena *a = r->arena;
    while (a) {
        struct infer_arena *next = a->next;
        free(a);
        a = next;
    }
    memset(r, 0, sizeof(*r));
}

/* ---- Request decoding: state and helpers -------------------------------- */

typedef struct decoder {
    ijson j;
    const serve_deployment *dep;
    infer_request *r;
    char *err;
    size_t errlen;
    const unsigned char *bin; /* the binary part of the body */
    size_t bin_len, bin_used;
    int has_bin;         /* the body has a binary part (header_len given) */
    unsigned char *seen; /* per declared input: given already */
    size_t cap_inputs, cap_outputs;
} decoder;

/* A tensor's data as it is read: packed elements, in the arena. */
typedef struct tbuf {
    unsigned char *p;
    size_t len, cap;
} tbuf;

enum { DATA_NONE, DATA_PARSED, DATA_DEFERRED };

/* One input being decoded. */
typedef struct input_dec {
    serve_tensor *t;
    char what[32];                 /* "inputs[2]" */
    char label[96];                /* "inputs[2]", then `input "x"` once the name is known */
    const serve_tensor_spec *spec; /* from "name" */
    int has_datatype, has_shape;
    int data_state;
    ijson data_at; /* DATA_DEFERRED: the reader on the "data" value */
    tbuf buf;
    size_t count;        /* elements read */
    int64_t binary_size; /* parameters.binary_data_size, or -1 */
} input_dec;

/* One requested output being decoded. */
typedef struct output_dec {
    infer_output_req *o;
    char what[32]; /* "outputs[1]" */
} output_dec;

__attribute__((format(printf, 2, 3))) static int fail(decoder *d, const char *fmt, ...)
{
    if (d->err && d->errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(d->err, d->errlen, fmt, ap);
        va_end(ap);
    }
    return -EINVAL;
}

/* A value of the wrong JSON type; `what` names it and `expected` says
   what it must be. Where no value starts at all, the JSON is malformed. */
static int wrong_type(decoder *d, ijson_type t, const char *what, const char *expected)
{
    if (t == IJSON_NONE) return ijson_fail(&d->j, "expected a value");
    return fail(d, "%s must be %s, not %s", what, expected, ijson_type_name(t));
}

/* Read a string into the arena, NUL-terminated. A NUL inside it is
   refused: the string is used as a C string. */
static int read_cstring(decoder *d, const char *what, const char **out)
{
    ijson_type t = ijson_peek(&d->j);
    ijson_str s;
    if (t != IJSON_STRING) return wrong_type(d, t, what, "a string");
    if (ijson_string(&d->j, &s) < 0) return -EINVAL;
    char *p = arena_alloc(&d->r->arena, s.len + 1);
    if (!p) return -ENOMEM;
    size_t n = ijson_str_decode(&s, p);
    if (memchr(p, '\0', n)) return fail(d, "%s contains a NUL character", what);
    p[n] = '\0';
    *out = p;
    return 0;
}

static int read_bool(decoder *d, const char *what, int *v)
{
    ijson_type t = ijson_peek(&d->j);
    if (t != IJSON_TRUE && t != IJSON_FALSE) return wrong_type(d, t, what, "true or false");
    return ijson_bool(&d->j, v);
}

/* A non-negative integer (a dimension, a byte count). */
static int read_size(decoder *d, const char *what, int64_t *v)
{
    ijson_type t = ijson_peek(&d->j);
    ijson_num n;
    if (t != IJSON_NUMBER) return wrong_type(d, t, what, "a non-negative integer");
    if (ijson_number(&d->j, &n) < 0) return -EINVAL;
    if (ijson_num_int64(&n, v) < 0 || *v < 0)
        return fail(d, "%s must be a non-negative integer, not %.*s", what, (int)n.len, n.text);
    return 0;
}

/* An object's members the decoder knows: each key's handler reads the
   value at the cursor. */
typedef int (*member_fn)(decoder *d, void *ctx);
typedef struct member {
    const char *key;
    member_fn fn;
} member;

/* Walk the object at the cursor, handing known members to their handler
   and skipping the others. A known member given twice is refused: which
   value should count is anyone's guess. `what` names the object. */
static int walk_object(decoder *d, const char *what, const member *m, size_t n, void *ctx)
{
    ijson_type t = ijson_peek(&d->j);
    if (t != IJSON_OBJECT) return wrong_type(d, t, what, "an object");
    unsigned seen = 0;
    size_t i = 0;
    ijson_str key;
    int rc;
    while ((rc = ijson_member(&d->j, &i, &key)) > 0) {
        size_t k = 0;
        while (k < n && !ijson_str_eq(&key, m[k].key)) k++;
        if (k == n) {
            rc = ijson_skip(&d->j);
        } else if (seen & (1u << k)) {
            rc = fail(d, "%s has \"%s\" twice", what, m[k].key);
        } else {
            seen |= 1u << k;
            rc = m[k].fn(d, ctx);
        }
        if (rc < 0) return rc;
    }
    return rc;
}

/* Step through the array at the cursor, handing each element's index to
   `fn`. Returns the number of elements, or negative. */
static long walk_array(decoder *d, const char *what, int (*fn)(decoder *, size_t))
{
    ijson_type t = ijson_peek(&d->j);
    if (t != IJSON_ARRAY) return wrong_type(d, t, what, "an array");
    size_t i = 0;
    int rc;
    while ((rc = ijson_element(&d->j, &i)) > 0)
        if ((rc = fn(d, i - 1)) < 0) return rc;
    return rc < 0 ? rc : (long)i;
}

/* "unknown input "y"; the model takes "x", "z"" (`kind` "input" and
   `verb` "takes", or "output" and "gives"). */
static int unknown_name(decoder *d, const char *kind, const char *verb, const char *name,
                        const serve_tensor_spec *specs, size_t n)
{
    char list[256] = "";
    size_t len = 0;
    for (size_t i = 0; i < n && len < sizeof(list); i++)
        len += (size_t)snprintf(list + len, sizeof(list) - len, "%s\"%s\"", i ? ", " : "",
                                specs[i].name);
    return fail(d, "unknown %s \"%.64s\"; the model %s %s", kind, name, verb, n ? list : "none");
}

/* An array of the request (inputs, outputs) of n elements with room for
   one more: itself, or a larger copy; NULL when out of memory. */
static void *room_for_one(decoder *d, void *array, size_t n, size_t *cap, size_t size)
{
    if (n < *cap) return array;
    size_t want = *cap ? 2 * *cap : 4;
    void *p = arena_grow(&d->r->arena, array, n * size, want * size);
    if (p) *cap = want;
    return p;
}

/* ---- Request decoding: tensor data -------------------------------------- */

/* Grow the buffer to take `extra` more bytes; see tbuf_reserve. */
static int tbuf_grow(decoder *d, tbuf *b, size_t extra)
{
    size_t cap = b->cap ? b->cap : 64;
    while (cap - b->len < extra) {
        if (cap > SIZE_MAX / 4) return -ENOMEM;
        cap *= 2;
    }
    void *p = arena_grow(&d->r->arena, b->p, b->len, cap);
    if (!p) return -ENOMEM;
    b->p = p;
    b->cap = cap;
    return 0;
}

/* Room for `extra` more bytes: inline, as it is checked per element. The
   first call always allocates, so that even empty data have an address. */
static inline int tbuf_reserve(decoder *d, tbuf *b, size_t extra)
{
    return b->p && b->cap - b->len >= extra ? 0 : tbuf_grow(d, b, extra);
}

/* Store the low `size` bytes' worth of v, in native byte order. */
static void store_bits(unsigned char *dst, uint64_t v, size_t size)
{
    uint8_t u8 = (uint8_t)v;
    uint16_t u16 = (uint16_t)v;
    uint32_t u32 = (uint32_t)v;
    const void *src = size == 1   ? (const void *)&u8
                      : size == 2 ? (const void *)&u16
                      : size == 4 ? (const void *)&u32
                                  : (const void *)&v;
    memcpy(dst, src, size);
}

/* Convert a number to datatype dt at dst: 0, or the conversion's error. */
static int store_number(const ijson_num *n, serve_datatype dt, unsigned char *dst)
{
    const infer__dtype_info *info = &infer__dtypes[dt];
    int rc;
    if (dt == SERVE_FP32) {
        float f;
        if ((rc = ijson_num_float(n, &f)) == 0) memcpy(dst, &f, sizeof(f));
    } else if (dt == SERVE_FP64) {
        double v;
        if ((rc = ijson_num_double(n, &v)) == 0) memcpy(dst, &v, sizeof(v));
    } else if (infer__dtype_signed(dt)) {
        int64_t v;
        rc = ijson_num_int64(n, &v);
        if (rc == 0 && (v < info->min || v > (int64_t)info->max)) rc = -ERANGE;
        if (rc == 0) store_bits(dst, (uint64_t)v, info->size);
    } else {
        uint64_t v;
        rc = ijson_num_uint64(n, &v);
        if (rc == 0 && v > info->max) rc = -ERANGE;
        if (rc == 0) store_bits(dst, v, info->size);
    }
    return rc;
}

/* Why element number in->count of type t cannot go into the tensor. */
static int bad_element(decoder *d, input_dec *in, ijson_type t)
{
    if (t == IJSON_NONE) return ijson_fail(&d->j, "expected a value");
    return fail(d, "%s: %s in %s data (element %zu)", in->label, ijson_type_name(t),
                infer__dtypes[in->spec->datatype].name, in->count);
}

/* Word a conversion's failure: the number as written (cut at 40
   characters), the datatype, the element. */
static int number_error(decoder *d, input_dec *in, const ijson_num *n, int rc)
{
    const char *dt = infer__dtypes[in->spec->datatype].name;
    int len = n->len > 40 ? 40 : (int)n->len;
    const char *more = n->len > 40 ? "..." : "";
    if (rc == -EDOM)
        return fail(d, "%s: %.*s%s is not written as an integer, as %s requires (element %zu)",
                    in->label, len, n->text, more, dt, in->count);
    if (rc == -ERANGE)
        return fail(d, "%s: %.*s%s is out of range for %s (element %zu)", in->label, len, n->text,
                    more, dt, in->count);
    return rc;
}

/* A number, converted straight into the buffer. */
static int data_number(decoder *d, input_dec *in)
{
    serve_datatype dt = in->spec->datatype;
    ijson_num n;
    if (!ijson_number_fast(&d->j, &n) && ijson_number(&d->j, &n) < 0) return -EINVAL;
    if (tbuf_reserve(d, &in->buf, sizeof(uint64_t)) < 0) return -ENOMEM;
    int rc = store_number(&n, dt, in->buf.p + in->buf.len);
    if (rc < 0) return number_error(d, in, &n, rc);
    in->buf.len += infer__dtypes[dt].size;
    return 0;
}

/* A BYTES element: a 4-byte little-endian length, then the bytes. */
static int data_string(decoder *d, input_dec *in)
{
    ijson_str s;
    if (ijson_string(&d->j, &s) < 0) return -EINVAL;
    if (s.len > UINT32_MAX) return fail(d, "%s: element %zu is over 4 GiB", in->label, in->count);
    if (tbuf_reserve(d, &in->buf, 4 + s.len) < 0) return -ENOMEM;
    unsigned char *p = in->buf.p + in->buf.len;
    size_t n = ijson_str_decode(&s, (char *)p + 4);
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(n >> (8 * i));
    in->buf.len += 4 + n;
    return 0;
}

static int data_bool(decoder *d, input_dec *in)
{
    int v;
    if (tbuf_reserve(d, &in->buf, 1) < 0) return -ENOMEM;
    if (ijson_bool(&d->j, &v) < 0) return -EINVAL;
    in->buf.p[in->buf.len++] = (unsigned char)v;
    return 0;
}

/* One element that is not an array, as the declared datatype takes it:
   a string for BYTES, true or false for BOOL, a number for the others. */
static int data_scalar(decoder *d, input_dec *in, ijson_type t)
{
    serve_datatype dt = in->spec->datatype;
    int rc;
    if (dt == SERVE_BYTES)
        rc = t == IJSON_STRING ? data_string(d, in) : bad_element(d, in, t);
    else if (dt == SERVE_BOOL)
        rc = t == IJSON_TRUE || t == IJSON_FALSE ? data_bool(d, in) : bad_element(d, in, t);
    else
        rc = t == IJSON_NUMBER ? data_number(d, in) : bad_element(d, in, t);
    in->count += rc == 0;
    return rc;
}

/* The elements of an array, nested arrays flattened row-major. Recursive;
   the reader's depth limit bounds it. */
static int data_array(decoder *d, input_dec *in)
{
    size_t i = 0;
    int rc;
    while ((rc = ijson_element(&d->j, &i)) > 0) {
        ijson_type t = ijson_peek(&d->j);
        rc = t == IJSON_ARRAY ? data_array(d, in) : data_scalar(d, in, t);
        if (rc < 0) return rc;
    }
    return rc;
}

/* Parse "data" at the cursor into in->buf as the declared datatype. With
   the shape known, the buffer starts at its size, though no larger than
   the JSON left could fill (two bytes an element at least), so that a
   lying shape cannot make it allocate much. */
static int parse_data(decoder *d, input_dec *in)
{
    ijson_type t = ijson_peek(&d->j);
    char what[128];
    size_t count = 0, size = infer__dtypes[in->spec->datatype].size;
    if (t != IJSON_ARRAY) {
        snprintf(what, sizeof(what), "%s: \"data\"", in->label);
        return wrong_type(d, t, what, "an array");
    }
    if (in->has_shape && infer_shape_elements(in->t->shape, in->t->ndim, &count) < 0) count = 0;
    size_t most = (size_t)(d->j.end - d->j.p) / 2 + 1;
    count = count < most ? count : most;
    if (tbuf_reserve(d, &in->buf, size ? count * size : 64) < 0) return -ENOMEM;
    in->data_state = DATA_PARSED;
    return data_array(d, in);
}

/* Take the input's data from the binary part of the body, where it comes
   next. Copied into the arena: the tensor gets memory aligned for its
   type, and does not depend on the body. */
static int input_binary(decoder *d, input_dec *in, size_t count)
{
    serve_tensor *t = in->t;
    char shape[INFER_SHAPE_STR_MAX];
    size_t n = (size_t)in->binary_size, size = infer__dtypes[t->datatype].size;
    if (in->data_state != DATA_NONE)
        return fail(d, "%s has both \"data\" and parameters.binary_data_size", in->label);
    if (!d->has_bin)
        return fail(d,
                    "%s has parameters.binary_data_size, but the request has no binary data "
                    "(no Inference-Header-Content-Length)",
                    in->label);
    if ((uint64_t)in->binary_size > d->bin_len - d->bin_used)
        return fail(
            d, "%s: binary_data_size %" PRId64 " runs past the end of the body (%zu bytes left)",
            in->label, in->binary_size, d->bin_len - d->bin_used);
    const unsigned char *src = d->bin + d->bin_used;
    infer__shape_str(shape, t->shape, t->ndim);
    if (size && n != count * size)
        return fail(d, "%s: binary_data_size is %zu, shape %s of %s takes %zu bytes", in->label, n,
                    shape, infer__dtypes[t->datatype].name, count * size);
    long elements = size ? (long)count : infer_bytes_elements(src, n);
    if (elements < 0)
        return fail(d, "%s: malformed BYTES data (an element's length runs past its %zu bytes)",
                    in->label, n);
    if ((size_t)elements != count)
        return fail(d, "%s: shape %s holds %zu elements, binary data has %ld", in->label, shape,
                    count, elements);
    void *p = arena_alloc(&d->r->arena, n);
    if (!p) return -ENOMEM;
    memcpy(p, src, n);
    t->data = p;
    t->size = n;
    d->bin_used += n;
    return 0;
}

/* With the object read whole: check the input against its declaration,
   parse deferred data, and check that the data fill the shape. */
static int finish_input(decoder *d, input_dec *in)
{
    serve_tensor *t = in->t;
    char msg[3 * INFER_SHAPE_STR_MAX], shape[INFER_SHAPE_STR_MAX];
    size_t count;
    int rc;
    if (!in->spec) return fail(d, "%s has no \"name\"", in->what);
    if (!in->has_datatype) return fail(d, "%s has no \"datatype\"", in->label);
    if (!in->has_shape) return fail(d, "%s has no \"shape\"", in->label);
    if (infer_shape_check(in->spec, t->datatype, t->shape, t->ndim, msg, sizeof(msg)) < 0)
        return fail(d, "%s: %s", in->label, msg);
    if (infer_shape_elements(t->shape, t->ndim, &count) < 0)
        return fail(d, "%s: shape %s is too large", in->label,
                    infer__shape_str(shape, t->shape, t->ndim));
    if (in->binary_size >= 0) return input_binary(d, in, count);
    if (in->data_state == DATA_NONE)
        return fail(d, "%s has no \"data\" (nor parameters.binary_data_size)", in->label);
    if (in->data_state == DATA_DEFERRED) {
        ijson resume = d->j;
        d->j = in->data_at;
        if ((rc = parse_data(d, in)) < 0) return rc;
        d->j = resume;
    }
    if (in->count != count)
        return fail(d, "%s: shape %s holds %zu elements, data has %zu", in->label,
                    infer__shape_str(shape, t->shape, t->ndim), count, in->count);
    t->data = in->buf.p;
    t->size = in->buf.len;
    return 0;
}

/* ---- Request decoding: the members -------------------------------------- */

/* Each handler reads one member's value at the cursor (walk_object calls
   it), fills in the request or the input or output being decoded, and
   refuses what it can judge alone; what needs the whole object waits for
   finish_input or finish_request. */

static int input_name(decoder *d, void *ctx)
{
    input_dec *in = ctx;
    const serve_deployment *dep = d->dep;
    char what[48];
    snprintf(what, sizeof(what), "%s.name", in->what);
    int rc = read_cstring(d, what, &in->t->name);
    if (rc < 0) return rc;
    in->spec = infer_spec_find(dep->inputs, dep->n_inputs, in->t->name);
    if (!in->spec)
        return unknown_name(d, "input", "takes", in->t->name, dep->inputs, dep->n_inputs);
    size_t k = (size_t)(in->spec - dep->inputs);
    if (d->seen[k]) return fail(d, "input \"%s\" is given twice", in->spec->name);
    d->seen[k] = 1;
    snprintf(in->label, sizeof(in->label), "input \"%s\"", in->spec->name);
    return 0;
}

/* A datatype name is short: one too long for `name` is unsupported anyway. */
static int input_datatype(decoder *d, void *ctx)
{
    input_dec *in = ctx;
    ijson_type t = ijson_peek(&d->j);
    ijson_str s;
    char what[48], name[16];
    snprintf(what, sizeof(what), "%s.datatype", in->what);
    if (t != IJSON_STRING) return wrong_type(d, t, what, "a string");
    if (ijson_string(&d->j, &s) < 0) return -EINVAL;
    size_t n = s.len <= sizeof(name) ? ijson_str_decode(&s, name) : 0;
    in->t->datatype = infer_datatype_parse(name, n);
    if (in->t->datatype == SERVE_INVALID)
        return fail(d, "%s: unsupported datatype \"%.*s\"", in->label, s.len > 32 ? 32 : (int)s.len,
                    s.raw);
    in->has_datatype = 1;
    return 0;
}

static int input_shape(decoder *d, void *ctx)
{
    input_dec *in = ctx;
    ijson_type t = ijson_peek(&d->j);
    char what[48], dim[64];
    size_t i = 0;
    int rc;
    snprintf(what, sizeof(what), "%s.shape", in->what);
    if (t != IJSON_ARRAY) return wrong_type(d, t, what, "an array");
    while ((rc = ijson_element(&d->j, &i)) > 0) {
        if (i > SERVE_MAX_DIMS)
            return fail(d, "%s has more than %d dimensions", what, SERVE_MAX_DIMS);
        snprintf(dim, sizeof(dim), "%s[%zu]", what, i - 1);
        if ((rc = read_size(d, dim, &in->t->shape[i - 1])) < 0) return rc;
    }
    in->t->ndim = (int)i;
    in->has_shape = 1;
    return rc;
}

static int input_binary_size(decoder *d, void *ctx)
{
    input_dec *in = ctx;
    char what[64];
    snprintf(what, sizeof(what), "%s.parameters.binary_data_size", in->what);
    return read_size(d, what, &in->binary_size);
}

static int input_parameters(decoder *d, void *ctx)
{
    static const member members[] = {{"binary_data_size", input_binary_size}};
    input_dec *in = ctx;
    char what[48];
    snprintf(what, sizeof(what), "%s.parameters", in->what);
    return walk_object(d, what, members, UTIL_ARRAY_LEN(members), in);
}

/* Parsed now when the datatype to parse into is known and agreed;
   otherwise kept for finish_input, once the object is read whole. */
static int input_data(decoder *d, void *ctx)
{
    input_dec *in = ctx;
    if (in->spec && in->has_datatype && in->t->datatype == in->spec->datatype)
        return parse_data(d, in);
    in->data_at = d->j;
    in->data_state = DATA_DEFERRED;
    return ijson_skip(&d->j);
}

static int decode_input(decoder *d, size_t index)
{
    static const member members[] = {
        {"name", input_name}, {"datatype", input_datatype},     {"shape", input_shape},
        {"data", input_data}, {"parameters", input_parameters},
    };
    infer_request *r = d->r;
    input_dec in = {.binary_size = -1};
    serve_tensor *inputs =
        room_for_one(d, r->inputs, r->n_inputs, &d->cap_inputs, sizeof(*r->inputs));
    if (!inputs) return -ENOMEM;
    r->inputs = inputs;
    in.t = memset(&inputs[r->n_inputs++], 0, sizeof(*inputs));
    snprintf(in.what, sizeof(in.what), "inputs[%zu]", index);
    memcpy(in.label, in.what, sizeof(in.what));
    int rc = walk_object(d, in.what, members, UTIL_ARRAY_LEN(members), &in);
    return rc < 0 ? rc : finish_input(d, &in);
}

static int output_name(decoder *d, void *ctx)
{
    output_dec *od = ctx;
    const serve_deployment *dep = d->dep;
    char what[48];
    snprintf(what, sizeof(what), "%s.name", od->what);
    int rc = read_cstring(d, what, &od->o->name);
    if (rc < 0) return rc;
    if (!infer_spec_find(dep->outputs, dep->n_outputs, od->o->name))
        return unknown_name(d, "output", "gives", od->o->name, dep->outputs, dep->n_outputs);
    for (infer_output_req *o = d->r->outputs; o < od->o; o++)
        if (strcmp(o->name, od->o->name) == 0)
            return fail(d, "output \"%s\" is requested twice", o->name);
    return 0;
}

static int output_binary(decoder *d, void *ctx)
{
    output_dec *od = ctx;
    char what[64];
    snprintf(what, sizeof(what), "%s.parameters.binary_data", od->what);
    return read_bool(d, what, &od->o->binary);
}

static int output_parameters(decoder *d, void *ctx)
{
    static const member members[] = {{"binary_data", output_binary}};
    output_dec *od = ctx;
    char what[48];
    snprintf(what, sizeof(what), "%s.parameters", od->what);
    return walk_object(d, what, members, UTIL_ARRAY_LEN(members), od);
}

/* o->binary stays -1 unless the output says: the request's
   binary_data_output, which may come later, decides then. */
static int decode_output(decoder *d, size_t index)
{
    static const member members[] = {{"name", output_name}, {"parameters", output_parameters}};
    infer_request *r = d->r;
    output_dec od;
    infer_output_req *outputs =
        room_for_one(d, r->outputs, r->n_outputs, &d->cap_outputs, sizeof(*r->outputs));
    if (!outputs) return -ENOMEM;
    r->outputs = outputs;
    od.o = &outputs[r->n_outputs++];
    *od.o = (infer_output_req){.binary = -1};
    snprintf(od.what, sizeof(od.what), "outputs[%zu]", index);
    int rc = walk_object(d, od.what, members, UTIL_ARRAY_LEN(members), &od);
    if (rc == 0 && !od.o->name) return fail(d, "%s has no \"name\"", od.what);
    return rc;
}

static int request_id(decoder *d, void *ctx)
{
    return read_cstring(d, "\"id\"", &d->r->id);
}

static int request_binary_output(decoder *d, void *ctx)
{
    return read_bool(d, "parameters.binary_data_output", &d->r->binary_output);
}

static int request_parameters(decoder *d, void *ctx)
{
    static const member members[] = {{"binary_data_output", request_binary_output}};
    return walk_object(d, "\"parameters\"", members, UTIL_ARRAY_LEN(members), NULL);
}

static int request_inputs(decoder *d, void *ctx)
{
    long n = walk_array(d, "\"inputs\"", decode_input);
    return n == 0 ? fail(d, "\"inputs\" is empty") : n < 0 ? (int)n : 0;
}

static int request_outputs(decoder *d, void *ctx)
{
    long n = walk_array(d, "\"outputs\"", decode_output);
    return n < 0 ? (int)n : 0;
}

/* The checks that need the whole request. */
static int finish_request(decoder *d)
{
    const serve_deployment *dep = d->dep;
    infer_request *r = d->r;
    if (r->n_inputs == 0) return fail(d, "the request has no \"inputs\"");
    for (size_t k = 0; k < dep->n_inputs; k++)
        if (!d->seen[k] && !dep->inputs[k].optional)
            return fail(d, "missing input \"%s\"", dep->inputs[k].name);
    if (d->bin_used != d->bin_len)
        return fail(d,
                    "the body has %zu bytes of binary data, the inputs' binary_data_size add "
                    "up to %zu",
                    d->bin_len, d->bin_used);
    for (size_t i = 0; i < r->n_outputs; i++)
        if (r->outputs[i].binary < 0) r->outputs[i].binary = r->binary_output;
    return 0;
}

/* The request object, nothing after it, then the checks of the whole. The
   declaration must have passed infer_specs_check. */
static int decode_request(decoder *d)
{
    static const member members[] = {
        {"id", request_id},
        {"parameters", request_parameters},
        {"inputs", request_inputs},
        {"outputs", request_outputs},
    };
    d->seen = arena_alloc(&d->r->arena, d->dep->n_inputs);
    if (!d->seen) return -ENOMEM;
    memset(d->seen, 0, d->dep->n_inputs);
    int rc = walk_object(d, "the request", members, UTIL_ARRAY_LEN(members), NULL);
    if (rc == 0) rc = ijson_end(&d->j);
    return rc < 0 ? rc : finish_request(d);
}

/* Split the body, decode, and on failure word the error (syntax errors
   are recorded by the reader, the others were written where they were
   found) and release everything. */
int infer_request_decode(const void *body, size_t len, long header_len, const serve_deployment *dep,
                         infer_request *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    size_t json_len = len;
    if (header_len >= 0) {
        if ((unsigned long)header_len > len)
            return infer__errf(
                err, errlen,
                "Inference-Header-Content-Length is %ld, but the body has only %zu bytes",
                header_len, len);
        json_len = (size_t)header_len;
    }
    decoder d = {
        .dep = dep,
        .r = out,
        .err = err,
        .errlen = errlen,
        .bin = (const unsigned char *)body + json_len,
        .bin_len = len - json_len,
        .has_bin = header_len >= 0,
    };
    ijson_init(&d.j, body, json_len);
    int rc = decode_request(&d);
    if (rc == -ENOMEM)
        infer__errf(err, errlen, "out of memory");
    else if (rc < 0 && d.j.err)
        infer__errf(err, errlen, "malformed JSON at byte %zu: %s", d.j.err_at, d.j.err);
    if (rc < 0) infer_request_free(out);
    return rc;
}
