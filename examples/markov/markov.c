/*
 * markov - a model deployment that is not a neural network: the limit
 * distribution of a Markov chain, by repeated squaring of its transition
 * matrix with OpenBLAS's dgemm (chain.h). See examples/markov/README.md.
 *
 *   Markov  init_args {"blas_threads": 1}, optional
 *
 *   POST /v2/models/markov/infer  matrix FP64 [n, n], or seed INT64 [1] and
 *                                 size INT64 [1] for a random chain
 *                                 -> distribution FP64 [n], products INT64 [1]
 *   POST /markov  {"matrix": [[0.9, 0.1], [0.5, 0.5]]}  or  {"seed": 7, "size": 64}
 *                 -> {"distribution": [...], "products": k, "size": n}
 *   GET  /markov  what it computes and how to call it
 *
 * A bad request gets 400 with the reason; a chain with no limit (periodic
 * or reducible) gets 422.
 */
#include <cblas.h>
#include <errno.h>
#include <jansson.h>
#include <serve_plugin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chain.h"

#define MARKOV_MAX_SIZE         1024 /* states: a product is then 2 GFLOP */
#define MARKOV_MAX_BLAS_THREADS 64

/* A chain to solve: its transition matrix, the request's or drawn here. */
typedef struct problem {
    const double *p;
    size_t rows, cols;
    double *owned; /* a matrix read from JSON or drawn from a seed */
} problem;

static const serve_tensor_spec markov_inputs[] = {
    {.name = "matrix", .datatype = SERVE_FP64, .ndim = 2, .shape = {-1, -1}, .optional = 1},
    {.name = "seed", .datatype = SERVE_INT64, .ndim = 1, .shape = {1}, .optional = 1},
    {.name = "size", .datatype = SERVE_INT64, .ndim = 1, .shape = {1}, .optional = 1},
};

static const serve_tensor_spec markov_outputs[] = {
    {.name = "distribution", .datatype = SERVE_FP64, .ndim = 1, .shape = {-1}},
    {.name = "products", .datatype = SERVE_INT64, .ndim = 1, .shape = {1}},
};

static int markov_init(serve_context *ctx, const char *args_json, void **state)
{
    json_error_t jerr;
    json_t *args = json_loads(args_json, 0, &jerr);
    if (!args) return serve_set_error("init_args: invalid JSON: %s", jerr.text);
    json_t *blas = json_object_get(args, "blas_threads");
    json_int_t threads = blas ? json_integer_value(blas) : 1; /* 0 when not an integer */
    json_decref(args);
    if (threads < 1 || threads > MARKOV_MAX_BLAS_THREADS)
        return serve_set_error("init_args.blas_threads: must be an integer from 1 to %d",
                               MARKOV_MAX_BLAS_THREADS);
    openblas_set_num_threads((int)threads);
    *state = ctx;
    return 0;
}

/* ---- Reading the chain -------------------------------------------------- */

/* A random chain of `size` states from `seed`. 0, or -EINVAL / -ENOMEM
   with the reason in `why`. */
static int draw(problem *pb, int64_t seed, int64_t size, char *why, size_t why_size)
{
    if (size < 1 || size > MARKOV_MAX_SIZE) {
        snprintf(why, why_size, "size: must be from 1 to %d, got %lld", MARKOV_MAX_SIZE,
                 (long long)size);
        return -EINVAL;
    }
    size_t n = (size_t)size;
    if (!(pb->owned = malloc(n * n * sizeof(double)))) {
        snprintf(why, why_size, "out of memory for a %zux%zu matrix", n, n);
        return -ENOMEM;
    }
    markov_random(pb->owned, n, (uint64_t)seed);
    *pb = (problem){pb->owned, n, n, pb->owned};
    return 0;
}

/* The one INT64 of a [1] tensor (its data may not be aligned). */
static int64_t scalar(const serve_tensor *t)
{
    int64_t v;
    memcpy(&v, t->data, sizeof(v));
    return v;
}

/* The "matrix" tensor, used as it is (markov_check refuses it if not square). */
static int borrow_matrix(const serve_tensor *m, problem *pb, char *why, size_t why_size)
{
    if (m->shape[0] > MARKOV_MAX_SIZE || m->shape[1] > MARKOV_MAX_SIZE) {
        snprintf(why, why_size, "matrix: %lldx%lld: at most %d states", (long long)m->shape[0],
                 (long long)m->shape[1], MARKOV_MAX_SIZE);
        return -EINVAL;
    }
    *pb = (problem){m->data, (size_t)m->shape[0], (size_t)m->shape[1], NULL};
    return 0;
}

