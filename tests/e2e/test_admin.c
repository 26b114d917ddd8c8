/*
 * test_admin.c - the admin API (Ray's GET /api/serve/applications/ status
 * document), its token rule, and `serve status`, against the real binary;
 * then its defences (docs/security.md): Host and Origin checks, refusals
 * before the body, headers, the audit log.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "expect.h"
#include "harness.h"

#define ECHO2 APP("echo", "/echo", "echo.so", "{\"name\": \"Echo\", \"num_replicas\": 2}")

TestSuite(admin, .fini = h_cleanup_all, .timeout = TEST_TIMEOUT_S);

/* Run `serve ARGS...` with an extra environment entry (may be NULL);
   stdout and stderr go to files in the scratch folder, read into `out`
   (64 KiB). Returns the exit code. */
static int run_serve(const h_serve *s, const char *env_extra, const char *const *args, char *out)
{
    const char *argv[16] = {getenv("SERVE_BIN")};
    for (int i = 0; args[i] && i < 14; i++) argv[i + 1] = args[i];
    char *text = NULL;
    int code = h_run(s, argv, env_extra, "cli.out", &text);
    cr_assert_neq(code, -1, "cannot run %s", argv[0]);
    snprintf(out, 65536, "%s", text ? text : "");
    free(text);
    return code;
}

/* Poll the status until application `app` is RUNNING (every replica
   ready); the last document is left in `body`. */
static void wait_running(const h_serve *s, const char *app, char *body)
{
    for (int i = 0; i < 500; i++) {
        cr_assert_eq(admin_request(s, "GET", NULL, body), 200, "%s", body);
        json_t *doc = json_loads(body, 0, NULL);
        const char *status =
            jstr(json_object_get(json_object_get(doc, "applications"), app), "status");
        int running = strcmp(status, "RUNNING") == 0;
        json_decref(doc);
        if (running) return;
        h_sleep_ms(10);
    }
    cr_assert_fail("application %s never RUNNING: %s", app, body);
}

Test(admin, the_status_document_lists_apps_deployments_and_the_real_replicas)
{
    h_serve *s = serve_up("/echo", "", ECHO2);
    pid_t pids[H_MAX_REPLICAS];
    cr_assert_eq(h_serve_wait_replicas(s, 2, 5, pids), 0, "%s", LOG(s));
    static char body[65536];
    wait_running(s, "echo", body);
    json_t *doc = json_loads(body, 0, NULL);
    cr_assert(json_is_object(doc), "not JSON: %s", body);
    json_t *app = json_object_get(json_object_get(doc, "applications"), "echo");
    cr_expect_str_eq(jstr(app, "status"), "RUNNING");
    cr_expect_str_eq(jstr(app, "route_prefix"), "/echo");
    cr_expect_str_eq(jstr(json_object_get(app, "deployed_app_config"), "plugin"), "echo.so");
    json_t *dep = json_object_get(json_object_get(app, "deployments"), "Echo");
    cr_expect_str_eq(jstr(dep, "status"), "HEALTHY");
    cr_expect_eq(json_integer_value(json_object_get(dep, "target_num_replicas")), 2);
    json_t *reps = json_object_get(dep, "replicas");
    cr_assert_eq(json_array_size(reps), 2, "%s", body);
    for (size_t i = 0; i < 2; i++) {
        json_t *r = json_array_get(reps, i);
        pid_t pid = (pid_t)json_integer_value(json_object_get(r, "pid"));
        cr_expect(h_pid_in(pid, pids, 2), "pid %d is not a replica of this serve", (int)pid);
        cr_expect_str_eq(jstr(r, "state"), "RUNNING");
        cr_expect_eq(strlen(jstr(r, "replica_id")), 8);
    }
    cr_expect_str_neq(jstr(json_array_get(reps, 0), "replica_id"),
                      jstr(json_array_get(reps, 1), "replica_id"));
    cr_expect_eq(json_integer_value(json_object_get(json_object_get(doc, "http_options"), "port")),
                 s->port);
    json_decref(doc);
}

