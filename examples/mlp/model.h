/*
 * model.h - a two-layer perceptron (input, one ReLU hidden layer, softmax
 * output) in FP32 on OpenBLAS, loaded from a weights file.
 *
 * Weights file, little-endian (examples/mlp/gen_weights.c writes it):
 *
 *     "MLP1"                      4-byte magic
 *     uint32 n_in, n_hidden, n_out
 *     float32 W1[n_hidden][n_in]  row-major
 *     float32 b1[n_hidden]
 *     float32 W2[n_out][n_hidden]
 *     float32 b2[n_out]
 *
 * Pure computation: no plugin API, so that the plugin (mlp.c) and the
 * benchmark's ceiling (bench/mlp_ceiling.c) share it. Errors are 0 or a
 * negative errno, with the reason written to the caller's buffer.
 */
#ifndef MLP_MODEL_H
#define MLP_MODEL_H

#include <stddef.h>

typedef struct mlp_model mlp_model;

/* The layer sizes of a loaded model. */
typedef struct mlp_dims {
    size_t in;     /* features per sample */
    size_t hidden; /* hidden units */
    size_t out;    /* classes */
} mlp_dims;

/*
 * Load the weights file at `path` into a new model (*out, the caller's, freed
 * with mlp_free). Returns 0; -errno when the file cannot be read; -EINVAL
 * when it is not a weights file (bad magic, a size of 0 or above 65536, a
 * length that does not match the sizes); -ENOMEM. On error `err` says why,
 * naming the file.
 */
int mlp_load(mlp_model **out, const char *path, char *err, size_t err_size);

void mlp_free(mlp_model *m);

mlp_dims mlp_model_dims(const mlp_model *m);

/*
 * Classify `n` samples: x holds n rows of dims.in floats; probs receives n
 * rows of dims.out class probabilities (each row sums to 1). The hidden
 * layer lives in memory allocated per call, so concurrent calls on one
 * model are safe. Returns 0 or -ENOMEM.
 */
int mlp_forward(const mlp_model *m, const float *x, size_t n, float *probs);

#endif
