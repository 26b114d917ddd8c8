/*
 * mlp - a model deployment: a 784-256-10 perceptron (one ReLU hidden layer,
 * softmax output) classifying 28x28 images, MNIST's shape, in FP32 on
 * OpenBLAS. See examples/mlp/README.md.
 *
 *   MLP  init_args {"weights": "PATH", "blas_threads": 1}, both optional;
 *        the weights default to weights.bin in this plugin's folder
 *
 *   POST /v2/models/mlp/infer   input FP32 [n, 784]
 *                               -> probabilities FP32 [n, 10], class INT64 [n]
 *   POST /mlp  {"instances": [[784 numbers], ...]}
 *              -> {"predictions": [{"class": 3, "probabilities": [10 numbers]}, ...]}
 *   GET  /mlp  the model and how to call it
 *
 * With `batching` in the config, handle_batch stacks the samples of every
 * request of a batch into one matrix and runs the network once (one sgemm
 * per layer); `handle` is a batch of one. A bad request is refused alone.
 */
#include <cblas.h>
#include <dlfcn.h>
#include <errno.h>
#include <float.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <serve_plugin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

#define MLP_IN               784 /* the declared tensors' sizes */
#define MLP_OUT              10
#define MLP_MAX_BLAS_THREADS 64
#define MLP_DEFAULT_WEIGHTS  "weights.bin"

typedef struct mlp_plugin {
    mlp_model *model;
    const serve_context *ctx;
} mlp_plugin;

/* What one request of a batch brings and where its answer goes. */
typedef enum item_kind {
    ITEM_ANSWERED, /* nothing to classify: already answered (an error, GET) */
    ITEM_TENSOR,   /* a v2 infer request: answered with output tensors */
    ITEM_JSON,     /* a plain POST of instances: answered with predictions */
} item_kind;

typedef struct item {
    item_kind kind;
    size_t n;         /* samples; 0 when already answered */
    const float *x;   /* n x MLP_IN: the input tensor's data, or in `owned` */
    float *probs;     /* n x MLP_OUT: the output tensor's data, or in `owned` */
    int64_t *classes; /* n: the "class" output tensor's data (ITEM_TENSOR) */
    float *owned;     /* a JSON request's samples and probabilities, one block */
} item;

static const serve_tensor_spec mlp_inputs[] = {
    {.name = "input", .datatype = SERVE_FP32, .ndim = 2, .shape = {-1, MLP_IN}},
};

static const serve_tensor_spec mlp_outputs[] = {
    {.name = "probabilities", .datatype = SERVE_FP32, .ndim = 2, .shape = {-1, MLP_OUT}},
    {.name = "class", .datatype = SERVE_INT64, .ndim = 1, .shape = {-1}},
};

/* ---- init ------------------------------------------------------------- */

/*
 * The default weights: weights.bin in the folder this plugin was loaded
 * from, which the build fills (build/examples/). A plugin does not know its
 * path, but the dynamic loader does: dladdr on one of its functions.
 */
static int default_weights(char *path, size_t size)
{
    Dl_info info;
    if (!dladdr((const void *)default_weights, &info) || !info.dli_fname)
        return serve_set_error("init_args.weights: cannot find this plugin's folder; give a path");
    const char *slash = strrchr(info.dli_fname, '/');
    int dir_len = slash ? (int)(slash - info.dli_fname) : 1;
    int len =
        snprintf(path, size, "%.*s/%s", dir_len, slash ? info.dli_fname : ".", MLP_DEFAULT_WEIGHTS);
    return len < (int)size ? 0 : serve_set_error("%s: path too long", info.dli_fname);
}

/* init_args.weights: the weights file, absolute or relative to the working
   directory (the one `serve run` started in); by default default_weights. */
static int read_weights_path(const json_t *args, char *path, size_t size)
{
    const json_t *v = json_object_get(args, "weights");
    if (!v) return default_weights(path, size);
    if (!json_is_string(v) || json_string_length(v) >= size)
        return serve_set_error("init_args.weights: must be a path (a string under %zu bytes)",
                               size);
    snprintf(path, size, "%s", json_string_value(v));
    return 0;
}

/* init_args.blas_threads: OpenBLAS's threads in this replica; *threads
   holds the default. */