Test(admin, serve_status_prints_each_app_deployment_and_replica)
{
    h_serve *s = serve_up("/echo", "", ECHO2);
    pid_t pids[H_MAX_REPLICAS];
    cr_assert_eq(h_serve_wait_replicas(s, 2, 5, pids), 0);
    static char body[65536], out[65536];
    wait_running(s, "echo", body);
    char addr[64];
    snprintf(addr, sizeof(addr), "http://127.0.0.1:%d", s->admin_port);
    const char *args[] = {"status", "-a", addr, NULL};
    cr_assert_eq(run_serve(s, NULL, args, out), 0, "%s", out);
    cr_expect(strstr(out, "  echo:") && strstr(out, "      Echo:") && strstr(out, "RUNNING") &&
                  strstr(out, "replicas: 2 running of 2 (2 processes)"),
              "%s", out);
    for (int i = 0; i < 2; i++) {
        char pid[32];
        snprintf(pid, sizeof(pid), "pid %d", (int)pids[i]);
        cr_expect(strstr(out, pid), "missing %s in:\n%s", pid, out);
    }
}

Test(admin, serve_config_prints_the_deployed_config_in_the_run_schema)
{
    h_serve *s = serve_up("/echo", "", ECHO2);
    static char out[65536];
    char addr[64];
    snprintf(addr, sizeof(addr), "http://127.0.0.1:%d", s->admin_port);
    const char *args[] = {"config", "-a", addr, NULL};
    cr_assert_eq(run_serve(s, NULL, args, out), 0, "%s", out);
    json_t *doc = json_loads(out, 0, NULL);
    cr_assert(json_is_object(doc), "not JSON: %s", out);
    json_t *app = json_array_get(json_object_get(doc, "applications"), 0);
    cr_expect_str_eq(jstr(app, "name"), "echo");
    cr_expect_str_eq(jstr(app, "plugin"), "echo.so");
    json_t *dep = json_array_get(json_object_get(app, "deployments"), 0);
    cr_expect_eq(json_integer_value(json_object_get(dep, "num_replicas")), 2);
    json_decref(doc);
    /* What serve config prints deploys back unchanged (a round trip). */
    char path[H_PATH_MAX];
    cr_assert_eq(h_serve_write_file(s, "exported.json", out, strlen(out), path), 0);
    const char *deploy[] = {"deploy", path, "-a", addr, NULL};
    cr_expect_eq(run_serve(s, NULL, deploy, out), 0, "%s", out);
}

Test(admin, serve_config_keeps_the_top_level_logging_config_for_the_round_trip)
{
    h_serve *s = h_serve_new();
    cr_assert(s);
    cr_assert_eq(h_serve_write_config(
                     s,
                     "{\"http_options\": {\"port\": %d}, \"admin\": {\"port\": %d},"
                     " \"logging_config\": {\"log_level\": \"INFO\", \"logs_dir\": \"%s/logs\"},"
                     " \"applications\": [" ECHO2 "]}",
                     s->port, s->admin_port, s->dir),
                 0);
    cr_assert_eq(h_serve_start(s), 0);
    cr_assert_eq(h_serve_wait_ready(s, "/echo", READY_TIMEOUT_S), 0, "%s", LOG(s));
    static char out[65536];
    char addr[64], path[H_PATH_MAX], want[H_DIR_MAX + 16];
    snprintf(addr, sizeof(addr), "http://127.0.0.1:%d/", s->admin_port); /* a trailing slash */
    const char *args[] = {"config", "-a", addr, NULL};
    cr_assert_eq(run_serve(s, NULL, args, out), 0, "%s", out);
    json_t *doc = json_loads(out, 0, NULL), *logging = json_object_get(doc, "logging_config");
    snprintf(want, sizeof(want), "%s/logs", s->dir);
    cr_expect_str_eq(jstr(logging, "logs_dir"), want, "%s", out);
    cr_expect_str_eq(jstr(logging, "log_level"), "INFO", "%s", out);
    json_decref(doc);
    /* logs_dir cannot change while serving: without it the deploy failed */
    cr_assert_eq(h_serve_write_file(s, "exported.json", out, strlen(out), path), 0);
    const char *deploy[] = {"deploy", path, "-a", addr, NULL};
    cr_expect_eq(run_serve(s, NULL, deploy, out), 0, "%s", out);
}

