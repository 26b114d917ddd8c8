/*
 * test_logging.c - logs as an operator reads them: one file per replica
 * in the logs folder, plugin lines tagged with the request they served,
 * the JSON encoding, live level changes, and the default session folder;
 * and logs as an attacker would like them: lines forged through a request
 * path, a logs folder or log file planted by another user.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "expect.h"
#include "harness.h"

TestSuite(logging, .fini = h_cleanup_all, .timeout = TEST_TIMEOUT_S);

#define LOGGER(extra)                                                                              \
    APP("log", "/log", "logger.so", "{\"name\": \"Logger\", \"num_replicas\": 2" extra "}")

/* A config with this top-level logging_config (the contents of the
   object) and these applications. */
static void write_config(h_serve *s, const char *logging, const char *apps)
{
    cr_assert_eq(
        h_serve_write_config(s,
                             "{\"http_options\": {\"port\": %d}, \"admin\": {\"port\": %d}, "
                             "\"logging_config\": {%s}, \"applications\": [%s]}",
                             s->port, s->admin_port, logging, apps),
        0);
}

/* Start with logs in <scratch>/logs and wait for the app. */
static h_serve *start(const char *logging_extra, const char *apps)
{
    h_serve *s = h_serve_new();
    cr_assert_not_null(s);
    char logging[H_PATH_MAX + 128];
    snprintf(logging, sizeof(logging), "\"logs_dir\": \"%s/logs\"%s", s->dir, logging_extra);
    write_config(s, logging, apps);
    cr_assert_eq(h_serve_start(s), 0);
    cr_assert_eq(h_serve_wait_ready(s, "/log", READY_TIMEOUT_S), 0, "%s", LOG(s));
    return s;
}

/* The files of folder `dir` whose name starts with `prefix`, up to `max`
   (names copied into out); returns how many. */
static int list_files(const char *dir, const char *prefix, char out[][256], int max)
{
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (strncmp(e->d_name, prefix, strlen(prefix)) == 0 && n < max)
            snprintf(out[n++], 256, "%s", e->d_name);
    closedir(d);
    return n;
}

/* The permission bits of `path` (not following a last symbolic link). */
static unsigned mode_of(const char *path)
{
    struct stat st;
    cr_assert_eq(lstat(path, &st), 0, "%s", path);
    return st.st_mode & 07777;
}

/* Wait (up to 3 s) until file `path` contains `needle`; returns its text
   (malloc'd) either way. */
static char *wait_for_text(const char *path, const char *needle)
{
    char *text = NULL;
    for (double end = h_now() + 3; h_now() < end; h_sleep_ms(20)) {
        free(text);
        text = h_read_file(path, NULL);
        if (text && strstr(text, needle)) break;
    }
    return text ? text : strdup("");
}

/* GET /log?level=L with our own request id; must answer 200. */
static void log_request(h_serve *s, const char *level, const char *id)
{
    char path[64], header[128];
    snprintf(path, sizeof(path), "/log/x?level=%s", level);
    snprintf(header, sizeof(header), "x-request-id: %s", id);
    h_response r;
    get_expect_h(s, path, (const char *[]){header, NULL}, 200, &r);
    h_response_free(&r);
}