static int read_blas_threads(const json_t *args, int *threads)
{
    const json_t *v = json_object_get(args, "blas_threads");
    json_int_t n = v ? json_integer_value(v) : *threads; /* 0 when not an integer */
    if (n < 1 || n > MLP_MAX_BLAS_THREADS)
        return serve_set_error("init_args.blas_threads: must be an integer from 1 to %d",
                               MLP_MAX_BLAS_THREADS);
    *threads = (int)n;
    return 0;
}

/* Load the model and check it fits the declared tensors. */
static int load_model(const char *path, mlp_model **out)
{
    char err[PATH_MAX + 128];
    if (mlp_load(out, path, err, sizeof(err)) != 0)
        return serve_set_error("init_args.weights: %s", err);
    mlp_dims d = mlp_model_dims(*out);
    if (d.in == MLP_IN && d.out == MLP_OUT) return 0;
    mlp_free(*out);
    return serve_set_error("init_args.weights: %s: a %zu-%zu-%zu network; this deployment "
                           "takes %d inputs and gives %d classes",
                           path, d.in, d.hidden, d.out, MLP_IN, MLP_OUT);
}

static int mlp_init(serve_context *ctx, const char *args_json, void **state)
{
    json_error_t jerr;
    json_t *args = json_loads(args_json, 0, &jerr);
    char path[PATH_MAX];
    int threads = 1;
    if (!args) return serve_set_error("init_args: invalid JSON: %s", jerr.text);
    int rc = read_weights_path(args, path, sizeof(path)) || read_blas_threads(args, &threads);
    json_decref(args);
    if (rc != 0) return -1;
    mlp_plugin *p = calloc(1, sizeof(*p));
    if (!p) return serve_set_error("out of memory");
    if (load_model(path, &p->model) != 0) {
        free(p);
        return -1;
    }
    p->ctx = ctx;
    openblas_set_num_threads(threads);
    mlp_dims d = mlp_model_dims(p->model);
    serve_log(ctx, SERVE_LOG_INFO, "%s: a %zu-%zu-%zu network, %d OpenBLAS thread(s)", path, d.in,
              d.hidden, d.out, threads);
    *state = p;
    return 0;
}

static void mlp_finalize(void *state)
{
    mlp_plugin *p = state;
    mlp_free(p->model);
    free(p);
}

/* ---- Reading requests ------------------------------------------------- */

/* A v2 infer request: its input tensor's rows, and the output tensors the
   answer goes into, allocated now so the network writes straight into them. */
static void take_tensor(const serve_request *req, serve_response *res, item *it)
{
    const serve_tensor *t = serve_request_input(req, "input");
    if (!t || t->shape[0] < 1) {
        serve_response_error(res, 400, "input: expected FP32 [n, %d] with n >= 1", MLP_IN);
        return;
    }
    int64_t shape[2] = {t->shape[0], MLP_OUT};
    it->probs = serve_response_output(res, "probabilities", SERVE_FP32, shape, 2);
    it->classes = serve_response_output(res, "class", SERVE_INT64, shape, 1);
    if (!it->probs || !it->classes) {
        serve_response_error(res, 500, "cannot allocate the output tensors");
        return;
    }
    it->kind = ITEM_TENSOR;
    it->n = (size_t)t->shape[0];
    it->x = t->data;
}

/* Read one instance, a JSON array of MLP_IN numbers called `name` in error
   messages, into row. 0, or -EINVAL with the reason in `why`. */
static int read_instance(const json_t *v, const char *name, float *row, char *why, size_t size)
{
    if (!json_is_array(v)) {
        snprintf(why, size, "%s: expected an array of %d numbers", name, MLP_IN);
        return -EINVAL;
    }
    if (json_array_size(v) != MLP_IN) {
        snprintf(why, size, "%s: expected %d numbers, got %zu", name, MLP_IN, json_array_size(v));
        return -EINVAL;
    }
    for (size_t j = 0; j < MLP_IN; j++) {
        const json_t *e = json_array_get(v, j);
        double d = json_number_value(e);
        if (!json_is_number(e) || fabs(d) > FLT_MAX) {
            snprintf(why, size, "%s[%zu]: expected a number (in float range)", name, j);
            return -EINVAL;
        }
        row[j] = (float)d;
    }
    return 0;
}

/*
 * Read `instances`: an array of instances, or one instance given as a flat
 * array of MLP_IN numbers. The samples go to it->owned, with room after
 * them for their probabilities; the item is set only when all are good.
 * 0, or -EINVAL / -ENOMEM with the reason in `why`.
 */