Test(admin, serve_status_without_a_server_says_so_and_fails)
{
    h_serve *s = serve_up(NULL, "", ECHO2);
    static char out[65536];
    const char *args[] = {"status", "-a", "http://127.0.0.1:1", NULL};
    cr_expect_eq(run_serve(s, NULL, args, out), 1);
    cr_expect(strstr(out, "no serve instance answers at http://127.0.0.1:1"), "%s", out);
}

/* Start serve on the echo app with `admin_extra` (",\"key\": value...")
   added to the admin object; not waiting for anything. */
static h_serve *start_with_admin(const char *admin_extra)
{
    h_serve *s = h_serve_new();
    cr_assert_eq(
        h_serve_write_config(s,
                             "{\"http_options\": {\"port\": %d}, \"admin\": {\"port\": %d%s},"
                             " \"applications\": [%s]}",
                             s->port, s->admin_port, admin_extra, ECHO2),
        0);
    cr_assert_eq(h_serve_start(s), 0);
    return s;
}

Test(admin, a_configured_token_is_required_by_the_api_and_sent_by_the_cli)
{
    h_serve *s = start_with_admin(", \"auth_token\": \"s3cret\"");
    cr_assert_eq(h_serve_wait_ready(s, "/echo", READY_TIMEOUT_S), 0, "%s", LOG(s));
    static char body[65536], out[65536];
    cr_expect_eq(admin_request(s, "GET", NULL, body), 401);
    cr_expect(strstr(body, "bearer token"), "%s", body);
    cr_expect_eq(admin_request(s, "GET", "wrong", body), 401);
    cr_expect_eq(admin_request(s, "GET", "s3cret", body), 200, "%s", body);
    char addr[64];
    snprintf(addr, sizeof(addr), "http://127.0.0.1:%d", s->admin_port);
    const char *args[] = {"status", "-a", addr, NULL};
    cr_expect_eq(run_serve(s, NULL, args, out), 1, "%s", out);
    cr_expect(strstr(out, "401"), "%s", out);
    cr_expect_eq(run_serve(s, "SERVE_ADMIN_TOKEN=s3cret", args, out), 0, "%s", out);
}

/* The echo app config with n replicas and this plugin, as a JSON text. */
static void echo_config(const h_serve *s, int n, const char *plugin, char *out, size_t size)
{
    snprintf(out, size,
             "{\"http_options\": {\"port\": %d}, \"admin\": {\"port\": %d}, \"applications\":"
             " [{\"name\": \"echo\", \"route_prefix\": \"/echo\", \"plugin\": \"%s\","
             " \"deployments\": [{\"name\": \"Echo\", \"num_replicas\": %d}]}]}",
             s->port, s->admin_port, plugin, n);
}

Test(admin, a_put_config_scales_live_and_a_bad_one_is_refused_naming_the_field)
{
    h_serve *s = serve_up("/echo", "", ECHO2);
    pid_t pids[H_MAX_REPLICAS];
    static char body[65536];
    char config[2048];
    echo_config(s, 3, "echo.so", config, sizeof(config));
    cr_assert_eq(admin_put(s, config, body), 200, "%s", body);
    cr_expect_eq(h_serve_wait_replicas(s, 3, 5, pids), 0, "%s", LOG(s));
    echo_config(s, -1, "echo.so", config, sizeof(config));
    cr_expect_eq(admin_put(s, config, body), 400);
    cr_expect(strstr(body, "applications[0].deployments[0].num_replicas: must be >= 0"), "%s",
              body);
    /* a plugin outside the plugin folders: this config file itself */
    echo_config(s, 3, s->config_path, config, sizeof(config));
    cr_expect_eq(admin_put(s, config, body), 400);
    cr_expect(strstr(body, "is outside the plugin folders"), "%s", body);
}

