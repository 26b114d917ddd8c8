/*
 * infer.c - the Open Inference Protocol v2 codec (see infer.h).
 *
 * Decoding reads the request once with the strict reader of json.c and
 * writes each input's numbers straight into a typed buffer in the
 * request's arena. The members of an object may come in any order, so an
 * input's "data" is parsed on the spot only when its "name" and "datatype"
 * came before it (the usual order); otherwise its position is kept and it
 * is parsed once the input's object is complete. Encoding writes the
 * response text straight into the output buffer.
 */
#include "infer/infer.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "infer/json.h"

/* ---- Datatypes ---------------------------------------------------------- */

/* Per datatype: its v2 name, bytes per element (0: variable) and, for the
   integers and BOOL, the range of values. */
typedef struct dtype_info {
    const char *name;
    size_t size;
    int64_t min;
    uint64_t max;
} dtype_info;

static const dtype_info dtypes[] = {
    [SERVE_BOOL] = {"BOOL", 1, 0, 1},
    [SERVE_UINT8] = {"UINT8", 1, 0, UINT8_MAX},
    [SERVE_UINT16] = {"UINT16", 2, 0, UINT16_MAX},
    [SERVE_UINT32] = {"UINT32", 4, 0, UINT32_MAX},
    [SERVE_UINT64] = {"UINT64", 8, 0, UINT64_MAX},
    [SERVE_INT8] = {"INT8", 1, INT8_MIN, INT8_MAX},
    [SERVE_INT16] = {"INT16", 2, INT16_MIN, INT16_MAX},
    [SERVE_INT32] = {"INT32", 4, INT32_MIN, INT32_MAX},
    [SERVE_INT64] = {"INT64", 8, INT64_MIN, INT64_MAX},
    [SERVE_FP32] = {"FP32", 4, 0, 0},
    [SERVE_FP64] = {"FP64", 8, 0, 0},
    [SERVE_BYTES] = {"BYTES", 0, 0, 0},
};

static int dtype_valid(serve_datatype dt)
{
    return dt > SERVE_INVALID && dt <= SERVE_BYTES;
}

static int dtype_signed(serve_datatype dt)
{
    return dt >= SERVE_INT8 && dt <= SERVE_INT64;
}

/* For messages: the name, even of an invalid value. */
static const char *dtype_label(serve_datatype dt)
{
    return dtype_valid(dt) ? dtypes[dt].name : "INVALID";
}

const char *infer_datatype_name(serve_datatype dt)
{
    return dtype_valid(dt) ? dtypes[dt].name : NULL;
}

serve_datatype infer_datatype_parse(const char *s, size_t n)
{
    for (int dt = SERVE_BOOL; dt <= SERVE_BYTES; dt++)
        if (strlen(dtypes[dt].name) == n && memcmp(dtypes[dt].name, s, n) == 0)
            return (serve_datatype)dt;
    return SERVE_INVALID;
}

size_t serve_datatype_size(serve_datatype datatype)
{
    return dtype_valid(datatype) ? dtypes[datatype].size : 0;
}

/* ---- Shapes and declarations -------------------------------------------- */

__attribute__((format(printf, 3, 4))) static int errf(char *err, size_t errlen, const char *fmt,
                                                      ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -EINVAL;
}

/* Room for "[d,d,...]" with SERVE_MAX_DIMS dimensions of 20 characters. */
#define SHAPE_STR_MAX (SERVE_MAX_DIMS * 21 + 8)

/* "[1,784]" into buf (SHAPE_STR_MAX bytes); a longer shape ends in "...". */
static const char *shape_str(char *buf, const int64_t *shape, int ndim)
{
    size_t n = 1;
    buf[0] = '[';
    for (int k = 0; k < ndim; k++) {
        if (k == SERVE_MAX_DIMS) {
            n += (size_t)snprintf(buf + n, SHAPE_STR_MAX - n, ",...");
            break;
        }
        n += (size_t)snprintf(buf + n, SHAPE_STR_MAX - n, "%s%" PRId64, k ? "," : "", shape[k]);
    }
    snprintf(buf + n, SHAPE_STR_MAX - n, "]");
    return buf;
}

