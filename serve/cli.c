/*
 * cli.c - commands that talk to a running serve over its admin API, with
 * libcurl. The address is -a/--address, else $SERVE_ADDRESS, else
 * http://127.0.0.1:8265; a token in $SERVE_ADMIN_TOKEN is sent as a bearer
 * token.
 */
#include "serve/cli.h"

#include <curl/curl.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ipc/ipc.h"

#define CLI_DEFAULT_ADDRESS "http://127.0.0.1:8265"
#define CLI_TIMEOUT_S       10L
#define EXIT_RUNTIME        1
#define EXIT_USAGE          2

static const char usage_status[] =
    "usage: serve status [-a ADDRESS] [--json]\n"
    "\n"
    "Show the applications of a running serve, their deployments and replicas.\n"
    "\n"
    "options:\n"
    "  -a, --address ADDRESS   admin API address (default $SERVE_ADDRESS, else\n"
    "                          " CLI_DEFAULT_ADDRESS ")\n"
    "  --json                  print the status document as JSON\n"
    "  -h, --help              show this help\n"
    "\n"
    "environment:\n"
    "  SERVE_ADMIN_TOKEN       sent as a bearer token when set\n";

static const char usage_config[] =
    "usage: serve config [-a ADDRESS]\n"
    "\n"
    "Print the config each application of a running serve was deployed with, as\n"
    "one document in the schema `serve run` reads.\n"
    "\n"
    "options:\n"
    "  -a, --address ADDRESS   admin API address (default $SERVE_ADDRESS, else\n"
    "                          " CLI_DEFAULT_ADDRESS ")\n"
    "  -h, --help              show this help\n";

static size_t collect(char *data, size_t size, size_t n, void *arg)
{
    ipc_buf_put(arg, data, size * n);
    return size * n;
}

/* METHOD /api/serve/applications/ on the admin API, sending `send` (may be
   NULL) and collecting the answer into `body` (NUL-terminated). Returns the
   HTTP status, or -1 with a message printed when there is no answer. */
static long admin_call(const char *address, const char *method, const char *send, size_t send_len,
                       ipc_buf *body)
{
    char url[1024], auth[1024];
    int len = (int)strlen(address);
    while (len > 0 && address[len - 1] == '/') len--; /* -a http://host:8265/ */
    snprintf(url, sizeof(url), "%.*s%s", len, address, "/api/serve/applications/");
    CURL *e = curl_easy_init();
    if (!e) return -1;
    struct curl_slist *headers = NULL;
    const char *token = getenv("SERVE_ADMIN_TOKEN");
    if (token) {
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
        headers = curl_slist_append(headers, auth);
    }
    if (send) {
        headers = curl_slist_append(headers, "Content-Type: application/json");
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, send);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)send_len);
    }
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, body);
    curl_easy_setopt(e, CURLOPT_TIMEOUT, CLI_TIMEOUT_S);
    /* $http_proxy is for the web, not for a serve on this machine */
    curl_easy_setopt(e, CURLOPT_NOPROXY, "localhost,127.0.0.1,::1");
    CURLcode rc = curl_easy_perform(e);
    long status = -1;
    if (rc == CURLE_OK)
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
    else
        fprintf(stderr,
                "serve: no serve instance answers at %s: %s\n"
                "  is `serve run` running? its admin API is the config's admin.host:port "
                "(default 127.0.0.1:8265); point -a or SERVE_ADDRESS there\n",
                address, curl_easy_strerror(rc));
    curl_slist_free_all(headers);
    curl_easy_cleanup(e);
    ipc_buf_put(body, "", 1);
    return status;
}

/* Replicas that serve: RUNNING, or UPDATING (applying a user_config), as
   the dashboard counts them. */
static size_t count_serving(json_t *replicas)
{
    size_t i, n = 0;
    json_t *r;
    json_array_foreach(replicas, i, r)
    {
        const char *state = json_string_value(json_object_get(r, "state"));
        n += state && (strcmp(state, "RUNNING") == 0 || strcmp(state, "UPDATING") == 0);
    }
    return n;
}

static void print_replicas(json_t *replicas, double now)
{
    size_t i;
    json_t *r;
    json_array_foreach(replicas, i, r)
    {
        double up = now - json_real_value(json_object_get(r, "start_time_s"));
        printf("        - %s  %-10s  pid %-7lld  ongoing %-4lld  up %.0fs\n",
               json_string_value(json_object_get(r, "replica_id")),
               json_string_value(json_object_get(r, "state")),
               (long long)json_integer_value(json_object_get(r, "pid")),
               (long long)json_integer_value(json_object_get(r, "ongoing_requests")), up);
    }
}

