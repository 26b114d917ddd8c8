/*
 * gen_weights.c - write the MLP example's weights file, the same bytes every
 * time (see model.h for the format).
 *
 *     build/examples/mlp_gen_weights examples/mlp/weights.bin
 *
 * The network is 784-256-10 (MNIST-sized) with random weights: it serves
 * and benchmarks like a trained model, it does not recognise digits.
 * Weights are uniform in ±sqrt(6 / (fan_in + fan_out)) (Xavier/Glorot),
 * biases in ±0.01, all drawn in file order from one splitmix64 stream with
 * a fixed seed. Values are computed in double and rounded once to float,
 * so any IEEE-754 machine writes the same file.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N_IN      784
#define N_HIDDEN  256
#define N_OUT     10
#define SEED      0x6d6c7031ULL /* "mlp1" */
#define BIAS_SIZE 0.01

/* splitmix64: one 64-bit state, a good and tiny generator. */
static uint64_t next_random(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static int put_u32(FILE *f, uint32_t v)
{
    unsigned char b[4] = {v & 0xff, v >> 8 & 0xff, v >> 16 & 0xff, v >> 24 & 0xff};
    return fwrite(b, 1, 4, f) == 4 ? 0 : -1;
}

/* Write `count` values uniform in [-limit, limit) as little-endian floats. */
static int put_uniform(FILE *f, uint64_t *s, size_t count, double limit)
{
    for (size_t i = 0; i < count; i++) {
        double u = (double)(next_random(s) >> 11) * 0x1.0p-53; /* [0, 1) */
        float v = (float)((2.0 * u - 1.0) * limit);
        uint32_t bits;
        memcpy(&bits, &v, sizeof(bits));
        if (put_u32(f, bits) != 0) return -1;
    }
    return 0;
}

static int write_weights(FILE *f)
{
    uint64_t s = SEED;
    if (fwrite("MLP1", 1, 4, f) != 4 || put_u32(f, N_IN) || put_u32(f, N_HIDDEN) ||
        put_u32(f, N_OUT))
        return -1;
    if (put_uniform(f, &s, (size_t)N_HIDDEN * N_IN, sqrt(6.0 / (N_IN + N_HIDDEN))) ||
        put_uniform(f, &s, N_HIDDEN, BIAS_SIZE) ||
        put_uniform(f, &s, (size_t)N_OUT * N_HIDDEN, sqrt(6.0 / (N_HIDDEN + N_OUT))) ||
        put_uniform(f, &s, N_OUT, BIAS_SIZE))
        return -1;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s OUTPUT   (e.g. examples/mlp/weights.bin)\n", argv[0]);
        return 2;
    }
    FILE *f = fopen(argv[1], "wb");
    if (!f) {
        perror(argv[1]);
        return 1;
    }
    int rc = write_weights(f);
    if (fclose(f) != 0 || rc != 0) {
        perror(argv[1]);
        return 1;
    }
    return 0;
}
