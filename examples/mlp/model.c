/*
 * model.c - the MLP of model.h: loading its weights file and running it.
 */
#include "model.h"

#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MLP_MAGIC        "MLP1"
#define MLP_HEADER_BYTES 16
#define MLP_MAX_DIM      65536

struct mlp_model {
    mlp_dims dims;
    const float *w1, *b1, *w2, *b2; /* views into `weights`, in file order */
    float weights[];
};

static uint32_t le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static size_t weight_count(mlp_dims d)
{
    return d.hidden * d.in + d.hidden + d.out * d.hidden + d.out;
}

/*
 * Check a file's 16-byte header against the file's length and read the
 * layer sizes from it. Sizes are bounded so that the expected length cannot
 * overflow; the length must then match exactly, which catches a truncated
 * copy as well as a file of another network. 0 or -EINVAL.
 */
static int check_header(const unsigned char *head, off_t file_len, const char *path, mlp_dims *d,
                        char *err, size_t err_size)
{
    if (memcmp(head, MLP_MAGIC, 4) != 0) {
        snprintf(err, err_size, "%s: bad magic: not an MLP weights file (expected \"%s\")", path,
                 MLP_MAGIC);
        return -EINVAL;
    }
    *d = (mlp_dims){le32(head + 4), le32(head + 8), le32(head + 12)};
    if (d->in == 0 || d->hidden == 0 || d->out == 0 || d->in > MLP_MAX_DIM ||
        d->hidden > MLP_MAX_DIM || d->out > MLP_MAX_DIM) {
        snprintf(err, err_size, "%s: layer sizes %zu-%zu-%zu: each must be 1 to %d", path, d->in,
                 d->hidden, d->out, MLP_MAX_DIM);
        return -EINVAL;
    }
    size_t expected = MLP_HEADER_BYTES + weight_count(*d) * sizeof(float);
    if ((size_t)file_len != expected) {
        snprintf(err, err_size, "%s: %lld bytes, expected %zu for a %zu-%zu-%zu network (%s)", path,
                 (long long)file_len, expected, d->in, d->hidden, d->out,
                 (size_t)file_len < expected ? "truncated" : "trailing bytes");
        return -EINVAL;
    }
    return 0;
}

/* Read `count` little-endian floats from f into w, in this machine's order. */
static int read_floats(FILE *f, float *w, size_t count)
{
    if (fread(w, sizeof(float), count, f) != count) return -EIO;
    for (size_t i = 0; i < count; i++) {
        uint32_t bits = le32((const unsigned char *)&w[i]);
        memcpy(&w[i], &bits, sizeof(bits));
    }
    return 0;
}

/* The model of a checked header, its weights read from f (positioned after
   the header). 0, -ENOMEM or -EIO. */
static int read_model(FILE *f, mlp_dims d, mlp_model **out)
{
    size_t count = weight_count(d);
    mlp_model *m = malloc(sizeof(*m) + count * sizeof(float));
    if (!m) return -ENOMEM;
    int rc = read_floats(f, m->weights, count);
    if (rc != 0) {
        free(m);
        return rc;
    }
    m->dims = d;
    m->w1 = m->weights;
    m->b1 = m->w1 + d.hidden * d.in;
    m->w2 = m->b1 + d.hidden;
    m->b2 = m->w2 + d.out * d.hidden;
    *out = m;
    return 0;
}

int mlp_load(mlp_model **out, const char *path, char *err, size_t err_size)
{
    FILE *f = fopen(path, "rb");
    struct stat st;
    unsigned char head[MLP_HEADER_BYTES];
    mlp_dims d;
    int rc;
    if (!f || fstat(fileno(f), &st) != 0) {
        rc = -errno;
        snprintf(err, err_size, "%s: %s", path, strerror(errno));
        goto done;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(err, err_size, "%s: not a regular file", path);
        rc = -EINVAL;
        goto done;
    }
    if (st.st_size < MLP_HEADER_BYTES || fread(head, 1, sizeof(head), f) != sizeof(head)) {
        snprintf(err, err_size, "%s: %lld bytes: too short for the %d-byte header", path,
                 (long long)st.st_size, MLP_HEADER_BYTES);
        rc = -EINVAL;
        goto done;
    }
    rc = check_header(head, st.st_size, path, &d, err, err_size);
    if (rc == 0) rc = read_model(f, d, out);
    if (rc == -ENOMEM || rc == -EIO)
        snprintf(err, err_size, "%s: %s", path, rc == -EIO ? "read error" : "out of memory");
done:
    if (f) fclose(f);
    return rc;
}

void mlp_free(mlp_model *m)
{
    free(m);
}

mlp_dims mlp_model_dims(const mlp_model *m)
{
    return m->dims;
}

/*
 * y = x·Wᵀ + b for n rows of x, `cols` wide: W is rows×cols (the file's
 * layout), y is n×rows. One sample goes through sgemv: sgemm with a single
 * row is about 5x slower at these sizes.
 */
static void dense(const float *w, const float *b, size_t rows, size_t cols, const float *x,
                  size_t n, float *y)
{
    for (size_t i = 0; i < n; i++) memcpy(y + i * rows, b, rows * sizeof(float));
    if (n == 1)
        cblas_sgemv(CblasRowMajor, CblasNoTrans, (blasint)rows, (blasint)cols, 1.0f, w,
                    (blasint)cols, x, 1, 1.0f, y, 1);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)n, (blasint)rows,
                    (blasint)cols, 1.0f, x, (blasint)cols, w, (blasint)cols, 1.0f, y,
                    (blasint)rows);
}

/* Softmax of k values in place, less their maximum first so that no exp
   overflows. */
static void softmax(float *z, size_t k)
{
    float max = z[0], sum = 0.0f;
    for (size_t j = 1; j < k; j++) max = z[j] > max ? z[j] : max;
    for (size_t j = 0; j < k; j++) sum += z[j] = expf(z[j] - max);
    for (size_t j = 0; j < k; j++) z[j] /= sum;
}

int mlp_forward(const mlp_model *m, const float *x, size_t n, float *probs)
{
    const mlp_dims *d = &m->dims;
    if (n == 0) return 0;
    float *h = malloc(n * d->hidden * sizeof(float));
    if (!h) return -ENOMEM;
    dense(m->w1, m->b1, d->hidden, d->in, x, n, h);
    for (size_t i = 0; i < n * d->hidden; i++) h[i] = h[i] > 0.0f ? h[i] : 0.0f;
    dense(m->w2, m->b2, d->out, d->hidden, h, n, probs);
    free(h);
    for (size_t i = 0; i < n; i++) softmax(probs + i * d->out, d->out);
    return 0;
}