/* The status document, readable: one block per application. */
static void print_status(json_t *doc)
{
    const char *name, *dname;
    json_t *app, *dep;
    json_t *http = json_object_get(doc, "http_options");
    printf("proxy: http://%s:%lld\n", json_string_value(json_object_get(http, "host")),
           (long long)json_integer_value(json_object_get(http, "port")));
    printf("applications:%s\n",
           json_object_size(json_object_get(doc, "applications")) ? "" : " {}");
    double now = (double)time(NULL);
    json_object_foreach(json_object_get(doc, "applications"), name, app)
    {
        printf("  %s:\n    status: %s\n    route_prefix: %s\n    deployments:\n", name,
               json_string_value(json_object_get(app, "status")),
               json_string_value(json_object_get(app, "route_prefix")));
        json_object_foreach(json_object_get(app, "deployments"), dname, dep)
        {
            json_t *replicas = json_object_get(dep, "replicas");
            size_t n = json_array_size(replicas);
            printf("      %s:\n        status: %s\n        replicas: %zu running of %lld (%zu "
                   "process%s)\n        requests: %lld ongoing, %lld queued\n",
                   dname, json_string_value(json_object_get(dep, "status")),
                   count_serving(replicas),
                   (long long)json_integer_value(json_object_get(dep, "target_num_replicas")), n,
                   n == 1 ? "" : "es",
                   (long long)json_integer_value(json_object_get(dep, "ongoing_requests")),
                   (long long)json_integer_value(json_object_get(dep, "queued_requests")));
            const char *why = json_string_value(json_object_get(dep, "message"));
            if (why && *why) printf("        message: %s\n", why);
            json_t *as = json_object_get(dep, "autoscaling");
            if (json_is_object(as))
                printf("        autoscaling: target %lld (%lld to %lld), load %.2f: %s\n",
                       (long long)json_integer_value(json_object_get(as, "target")),
                       (long long)json_integer_value(json_object_get(as, "min_replicas")),
                       (long long)json_integer_value(json_object_get(as, "max_replicas")),
                       json_real_value(json_object_get(as, "metric")),
                       json_string_value(json_object_get(as, "last_decision")));
            print_replicas(replicas, now);
        }
    }
}

/* Print the applications' deployed configs as one config document. */
static void print_config(json_t *doc)
{
    const char *name;
    json_t *app, *apps = json_array();
    json_object_foreach(json_object_get(doc, "applications"), name, app)
        json_array_append(apps, json_object_get(app, "deployed_app_config"));
    json_t *out =
        json_pack("{s:O, s:O, s:O*, s:o}", "http_options", json_object_get(doc, "http_options"),
                  "admin", json_object_get(doc, "admin"), "logging_config",
                  json_object_get(doc, "logging_config"), "applications", apps);
    char *text = json_dumps(out, JSON_INDENT(2));
    if (text) printf("%s\n", text);
    free(text);
    json_decref(out);
}

static void print_raw(json_t *doc)
{
    char *text = json_dumps(doc, JSON_COMPACT);
    if (text) printf("%s\n", text);
    free(text);
}

/* How a status-reading command prints the document. */
typedef void (*doc_printer)(json_t *doc);

/*
 * The options every admin command takes: -a/--address, -h/--help, and
 * --json when `json` is not NULL (then *json is set). `positional` is how
 * many arguments must follow. Returns -1 to go on (with *address set and
 * optind at the first positional argument), else the exit code to return.
 */