static int read_instances(const json_t *instances, item *it, char *why, size_t size)
{
    if (!json_is_array(instances) || json_array_size(instances) == 0) {
        snprintf(why, size, "expected {\"instances\": [[%d numbers], ...]}", MLP_IN);
        return -EINVAL;
    }
    int flat = json_is_number(json_array_get(instances, 0));
    size_t n = flat ? 1 : json_array_size(instances);
    float *x = it->owned = malloc(n * (MLP_IN + MLP_OUT) * sizeof(float));
    if (!x) {
        snprintf(why, size, "out of memory");
        return -ENOMEM;
    }
    int rc = flat ? read_instance(instances, "instances", x, why, size) : 0;
    for (size_t i = 0; !flat && rc == 0 && i < n; i++) {
        char name[40];
        snprintf(name, sizeof(name), "instances[%zu]", i);
        rc = read_instance(json_array_get(instances, i), name, x + i * MLP_IN, why, size);
    }
    if (rc == 0)
        *it = (item){.kind = ITEM_JSON, .n = n, .x = x, .probs = x + n * MLP_IN, .owned = x};
    return rc;
}

/* A plain JSON POST: {"instances": ...}; a bad one is refused with 400 and
   the reason. */
static void take_json(const serve_request *req, serve_response *res, item *it)
{
    json_error_t jerr;
    json_t *body = json_loadb(req->body, req->body_len, 0, &jerr);
    char why[160];
    if (!body) {
        serve_response_error(res, 400, "invalid JSON: %s (line %d, column %d)", jerr.text,
                             jerr.line, jerr.column);
        return;
    }
    int rc = read_instances(json_object_get(body, "instances"), it, why, sizeof(why));
    if (rc != 0) serve_response_error(res, rc == -ENOMEM ? 500 : 400, "%s", why);
    json_decref(body);
}

/* GET: what this model is and how to call it, as JSON. */
static void describe(const mlp_plugin *p, const serve_request *req, serve_response *res)
{
    mlp_dims d = mlp_model_dims(p->model);
    char v2[160], plain[160];
    snprintf(v2, sizeof(v2), "POST /v2/models/%s/infer", serve_context_app(p->ctx));
    snprintf(plain, sizeof(plain), "POST %s", req->path);
    json_t *about =
        json_pack("{s:s, s:[i,i,i], s:{s:s, s:s, s:s}, s:{s:s, s:s, s:s}}", "model",
                  "perceptron: a ReLU hidden layer, softmax output, FP32 on OpenBLAS", "layers",
                  (int)d.in, (int)d.hidden, (int)d.out, "v2", "call", v2, "inputs",
                  "input FP32 [n, 784]", "outputs", "probabilities FP32 [n, 10], class INT64 [n]",
                  "json", "call", plain, "body", "{\"instances\": [[784 numbers], ...]}", "answer",
                  "{\"predictions\": [{\"class\": k, \"probabilities\": [10 numbers]}, ...]}");
    char *text = about ? json_dumps(about, JSON_INDENT(2)) : NULL;
    if (text) {
        serve_response_set_header(res, "content-type", "application/json");
        serve_response_printf(res, "%s\n", text);
    } else {
        serve_response_error(res, 500, "out of memory");
    }
    free(text);
    json_decref(about);
}

/* Sort one request into an item: samples to classify, or answered now. */
static void take_request(const mlp_plugin *p, const serve_request *req, serve_response *res,
                         item *it)
{
    if (req->n_inputs > 0)
        take_tensor(req, res, it);
    else if (strcmp(req->route_path, "/") != 0)
        serve_response_error(res, 404, "%s: no such path; GET or POST the route itself",
                             req->route_path);
    else if (strcmp(req->method, "POST") == 0)
        take_json(req, res, it);
    else if (strcmp(req->method, "GET") == 0)
        describe(p, req, res);
    else
        serve_response_error(res, 405, "%s: use GET or POST", req->method);
}

/* ---- Classifying and answering ---------------------------------------- */

/*
 * Run the network once over the samples of every item. A lone item runs in
 * place, from its input into its output; several are stacked into one
 * matrix and their probabilities copied back. 0 or -ENOMEM.
 */