Test(admin, delete_and_serve_shutdown_remove_every_application)
{
    h_serve *s = serve_up("/echo", "", ECHO2);
    pid_t pids[H_MAX_REPLICAS];
    static char body[65536], out[65536];
    cr_assert_eq(h_serve_wait_replicas(s, 2, 5, pids), 0);
    char addr[64];
    snprintf(addr, sizeof(addr), "http://127.0.0.1:%d", s->admin_port);
    const char *args[] = {"shutdown", "-a", addr, NULL};
    cr_assert_eq(run_serve(s, NULL, args, out), 0, "%s", out);
    cr_expect_eq(h_serve_wait_replicas(s, 0, 5, pids), 0, "%s", LOG(s));
    h_response r;
    get_expect(s, "/echo", 404, &r);
    h_response_free(&r);
    cr_assert_eq(admin_request(s, "GET", NULL, body), 200);
    cr_expect(strstr(body, "\"applications\":{}"), "%s", body);
    /* the instance still takes a new config */
    char config[2048];
    echo_config(s, 1, "echo.so", config, sizeof(config));
    cr_expect_eq(admin_put(s, config, body), 200, "%s", body);
    cr_expect_eq(h_serve_wait_ready(s, "/echo", READY_TIMEOUT_S), 0, "%s", LOG(s));
}

Test(admin, serve_deploy_sends_a_file_that_is_applied)
{
    h_serve *s = serve_up("/echo", "", ECHO2);
    static char out[65536];
    char config[2048], path[H_PATH_MAX], addr[64];
    echo_config(s, 1, "echo.so", config, sizeof(config));
    cr_assert_eq(h_serve_write_file(s, "next.json", config, strlen(config), path), 0);
    snprintf(addr, sizeof(addr), "http://127.0.0.1:%d", s->admin_port);
    const char *args[] = {"deploy", path, "-a", addr, NULL};
    cr_assert_eq(run_serve(s, NULL, args, out), 0, "%s", out);
    cr_expect(strstr(out, "accepted"), "%s", out);
    pid_t pids[H_MAX_REPLICAS];
    cr_expect_eq(h_serve_wait_replicas(s, 1, 5, pids), 0, "%s", LOG(s));
}

Test(admin, an_admin_api_off_loopback_without_a_token_is_refused)
{
    h_serve *s = start_with_admin(", \"host\": \"0.0.0.0\"");
    cr_assert_eq(h_serve_wait_exit(s, 5), 2, "%s", LOG(s));
    cr_expect(strstr(LOG(s), "admin.host: '0.0.0.0' is not a loopback address"), "%s", LOG(s));
}

/* ---- Defences (docs/security.md) ---------------------------------------- */

#define TOKEN      "s3cret-token-0123456789" /* long enough not to be warned about */
#define APPS       "/api/serve/applications/"
#define RAW_WAIT_S 3.0 /* a raw exchange gives up after this */

/* One answer read off a raw socket, as sent. */
typedef struct raw_answer {
    long status;   /* 0 without an answer */
    double took_s; /* from sending to the end of the answer (or giving up) */
    char text[65536];
} raw_answer;

/* A connected socket to the admin port. */
static int admin_socket(const h_serve *s)
{
    int fd = h_connect(s->admin_port);
    cr_assert_geq(fd, 0, "connect: %m");
    return fd;
}

/* Read what the server sends on `fd` until it closes or `deadline`
   (h_now) passes; `start` is when the request went out. */
static void raw_read(int fd, double start, double deadline, raw_answer *out)
{
    int closed;
    h_read_until_close(fd, deadline, out->text, sizeof(out->text), &closed);
    out->took_s = h_now() - start;
    out->status = 0;
    sscanf(out->text, "HTTP/1.%*d %ld", &out->status);
}

