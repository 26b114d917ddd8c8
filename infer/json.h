/*
 * json.h - a small strict JSON reader (RFC 8259), private to infer/.
 *
 * A cursor over a byte range (not NUL-terminated) that the caller walks
 * value by value: peek at the next value's type, then read it (a string as
 * a span to decode, a number as a mantissa and a decimal exponent), step
 * through object members and array elements, or skip a value whole. No
 * tree is built, so a tensor's numbers go straight into its typed buffer.
 *
 * Strict: no comments, no trailing commas, no leading zeros, no NaN or
 * Infinity, strings in valid UTF-8 with valid escapes (a surrogate must be
 * paired), at most IJSON_MAX_DEPTH nested containers (so hostile input
 * cannot exhaust the stack of a recursive caller).
 *
 * Errors: a function that fails returns -EINVAL and records in the reader
 * what went wrong (a constant string, "expected ','") and where (the byte
 * offset); the first error stays. An ijson is a plain value: copy it to
 * come back to a position later.
 *
 * What runs for every value of a tensor (peek, the step to the next array
 * element, the common conversion to float) is inline here: a call each
 * costs about a tenth of the decoding time of a typical tensor.
 */
#ifndef SERVE_INFER_JSON_H
#define SERVE_INFER_JSON_H

#include <stddef.h>
#include <stdint.h>

#define IJSON_MAX_DEPTH 64

typedef enum ijson_type {
    IJSON_NONE, /* the end of the input, or a byte that starts no value */
    IJSON_OBJECT,
    IJSON_ARRAY,
    IJSON_STRING,
    IJSON_NUMBER,
    IJSON_TRUE,
    IJSON_FALSE,
    IJSON_NULL,
} ijson_type;

typedef struct ijson {
    const char *p;    /* the cursor */
    const char *end;  /* one past the last byte */
    const char *base; /* byte 0, for error offsets */
    int depth;        /* containers open at the cursor */
    const char *err;  /* the first error, or NULL */
    size_t err_at;    /* its byte offset */
} ijson;

/* A string as read: the bytes between its quotes, validated. */
typedef struct ijson_str {
    const char *raw;
    size_t len; /* raw length; the decoded length is never more */
    int escaped;
} ijson_str;

/*
 * A number as read: value = (negative ? -1 : 1) * mantissa * 10^exp10,
 * exactly unless `truncated`. The mantissa keeps the first 19 or 20
 * significant digits (as many as fit in 64 bits); later digits of the
 * integer part raise exp10, later nonzero digits set `truncated`.
 */
typedef struct ijson_num {
    const char *text; /* the token, for messages and the slow path */
    size_t len;
    uint64_t mantissa;
    int64_t exp10;
    int negative;
    int truncated;
    int integer; /* written without a fraction or an exponent */
} ijson_num;

/* Start reading the `n` bytes at `p`. */
void ijson_init(ijson *j, const void *p, size_t n);

/* Record a syntax error at the cursor ("unexpected end of input" when the
   cursor is at the end). Returns -EINVAL. */
int ijson_fail(ijson *j, const char *what);

/* Step over whitespace. */
static inline void ijson__skip_ws(ijson *j)
{
    const char *p = j->p;
    while (p < j->end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) p++;
    j->p = p;
}

/* Skip whitespace and tell what the next value is, without reading it.
   Inline, numbers first: it runs for every value, and a tensor is mostly
   numbers. */
static inline ijson_type ijson_peek(ijson *j)
{
    ijson__skip_ws(j);
    if (j->p == j->end) return IJSON_NONE;
    char c = *j->p;
    if (((unsigned char)(c - '0') < 10) | (c == '-'))
        return IJSON_NUMBER; /* no branch on the sign */
    switch (c) {
    case '{':
        return IJSON_OBJECT;
    case '[':
        return IJSON_ARRAY;
    case '"':
        return IJSON_STRING;
    case 't':
        return IJSON_TRUE;
    case 'f':
        return IJSON_FALSE;
    case 'n':
        return IJSON_NULL;
    default:
        return IJSON_NONE;
    }
}

/* "an object", "a string", "true"...: a type as a message names it. */
const char *ijson_type_name(ijson_type t);

/* Read a string. 0 or -EINVAL. */
int ijson_string(ijson *j, ijson_str *s);

/* Decode a string read by ijson_string into `out`, which has room for
   s->len bytes; returns the decoded length. Escapes become UTF-8. */
size_t ijson_str_decode(const ijson_str *s, char *out);

/* Is the decoded string equal to the NUL-terminated `lit`? */
int ijson_str_eq(const ijson_str *s, const char *lit);

