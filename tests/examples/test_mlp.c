/*
 * test_mlp.c - the MLP example's network (examples/mlp/model.h) against a
 * naive double-precision computation of the same weights, read here
 * without the model's loader.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "examples/mlp/model.h"

#define N_IN     784
#define N_HIDDEN 256
#define N_OUT    10
#define MAX_ROWS 64

/* The weights as the file has them (this test runs on little-endian). */
typedef struct weights {
    float w1[N_HIDDEN][N_IN], b1[N_HIDDEN], w2[N_OUT][N_HIDDEN], b2[N_OUT];
} weights;

static const char *weights_path(void)
{
    static char path[4096];
    const char *src = getenv("SERVE_SOURCE_DIR");
    snprintf(path, sizeof(path), "%s/examples/mlp/weights.bin", src ? src : ".");
    return path;
}

static weights *read_weights(void)
{
    weights *w = malloc(sizeof(*w));
    FILE *f = fopen(weights_path(), "rb");
    char magic[4];
    uint32_t dims[3];
    cr_assert(w && f, "%s: cannot open", weights_path());
    cr_assert_eq(fread(magic, 1, 4, f), 4);
    cr_assert_eq(fread(dims, 4, 3, f), 3);
    cr_assert(memcmp(magic, "MLP1", 4) == 0);
    cr_assert(dims[0] == N_IN && dims[1] == N_HIDDEN && dims[2] == N_OUT);
    cr_assert_eq(fread(w, sizeof(*w), 1, f), 1);
    cr_assert_eq(fgetc(f), EOF, "trailing bytes");
    fclose(f);
    return w;
}

/* The network for one sample, in double, loop by loop. */
static void naive_forward(const weights *w, const float *x, double *probs)
{
    double h[N_HIDDEN], max = -INFINITY, sum = 0;
    for (int i = 0; i < N_HIDDEN; i++) {
        h[i] = w->b1[i];
        for (int j = 0; j < N_IN; j++) h[i] += (double)w->w1[i][j] * x[j];
        h[i] = h[i] > 0 ? h[i] : 0;
    }
    for (int k = 0; k < N_OUT; k++) {
        probs[k] = w->b2[k];
        for (int i = 0; i < N_HIDDEN; i++) probs[k] += (double)w->w2[k][i] * h[i];
        max = fmax(max, probs[k]);
    }
    for (int k = 0; k < N_OUT; k++) sum += probs[k] = exp(probs[k] - max);
    for (int k = 0; k < N_OUT; k++) probs[k] /= sum;
}

/* n samples of pixel-like values in [0, 1), the same every run. */
static void fill_inputs(float *x, size_t n)
{
    uint64_t s = 7;
    for (size_t i = 0; i < n * N_IN; i++) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        x[i] = (float)(s >> 40) * 0x1.0p-24f;
    }
}

static mlp_model *loaded(void)
{
    mlp_model *m;
    char err[512] = "";
    cr_assert_eq(mlp_load(&m, weights_path(), err, sizeof(err)), 0, "%s", err);
    mlp_dims d = mlp_model_dims(m);
    cr_assert(d.in == N_IN && d.hidden == N_HIDDEN && d.out == N_OUT);
    return m;
}

static void assert_close(double got, double want, double rel, const char *what, size_t i)
{
    cr_assert(fabs(got - want) <= rel * fabs(want), "%s %zu: %.9g, expected %.9g", what, i, got,
              want);
}

/* mlp_forward on n samples matches the naive network sample by sample. */
static void check_batch(size_t n)
{
    static float x[MAX_ROWS * N_IN], probs[MAX_ROWS * N_OUT];
    mlp_model *m = loaded();
    weights *w = read_weights();
    fill_inputs(x, n);
    cr_assert_eq(mlp_forward(m, x, n, probs), 0);
    for (size_t r = 0; r < n; r++) {
        double want[N_OUT], sum = 0;
        naive_forward(w, x + r * N_IN, want);
        for (int k = 0; k < N_OUT; k++) {
            assert_close(probs[r * N_OUT + k], want[k], 1e-5, "probability", r * N_OUT + k);
            sum += probs[r * N_OUT + k];
        }
        cr_assert_float_eq(sum, 1.0, 1e-6, "sample %zu: probabilities sum to %.9g", r, sum);
    }
    free(w);
    mlp_free(m);
}

Test(mlp, one_sample_matches_the_naive_network)
{
    check_batch(1);
}

Test(mlp, three_samples_match_the_naive_network)
{
    check_batch(3);
}

Test(mlp, sixty_four_samples_match_the_naive_network)
{
    check_batch(64);
}

Test(mlp, a_batch_gives_what_its_samples_give_one_by_one)
{
    static float x[MAX_ROWS * N_IN], batch[MAX_ROWS * N_OUT], one[N_OUT];
    mlp_model *m = loaded();
    fill_inputs(x, MAX_ROWS);
    cr_assert_eq(mlp_forward(m, x, MAX_ROWS, batch), 0);
    for (size_t r = 0; r < MAX_ROWS; r++) {
        cr_assert_eq(mlp_forward(m, x + r * N_IN, 1, one), 0);
        for (int k = 0; k < N_OUT; k++)
            assert_close(batch[r * N_OUT + k], one[k], 1e-5, "probability", r * N_OUT + k);
    }
    mlp_free(m);
}

/* ---- Loading errors ------------------------------------------------------ */

/* Write the first `len` bytes of the real weights file, with the magic
   replaced by `magic`, to a temporary file; returns its path. */
static const char *altered_copy(size_t len, const char *magic)
{
    static char path[] = "/tmp/test_mlp_XXXXXX";
    FILE *in = fopen(weights_path(), "rb");
    char *buf = malloc(len);
    cr_assert(in && buf);
    cr_assert_eq(fread(buf, 1, len, in), len);
    fclose(in);
    memcpy(buf, magic, 4);
    strcpy(path, "/tmp/test_mlp_XXXXXX");
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, buf, len), (ssize_t)len);
    close(fd);
    free(buf);
    return path;
}

/* The error mlp_load gives for `path` (the test fails if it loads). */
static const char *refused(const char *path, int want_rc)
{
    static char err[512];
    mlp_model *m = NULL;
    err[0] = '\0';
    cr_assert_eq(mlp_load(&m, path, err, sizeof(err)), want_rc, "%s: %s", path, err);
    cr_assert_null(m);
    return err;
}

static size_t full_size(void)
{
    return 16 + sizeof(weights);
}

Test(mlp, a_truncated_file_is_refused_with_both_sizes)
{
    const char *path = altered_copy(full_size() - 100, "MLP1");
    const char *err = refused(path, -EINVAL);
    unlink(path);
    cr_assert(strstr(err, "814036 bytes, expected 814136 for a 784-256-10 network (truncated)"),
              "%s", err);
}

Test(mlp, a_wrong_magic_is_refused)
{
    const char *path = altered_copy(full_size(), "MLP2");
    const char *err = refused(path, -EINVAL);
    unlink(path);
    cr_assert(strstr(err, "bad magic"), "%s", err);
}

Test(mlp, a_file_shorter_than_the_header_is_refused)
{
    const char *path = altered_copy(10, "MLP1");
    const char *err = refused(path, -EINVAL);
    unlink(path);
    cr_assert(strstr(err, "10 bytes: too short"), "%s", err);
}

Test(mlp, a_missing_file_gives_its_errno)
{
    const char *err = refused("/nonexistent/weights.bin", -ENOENT);
    cr_assert_str_eq(err, "/nonexistent/weights.bin: No such file or directory");
}