/* Send `request` byte for byte (any headers, a Content-Length with no
   body behind it) and read the answer until the server closes. */
static void raw_send(const h_serve *s, const char *request, raw_answer *out)
{
    int fd = admin_socket(s);
    double start = h_now();
    size_t len = strlen(request);
    cr_assert_eq(send(fd, request, len, MSG_NOSIGNAL), (ssize_t)len, "send: %m");
    raw_read(fd, start, start + RAW_WAIT_S, out);
    close(fd);
}

/* METHOD path HTTP/1.1 with `headers` ("Name: value\r\n" lines, Host
   among them) and no body; the server is asked to close after. */
static long raw_request(const h_serve *s, const char *method, const char *path, const char *headers,
                        raw_answer *out)
{
    char request[2048];
    snprintf(request, sizeof(request), "%s %s HTTP/1.1\r\n%sConnection: close\r\n\r\n", method,
             path, headers);
    raw_send(s, request, out);
    return out->status;
}

/* The value of header `name` (any case) in a raw answer, "" when absent. */
static const char *raw_header(const raw_answer *r, const char *name, char *buf, size_t size)
{
    size_t n = strlen(name);
    buf[0] = '\0';
    for (const char *line = strstr(r->text, "\r\n"); line && line[2] != '\r';
         line = strstr(line + 2, "\r\n")) {
        const char *h = line + 2;
        if (strncasecmp(h, name, n) != 0 || h[n] != ':') continue;
        for (h += n + 1; *h == ' '; h++) continue;
        size_t len = strcspn(h, "\r");
        snprintf(buf, size, "%.*s", (int)(len < size ? len : size - 1), h);
        break;
    }
    return buf;
}

/* How many times `text` is in serve's log now. */
static int log_count(const h_serve *s, const char *text)
{
    char *log = h_serve_log(s);
    int n = 0;
    for (const char *p = log; p && (p = strstr(p, text)); p++) n++;
    free(log);
    return n;
}

Test(admin, without_a_token_a_host_header_that_is_not_loopback_is_refused)
{
    h_serve *s = serve_up("/echo", "", ECHO2);
    static raw_answer r;
    char host[128];
    /* A page on a rebinding name sends that name: refused, pages too. */
    const char *foreign[] = {"Host: evil.example\r\n", "Host: evil.example:8265\r\n",
                             "Host: 127.evil.example\r\n", "Host: localhost.evil.example\r\n"};
    for (size_t i = 0; i < sizeof(foreign) / sizeof(foreign[0]); i++) {
        cr_expect_eq(raw_request(s, "GET", APPS, foreign[i], &r), 403, "%s-> %s", foreign[i],
                     r.text);
        cr_expect(strstr(r.text, "\"error\":\"Host names neither admin.host nor a loopback"), "%s",
                  r.text);
        cr_expect_eq(raw_request(s, "GET", "/", foreign[i], &r), 403, "%s", r.text);
    }
    /* Loopback names and literals, with or without the port, any case. */
    const char *fmt[] = {"Host: localhost:%d\r\n", "Host: 127.0.0.1:%d\r\n", "Host: [::1]:%d\r\n",
                         "Host: LocalHost:%d\r\n", "Host: 127.1.2.3:%d\r\n", "Host: 127.0.0.1\r\n"};
    for (size_t i = 0; i < sizeof(fmt) / sizeof(fmt[0]); i++) {
        snprintf(host, sizeof(host), fmt[i], s->admin_port);
        cr_expect_eq(raw_request(s, "GET", APPS, host, &r), 200, "%s-> %s", host, r.text);
    }
    /* HTTP/1.0 tools may send no Host at all. */
    raw_send(s, "GET " APPS " HTTP/1.0\r\n\r\n", &r);
    cr_expect_eq(r.status, 200, "%s", r.text);
}