Test(logging, each_replica_has_its_own_file_and_plugin_lines_carry_the_request_id)
{
    h_serve *s = start("", LOGGER(", \"init_args\": {\"tag\": \"t1\"}"));
    char dir[H_PATH_MAX], names[8][256];
    snprintf(dir, sizeof(dir), "%s/logs", s->dir);
    pid_t pids[H_MAX_REPLICAS];
    cr_assert_eq(h_serve_wait_replicas(s, 2, 5, pids), 0, "%s", LOG(s));
    for (double end = h_now() + 3; list_files(dir, "replica_log_Logger_", names, 8) < 2;)
        cr_assert_lt(h_now(), end, "expected two replica files in %s", dir);
    log_request(s, "info", "trace-42");

    /* The line is in exactly one replica's file, tagged with the request
       and that replica; the file name names the same replica. */
    int found = 0;
    for (int i = 0; i < 2; i++) {
        char path[H_PATH_MAX + 2400], id[16] = "";
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        sscanf(names[i], "replica_log_Logger_%8[0-9a-f].log", id);
        char *text = wait_for_text(path, "req=trace-42");
        cr_expect(strstr(text, "init: {\"tag\":\"t1\"}"), "init line missing in %s:\n%s", path,
                  text);
        char want[128];
        snprintf(want, sizeof(want), " INFO  replica log/Logger#%s req=trace-42: handled /log/x\n",
                 id);
        if (strstr(text, want)) found++;
        cr_expect(!strstr(text, "req=trace-42") || strstr(text, want), "%s:\n%s", want, text);
        free(text);
    }
    cr_assert_eq(found, 1, "the request's line must be in one replica file\n%s", LOG(s));
    /* Logs are private: the folder we made 0700, each file 0600. */
    cr_expect_eq(mode_of(dir), 0700, "%s: %o", dir, mode_of(dir));
    for (int i = 0; i < 2; i++) {
        char path[H_PATH_MAX + 2400];
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        cr_expect_eq(mode_of(path), 0600, "%s: %o", path, mode_of(path));
    }

    /* serve.log has the controller's lines and the access line, and the
       terminal (stderr) got the same lines. */
    char path[H_PATH_MAX + 32];
    snprintf(path, sizeof(path), "%s/serve.log", dir);
    char *text = wait_for_text(path, "req=trace-42: GET /log/x 200 ");
    cr_expect_eq(mode_of(path), 0600, "%s: %o", path, mode_of(path));
    cr_expect(strstr(text, " INFO  access log/Logger#"), "%s", text);
    cr_expect(strstr(text, "req=trace-42: GET /log/x 200 "), "%s", text);
    cr_expect(strstr(text, " INFO  controller log/Logger: replica "), "%s", text);
    char *terminal = h_serve_log(s);
    cr_expect(strstr(terminal, "req=trace-42: handled /log/x"), "%s", terminal);
    free(terminal);
    free(text);
}

/* Every line of `text` is a JSON object with time, level, component and
   message; returns how many lines there are. */
static int check_json_lines(const char *what, char *text)
{
    int n = 0;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        json_error_t err;
        json_t *obj = json_loads(line, 0, &err);
        cr_assert(json_is_object(obj), "%s: not a JSON line (%s): %s", what, err.text, line);
        cr_assert(json_is_string(json_object_get(obj, "time")) &&
                      json_is_string(json_object_get(obj, "level")) &&
                      json_is_string(json_object_get(obj, "component")) &&
                      json_is_string(json_object_get(obj, "message")),
                  "%s: %s", what, line);
        json_decref(obj);
        n++;
    }
    return n;
}

Test(logging, the_json_encoding_makes_every_line_an_object)
{
    h_serve *s = start(", \"encoding\": \"JSON\"", LOGGER(""));
    /* A path with a newline, an ESC and a byte that is not UTF-8 must not
       break a line: every line below is checked. */
    h_response r;
    get_expect_h(s, "/log/a%0a%1b%ff%22", (const char *[]){"x-request-id: json-0", NULL}, 200, &r);
    h_response_free(&r);
    log_request(s, "warn", "json-1");
    char path[H_PATH_MAX + 32];
    snprintf(path, sizeof(path), "%s/logs/serve.log", s->dir);
    char *text = wait_for_text(path, "\"request_id\":\"json-1\"");
    cr_expect(strstr(text, "\"message\":\"GET /log/a\\n\\u001b\\\\xff\\\" 200 "), "%s", text);
    cr_assert_gt(check_json_lines("serve.log", text), 3);
    free(text);

    /* The plugin's line: every field of the replica and the request. */
    text = h_serve_log(s);
    char *line = strstr(text, "\"message\":\"handled /log/x\"");
    cr_assert_not_null(line, "%s", text);
    while (line > text && line[-1] != '\n') line--;
    *strchr(line, '\n') = '\0';
    json_t *obj = json_loads(line, 0, NULL);
    cr_assert_not_null(obj, "%s", line);
    cr_expect_str_eq(jstr(obj, "level"), "WARN");
    cr_expect_str_eq(jstr(obj, "component"), "replica");
    cr_expect_str_eq(jstr(obj, "app"), "log");
    cr_expect_str_eq(jstr(obj, "deployment"), "Logger");
    cr_expect_eq(strlen(jstr(obj, "replica")), 8);
    cr_expect_str_eq(jstr(obj, "request_id"), "json-1");
    json_decref(obj);
    free(text);
}