/* Read a number. 0 or -EINVAL. */
int ijson_number(ijson *j, ijson_num *n);

/*
 * The common case of ijson_number, inline because tensors are mostly
 * numbers: -?digits(.digits)? with at most 19 digits in all (so the
 * mantissa cannot overflow) and no exponent. Returns 1 when it read the
 * number; 0, having skipped only whitespace, for anything else (errors
 * included), which ijson_number then reads.
 */
static inline int ijson_number_fast(ijson *j, ijson_num *n)
{
    ijson__skip_ws(j);
    const char *p = j->p, *end = j->end;
    int negative = p < end && *p == '-';
    const char *q = p + negative;
    if (q == end || (unsigned char)(*q - '0') > 9) return 0;
    if (*q == '0' && q + 1 < end && (unsigned char)(q[1] - '0') <= 9) return 0; /* leading 0 */
    uint64_t m = 0;
    int digits = 0, fraction = 0;
    for (; q < end && (unsigned char)(*q - '0') <= 9; q++, digits++)
        m = m * 10 + (uint64_t)(*q - '0');
    if (q < end && *q == '.') {
        if (++q == end || (unsigned char)(*q - '0') > 9) return 0;
        for (; q < end && (unsigned char)(*q - '0') <= 9; q++, fraction++)
            m = m * 10 + (uint64_t)(*q - '0');
    }
    if (digits + fraction > 19 || (q < end && (*q == 'e' || *q == 'E'))) return 0;
    *n = (ijson_num){.text = p,
                     .len = (size_t)(q - p),
                     .mantissa = m,
                     .exp10 = -fraction,
                     .negative = negative,
                     .integer = fraction == 0};
    j->p = q;
    return 1;
}

/*
 * Convert a number. Integers: -EDOM when written with a fraction or an
 * exponent ("1.5", "1e2"), -ERANGE when out of range. Floating point: the
 * correctly rounded value, -ERANGE when it overflows to infinity, -ENOMEM
 * when a long token cannot be copied for strtod.
 */
int ijson_num_int64(const ijson_num *n, int64_t *v);
int ijson_num_uint64(const ijson_num *n, uint64_t *v);
int ijson_num_double(const ijson_num *n, double *v);

/* ijson_num_float beyond its fast path. */
int ijson__num_float_slow(const ijson_num *n, float *v);

/* To float, inline for Clinger's fast path in float arithmetic (a
   mantissa of at most 2^24, |exp10| <= 10: both operands exact, so one
   operation rounds once, correctly), which most tensor values take. */
static inline int ijson_num_float(const ijson_num *n, float *v)
{
    static const float pow10f[] = {1e0f, 1e1f, 1e2f, 1e3f, 1e4f, 1e5f,
                                   1e6f, 1e7f, 1e8f, 1e9f, 1e10f};
    if (n->truncated || n->mantissa > (1u << 24) || n->exp10 < -10 || n->exp10 > 10)
        return ijson__num_float_slow(n, v);
    float m = (float)n->mantissa;
    float r = n->exp10 < 0 ? m / pow10f[-n->exp10] : m * pow10f[n->exp10];
    *v = n->negative ? -r : r;
    return 0;
}

/* Read true or false into *v (1 or 0). 0 or -EINVAL. */
int ijson_bool(ijson *j, int *v);

/* Read null. 0 or -EINVAL. */
int ijson_null(ijson *j);

/*
 * Step through an object: with *i == 0 the cursor must be on its '{'.
 * Returns 1 with the next member's key read (and its ':'), the cursor on
 * the value, which the caller reads or skips before the next call; 0 after
 * the closing '}'; -EINVAL. *i counts the members.
 *
 *     size_t i = 0;
 *     ijson_str key;
 *     while ((rc = ijson_member(j, &i, &key)) > 0)
 *         ... read or skip the value ...
 */
int ijson_member(ijson *j, size_t *i, ijson_str *key);

/* ijson_element beyond its common case. */
int ijson__element_slow(ijson *j, size_t *i);

/* Step through an array the same way: 1 with the cursor on the next
   element, 0 after the closing ']', -EINVAL. Inline for the common case,
   a ',' right after an element. */
static inline int ijson_element(ijson *j, size_t *i)
{
    if (*i > 0 && j->p < j->end && *j->p == ',') {
        j->p++;
        (*i)++;
        return 1;
    }
    return ijson__element_slow(j, i);
}

/* Read and discard one value of any type. 0 or -EINVAL. */
int ijson_skip(ijson *j);

/* Check that only whitespace is left. 0 or -EINVAL. */
int ijson_end(ijson *j);

#endif