/* The number of elements of a shape, or -EOVERFLOW when its data could
   not be addressed (more than SIZE_MAX / 8 elements); a dimension of 0
   makes it 0 whatever the others. */
static int shape_elements(const int64_t *shape, int ndim, size_t *count)
{
    size_t n = 1;
    for (int k = 0; k < ndim; k++)
        if (shape[k] == 0) {
            *count = 0;
            return 0;
        }
    for (int k = 0; k < ndim; k++) {
        if (shape[k] < 0 || (uint64_t)shape[k] > SIZE_MAX / 8 / n) return -EOVERFLOW;
        n *= (size_t)shape[k];
    }
    *count = n;
    return 0;
}

/* Check first, format only for the message. */
int infer_shape_check(const serve_tensor_spec *spec, serve_datatype dt, const int64_t *shape,
                      int ndim, char *err, size_t errlen)
{
    char got[SHAPE_STR_MAX], want[SHAPE_STR_MAX];
    if (dt != spec->datatype)
        return errf(err, errlen, "datatype %s, the model declares %s", dtype_label(dt),
                    dtype_label(spec->datatype));
    if (ndim != spec->ndim)
        return errf(err, errlen, "shape %s has %d dimensions, the model declares %s",
                    shape_str(got, shape, ndim), ndim, shape_str(want, spec->shape, spec->ndim));
    for (int k = 0; k < ndim; k++)
        if (shape[k] < 0 || (spec->shape[k] != -1 && shape[k] != spec->shape[k]))
            return errf(err, errlen, "shape %s: dimension %d is %" PRId64 ", the model declares %s",
                        shape_str(got, shape, ndim), k, shape[k],
                        shape_str(want, spec->shape, spec->ndim));
    return 0;
}

const serve_tensor_spec *infer_spec_find(const serve_tensor_spec *specs, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(specs[i].name, name) == 0) return &specs[i];
    return NULL;
}

/* What is wrong with one declared tensor, in `why`; 0 when nothing. */
static int spec_problem(const serve_tensor_spec *t, int is_input, char *why, size_t n)
{
    if (!dtype_valid(t->datatype)) return errf(why, n, "invalid datatype %d", (int)t->datatype);
    if (t->ndim < 1 || t->ndim > SERVE_MAX_DIMS)
        return errf(why, n, "%d dimensions; a tensor has 1 to %d", t->ndim, SERVE_MAX_DIMS);
    for (int k = 0; k < t->ndim; k++)
        if (t->shape[k] < 1 && t->shape[k] != -1)
            return errf(why, n,
                        "dimension %d is %" PRId64 "; a dimension is >= 1, or -1 for any size", k,
                        t->shape[k]);
    if (t->optional && !is_input) return errf(why, n, "optional, but only an input can be");
    return 0;
}

/* Check one list of declared tensors; `list` is "inputs" or "outputs". */
static int check_specs(const serve_tensor_spec *s, size_t n, const char *list, int is_input,
                       char *err, size_t errlen)
{
    char why[128];
    for (size_t i = 0; i < n; i++) {
        if (!s[i].name || !s[i].name[0]) return errf(err, errlen, "%s[%zu]: no name", list, i);
        if (spec_problem(&s[i], is_input, why, sizeof(why)) < 0)
            return errf(err, errlen, "%s[%zu] (%s): %s", list, i, s[i].name, why);
        for (size_t k = 0; k < i; k++)
            if (strcmp(s[k].name, s[i].name) == 0)
                return errf(err, errlen, "%s[%zu] (%s): %s[%zu] has the same name", list, i,
                            s[i].name, list, k);
    }
    return 0;
}

