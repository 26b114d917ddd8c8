/*
 * v2.c - the Open Inference Protocol v2 endpoints of the proxy, the pure
 * part: which endpoint a /v2 path names, and the metadata documents. The
 * proxy (router.c) answers the metadata and health endpoints itself and
 * sends infer requests to the model's replicas, which decode the tensors.
 */
#include "router/router.h"

#include <string.h>

/* The `n` bytes at `s` equal the C string `lit`. */
static int seg_is(const char *s, size_t n, const char *lit)
{
    return strlen(lit) == n && memcmp(s, lit, n) == 0;
}

/* Split `path` (no leading '/') into at most `max` '/'-separated segments;
   returns the count, or -1 for more segments or an empty one. */
static int split(const char *path, const char **seg, size_t *len, int max)
{
    int n = 0;
    while (*path) {
        const char *end = strchr(path, '/');
        size_t l = end ? (size_t)(end - path) : strlen(path);
        if (l == 0 || n == max) return -1;
        seg[n] = path;
        len[n++] = l;
        path += l + (end ? 1 : 0);
        if (end && !*path) return -1; /* a trailing '/' */
    }
    return n;
}

/* models/{name}[/versions/1][/ready|/infer] */
static v2_endpoint parse_model(const char **seg, size_t *len, int n, char *model, size_t size)
{
    if (n < 2 || len[1] >= size) return V2_NOT_FOUND;
    memcpy(model, seg[1], len[1]);
    model[len[1]] = '\0';
    int i = 2;
    if (n >= 4 && seg_is(seg[2], len[2], "versions")) {
        if (!seg_is(seg[3], len[3], "1")) return V2_NOT_FOUND; /* one version each */
        i = 4;
    }
    if (i == n) return V2_MODEL;
    if (i + 1 != n) return V2_NOT_FOUND;
    if (seg_is(seg[i], len[i], "ready")) return V2_MODEL_READY;
    if (seg_is(seg[i], len[i], "infer")) return V2_INFER;
    return V2_NOT_FOUND;
}

v2_endpoint v2_parse_path(const char *url, char *model, size_t size)
{
    const char *seg[7];
    size_t len[7];
    model[0] = '\0';
    if (strcmp(url, "/v2") == 0 || strcmp(url, "/v2/") == 0) return V2_SERVER;
    if (strncmp(url, "/v2/", 4) != 0) return V2_NOT_FOUND;
    int n = split(url + 4, seg, len, 7);
    if (n == 2 && seg_is(seg[0], len[0], "health")) {
        if (seg_is(seg[1], len[1], "live")) return V2_LIVE;
        if (seg_is(seg[1], len[1], "ready")) return V2_READY;
    }
    if (n >= 2 && seg_is(seg[0], len[0], "models")) return parse_model(seg, len, n, model, size);
    return V2_NOT_FOUND;
}

json_t *v2_server_metadata(void)
{
    return json_pack("{s:s, s:s, s:[s]}", "name", "serve", "version", SERVE_VERSION, "extensions",
                     "binary_tensor_data");
}

json_t *v2_model_metadata(const char *name, const json_t *specs)
{
    json_t *inputs = json_object_get(specs, "inputs");
    json_t *outputs = json_object_get(specs, "outputs");
    return json_pack("{s:s, s:[s], s:s, s:o, s:o}", "name", name, "versions", "1", "platform",
                     "serve_c", "inputs", inputs ? json_incref(inputs) : json_array(), "outputs",
                     outputs ? json_incref(outputs) : json_array());
}

int v2_is_model(const json_t *specs)
{
    return json_array_size(json_object_get(specs, "inputs")) > 0;
}
