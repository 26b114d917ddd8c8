/*
 * json.c - the strict JSON reader of infer/ (see json.h).
 *
 * Numbers are the hot path: a tensor is mostly numbers. The scanner
 * gathers the digits into a 64-bit mantissa and a decimal exponent in one
 * pass; the conversion then takes Clinger's fast path whenever it can (to
 * double: a mantissa of at most 2^53 and |exp10| <= 22; to float: 2^24 and
 * 10. Both operands are then exact, so one multiplication or division
 * rounds once, correctly) and falls back to strtod or strtof on a copy of
 * the token otherwise. The C library is assumed to run in the "C" locale,
 * as a C program starts (strtod reads the decimal point of the locale).
 */
#include "infer/json.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The fast paths need float and double arithmetic rounded to their own
   format, not to a wider one (x87 would round twice). */
_Static_assert(FLT_EVAL_METHOD == 0, "float and double arithmetic must not be wider");

void ijson_init(ijson *j, const void *p, size_t n)
{
    j->base = j->p = p;
    j->end = j->p + n;
    j->depth = 0;
    j->err = NULL;
    j->err_at = 0;
}

int ijson_fail(ijson *j, const char *what)
{
    if (!j->err) {
        j->err = j->p >= j->end ? "unexpected end of input" : what;
        j->err_at = (size_t)(j->p - j->base);
    }
    return -EINVAL;
}

/* Fail at `p` rather than at the cursor: the byte that is wrong. */
static int fail_at(ijson *j, const char *p, const char *what)
{
    j->p = p;
    return ijson_fail(j, what);
}

static int is_digit(char c)
{
    return (unsigned char)(c - '0') < 10;
}

const char *ijson_type_name(ijson_type t)
{
    static const char *const names[] = {
        [IJSON_NONE] = "nothing",    [IJSON_OBJECT] = "an object", [IJSON_ARRAY] = "an array",
        [IJSON_STRING] = "a string", [IJSON_NUMBER] = "a number",  [IJSON_TRUE] = "true",
        [IJSON_FALSE] = "false",     [IJSON_NULL] = "null",
    };
    return names[t];
}

/* ---- Strings ------------------------------------------------------------ */

/* The value of the 4 hex digits at p, or -1. */
static long hex4(const unsigned char *p, const unsigned char *end)
{
    if (end - p < 4) return -1;
    long v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned char c = p[i];
        int d = is_digit((char)c)                        ? c - '0'
                : (c | 0x20) >= 'a' && (c | 0x20) <= 'f' ? (c | 0x20) - 'a' + 10
                                                         : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

/* The length of the escape sequence at p (a backslash), or 0 with *why.
   A \u escape of a high surrogate must be followed by one of a low
   surrogate: a lone surrogate has no UTF-8 form. */
static size_t escape_len(const unsigned char *p, const unsigned char *end, const char **why)
{
    *why = "invalid escape in a string";
    if (end - p < 2) return 0;
    if (p[1] != 'u') return strchr("\"\\/bfnrt", p[1]) && p[1] ? 2 : 0;
    long u = hex4(p + 2, end);
    *why = "invalid \\u escape in a string";
    if (u < 0) return 0;
    *why = "unpaired surrogate in a \\u escape";
    if (u >= 0xDC00 && u <= 0xDFFF) return 0;
    if (u < 0xD800 || u > 0xDBFF) return 6;
    if (end - p < 12 || p[6] != '\\' || p[7] != 'u') return 0;
    long lo = hex4(p + 8, end);
    return lo >= 0xDC00 && lo <= 0xDFFF ? 12 : 0;
}

size_t infer__utf8_len(const unsigned char *p, const unsigned char *end)
{
    unsigned char c = p[0], lo = 0x80, hi = 0xBF;
    size_t n;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        lo = c == 0xE0 ? 0xA0 : lo;
        hi = c == 0xED ? 0x9F : hi;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        lo = c == 0xF0 ? 0x90 : lo;
        hi = c == 0xF4 ? 0x8F : hi;
    } else {
        return 0;
    }
    if ((size_t)(end - p) < n || p[1] < lo || p[1] > hi) return 0;
    for (size_t i = 2; i < n; i++)
        if ((p[i] & 0xC0) != 0x80) return 0;
    return n;
}

/* The length of the string character at p that is not plain ASCII (an
   escape, a control character, a UTF-8 sequence), or 0 with *why. */
static size_t special_len(const unsigned char *p, const unsigned char *end, const char **why)
{
    if (*p == '\\') return escape_len(p, end, why);
    *why = *p < 0x20 ? "control character in a string" : "invalid UTF-8 in a string";
    return *p < 0x20 ? 0 : infer__utf8_len(p, end);
}