Test(logging, a_deployment_level_changes_live_without_a_restart)
{
    h_serve *s = start("", LOGGER(""));
    pid_t before[H_MAX_REPLICAS], after[H_MAX_REPLICAS];
    cr_assert_eq(h_serve_wait_replicas(s, 2, 5, before), 0);
    log_request(s, "debug", "quiet-1");
    log_request(s, "debug", "quiet-2");

    char config[4096], body[65536];
    snprintf(config, sizeof(config),
             "{\"http_options\": {\"port\": %d}, \"admin\": {\"port\": %d}, "
             "\"logging_config\": {\"logs_dir\": \"%s/logs\"}, \"applications\": [" LOGGER(
                 ", \"logging_config\": {\"log_level\": \"DEBUG\"}") "]}",
             s->port, s->admin_port, s->dir);
    cr_assert_eq(admin_put(s, config, body), 200, "%s", body);
    /* The frame reaches both replicas at once; send until both are heard. */
    for (int i = 0; i < 20; i++) {
        char id[32];
        snprintf(id, sizeof(id), "loud-%d", i);
        log_request(s, "debug", id);
    }
    char *text = h_serve_log(s);
    int loud = 0;
    for (const char *p = text; (p = strstr(p, " DEBUG replica log/Logger#")); p++) loud++;
    cr_expect_null(strstr(text, "req=quiet-1: handled"), "a debug line passed at INFO:\n%s", text);
    cr_expect_gt(loud, 0, "no debug line after the change:\n%s", LOG(s));
    free(text);
    cr_assert_eq(h_serve_replicas(s, after, H_MAX_REPLICAS), 2);
    cr_expect(h_pid_in(after[0], before, 2) && h_pid_in(after[1], before, 2),
              "a level change must not restart replicas");
}

Test(logging, logs_dir_cannot_change_while_serving)
{
    h_serve *s = start("", LOGGER(""));
    char config[4096], body[65536];
    snprintf(
        config, sizeof(config),
        "{\"http_options\": {\"port\": %d}, \"admin\": {\"port\": %d}, "
        "\"logging_config\": {\"logs_dir\": \"%s/elsewhere\"}, \"applications\": [" LOGGER("") "]}",
        s->port, s->admin_port, s->dir);
    cr_assert_eq(admin_put(s, config, body), 400, "%s", body);
    cr_expect(strstr(body, "logging_config.logs_dir: cannot change while serving"), "%s", body);
}

Test(logging, without_logs_dir_each_run_gets_a_session_folder_and_a_latest_link)
{
    h_serve *s = h_serve_new();
    cr_assert_not_null(s);
    /* the harness gives the child TMPDIR=s->dir: no trace left in /tmp */
    write_config(s, "", LOGGER(""));
    cr_assert_eq(h_serve_start(s), 0);
    cr_assert_eq(h_serve_wait_ready(s, "/log", READY_TIMEOUT_S), 0, "%s", LOG(s));
    char latest[H_PATH_MAX + 64], target[256] = "";
    snprintf(latest, sizeof(latest), "%s/serve/session_latest", s->dir);
    ssize_t n = readlink(latest, target, sizeof(target) - 1);
    cr_assert_gt(n, 0, "no link %s", latest);
    target[n] = '\0';
    char want[64];
    snprintf(want, sizeof(want), "_%d", (int)s->pid);
    cr_expect(strncmp(target, "session_", 8) == 0 && strstr(target, want),
              "the session is named by date and pid: %s", target);
    char dir[H_PATH_MAX + 700], names[4][256];
    snprintf(dir, sizeof(dir), "%s/logs", latest);
    cr_expect_eq(list_files(dir, "serve.log", names, 4), 1, "no serve.log in %s", dir);
    for (double end = h_now() + 3; list_files(dir, "replica_log_Logger_", names, 4) < 2;)
        cr_assert_lt(h_now(), end, "expected two replica files in %s", dir);
    /* Base, session and logs folders 0700, every file 0600. */
    char path[H_PATH_MAX + 2400];
    snprintf(path, sizeof(path), "%s/serve", s->dir);
    cr_expect_eq(mode_of(path), 0700, "%s: %o", path, mode_of(path));
    snprintf(path, sizeof(path), "%s/serve/%s", s->dir, target);
    cr_expect_eq(mode_of(path), 0700, "%s: %o", path, mode_of(path));
    cr_expect_eq(mode_of(dir), 0700, "%s: %o", dir, mode_of(dir));
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        cr_expect_eq(mode_of(path), 0600, "%s: %o", path, mode_of(path));
    }
    snprintf(path, sizeof(path), "%s/serve.log", dir);
    cr_expect_eq(mode_of(path), 0600, "%s: %o", path, mode_of(path));
    char *text = h_serve_log(s);
    cr_expect(strstr(text, "logs in "), "the folder is announced:\n%s", text);
    free(text);
}