int infer_specs_check(const serve_deployment *dep, char *err, size_t errlen)
{
    int rc = check_specs(dep->inputs, dep->n_inputs, "inputs", 1, err, errlen);
    return rc < 0 ? rc : check_specs(dep->outputs, dep->n_outputs, "outputs", 0, err, errlen);
}

/* One list of declared tensors as a JSON array, or NULL when out of
   memory. json_*_set_new and _append_new take their argument's reference
   even when they fail, and accept NULL, so one check at the end of each
   step suffices. */
static json_t *specs_to_json(const serve_tensor_spec *s, size_t n)
{
    json_t *list = json_array();
    for (size_t i = 0; list && i < n; i++) {
        json_t *t = json_object(), *shape = json_array();
        int rc = json_object_set_new(t, "name", json_string(s[i].name));
        rc |= json_object_set_new(t, "datatype", json_string(infer_datatype_name(s[i].datatype)));
        for (int k = 0; k < s[i].ndim; k++)
            rc |= json_array_append_new(shape, json_integer(s[i].shape[k]));
        rc |= json_object_set_new(t, "shape", shape);
        if (s[i].optional) rc |= json_object_set_new(t, "optional", json_true());
        rc |= json_array_append_new(list, t);
        if (rc) {
            json_decref(list);
            list = NULL;
        }
    }
    return list;
}

char *infer_specs_json(const serve_deployment *dep)
{
    json_t *root = json_object();
    int rc = json_object_set_new(root, "inputs", specs_to_json(dep->inputs, dep->n_inputs));
    rc |= json_object_set_new(root, "outputs", specs_to_json(dep->outputs, dep->n_outputs));
    char *text = rc ? NULL : json_dumps(root, JSON_COMPACT);
    json_decref(root);
    return text;
}

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
    const dtype_info *info = &dtypes[dt];
    int rc;
    if (dt == SERVE_FP32) {
        float f;
        if ((rc = ijson_num_float(n, &f)) == 0) memcpy(dst, &f, sizeof(f));
    } else if (dt == SERVE_FP64) {
        double v;
        if ((rc = ijson_num_double(n, &v)) == 0) memcpy(dst, &v, sizeof(v));
    } else if (dtype_signed(dt)) {
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
                dtypes[in->spec->datatype].name, in->count);
}

/* Word a conversion's failure: the number as written (cut at 40
   characters), the datatype, the element. */
static int number_error(decoder *d, input_dec *in, const ijson_num *n, int rc)
{
    const char *dt = dtypes[in->spec->datatype].name;
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
    if (ijson_number(&d->j, &n) < 0) return -EINVAL;
    if (tbuf_reserve(d, &in->buf, sizeof(uint64_t)) < 0) return -ENOMEM;
    int rc = store_number(&n, dt, in->buf.p + in->buf.len);
    if (rc < 0) return number_error(d, in, &n, rc);
    in->buf.len += dtypes[dt].size;
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
    size_t count = 0, size = dtypes[in->spec->datatype].size;
    if (t != IJSON_ARRAY) {
        snprintf(what, sizeof(what), "%s: \"data\"", in->label);
        return wrong_type(d, t, what, "an array");
    }
    if (in->has_shape && shape_elements(in->t->shape, in->t->ndim, &count) < 0) count = 0;
    size_t most = (size_t)(d->j.end - d->j.p) / 2 + 1;
    count = count < most ? count : most;
    if (tbuf_reserve(d, &in->buf, size ? count * size : 64) < 0) return -ENOMEM;
    in->data_state = DATA_PARSED;
    return data_array(d, in);
}

/* The 4-byte little-endian length of a BYTES element. */
static size_t le32(const unsigned char *p)
{
    return (size_t)p[0] | (size_t)p[1] << 8 | (size_t)p[2] << 16 | (size_t)p[3] << 24;
}

/* Check the layout of BYTES data (length-prefixed elements filling n
   bytes exactly) and count its elements; -1 when malformed. */
