/*
 * test_admin.c - the admin API (Ray's GET /api/serve/applications/ status
 * document), its token rule, and `serve status`, against the real binary.
 */
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