/* One pass validates the whole string; decoding, when there are escapes,
   is a second pass over what is known to be valid. */
int ijson_string(ijson *j, ijson_str *s)
{
    if (ijson_peek(j) != IJSON_STRING) return ijson_fail(j, "expected a string");
    const unsigned char *p = (const unsigned char *)j->p + 1;
    const unsigned char *end = (const unsigned char *)j->end;
    int escaped = 0;
    for (;;) {
        while (p < end && *p >= 0x20 && *p < 0x80 && *p != '"' && *p != '\\') p++;
        if (p == end) return fail_at(j, (const char *)p, "unterminated string");
        if (*p == '"') break;
        const char *why;
        size_t n = special_len(p, end, &why);
        if (n == 0) return fail_at(j, (const char *)p, why);
        escaped |= *p == '\\';
        p += n;
    }
    s->raw = j->p + 1;
    s->len = (size_t)((const char *)p - s->raw);
    s->escaped = escaped;
    j->p = (const char *)p + 1;
    return 0;
}

/* Write code point c as UTF-8; returns the length. */
static size_t utf8_put(unsigned long c, char *out)
{
    if (c < 0x80) {
        out[0] = (char)c;
        return 1;
    }
    if (c < 0x800) {
        out[0] = (char)(0xC0 | (c >> 6));
        out[1] = (char)(0x80 | (c & 0x3F));
        return 2;
    }
    if (c < 0x10000) {
        out[0] = (char)(0xE0 | (c >> 12));
        out[1] = (char)(0x80 | ((c >> 6) & 0x3F));
        out[2] = (char)(0x80 | (c & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (c >> 18));
    out[1] = (char)(0x80 | ((c >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((c >> 6) & 0x3F));
    out[3] = (char)(0x80 | (c & 0x3F));
    return 4;
}

/* Decode the character at *pp of a validated string into out (1 to 4
   bytes) and step past it. */
static size_t decode_char(const char **pp, char *out)
{
    const unsigned char *p = (const unsigned char *)*pp;
    if (*p != '\\') {
        *out = (char)*p;
        *pp += 1;
        return 1;
    }
    *pp += 2;
    switch (p[1]) {
    case 'b':
        *out = '\b';
        return 1;
    case 'f':
        *out = '\f';
        return 1;
    case 'n':
        *out = '\n';
        return 1;
    case 'r':
        *out = '\r';
        return 1;
    case 't':
        *out = '\t';
        return 1;
    case 'u':
        break;
    default:
        *out = (char)p[1];
        return 1; /* " \ / */
    }
    unsigned long c = (unsigned long)hex4(p + 2, p + 6);
    *pp += 4;
    if (c >= 0xD800 && c <= 0xDBFF) {
        c = 0x10000 + ((c - 0xD800) << 10) + ((unsigned long)hex4(p + 8, p + 12) - 0xDC00);
        *pp += 6;
    }
    return utf8_put(c, out);
}

size_t ijson_str_decode(const ijson_str *s, char *out)
{
    if (!s->escaped) {
        memcpy(out, s->raw, s->len);
        return s->len;
    }
    const char *p = s->raw, *end = s->raw + s->len;
    size_t n = 0;
    while (p < end) n += decode_char(&p, out + n);
    return n;
}

int ijson_str_eq(const ijson_str *s, const char *lit)
{
    size_t n = strlen(lit);
    if (!s->escaped) return s->len == n && memcmp(s->raw, lit, n) == 0;
    const char *p = s->raw, *end = s->raw + s->len;
    size_t k = 0;
    char c[4];
    while (p < end) {
        size_t m = decode_char(&p, c);
        if (m > n - k || memcmp(c, lit + k, m) != 0) return 0;
        k += m;
    }
    return k == n;
}

/* ---- Numbers ------------------------------------------------------------ */

/* The digits of a number as they are gathered: kept in a local (not in
   the caller's ijson_num, which the char reads could alias) so that the
   compiler keeps them in registers. */
typedef struct digit_acc {
    uint64_t mantissa;
    int64_t exp10;
    int truncated;
} digit_acc;

/* Gather the digits at p: the first ones that fit in the mantissa, the
   rest dropped, an integer-part digit dropped raising the exponent and a
   fraction digit kept lowering it. */
static inline const char *digits(const char *p, const char *end, digit_acc *a, int frac)
{
    uint64_t m = a->mantissa;
    int64_t e = a->exp10;
    int truncated = a->truncated;
    for (; p < end && is_digit(*p); p++) {
        unsigned d = (unsigned)(*p - '0');
        if (m < UINT64_MAX / 10 || (m == UINT64_MAX / 10 && d <= UINT64_MAX % 10)) {
            m = m * 10 + d;
            e -= frac;
        } else {
            e += !frac;
            truncated |= d != 0;
        }
    }
    *a = (digit_acc){m, e, truncated};
    return p;
}

/* The exponent part after 'e': its value is added to a->exp10, saturated
   far beyond any double's range so that sums cannot overflow. */
static const char *exponent(ijson *j, const char *p, digit_acc *a)
{
    int neg = 0;
    if (p < j->end && (*p == '+' || *p == '-')) neg = *p++ == '-';
    if (p == j->end || !is_digit(*p)) {
        fail_at(j, p, "expected a digit in the exponent");
        return NULL;
    }
    int64_t e = 0;
    for (; p < j->end && is_digit(*p); p++)
        if (e < 1000000000) e = e * 10 + (*p - '0');
    a->exp10 += neg ? -e : e;
    return p;
}

/* The grammar: -? (0 | [1-9][0-9]*) (\.[0-9]+)? ([eE][+-]?[0-9]+)? */
int ijson_number(ijson *j, ijson_num *n)
{
    ijson__skip_ws(j);
    const char *p = j->p, *end = j->end;
    if (p == end || !(is_digit(*p) | (*p == '-'))) return ijson_fail(j, "expected a number");
    digit_acc a = {0};
    int negative = *p == '-', integer = 1;
    p += negative;
    if (p == end || !is_digit(*p)) return fail_at(j, p, "expected a digit after '-'");
    if (*p == '0' && p + 1 < end && is_digit(p[1]))
        return fail_at(j, p, "leading zero in a number");
    p = digits(p, end, &a, 0);
    if (p < end && *p == '.') {
        integer = 0;
        if (++p == end || !is_digit(*p)) return fail_at(j, p, "expected a digit after '.'");
        p = digits(p, end, &a, 1);
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        integer = 0;
        if (!(p = exponent(j, p + 1, &a))) return -EINVAL;
    }
    *n = (ijson_num){.text = j->p,
                     .len = (size_t)(p - j->p),
                     .mantissa = a.mantissa,
                     .exp10 = a.exp10,
                     .negative = negative,
                     .truncated = a.truncated,
                     .integer = integer};
    j->p = p;
    return 0;
}

int ijson_num_uint64(const ijson_num *n, uint64_t *v)
{
    if (!n->integer) return -EDOM;
    if (n->exp10 != 0 || (n->negative && n->mantissa != 0)) return -ERANGE;
    *v = n->mantissa;
    return 0;
}

int ijson_num_int64(const ijson_num *n, int64_t *v)
{
    if (!n->integer) return -EDOM;
    uint64_t limit = n->negative ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    if (n->exp10 != 0 || n->mantissa > limit) return -ERANGE;
    /* -(m - 1) - 1 reaches INT64_MIN without overflowing */
    *v = n->negative && n->mantissa ? -(int64_t)(n->mantissa - 1) - 1 : (int64_t)n->mantissa;
    return 0;
}

/* The slow path: strtod or strtof (when f is not NULL) on a NUL-terminated
   copy of the token, on the stack unless it is long. */
static int convert_text(const ijson_num *n, double *d, float *f)
{
    char small[64];
    char *s = n->len < sizeof(small) ? small : malloc(n->len + 1);
    if (!s) return -ENOMEM;
    memcpy(s, n->text, n->len);
    s[n->len] = '\0';
    if (f)
        *f = strtof(s, NULL);
    else
        *d = strtod(s, NULL);
    if (s != small) free(s);
    return 0;
}

int ijson_num_double(const ijson_num *n, double *v)
{
    static const double pow10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                   1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                   1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
    if (!n->truncated && n->mantissa <= (1ull << 53) && n->exp10 >= -22 && n->exp10 <= 22) {
        double m = (double)n->mantissa;
        double r = n->exp10 < 0 ? m / pow10[-n->exp10] : m * pow10[n->exp10];
        *v = n->negative ? -r : r;
        return 0;
    }
    int rc = convert_text(n, v, NULL);
    return rc == 0 && isinf(*v) ? -ERANGE : rc;
}

/*
 * Is d exactly halfway between two neighbouring floats? Rounding a decimal
 * to double and then to float rounds twice, which can differ from rounding
 * it to float once only when the double lands on such a midpoint: every
 * midpoint is a double, so a decimal on one side of it rounds to a double
 * on the same side or onto it. The half-ulp of a float is bit 28 of the
 * double's significand for normal floats, a higher bit below 2^-126.
 */
static int float_midpoint(double d)
{
    uint64_t b;
    memcpy(&b, &d, sizeof(b));
    int e = (int)((b >> 52) & 0x7ff) - 1023;
    if (e < -150) return 0;
    if (e == -150) return (b & ((1ull << 52) - 1)) == 0; /* 2^-150: between 0 and 2^-149 */
    int half = e >= -126 ? 28 : 28 + (-126 - e);
    return (b & ((2ull << half) - 1)) == 1ull << half;
}

/* Beyond ijson_num_float's fast path: through double, correctly rounded
   thanks to the midpoint check, strtof settling the rare midpoints. */
int ijson__num_float_slow(const ijson_num *n, float *v)
{
    double d;
    int rc = ijson_num_double(n, &d);
    if (rc == -ENOMEM) return rc;
    if (rc == 0 && float_midpoint(d)) {
        if ((rc = convert_text(n, NULL, v)) < 0) return rc;
    } else {
        *v = (float)d;
    }
    return isinf(*v) ? -ERANGE : 0;
}

/* ---- Literals, containers ----------------------------------------------- */

static int literal(ijson *j, const char *lit, size_t n)
{
    if ((size_t)(j->end - j->p) < n || memcmp(j->p, lit, n) != 0)
        return ijson_fail(j, "invalid literal");
    j->p += n;
    return 0;
}

int ijson_bool(ijson *j, int *v)
{
    ijson_type t = ijson_peek(j);
    if (t != IJSON_TRUE && t != IJSON_FALSE) return ijson_fail(j, "expected true or false");
    *v = t == IJSON_TRUE;
    return *v ? literal(j, "true", 4) : literal(j, "false", 5);
}

int ijson_null(ijson *j)
{
    if (ijson_peek(j) != IJSON_NULL) return ijson_fail(j, "expected null");
    return literal(j, "null", 4);
}

/* Enter the container that `type` names, checking the depth limit. */
static int open_container(ijson *j, ijson_type type)
{
    if (ijson_peek(j) != type)
        return ijson_fail(j, type == IJSON_OBJECT ? "expected '{'" : "expected '['");
    if (j->depth == IJSON_MAX_DEPTH) return ijson_fail(j, "nesting deeper than 64 levels");
    j->depth++;
    j->p++;
    return 0;
}

/* Between items: `close` ends the container (0); otherwise, after the
   first item, a ',' must separate (1). A trailing ',' is refused by the
   caller's read of the value that should follow it. */
static int next_item(ijson *j, size_t *i, char close, const char *why)
{
    ijson__skip_ws(j);
    if (j->p == j->end) return ijson_fail(j, why);
    if (*j->p == close) {
        j->p++;
        j->depth--;
        return 0;
    }
    if (*i > 0) {
        if (*j->p != ',') return ijson_fail(j, why);
        j->p++;
    }
    (*i)++;
    return 1;
}

int ijson_member(ijson *j, size_t *i, ijson_str *key)
{
    if (*i == 0 && open_container(j, IJSON_OBJECT) < 0) return -EINVAL;
    int rc = next_item(j, i, '}', "expected ',' or '}'");
    if (rc <= 0) return rc;
    if (ijson_peek(j) != IJSON_STRING) return ijson_fail(j, "expected a member name");
    if (ijson_string(j, key) < 0) return -EINVAL;
    ijson__skip_ws(j);
    if (j->p == j->end || *j->p != ':') return ijson_fail(j, "expected ':'");
    j->p++;
    return 1;
}

/* The first element, the end, or whitespace before a ',': the cases
   ijson_element leaves to this. */
int ijson__element_slow(ijson *j, size_t *i)
{
    if (*i == 0 && open_container(j, IJSON_ARRAY) < 0) return -EINVAL;
    return next_item(j, i, ']', "expected ',' or ']'");
}

/* Recursive, but open_container bounds the depth. */
int ijson_skip(ijson *j)
{
    ijson_str s;
    ijson_num n;
    size_t i = 0;
    int rc, b;
    switch (ijson_peek(j)) {
    case IJSON_OBJECT:
        while ((rc = ijson_member(j, &i, &s)) > 0)
            if ((rc = ijson_skip(j)) < 0) return rc;
        return rc;
    case IJSON_ARRAY:
        while ((rc = ijson_element(j, &i)) > 0)
            if ((rc = ijson_skip(j)) < 0) return rc;
        return rc;
    case IJSON_STRING:
        return ijson_string(j, &s);
    case IJSON_NUMBER:
        return ijson_number(j, &n);
    case IJSON_TRUE:
    case IJSON_FALSE:
        return ijson_bool(j, &b);
    case IJSON_NULL:
        return ijson_null(j);
    default:
        return ijson_fail(j, "expected a value");
    }
}

int ijson_end(ijson *j)
{
    ijson__skip_ws(j);
    return j->p == j->end ? 0 : ijson_fail(j, "unexpected data after the JSON value");
}
