/*
 * hello - the smallest useful deployment: answers a greeting.
 *
 *   init_args:   {"greeting": "Hello"}     (optional; default "Hello")
 *   user_config: {"greeting": "Bonjour"}   (optional; applied live by reconfigure)
 *
 *   GET /hello            -> "Hello, world!"
 *   GET /hello?name=Ada   -> "Hello, Ada!"
 *
 * `reconfigure` never runs at the same time as `handle` (see serve_plugin.h),
 * so the greeting can be swapped without a lock.
 */
#include <jansson.h>
#include <serve_plugin.h>
#include <stdlib.h>
#include <string.h>

#define HELLO_MAX_GREETING 256
#define HELLO_MAX_NAME     128

typedef struct hello {
    char greeting[HELLO_MAX_GREETING];
} hello;

/* Read {"greeting": "..."} from JSON text into h; absent keeps the old one. */
static int read_greeting(hello *h, const char *json_text, const char *what)
{
    json_error_t jerr;
    json_t *obj = json_loads(json_text, JSON_DECODE_ANY, &jerr);
    if (!obj) return serve_set_error("%s: invalid JSON: %s", what, jerr.text);
    json_t *g = json_object_get(obj, "greeting");
    int rc = 0;
    if (g && (!json_is_string(g) || json_string_length(g) >= HELLO_MAX_GREETING))
        rc = serve_set_error("%s.greeting: must be a string under %d bytes", what,
                             HELLO_MAX_GREETING);
    else if (g)
        strcpy(h->greeting, json_string_value(g));
    json_decref(obj);
    return rc;
}

static int hello_init(serve_context *ctx, const char *args_json, void **state)
{
    hello *h = calloc(1, sizeof(*h));
    if (!h) return serve_set_error("out of memory");
    strcpy(h->greeting, "Hello");
    if (read_greeting(h, args_json, "init_args") != 0) {
        free(h);
        return -1;
    }
    serve_log(ctx, SERVE_LOG_INFO, "greeting is '%s'", h->greeting);
    *state = h;
    return 0;
}

static int hello_reconfigure(void *state, const char *user_config_json)
{
    hello *h = state;
    hello next = *h; /* on error the old greeting stays */
    if (read_greeting(&next, user_config_json, "user_config") != 0) return -1;
    *h = next;
    return 0;
}

static int hello_handle(void *state, const serve_request *req, serve_response *res)
{
    hello *h = state;
    char name[HELLO_MAX_NAME];
    if (serve_request_query(req, "name", name, sizeof(name)) < 0) strcpy(name, "world");
    serve_response_set_header(res, "content-type", "text/plain; charset=utf-8");
    return serve_response_printf(res, "%s, %s!\n", h->greeting, name);
}

static void hello_finalize(void *state)
{
    free(state);
}

static const serve_deployment deployments[] = {
    {
        .name = "Hello",
        .init = hello_init,
        .handle = hello_handle,
        .reconfigure = hello_reconfigure,
        .finalize = hello_finalize,
    },
};

SERVE_PLUGIN(deployments)