/* The chain of a v2 request: the "matrix" tensor as it is, or one drawn
   from "seed" and "size". */
static int tensor_problem(const serve_request *req, problem *pb, char *why, size_t why_size)
{
    const serve_tensor *m = serve_request_input(req, "matrix");
    const serve_tensor *seed = serve_request_input(req, "seed");
    const serve_tensor *size = serve_request_input(req, "size");
    if (m && !seed && !size) return borrow_matrix(m, pb, why, why_size);
    if (!m && seed && size) return draw(pb, scalar(seed), scalar(size), why, why_size);
    snprintf(why, why_size, "give either the input matrix, or seed and size");
    return -EINVAL;
}

/* Read row i of a JSON matrix, which must have `cols` numbers, into row. */
static int read_row(const json_t *v, size_t i, size_t cols, double *row, char *why, size_t why_size)
{
    if (!json_is_array(v) || json_array_size(v) != cols) {
        snprintf(why, why_size, "matrix[%zu]: expected an array of %zu numbers, as row 0", i, cols);
        return -EINVAL;
    }
    for (size_t j = 0; j < cols; j++) {
        const json_t *e = json_array_get(v, j);
        if (!json_is_number(e)) {
            snprintf(why, why_size, "matrix[%zu][%zu]: expected a number", i, j);
            return -EINVAL;
        }
        row[j] = json_number_value(e);
    }
    return 0;
}

/* A JSON matrix: an array of rows, each an array of as many numbers as
   the first. At most MARKOV_MAX_SIZE of either. */
static int read_matrix(const json_t *m, problem *pb, char *why, size_t why_size)
{
    size_t rows = json_array_size(m), cols = json_array_size(json_array_get(m, 0));
    if (rows == 0 || cols == 0 || rows > MARKOV_MAX_SIZE || cols > MARKOV_MAX_SIZE) {
        snprintf(why, why_size, "matrix: expected an array of 1 to %d rows of 1 to %d numbers",
                 MARKOV_MAX_SIZE, MARKOV_MAX_SIZE);
        return -EINVAL;
    }
    if (!(pb->owned = malloc(rows * cols * sizeof(double)))) {
        snprintf(why, why_size, "out of memory for a %zux%zu matrix", rows, cols);
        return -ENOMEM;
    }
    for (size_t i = 0; i < rows; i++) {
        int rc = read_row(json_array_get(m, i), i, cols, pb->owned + i * cols, why, why_size);
        if (rc != 0) return rc;
    }
    *pb = (problem){pb->owned, rows, cols, pb->owned};
    return 0;
}

/* The chain of a plain JSON POST: {"matrix": ...} or {"seed", "size"}. */
static int json_problem(const serve_request *req, problem *pb, char *why, size_t why_size)
{
    json_error_t jerr;
    json_t *body = json_loadb(req->body, req->body_len, 0, &jerr);
    if (!body) {
        snprintf(why, why_size, "invalid JSON: %s (line %d, column %d)", jerr.text, jerr.line,
                 jerr.column);
        return -EINVAL;
    }
    json_t *m = json_object_get(body, "matrix");
    json_t *seed = json_object_get(body, "seed"), *size = json_object_get(body, "size");
    int rc = -EINVAL;
    if (m && !seed && !size)
        rc = read_matrix(m, pb, why, why_size);
    else if (!m && json_is_integer(seed) && json_is_integer(size))
        rc = draw(pb, json_integer_value(seed), json_integer_value(size), why, why_size);
    else
        snprintf(why, why_size,
                 "expected {\"matrix\": [[...], ...]} or {\"seed\": S, \"size\": N} (integers)");
    json_decref(body);
    return rc;
}

/* ---- Answering ---------------------------------------------------------- */

static int answer_tensors(serve_response *res, const double *dist, size_t n, int products)
{
    int64_t shape[1] = {(int64_t)n}, k = products;
    if (serve_response_add_output(res, "distribution", SERVE_FP64, shape, 1, dist,
                                  n * sizeof(double)) != 0)
        return -1;
    shape[0] = 1;
    return serve_response_add_output(res, "products", SERVE_INT64, shape, 1, &k, sizeof(k));
}