Test(admin, without_a_token_a_write_from_another_origin_is_refused)
{
    h_serve *s = serve_up("/echo", "", ECHO2);
    static raw_answer r;
    static char body[65536];
    char headers[256];
    snprintf(headers, sizeof(headers), "Host: 127.0.0.1:%d\r\nOrigin: http://evil.example\r\n",
             s->admin_port);
    cr_expect_eq(raw_request(s, "DELETE", APPS, headers, &r), 403, "%s", r.text);
    cr_expect(strstr(r.text, "Origin does not match Host"), "%s", r.text);
    cr_assert_eq(admin_request(s, "GET", NULL, body), 200);
    cr_expect(strstr(body, "\"echo\""), "the refused DELETE removed the apps: %s", body);
    /* A read from another origin is served (the browser keeps the answer
       from the page: no CORS headers); a write from the page's own origin
       too. */
    cr_expect_eq(raw_request(s, "GET", APPS, headers, &r), 200, "%s", r.text);
    snprintf(headers, sizeof(headers), "Host: 127.0.0.1:%d\r\nOrigin: http://127.0.0.1:%d\r\n",
             s->admin_port, s->admin_port);
    cr_expect_eq(raw_request(s, "DELETE", APPS, headers, &r), 200, "%s", r.text);
}

Test(admin, with_a_token_any_host_gets_an_answer_for_the_right_bearer)
{
    h_serve *s = start_with_admin(", \"auth_token\": \"" TOKEN "\"");
    cr_assert_eq(h_serve_wait_ready(s, "/echo", READY_TIMEOUT_S), 0, "%s", LOG(s));
    static raw_answer r;
    cr_expect_eq(raw_request(s, "GET", APPS,
                             "Host: serve.example.com\r\nAuthorization: Bearer " TOKEN "\r\n", &r),
                 200, "%s", r.text);
    cr_expect_eq(raw_request(s, "GET", APPS, "Host: serve.example.com\r\n", &r), 401, "%s", r.text);
    cr_expect_eq(log_count(s, "admin.auth_token is only"), 0, "%s", LOG(s));
}

Test(admin, the_bearer_scheme_is_case_insensitive_and_a_short_token_is_warned_about)
{
    h_serve *s = start_with_admin(", \"auth_token\": \"s3cret\"");
    cr_assert_eq(h_serve_wait_ready(s, "/echo", READY_TIMEOUT_S), 0, "%s", LOG(s));
    static raw_answer r;
    const char *good[] = {"bearer s3cret", "BEARER s3cret", "Bearer   s3cret"};
    const char *bad[] = {"Bearer s3cre", "Bearer s3cretX", "Bearer ", "Basic s3cret", "s3cret"};
    char headers[256];
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        snprintf(headers, sizeof(headers), "Host: localhost\r\nAuthorization: %s\r\n", good[i]);
        cr_expect_eq(raw_request(s, "GET", APPS, headers, &r), 200, "%s -> %s", good[i], r.text);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(headers, sizeof(headers), "Host: localhost\r\nAuthorization: %s\r\n", bad[i]);
        cr_expect_eq(raw_request(s, "GET", APPS, headers, &r), 401, "%s -> %s", bad[i], r.text);
    }
    cr_expect(strstr(LOG(s), "WARN  admin: admin.auth_token is only 6 bytes"), "%s", LOG(s));
}

Test(admin, a_name_that_resolves_off_loopback_is_refused_once_bound)
{
    /* "0" is not an address literal to inet_pton, so only the address it
       binds (0.0.0.0: getaddrinfo reads it as a number) can tell. */
    h_serve *s = start_with_admin(", \"host\": \"0\"");
    cr_assert_eq(h_serve_wait_exit(s, 5), 1, "%s", LOG(s));
    cr_expect(strstr(LOG(s), "serve: admin.host: '0' resolves to 0.0.0.0, not a loopback address; "
                             "set admin.auth_token (or SERVE_ADMIN_TOKEN)"),
              "%s", LOG(s));
}

