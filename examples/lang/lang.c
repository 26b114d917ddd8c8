/*
 * lang - composition through handles, after Ray Serve's classic example: an
 * ingress reads the language a request asks for and passes the request to
 * the deployment that answers in it.
 *
 *   Classifier  the ingress. Every top-level init_args binding is a
 *               language, named by its key:
 *                 "init_args": {"spanish": {"deployment": "Spanish"},
 *                               "french": {"deployment": "French"}}
 *   Spanish, French
 *               greet in their language; init_args {"greeting": "..."}
 *               overrides the default.
 *
 *   GET  /lang?language=french&name=Ada             -> Bonjour, Ada !
 *   POST /lang  {"language": "spanish", "name": "Ada"} -> ¡Hola, Ada!
 *
 * The answer carries x-served-by: the deployment that made it. An unknown
 * language gets 400 with the languages known; a failing language
 * deployment's status and message come back as they are.
 */
#include <jansson.h>
#include <serve_plugin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LANG_MAX       16
#define LANG_NAME_MAX  64
#define LANG_TIMEOUT_S 10.0

typedef struct language {
    char name[LANG_NAME_MAX];
    serve_handle *handle;
} language;

typedef struct classifier {
    language langs[LANG_MAX];
    int n;
} classifier;

static int classifier_init(serve_context *ctx, const char *args_json, void **state)
{
    json_t *args = json_loads(args_json, 0, NULL);
    classifier *c = calloc(1, sizeof(*c));
    const char *key;
    json_t *v;
    if (!c || !args) {
        free(c);
        json_decref(args);
        return serve_set_error("out of memory");
    }
    json_object_foreach(args, key, v)
    {
        if (!json_is_object(v) || !json_object_get(v, "deployment")) continue;
        if (c->n == LANG_MAX || strlen(key) >= LANG_NAME_MAX) {
            serve_set_error("init_args.%s: at most %d languages, names under %d bytes", key,
                            LANG_MAX, LANG_NAME_MAX);
            goto fail;
        }
        language *l = &c->langs[c->n++];
        snprintf(l->name, sizeof(l->name), "%s", key);
        if (!(l->handle = serve_get_handle(ctx, key))) goto fail;
    }
    json_decref(args);
    if (c->n == 0) {
        free(c);
        return serve_set_error("init_args: bind at least one language, e.g. "
                               "{\"french\": {\"deployment\": \"French\"}}");
    }
    *state = c;
    return 0;
fail:
    json_decref(args);
    free(c);
    return -1;
}

/* The language and name a request asks for: query parameters, or a JSON
   body {"language", "name"}. */
static void read_request(const serve_request *req, char *lang, char *name, size_t size)
{
    if (serve_request_query(req, "language", lang, size) < 0) lang[0] = '\0';
    if (serve_request_query(req, "name", name, size) < 0) snprintf(name, size, "world");
    json_t *body = req->body_len ? json_loadb(req->body, req->body_len, 0, NULL) : NULL;
    const char *l = json_string_value(json_object_get(body, "language"));
    const char *n = json_string_value(json_object_get(body, "name"));
    if (l) snprintf(lang, size, "%s", l);
    if (n) snprintf(name, size, "%s", n);
    json_decref(body);
}

static int unknown_language(const classifier *c, const char *lang, serve_response *res)
{
    serve_response_set_status(res, 400);
    serve_response_set_header(res, "content-type", "application/json");
    json_t *known = json_array();
    for (int i = 0; i < c->n; i++) json_array_append_new(known, json_string(c->langs[i].name));
    json_t *obj = json_pack(
        "{s:s, s:o}", "error",
        lang[0] ? "unknown language" : "say which language: ?language=", "languages", known);
    char *text = json_dumps(obj, JSON_COMPACT);
    int rc = serve_response_printf(res, "%s\n", text ? text : "{}");
    free(text);
    json_decref(obj);
    return rc;
}

static int classifier_handle(void *state, const serve_request *req, serve_response *res)
{
    const classifier *c = state;
    char lang[LANG_NAME_MAX], name[LANG_NAME_MAX];
    read_request(req, lang, name, sizeof(lang));
    const language *l = NULL;
    for (int i = 0; i < c->n && !l; i++)
        if (strcmp(c->langs[i].name, lang) == 0) l = &c->langs[i];
    if (!l) return unknown_language(c, lang, res);

    char query[3 * LANG_NAME_MAX];
    json_t *q = json_pack("{s:s}", "name", name); /* the name goes on as a JSON body */
    char *body = q ? json_dumps(q, JSON_COMPACT) : NULL;
    json_decref(q);
    snprintf(query, sizeof(query), "lang=%s", l->name);
    serve_call_options call = {.query = query, .body = body, .body_len = body ? strlen(body) : 0};
    serve_future *f = serve_call(l->handle, req, &call, LANG_TIMEOUT_S);
    free(body);
    if (!f) return -1;
    size_t len;
    const void *answer = serve_future_body(f, &len);
    const char *type = serve_future_header(f, "content-type");
    serve_response_set_status(res, serve_future_status(f));
    serve_response_set_header(res, "content-type", type ? type : "text/plain; charset=utf-8");
    serve_response_set_header(res, "x-served-by", serve_handle_target(l->handle));
    int rc = serve_response_write(res, answer, len);
    serve_future_free(f);
    return rc;
}

static void classifier_finalize(void *state)
{
    free(state);
}

/* ---- The language deployments ------------------------------------------ */

typedef struct greeter {
    char greeting[LANG_NAME_MAX];
    const char *format; /* greeting, name */
} greeter;

static int greeter_init(const char *args_json, const char *greeting, const char *format,
                        void **state)
{
    greeter *g = calloc(1, sizeof(*g));
    json_t *args = json_loads(args_json, 0, NULL);
    if (!g) return serve_set_error("out of memory");
    const char *given = json_string_value(json_object_get(args, "greeting"));
    snprintf(g->greeting, sizeof(g->greeting), "%s", given ? given : greeting);
    json_decref(args);
    g->format = format;
    *state = g;
    return 0;
}

static int spanish_init(serve_context *ctx, const char *args_json, void **state)
{
    return greeter_init(args_json, "¡Hola", "%s, %s!\n", state);
}

static int french_init(serve_context *ctx, const char *args_json, void **state)
{
    return greeter_init(args_json, "Bonjour", "%s, %s !\n", state);
}

static int greeter_handle(void *state, const serve_request *req, serve_response *res)
{
    const greeter *g = state;
    json_t *body = json_loadb(req->body, req->body_len, 0, NULL);
    const char *name = json_string_value(json_object_get(body, "name"));
    serve_response_set_header(res, "content-type", "text/plain; charset=utf-8");
    int rc = serve_response_printf(res, g->format, g->greeting, name ? name : "world");
    json_decref(body);
    return rc;
}

static const serve_deployment deployments[] = {
    {.name = "Classifier",
     .init = classifier_init,
     .handle = classifier_handle,
     .finalize = classifier_finalize},
    {.name = "Spanish", .init = spanish_init, .handle = greeter_handle, .finalize = free},
    {.name = "French", .init = french_init, .handle = greeter_handle, .finalize = free},
};

SERVE_PLUGIN(deployments)