static int answer_json(serve_response *res, const double *dist, size_t n, int products)
{
    json_t *values = json_array();
    for (size_t i = 0; i < n; i++) json_array_append_new(values, json_real(dist[i]));
    json_t *obj = json_pack("{s:o, s:i, s:I}", "distribution", values, "products", products, "size",
                            (json_int_t)n);
    char *text = obj ? json_dumps(obj, JSON_COMPACT | JSON_REAL_PRECISION(17)) : NULL;
    json_decref(obj);
    if (!text) return serve_set_error("out of memory");
    serve_response_set_header(res, "content-type", "application/json");
    int rc = serve_response_printf(res, "%s\n", text);
    free(text);
    return rc;
}

/*
 * Check and solve the chain, and answer: output tensors for a v2 request,
 * JSON otherwise. The distribution is computed before it is known to be
 * an answer (a chain may have no limit: 422), so it is copied into the
 * response rather than written into an output tensor.
 */
static int solve(const problem *pb, int v2, serve_response *res)
{
    char err[256];
    if (markov_check(pb->p, pb->rows, pb->cols, err, sizeof(err)) != 0)
        return serve_response_error(res, 400, "matrix: %s", err);
    size_t n = pb->rows;
    double *dist = malloc(n * sizeof(double));
    if (!dist) return serve_set_error("out of memory");
    int products, rc = markov_limit(pb->p, n, dist, &products, err, sizeof(err));
    if (rc == -EDOM)
        rc = serve_response_error(res, 422, "%s", err);
    else if (rc != 0)
        rc = serve_set_error("%s", err);
    else
        rc = v2 ? answer_tensors(res, dist, n, products) : answer_json(res, dist, n, products);
    free(dist);
    return rc;
}

/* GET: what this deployment computes and how to call it, as JSON. */
static int describe(const serve_context *ctx, const serve_request *req, serve_response *res)
{
    char v2[160], plain[160];
    snprintf(v2, sizeof(v2), "POST /v2/models/%s/infer", serve_context_app(ctx));
    snprintf(plain, sizeof(plain), "POST %s", req->path);
    json_t *about = json_pack(
        "{s:s, s:{s:s, s:s, s:s}, s:{s:s, s:s, s:s}}", "model",
        "the limit distribution of a Markov chain, by repeated squaring (OpenBLAS dgemm)", "v2",
        "call", v2, "inputs", "matrix FP64 [n, n], or seed INT64 [1] and size INT64 [1]", "outputs",
        "distribution FP64 [n], products INT64 [1]", "json", "call", plain, "body",
        "{\"matrix\": [[...], ...]} or {\"seed\": 7, \"size\": 64}", "answer",
        "{\"distribution\": [...], \"products\": k, \"size\": n}");
    char *text = about ? json_dumps(about, JSON_INDENT(2)) : NULL;
    json_decref(about);
    if (!text) return serve_set_error("out of memory");
    serve_response_set_header(res, "content-type", "application/json");
    int rc = serve_response_printf(res, "%s\n", text);
    free(text);
    return rc;
}

/* Read the chain a request gives and solve it; a bad one is refused with
   400 and the reason. */
static int solve_request(const serve_request *req, int v2, serve_response *res)
{
    problem pb = {0};
    char why[256];
    int rc =
        v2 ? tensor_problem(req, &pb, why, sizeof(why)) : json_problem(req, &pb, why, sizeof(why));
    if (rc == 0)
        rc = solve(&pb, v2, res);
    else if (rc == -ENOMEM)
        rc = serve_set_error("%s", why);
    else
        rc = serve_response_error(res, 400, "%s", why);
    free(pb.owned);
    return rc;
}

static int markov_handle(void *state, const serve_request *req, serve_response *res)
{
    if (req->n_inputs > 0) return solve_request(req, 1, res);
    if (strcmp(req->route_path, "/") != 0)
        return serve_response_error(res, 404, "%s: no such path; GET or POST the route itself",
                                    req->route_path);
    if (strcmp(req->method, "GET") == 0) return describe(state, req, res);
    if (strcmp(req->method, "POST") == 0) return solve_request(req, 0, res);
    return serve_response_error(res, 405, "%s: use GET or POST", req->method);
}

static const serve_deployment deployments[] = {
    {
        .name = "Markov",
        .init = markov_init,
        .handle = markov_handle,
        .inputs = markov_inputs,
        .n_inputs = sizeof(markov_inputs) / sizeof(markov_inputs[0]),
        .outputs = markov_outputs,
        .n_outputs = sizeof(markov_outputs) / sizeof(markov_outputs[0]),
    },
};

SERVE_PLUGIN(deployments)