/* ---- Hostile input ------------------------------------------------------ */

/* The lines of `text` holding `needle`; the first one copied into `first`. */
static int count_lines(const char *text, const char *needle, char *first, size_t size)
{
    int n = 0;
    for (const char *line = text; *line;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        if (memmem(line, len, needle, strlen(needle))) {
            if (n++ == 0) snprintf(first, size, "%.*s", (int)len, line);
        }
        line += len + (end ? 1 : 0);
    }
    return n;
}

/* A line must not start with the forged time (a line of its own). */
#define FORGED "2026-01-01T00:00:00.000Z ERROR controller: forged"

Test(logging, a_newline_or_escape_in_a_path_cannot_forge_a_line)
{
    h_serve *s = start("", LOGGER(""));
    h_response r;
    get_expect_h(s, "/log/x%0a2026-01-01T00:00:00.000Z%20ERROR%20controller:%20forged%1b%5b31m%0d",
                 (const char *[]){"x-request-id: inj-1", NULL}, 200, &r);
    h_response_free(&r);

    /* serve.log: exactly one access line for the request, escaped. */
    char path[H_PATH_MAX + 32], line[2048] = "";
    snprintf(path, sizeof(path), "%s/logs/serve.log", s->dir);
    char *text = wait_for_text(path, "req=inj-1: GET ");
    cr_expect_eq(count_lines(text, "inj-1", line, sizeof(line)), 1, "%s", text);
    cr_expect(strstr(line, "req=inj-1: GET /log/x\\n" FORGED "\\x1b[31m\\r 200 "), "%s", line);
    cr_expect_eq(count_lines(text, "\n" FORGED, line, sizeof(line)), 0, "%s", text);
    cr_expect_null(strchr(text, '\x1b'), "a raw ESC in serve.log:\n%s", text);
    cr_expect_null(strchr(text, '\r'), "a raw CR in serve.log:\n%s", text);
    free(text);

    /* The plugin logged the path too (serve_log): the same escapes, on
       stderr and in the replica's file. */
    wait_log(s, "req=inj-1: handled", 1);
    text = h_serve_log(s);
    cr_expect(strstr(text, "req=inj-1: handled /log/x\\n" FORGED "\\x1b[31m\\r\n"), "%s", text);
    cr_expect_null(strstr(text, "\n" FORGED), "a forged line on stderr:\n%s", text);
    cr_expect_null(strchr(text, '\x1b'), "a raw ESC on stderr:\n%s", text);
    free(text);
}

/* ---- The logs folder against other local users --------------------------- */

/* Start without logs_dir (a session folder under TMPDIR = s->dir, whose
   `serve` base `prepare` set up), and expect serve to refuse the base
   with a warning naming `why`, then run and log to stderr only. */
static void expect_base_refused(h_serve *s, const char *why)
{
    write_config(s, "", LOGGER(""));
    cr_assert_eq(h_serve_start(s), 0);
    cr_assert_eq(h_serve_wait_ready(s, "/log", READY_TIMEOUT_S), 0, "%s", LOG(s));
    log_request(s, "info", "stderr-1");
    wait_log(s, "req=stderr-1: GET /log/x 200 ", 1);
    char *text = h_serve_log(s);
    char want[H_PATH_MAX + 128];
    snprintf(want, sizeof(want),
             "WARN  controller: not using %s/serve for logs (%s): logging to "
             "stderr only",
             s->dir, why);
    cr_expect(strstr(text, want), "expected '%s' in:\n%s", want, text);
    cr_expect_null(strstr(text, "logs in "), "%s", text);
    free(text);
}