static int parse_admin_args(int argc, char **argv, const char *usage, int positional,
                            const char **address, int *json)
{
    static const struct option opts[] = {{"address", required_argument, NULL, 'a'},
                                         {"json", no_argument, NULL, 'j'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    int c;
    *address = getenv("SERVE_ADDRESS");
    while ((c = getopt_long(argc, argv, "a:h", opts, NULL)) != -1) {
        if (c == 'a') {
            *address = optarg;
        } else if (c == 'j' && json) {
            *json = 1;
        } else {
            fputs(usage, c == 'h' ? stdout : stderr);
            return c == 'h' ? 0 : EXIT_USAGE;
        }
    }
    if (argc - optind != positional) {
        fputs(usage, stderr);
        return EXIT_USAGE;
    }
    if (!*address) *address = CLI_DEFAULT_ADDRESS;
    return -1;
}

/* Parse -a/--address (and --json when `json_printer` is set), GET the
   status document and hand it to the chosen printer. */
static int run_status_command(int argc, char **argv, const char *usage, doc_printer printer,
                              doc_printer json_printer)
{
    const char *address;
    int json = 0;
    int rc = parse_admin_args(argc, argv, usage, 0, &address, json_printer ? &json : NULL);
    if (rc >= 0) return rc;
    if (json) printer = json_printer;
    ipc_buf body = {0};
    long status = admin_call(address, "GET", NULL, 0, &body);
    json_t *doc = status > 0 ? json_loads(body.data, 0, NULL) : NULL;
    rc = EXIT_RUNTIME;
    if (status == 200 && json_is_object(doc)) {
        printer(doc);
        rc = 0;
    } else if (status > 0) {
        const char *why = json_string_value(json_object_get(doc, "error"));
        fprintf(stderr, "serve: the admin API answered %ld: %s\n", status, why ? why : body.data);
    }
    json_decref(doc);
    ipc_buf_free(&body);
    return rc;
}

int cli_status(int argc, char **argv)
{
    return run_status_command(argc, argv, usage_status, print_status, print_raw);
}

int cli_config(int argc, char **argv)
{
    return run_status_command(argc, argv, usage_config, print_config, NULL);
}

static const char usage_deploy[] =
    "usage: serve deploy CONFIG [-a ADDRESS]\n"
    "\n"
    "Send CONFIG to a running serve, which applies it as the whole desired state\n"
    "(what can change live is listed in docs/config.md; anything else is refused\n"
    "with the field named). Plugins must lie in the server's plugin folders.\n"
    "\n"
    "options:\n"
    "  -a, --address ADDRESS   admin API address (default $SERVE_ADDRESS, else\n"
    "                          " CLI_DEFAULT_ADDRESS ")\n"
    "  -h, --help              show this help\n";

static int read_file(const char *path, ipc_buf *out)
{
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) ipc_buf_put(out, chunk, n);
    int bad = ferror(f) || out->oom;
    fclose(f);
    return bad ? -1 : 0;
}

int cli_deploy(int argc, char **argv)
{
    const char *address;
    int rc = parse_admin_args(argc, argv, usage_deploy, 1, &address, NULL);
    if (rc >= 0) return rc;
    ipc_buf config = {0}, body = {0};
    rc = EXIT_RUNTIME;
    if (read_file(argv[optind], &config) != 0) {
        fprintf(stderr, "serve: cannot read %s\n", argv[optind]);
        rc = EXIT_USAGE;
        goto done;
    }
    long status = admin_call(address, "PUT", config.data ? config.data : "", config.len, &body);
    json_t *doc = status > 0 ? json_loads(body.data, 0, NULL) : NULL;
    if (status == 200) {
        printf("serve: %s sent to %s and accepted\n", argv[optind], address);
        rc = 0;
    } else if (status > 0) {
        const char *why = json_string_value(json_object_get(doc, "error"));
        fprintf(stderr, "serve: %s refused (%ld): %s\n", argv[optind], status,
                why ? why : body.data);
    }
    json_decref(doc);
done:
    ipc_buf_free(&config);
    ipc_buf_free(&body);
    return rc;
}

static const char usage_shutdown[] =
    "usage: serve shutdown [-a ADDRESS]\n"
    "\n"
    "Delete every application of a running serve (their replicas finish their\n"
    "requests and stop). The proxy and the admin API keep running: deploy a\n"
    "new config, or stop serve run with Ctrl-C or SIGTERM.\n"
    "\n"
    "options:\n"
    "  -a, --address ADDRESS   admin API address (default $SERVE_ADDRESS, else\n"
    "                          " CLI_DEFAULT_ADDRESS ")\n"
    "  -h, --help              show this help\n";

int cli_shutdown(int argc, char **argv)
{
    const char *address;
    int rc = parse_admin_args(argc, argv, usage_shutdown, 0, &address, NULL);
    if (rc >= 0) return rc;
    ipc_buf body = {0};
    long status = admin_call(address, "DELETE", NULL, 0, &body);
    rc = status == 200 ? 0 : EXIT_RUNTIME;
    if (status == 200)
        printf("serve: every application of %s is shutting down\n", address);
    else if (status > 0)
        fprintf(stderr, "serve: the admin API answered %ld: %s\n", status, body.data);
    ipc_buf_free(&body);
    return rc;
}