Test(admin, a_put_without_the_token_or_too_large_is_answered_before_its_body)
{
    h_serve *s = start_with_admin(", \"auth_token\": \"" TOKEN "\"");
    cr_assert_eq(h_serve_wait_ready(s, "/echo", READY_TIMEOUT_S), 0, "%s", LOG(s));
    static raw_answer r;
    /* Headers that announce a 1 GB body that never comes. */
    raw_send(s, "PUT " APPS " HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000000000\r\n\r\n",
             &r);
    cr_expect_eq(r.status, 401, "%s", r.text);
    cr_expect_lt(r.took_s, 1.0);
    raw_send(s,
             "PUT " APPS " HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer " TOKEN
             "\r\nContent-Length: 1000000000\r\n\r\n",
             &r);
    cr_expect_eq(r.status, 413, "%s", r.text);
    cr_expect(strstr(r.text, "config over 1 MiB"), "%s", r.text);
    cr_expect_lt(r.took_s, 1.0);
}

Test(admin, a_chunked_body_past_the_limit_is_cut_off)
{
    h_serve *s = start_with_admin(", \"auth_token\": \"" TOKEN "\"");
    cr_assert_eq(h_serve_wait_ready(s, "/echo", READY_TIMEOUT_S), 0, "%s", LOG(s));
    int fd = admin_socket(s);
    const char *head = "PUT " APPS " HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer " TOKEN
                       "\r\nTransfer-Encoding: chunked\r\n\r\n";
    cr_assert_eq(send(fd, head, strlen(head), MSG_NOSIGNAL), (ssize_t)strlen(head));
    /* 64 KiB chunks: the server must hang up long before 64 MiB went out
       (socket buffers hold a few MiB at most). */
    static char chunk[65536 + 16];
    int n = snprintf(chunk, sizeof(chunk), "10000\r\n");
    memset(chunk + n, 'x', 65536);
    memcpy(chunk + n + 65536, "\r\n", 2);
    size_t size = (size_t)n + 65536 + 2, sent = 0;
    while (sent < (64u << 20)) {
        ssize_t w = send(fd, chunk, size, MSG_NOSIGNAL);
        if (w <= 0) break;
        sent += (size_t)w;
    }
    close(fd);
    cr_expect_lt(sent, 64u << 20, "the server read %zu bytes of an oversized body", sent);
    wait_log(s, "body over 1 MiB: connection closed unanswered", 1);
}

Test(admin, answers_are_not_sniffed_nor_cached_and_the_page_cannot_be_framed)
{
    h_serve *s = serve_up("/echo", "", ECHO2);
    static raw_answer r;
    char value[512];
    const char *paths[] = {APPS, "/metrics", "/", "/nowhere"};
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        raw_request(s, "GET", paths[i], "Host: localhost\r\n", &r);
        cr_expect_str_eq(raw_header(&r, "x-content-type-options", value, sizeof(value)), "nosniff",
                         "%s: %s", paths[i], r.text);
        cr_expect_str_eq(raw_header(&r, "cache-control", value, sizeof(value)), "no-store", "%s",
                         paths[i]);
    }
    raw_request(s, "GET", "/", "Host: localhost\r\n", &r);
    cr_assert_eq(r.status, 200);
    raw_header(&r, "content-security-policy", value, sizeof(value));
    cr_expect(strstr(value, "frame-ancestors 'none'"), "CSP: '%s'", value);
    cr_expect(strstr(value, "connect-src 'self'"), "CSP: '%s'", value);
    cr_expect(strstr(value, "default-src 'none'"), "CSP: '%s'", value);
    /* refusals too */
    raw_request(s, "GET", APPS, "Host: evil.example\r\n", &r);
    cr_expect_str_eq(raw_header(&r, "x-content-type-options", value, sizeof(value)), "nosniff");
}

