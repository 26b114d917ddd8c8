/*
 * internal.h - what the codec's files share: the datatype table, shapes,
 * and the error message helper. Not part of infer.h.
 */
#ifndef SERVE_INFER_INTERNAL_H
#define SERVE_INFER_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "infer/infer.h"

/* Per datatype: its v2 name, bytes per element (0: variable) and, for the
   integers and BOOL, the range of values. */
typedef struct infer__dtype_info {
    const char *name;
    size_t size;
    int64_t min;
    uint64_t max;
} infer__dtype_info;

/* Room for "[d,d,...]" with SERVE_MAX_DIMS dimensions of 20 characters. */
#define INFER_SHAPE_STR_MAX (SERVE_MAX_DIMS * 21 + 8)

extern const infer__dtype_info infer__dtypes[];

/* A datatype of the enum other than SERVE_INVALID; a signed integer one. */
int infer__dtype_valid(serve_datatype dt);
int infer__dtype_signed(serve_datatype dt);

/* Format a message into err (errlen bytes, may be 0) and return -EINVAL. */
int infer__errf(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* "[1,784]" into buf (INFER_SHAPE_STR_MAX bytes); a longer shape ends in "...". */
const char *infer__shape_str(char *buf, const int64_t *shape, int ndim);

/* The length of the UTF-8 sequence at p (lead byte >= 0x80), or 0 when it
   is not valid UTF-8 (RFC 3629: no overlong forms, no surrogates, nothing
   above U+10FFFF). The JSON reader refuses such strings, the writer
   replaces their bytes: JSON text is UTF-8. */
size_t infer__utf8_len(const unsigned char *p, const unsigned char *end);

/* The 4-byte little-endian length that starts a BYTES element. */
size_t infer__le32(const unsigned char *p);

#endif
