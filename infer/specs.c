/*
 * specs.c - datatypes, shapes and tensor declarations: the part of the
 * codec (infer.h) that the proxy and the plugin API use outside requests.
 */
#include "infer/infer.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "infer/internal.h"

/* ---- Datatypes ---------------------------------------------------------- */

const infer__dtype_info infer__dtypes[] = {
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

int infer__dtype_valid(serve_datatype dt)
{
    return dt > SERVE_INVALID && dt <= SERVE_BYTES;
}

int infer__dtype_signed(serve_datatype dt)
{
    return dt >= SERVE_INT8 && dt <= SERVE_INT64;
}

/* For messages: the name, even of an invalid value. */
static const char *dtype_label(serve_datatype dt)
{
    return infer__dtype_valid(dt) ? infer__dtypes[dt].name : "INVALID";
}

const char *infer_datatype_name(serve_datatype dt)
{
    return infer__dtype_valid(dt) ? infer__dtypes[dt].name : NULL;
}

serve_datatype infer_datatype_parse(const char *s, size_t n)
{
    for (int dt = SERVE_BOOL; dt <= SERVE_BYTES; dt++)
        if (strlen(infer__dtypes[dt].name) == n && memcmp(infer__dtypes[dt].name, s, n) == 0)
            return (serve_datatype)dt;
    return SERVE_INVALID;
}

size_t serve_datatype_size(serve_datatype datatype)
{
    return infer__dtype_valid(datatype) ? infer__dtypes[datatype].size : 0;
}

/* ---- Shapes and declarations -------------------------------------------- */

int infer__errf(char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -EINVAL;
}

/* "[1,784]" into buf (INFER_SHAPE_STR_MAX bytes); a longer shape ends in "...". */
const char *infer__shape_str(char *buf, const int64_t *shape, int ndim)
{
    size_t n = 1;
    buf[0] = '[';
    for (int k = 0; k < ndim; k++) {
        if (k == SERVE_MAX_DIMS) {
            n += (size_t)snprintf(buf + n, INFER_SHAPE_STR_MAX - n, ",...");
            break;
        }
        n += (size_t)snprintf(buf + n, INFER_SHAPE_STR_MAX - n, "%s%" PRId64, k ? "," : "",
                              shape[k]);
    }
    snprintf(buf + n, INFER_SHAPE_STR_MAX - n, "]");
    return buf;
}

/* The number of elements of a shape, or -EOVERFLOW when its data could
   not be addressed (more than SIZE_MAX / 8 elements); a dimension of 0
   makes it 0 whatever the others. */
int infer_shape_elements(const int64_t *shape, int ndim, size_t *count)
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
    char got[INFER_SHAPE_STR_MAX], want[INFER_SHAPE_STR_MAX];
    if (dt != spec->datatype)
        return infer__errf(err, errlen, "datatype %s, the model declares %s", dtype_label(dt),
                           dtype_label(spec->datatype));
    if (ndim != spec->ndim)
        return infer__errf(err, errlen, "shape %s has %d dimensions, the model declares %s",
                           infer__shape_str(got, shape, ndim), ndim,
                           infer__shape_str(want, spec->shape, spec->ndim));
    for (int k = 0; k < ndim; k++)
        if (shape[k] < 0 || (spec->shape[k] != -1 && shape[k] != spec->shape[k]))
            return infer__errf(err, errlen,
                               "shape %s: dimension %d is %" PRId64 ", the model declares %s",
                               infer__shape_str(got, shape, ndim), k, shape[k],
                               infer__shape_str(want, spec->shape, spec->ndim));
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
    if (!infer__dtype_valid(t->datatype))
        return infer__errf(why, n, "invalid datatype %d", (int)t->datatype);
    if (t->ndim < 1 || t->ndim > SERVE_MAX_DIMS)
        return infer__errf(why, n, "%d dimensions; a tensor has 1 to %d", t->ndim, SERVE_MAX_DIMS);
    for (int k = 0; k < t->ndim; k++)
        if (t->shape[k] < 1 && t->shape[k] != -1)
            return infer__errf(
                why, n, "dimension %d is %" PRId64 "; a dimension is >= 1, or -1 for any size", k,
                t->shape[k]);
    if (t->optional && !is_input) return infer__errf(why, n, "optional, but only an input can be");
    return 0;
}

/* Check one list of declared tensors; `list` is "inputs" or "outputs". */
static int check_specs(const serve_tensor_spec *s, size_t n, const char *list, int is_input,
                       char *err, size_t errlen)
{
    char why[128];
    for (size_t i = 0; i < n; i++) {
        if (!s[i].name || !s[i].name[0])
            return infer__errf(err, errlen, "%s[%zu]: no name", list, i);
        if (spec_problem(&s[i], is_input, why, sizeof(why)) < 0)
            return infer__errf(err, errlen, "%s[%zu] (%s): %s", list, i, s[i].name, why);
        for (size_t k = 0; k < i; k++)
            if (strcmp(s[k].name, s[i].name) == 0)
                return infer__errf(err, errlen, "%s[%zu] (%s): %s[%zu] has the same name", list, i,
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

size_t infer__le32(const unsigned char *p)
{
    return (size_t)p[0] | (size_t)p[1] << 8 | (size_t)p[2] << 16 | (size_t)p[3] << 24;
}

long infer_bytes_elements(const void *data, size_t n)
{
    const unsigned char *p = data;
    long count = 0;
    while (n > 0) {
        if (n < 4) return -1;
        size_t len = infer__le32(p);
        if (len > n - 4) return -1;
        p += 4 + len;
        n -= 4 + len;
        count++;
    }
    return count;
}