/* The folder holds nothing but `except`. */
static void assert_empty(const char *dir, const char *except)
{
    DIR *d = opendir(dir);
    cr_assert_not_null(d, "%s", dir);
    for (struct dirent *e; (e = readdir(d));)
        cr_expect(strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0 ||
                      (except && strcmp(e->d_name, except) == 0),
                  "%s/%s was made", dir, e->d_name);
    closedir(d);
}

Test(logging, a_base_folder_that_is_a_symbolic_link_is_not_used)
{
    h_serve *s = h_serve_new();
    cr_assert_not_null(s);
    char base[H_PATH_MAX], other[H_PATH_MAX];
    snprintf(base, sizeof(base), "%s/serve", s->dir);
    snprintf(other, sizeof(other), "%s/theirs", s->dir);
    cr_assert_eq(mkdir(other, 0700), 0);
    cr_assert_eq(symlink(other, base), 0);
    expect_base_refused(s, "it is a symbolic link");
    assert_empty(other, NULL);
}

Test(logging, a_base_folder_others_can_write_is_not_used)
{
    h_serve *s = h_serve_new();
    cr_assert_not_null(s);
    char base[H_PATH_MAX], planted[H_PATH_MAX + 32];
    snprintf(base, sizeof(base), "%s/serve", s->dir);
    cr_assert_eq(mkdir(base, 0700), 0);
    cr_assert_eq(chmod(base, 01777), 0); /* like /tmp: sticky, writable by all */
    /* what another user would plant: session_latest -> a folder of theirs */
    snprintf(planted, sizeof(planted), "%s/session_latest", base);
    cr_assert_eq(symlink("/", planted), 0);
    expect_base_refused(s, "other users can write to it");
    assert_empty(base, "session_latest");
    char target[8] = "";
    cr_expect_eq(readlink(planted, target, sizeof(target) - 1), 1, "session_latest replaced");
}

Test(logging, a_base_folder_another_user_owns_is_not_used)
{
    if (geteuid() != 0) cr_skip_test("needs root to make a folder another user owns");
    h_serve *s = h_serve_new();
    cr_assert_not_null(s);
    char base[H_PATH_MAX];
    snprintf(base, sizeof(base), "%s/serve", s->dir);
    cr_assert_eq(mkdir(base, 0755), 0);
    cr_assert_eq(chown(base, 65534, 65534), 0);
    expect_base_refused(s, "another user owns it");
    assert_empty(base, NULL);
}

Test(logging, a_serve_log_planted_as_a_symbolic_link_is_refused_not_followed)
{
    h_serve *s = h_serve_new();
    cr_assert_not_null(s);
    char logs[H_PATH_MAX], victim[H_PATH_MAX], planted[H_PATH_MAX + 32];
    snprintf(logs, sizeof(logs), "%s/logs", s->dir);
    snprintf(victim, sizeof(victim), "%s/victim", s->dir);
    snprintf(planted, sizeof(planted), "%s/serve.log", logs);
    FILE *v = fopen(victim, "w");
    cr_assert_not_null(v);
    fputs("precious\n", v);
    fclose(v);
    cr_assert_eq(mkdir(logs, 0700), 0);
    cr_assert_eq(symlink(victim, planted), 0);
    char logging[H_PATH_MAX + 32];
    snprintf(logging, sizeof(logging), "\"logs_dir\": \"%s\"", logs);
    write_config(s, logging, LOGGER(""));
    cr_assert_eq(h_serve_start(s), 0);
    cr_expect_eq(h_serve_wait_exit(s, 10), 1, "serve must refuse to start:\n%s", LOG(s));
    char *text = h_serve_log(s), want[H_PATH_MAX + 128];
    snprintf(want, sizeof(want),
             "serve: cannot open %s: it is a symbolic link, which serve does "
             "not follow",
             planted);
    cr_expect(strstr(text, want), "expected '%s' in:\n%s", want, text);
    free(text);
    text = h_read_file(victim, NULL);
    cr_expect_str_eq(text ? text : "", "precious\n");
    free(text);
}