Test(admin, changes_are_logged_with_the_client_address_and_the_outcome)
{
    h_serve *s = serve_up("/echo", "", ECHO2);
    static char body[65536];
    char config[2048];
    echo_config(s, 1, "echo.so", config, sizeof(config));
    cr_assert_eq(admin_put(s, config, body), 200, "%s", body);
    wait_log(s, "INFO  admin: PUT " APPS " from 127.0.0.1:", 1);
    cr_expect(strstr(LOG(s), APPS " from 127.0.0.1:") && strstr(LOG(s), ": 200\n"), "%s", LOG(s));
    echo_config(s, -1, "echo.so", config, sizeof(config));
    cr_assert_eq(admin_put(s, config, body), 400);
    wait_log(s, ": 400 applications[0].deployments[0].num_replicas: must be >= 0", 1);
    cr_assert_eq(admin_request(s, "DELETE", NULL, body), 200);
    wait_log(s, "INFO  admin: DELETE " APPS " from 127.0.0.1:", 1);
    /* reads are not audited */
    cr_assert_eq(admin_request(s, "GET", NULL, body), 200);
    cr_expect_eq(log_count(s, "admin: GET"), 0, "%s", LOG(s));
}

Test(admin, refused_tokens_are_logged_at_most_once_a_second)
{
    h_serve *s = start_with_admin(", \"auth_token\": \"" TOKEN "\"");
    cr_assert_eq(h_serve_wait_ready(s, "/echo", READY_TIMEOUT_S), 0, "%s", LOG(s));
    static char body[65536];
    for (int i = 0; i < 5; i++) cr_assert_eq(admin_request(s, "GET", "wrong", body), 401);
    wait_log(s, "WARN  admin: refused GET " APPS " from 127.0.0.1:", 1);
    cr_expect_eq(log_count(s, "admin: refused"), 1, "a burst makes one line:\n%s", LOG(s));
    h_sleep_ms(1100);
    cr_assert_eq(admin_request(s, "PUT", "wrong", body), 401);
    wait_log(s, "(4 more refused since the last warning)", 1);
    cr_expect_eq(log_count(s, "admin: refused"), 2, "%s", LOG(s));
}

/* Whether /proc/PID/environ holds `entry` ("NAME=value"). */
static int environ_has(pid_t pid, const char *entry)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/environ", (int)pid);
    size_t len = 0;
    char *env = h_read_file(path, &len);
    int found = 0;
    for (size_t i = 0; env && i < len; i += strlen(env + i) + 1)
        found |= strcmp(env + i, entry) == 0;
    free(env);
    return found;
}

Test(admin, replicas_do_not_inherit_the_token_and_a_config_sent_back_keeps_it)
{
    setenv("SERVE_ADMIN_TOKEN", "env-token-0123456789", 1); /* this test's process only */
    h_serve *s = start_with_admin("");
    pid_t reps[H_MAX_REPLICAS];
    cr_assert_eq(h_serve_wait_replicas(s, 2, READY_TIMEOUT_S, reps), 0, "%s", LOG(s));
    cr_expect(environ_has(s->pid, "SERVE_ADMIN_TOKEN=env-token-0123456789"));
    for (int i = 0; i < 2; i++)
        cr_expect(!environ_has(reps[i], "SERVE_ADMIN_TOKEN=env-token-0123456789"),
                  "replica %d holds the admin token", (int)reps[i]);
    /* `serve config` never shows the token; deploying its output back
       keeps the token instead of being refused as a change of it. */
    static char out[65536];
    char addr[64], path[H_PATH_MAX];
    snprintf(addr, sizeof(addr), "http://127.0.0.1:%d", s->admin_port);
    const char *get[] = {"config", "-a", addr, NULL};
    const char *env = "SERVE_ADMIN_TOKEN=env-token-0123456789";
    cr_assert_eq(run_serve(s, env, get, out), 0, "%s", out);
    cr_expect_null(strstr(out, "env-token"), "serve config shows the token: %s", out);
    cr_assert_eq(h_serve_write_file(s, "back.json", out, strlen(out), path), 0);
    const char *put[] = {"deploy", path, "-a", addr, NULL};
    cr_expect_eq(run_serve(s, env, put, out), 0, "%s", out);
    static char body[65536];
    cr_expect_eq(admin_request(s, "GET", NULL, body), 401, "the token still holds");
}