static long bytes_elements(const unsigned char *p, size_t n)
{
    long count = 0;
    while (n > 0) {
        if (n < 4) return -1;
        size_t len = le32(p);
        if (len > n - 4) return -1;
        p += 4 + len;
        n -= 4 + len;
        count++;
    }
    return count;
}

/* Take the input's data from the binary part of the body, where it comes
   next. Copied into the arena: the tensor gets memory aligned for its
   type, and does not depend on the body. */
static int input_binary(decoder *d, input_dec *in, size_t count)
{
    serve_tensor *t = in->t;
    char shape[SHAPE_STR_MAX];
    size_t n = (size_t)in->binary_size, size = dtypes[t->datatype].size;
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
    shape_str(shape, t->shape, t->ndim);
    if (size && n != count * size)
        return fail(d, "%s: binary_data_size is %zu, shape %s of %s takes %zu bytes", in->label, n,
                    shape, dtypes[t->datatype].name, count * size);
    long elements = size ? (long)count : bytes_elements(src, n);
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
    char msg[3 * SHAPE_STR_MAX], shape[SHAPE_STR_MAX];
    size_t count;
    int rc;
    if (!in->spec) return fail(d, "%s has no \"name\"", in->what);
    if (!in->has_datatype) return fail(d, "%s has no \"datatype\"", in->label);
    if (!in->has_shape) return fail(d, "%s has no \"shape\"", in->label);
    if (infer_shape_check(in->spec, t->datatype, t->shape, t->ndim, msg, sizeof(msg)) < 0)
        return fail(d, "%s: %s", in->label, msg);
    if (shape_elements(t->shape, t->ndim, &count) < 0)
        return fail(d, "%s: shape %s is too large", in->label, shape_str(shape, t->shape, t->ndim));
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
                    shape_str(shape, t->shape, t->ndim), count, in->count);
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
            return errf(err, errlen,
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
        errf(err, errlen, "out of memory");
    else if (rc < 0 && d.j.err)
        errf(err, errlen, "malformed JSON at byte %zu: %s", d.j.err_at, d.j.err);
    if (rc < 0) infer_request_free(out);
    return rc;
}

/* ---- Response encoding -------------------------------------------------- */

/* The widest element text: "-1.2345678901234567e-308" and a comma, with
   room for snprintf's NUL. */
#define ELEMENT_MAX 32

static void put_lit(ipc_buf *b, const char *s)
{
    ipc_buf_put(b, s, strlen(s));
}

/* s as a JSON string at w (which has room for 6 * n + 2 bytes): quotes,
   backslashes and control characters escaped, other bytes as they are. */
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
    memcpy(&v, p, dtypes[dt].size);
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
    size_t size = dtypes[t->datatype].size;
    if (t->datatype == SERVE_BYTES) {
        for (size_t off = 0; off < t->size; off += 4 + le32(p + off)) {
            if (off) ipc_buf_put(b, ",", 1);
            put_string(b, (const char *)p + off + 4, le32(p + off));
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
    put_lit(b, dtypes[t->datatype].name);
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
    char shape[SHAPE_STR_MAX];
    size_t count;
    const char *name = t->name ? t->name : "(unnamed)";
    if (!t->name || !dtype_valid(t->datatype) || t->ndim < 0 || t->ndim > SERVE_MAX_DIMS ||
        shape_elements(t->shape, t->ndim, &count) < 0 || (t->size && !t->data))
        return errf(err, errlen, "output \"%s\": not a valid tensor", name);
    size_t size = dtypes[t->datatype].size;
    long elements = size ? (long)(t->size / size) : bytes_elements(t->data, t->size);
    if ((size && t->size % size) || elements < 0 || (size_t)elements != count)
        return errf(err, errlen, "output \"%s\": %zu bytes of %s data do not fill shape %s", name,
                    t->size, dtypes[t->datatype].name, shape_str(shape, t->shape, t->ndim));
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
            errf(err, errlen, "output \"%s\" was requested, but the model did not produce it",
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
    errf(err, errlen, "out of memory");
    return -ENOMEM;
}
