/*
 * test_chaos.c - chaos under load in the suite: bench/chaos.sh in its short
 * mode (about 10 s of paced load on two deployments while it kill -9's a
 * replica every 1.5 s and stalls one with SIGSTOP for 2 s), then its JSON
 * result (docs/reliability.md).
 *
 * The script checks the invariants itself and exits 1 when one fails; the
 * test asserts on the exit status and on each named check, and again on the
 * figures that matter most (no hang, no incomplete answer, recovery within
 * 2 s), so that a failure names the invariant and quotes the report.
 *
 * The harness gives the run a scratch folder (its TMPDIR: serve's logs and
 * the script's temp dir land there) and two free ports. The script runs in
 * its own process group, killed whole when it ends (whatever it left behind)
 * or overstays RUN_LIMIT_S.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

#define RUN_LIMIT_S       90.0 /* the short mode takes ~15 s */
#define RECOVERY_LIMIT_MS 2000 /* issue 9: back to target within 2 s */
#define MIN_KILLS         3

TestSuite(chaos, .fini = h_cleanup_all, .timeout = 150);

extern char **environ;

/* Run `script` with bash in its own process group, stdout and stderr to
   `out_path`; kill the group after `limit_s`. Returns the exit code, or -1. */
static int run_script(const char *script, const char *out_path, double limit_s)
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    posix_spawnattr_init(&attr);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
    posix_spawnattr_setpgroup(&attr, 0);
    char *argv[] = {"/bin/bash", (char *)script, NULL};
    pid_t pid;
    int rc = posix_spawn(&pid, argv[0], &fa, &attr, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    if (rc != 0) return -1;
    double deadline = h_now() + limit_s;
    int status;
    for (;;) {
        pid_t done = waitpid(pid, &status, WNOHANG);
        if (done == pid) break;
        if (done < 0 && errno != EINTR) return -1;
        if (h_now() > deadline) {
            kill(-pid, SIGKILL);
            waitpid(pid, &status, 0);
            return -1;
        }
        h_sleep_ms(100);
    }
    kill(-pid, SIGKILL); /* anything the script left behind */
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static long long jint(json_t *obj, const char *key)
{
    return json_integer_value(json_object_get(obj, key));
}

Test(chaos, killed_and_stalled_replicas_cost_only_documented_answers)
{
    const char *src = getenv("SERVE_SOURCE_DIR"), *build = getenv("SERVE_BUILD_DIR");
    cr_assert(src && build, "SERVE_SOURCE_DIR and SERVE_BUILD_DIR must be set (meson test)");
    h_serve *s = h_serve_new(); /* a scratch folder and two free ports; no serve of its own */
    cr_assert_not_null(s);

    char script[H_PATH_MAX], out_path[H_PATH_MAX], json_path[H_PATH_MAX], port[16], admin[16];
    snprintf(script, sizeof(script), "%s/bench/chaos.sh", src);
    snprintf(out_path, sizeof(out_path), "%s/chaos.out", s->dir);
    snprintf(json_path, sizeof(json_path), "%s/chaos.json", s->dir);
    snprintf(port, sizeof(port), "%d", s->port);
    snprintf(admin, sizeof(admin), "%d", s->admin_port);
    setenv("SHORT", "1", 1);
    setenv("NO_BUILD", "1", 1); /* meson test built it: serve, bench/noop.so, bench/loadgen */
    setenv("BUILD", build, 1);
    setenv("TMPDIR", s->dir, 1);
    setenv("CHAOS_JSON", json_path, 1);
    setenv("CHAOS_PORT", port, 1);
    setenv("CHAOS_ADMIN_PORT", admin, 1);

    int code = run_script(script, out_path, RUN_LIMIT_S);
    char *out = h_read_file(out_path, NULL);
    cr_assert_eq(code, 0, "bench/chaos.sh exited %d:\n%s", code, out ? out : "(no output)");

    json_error_t err;
    json_t *res = json_load_file(json_path, 0, &err);
    cr_assert_not_null(res, "%s: %s\n%s", json_path, err.text, out);
    size_t i;
    json_t *check;
    json_array_foreach(json_object_get(res, "checks"), i, check)
    {
        cr_expect(json_is_true(json_object_get(check, "ok")), "%s: %s",
                  json_string_value(json_object_get(check, "name")),
                  json_string_value(json_object_get(check, "detail")));
    }
    cr_expect_eq(json_array_size(json_object_get(res, "checks")), 9, "the script's checks");
    cr_expect_eq(jint(res, "hangs"), 0, "requests that hung:\n%s", out);
    cr_expect_eq(jint(res, "errors_total"), 0, "incomplete answers or transport errors:\n%s", out);
    cr_expect_gt(jint(res, "sent"), 0);
    cr_expect_eq(jint(res, "sent"), jint(res, "completed"), "every request answered:\n%s", out);
    json_t *kills = json_object_get(res, "kills"), *rec = json_object_get(res, "recovery_ms");
    cr_expect_geq(json_array_size(kills), MIN_KILLS, "kills:\n%s", out);
    cr_expect_eq(jint(rec, "not_recovered"), 0, "%s", out);
    cr_expect_leq(jint(rec, "max"), RECOVERY_LIMIT_MS, "slowest recovery:\n%s", out);
    cr_expect_geq(jint(json_object_get(res, "stall"), "stopped_ms"), 1000, "the stall:\n%s", out);
    cr_expect(json_is_true(json_object_get(res, "ok")), "%s", out);
    json_decref(res);
    free(out);
}