static int classify(const mlp_model *m, item *items, size_t n)
{
    size_t total = 0, busy = 0;
    item *lone = NULL;
    for (size_t i = 0; i < n; i++) {
        if (items[i].n == 0) continue;
        total += items[i].n;
        busy++;
        lone = &items[i];
    }
    if (busy <= 1) return lone ? mlp_forward(m, lone->x, lone->n, lone->probs) : 0;
    float *x = malloc(total * (MLP_IN + MLP_OUT) * sizeof(float));
    if (!x) return -ENOMEM;
    float *probs = x + total * MLP_IN;
    size_t row = 0;
    for (size_t i = 0; i < n; row += items[i].n, i++)
        if (items[i].n) memcpy(x + row * MLP_IN, items[i].x, items[i].n * MLP_IN * sizeof(float));
    int rc = mlp_forward(m, x, total, probs);
    row = 0;
    for (size_t i = 0; i < n; row += items[i].n, i++)
        if (items[i].n)
            memcpy(items[i].probs, probs + row * MLP_OUT, items[i].n * MLP_OUT * sizeof(float));
    free(x);
    return rc;
}

static size_t argmax(const float *p)
{
    size_t best = 0;
    for (size_t j = 1; j < MLP_OUT; j++)
        if (p[j] > p[best]) best = j;
    return best;
}

/* One prediction, {"class": k, "probabilities": [...]}, after a comma
   unless it is the first. Floats with 9 digits: they read back exactly. */
static int write_prediction(serve_response *res, const float *p, int first)
{
    char buf[512]; /* 10 numbers of at most 15 characters, and the rest */
    int len = snprintf(buf, sizeof(buf), "%s{\"class\": %zu, \"probabilities\": [",
                       first ? "" : ", ", argmax(p));
    for (size_t j = 0; j < MLP_OUT; j++)
        len += snprintf(buf + len, sizeof(buf) - (size_t)len, "%s%.9g", j ? ", " : "", p[j]);
    len += snprintf(buf + len, sizeof(buf) - (size_t)len, "]}");
    return serve_response_write(res, buf, (size_t)len);
}

static int write_predictions(serve_response *res, const float *probs, size_t n)
{
    serve_response_set_header(res, "content-type", "application/json");
    int rc = serve_response_printf(res, "{\"predictions\": [");
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = write_prediction(res, probs + i * MLP_OUT, i == 0);
    return rc == 0 ? serve_response_printf(res, "]}\n") : rc;
}

/*
 * Answer an item from its probabilities: the classes into the "class"
 * tensor, or the JSON predictions. Samples so large that the network
 * overflows float (or not finite at all) have no answer: 422.
 */
static void answer(const item *it, serve_response *res)
{
    for (size_t i = 0; i < it->n * MLP_OUT; i++)
        if (!isfinite(it->probs[i])) {
            serve_response_error(res, 422, "sample %zu: values too large, the network overflows",
                                 i / MLP_OUT);
            return;
        }
    if (it->kind == ITEM_TENSOR)
        for (size_t i = 0; i < it->n; i++)
            it->classes[i] = (int64_t)argmax(it->probs + i * MLP_OUT);
    else if (write_predictions(res, it->probs, it->n) != 0)
        serve_response_error(res, 500, "out of memory");
}

/* Read every request, classify all their samples at once, answer each. */
static int mlp_handle_batch(void *state, const serve_request *const *reqs,
                            serve_response *const *res, size_t n)
{
    const mlp_plugin *p = state;
    item *items = calloc(n, sizeof(*items));
    if (!items) return serve_set_error("out of memory");
    for (size_t i = 0; i < n; i++) take_request(p, reqs[i], res[i], &items[i]);
    int rc = classify(p->model, items, n);
    for (size_t i = 0; i < n; i++) {
        if (rc == 0 && items[i].n) answer(&items[i], res[i]);
        free(items[i].owned);
    }
    free(items);
    return rc == 0 ? 0 : serve_set_error("out of memory");
}

static int mlp_handle(void *state, const serve_request *req, serve_response *res)
{
    return mlp_handle_batch(state, &req, &res, 1);
}

static const serve_deployment deployments[] = {
    {
        .name = "MLP",
        .init = mlp_init,
        .handle = mlp_handle,
        .handle_batch = mlp_handle_batch,
        .finalize = mlp_finalize,
        .inputs = mlp_inputs,
        .n_inputs = sizeof(mlp_inputs) / sizeof(mlp_inputs[0]),
        .outputs = mlp_outputs,
        .n_outputs = sizeof(mlp_outputs) / sizeof(mlp_outputs[0]),
    },
};

SERVE_PLUGIN(deployments)
