/*
 * mlp_ceiling - the MLP example's network run in-process, with nothing
 * around it: the samples per second that no server of this model can beat
 * on this machine, the ceiling the serving benchmark compares against.
 *
 *     build/bench/mlp_ceiling [WEIGHTS]     (default examples/mlp/weights.bin)
 *
 * For each batch size it runs mlp_forward for about 2 s on fixed random
 * inputs and prints one line, `batch 64 samples_per_s 312345`. OpenBLAS
 * takes its thread count from OPENBLAS_NUM_THREADS, reported first as
 * `openblas_threads N`.
 */
#include <cblas.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "examples/mlp/model.h"

#define RUN_SECONDS 2.0
#define MAX_BATCH   64

static const size_t batches[] = {1, 32, 64};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Samples per second of mlp_forward at `batch` samples a call: calls for
   RUN_SECONDS after one warm-up call. -1 when out of memory. */
static double measure(const mlp_model *m, const float *x, float *probs, size_t batch)
{
    long calls = 0;
    if (mlp_forward(m, x, batch, probs) != 0) return -1;
    double start = now_s(), elapsed;
    do {
        if (mlp_forward(m, x, batch, probs) != 0) return -1;
        calls++;
    } while ((elapsed = now_s() - start) < RUN_SECONDS);
    return (double)calls * (double)batch / elapsed;
}

/* Measure every batch size on the same inputs, in [0, 1) like pixels,
   printing a line for each. 0 or -ENOMEM. */
static int run(const mlp_model *m)
{
    mlp_dims d = mlp_model_dims(m);
    float *x = malloc(MAX_BATCH * d.in * sizeof(float));
    float *probs = malloc(MAX_BATCH * d.out * sizeof(float));
    uint64_t s = 42;
    int rc = x && probs ? 0 : -ENOMEM;
    for (size_t i = 0; rc == 0 && i < MAX_BATCH * d.in; i++) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL; /* an LCG: the same every run */
        x[i] = (float)(s >> 40) * 0x1.0p-24f;
    }
    for (size_t b = 0; rc == 0 && b < sizeof(batches) / sizeof(batches[0]); b++) {
        double rate = measure(m, x, probs, batches[b]);
        if (rate < 0)
            rc = -ENOMEM;
        else
            printf("batch %zu samples_per_s %.0f\n", batches[b], rate);
        fflush(stdout);
    }
    free(x);
    free(probs);
    return rc;
}

int main(int argc, char **argv)
{
    const char *path = argc > 1 ? argv[1] : "examples/mlp/weights.bin";
    char err[512];
    mlp_model *m;
    if (mlp_load(&m, path, err, sizeof(err)) != 0) {
        fprintf(stderr, "mlp_ceiling: %s\n", err);
        return 1;
    }
    printf("openblas_threads %d\n", openblas_get_num_threads());
    int rc = run(m);
    if (rc != 0) fprintf(stderr, "mlp_ceiling: out of memory\n");
    mlp_free(m);
    return rc == 0 ? 0 : 1;
}
