/*
 * test_autoscale.c - the autoscaling demo end to end: the Work deployment
 * (examples/autoscale/autoscale.c), the load generator playing a shape
 * against a real `serve`, its CSV, and the chart drawn from it.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../e2e/expect.h"
#include "../e2e/harness.h"

#define CSV_HEADER                                                                                 \
    "t_s,phase,clients,in_flight,answers_per_s,p50_ms,p99_ms,errors,ongoing_metric,desired,"       \
    "target_replicas,running_replicas,starting_replicas"

/* Work, autoscaled with short delays so that a run of a few seconds goes
   up, down to zero and back. */
#define WORK_APP(user_config)                                                                      \
    APP("autoscale", "/autoscale", "autoscale.so",                                                 \
        "{\"name\": \"Work\", \"max_ongoing_requests\": 8, \"user_config\": " user_config          \
        ", \"autoscaling_config\": {\"min_replicas\": 0, \"initial_replicas\": 1, "                \
        "\"max_replicas\": 8, \"target_ongoing_requests\": 2, \"look_back_period_s\": 0.5, "       \
        "\"upscale_delay_s\": 0.25, \"downscale_delay_s\": 0.5, "                                  \
        "\"downscale_to_zero_delay_s\": 1}}")

TestSuite(autoscale_demo, .fini = h_cleanup_all, .timeout = 60);

/* Run the load generator against s with these options before the URL;
   its output lands in `output` (malloc'd). Returns its exit code. */
static int run_loadgen(h_serve *s, const char *const *opts, const char *path, char **output)
{
    char url[128], admin[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", s->port, path);
    snprintf(admin, sizeof(admin), "http://127.0.0.1:%d", s->admin_port);
    const char *argv[24] = {getenv("SERVE_LOADGEN"), "--admin", admin, "--plain"};
    int n = 4;
    while (*opts && n < 22) argv[n++] = *opts++;
    argv[n] = url;
    cr_assert_not_null(argv[0], "SERVE_LOADGEN is not set");
    int code = h_run(s, argv, NULL, "loadgen.out", output);
    cr_assert_neq(code, -1, "cannot run %s", argv[0]);
    return code;
}

/* One CSV row of the columns the checks below read. */
typedef struct row {
    double t;
    char phase[16];
    int clients, errors, running;
} row;

static int parse_row(const char *line, row *r)
{
    /* t_s,phase,clients,in_flight,per_s,p50,p99,errors,metric,desired,target,running,starting */
    return sscanf(line, "%lf,%15[^,],%d,%*d,%*f,%*f,%*f,%d,%*f,%*d,%*d,%d,%*d", &r->t, r->phase,
                  &r->clients, &r->errors, &r->running) == 5
               ? 0
               : -1;
}

Test(autoscale_demo, work_waits_what_it_is_told)
{
    h_serve *s = serve_up("/autoscale", "", WORK_APP("{\"cost_ms\": 0}"));
    h_response r;
    get_expect(s, "/autoscale?ms=120", 200, &r);
    cr_assert_geq(r.elapsed_s, 0.12, "a 120 ms request took %.3f s", r.elapsed_s);
    json_t *doc = body_json(s, &r);
    cr_assert_eq(json_integer_value(json_object_get(doc, "cost_ms")), 120);
    json_decref(doc);
    h_response_free(&r);

    get_expect(s, "/autoscale", 200, &r);
    doc = body_json(s, &r);
    cr_assert_eq(json_integer_value(json_object_get(doc, "cost_ms")), 0, "user_config applies");
    json_decref(doc);
    h_response_free(&r);

    get_expect(s, "/autoscale?ms=soon", 400, &r);
    cr_assert(strstr(r.body, "ms: must be an integer") != NULL, "%s", r.body);
    h_response_free(&r);
}

Test(autoscale_demo, a_bad_cost_is_refused_and_named)
{
    h_serve *s = h_serve_new();
    cr_assert_not_null(s);
    h_serve_write_apps(s, "%s", WORK_APP("{\"cost_ms\": -5}"));
    cr_assert_eq(h_serve_start(s), 0);
    int code = h_serve_wait_exit(s, 20);
    cr_assert_eq(code, 1, "serve with a bad user_config exited %d\n%s", code, LOG(s));
    char *log = h_serve_log(s);
    cr_assert(strstr(log, "user_config.cost_ms: must be an integer from 0 to 60000"), "%s", log);
    free(log);
}

/* A shape that goes up, holds, stops for long enough to reach zero, and
   comes back: every phase of the demo in about ten seconds. */
Test(autoscale_demo, a_load_shape_scales_up_to_zero_and_back_with_nothing_lost)
{
    h_serve *s =
        serve_up("/autoscale?ms=0", ",\"access_log\": false", WORK_APP("{\"cost_ms\": 50}"));
    char csv[H_PATH_MAX + 16];
    snprintf(csv, sizeof(csv), "%s/run.csv", s->dir);
    const char *opts[] = {
        "--shape", "ramp:0..8/2,hold:8/3,idle:0/4.5,wake:2/2", "--interval", "0.25", "--csv", csv,
        NULL};
    char *out = NULL;
    int code = run_loadgen(s, opts, "/autoscale", &out);
    cr_assert_eq(code, 0, "loadgen failed (%d):\n%s\n%s", code, out, LOG(s));
    cr_assert(strstr(out, ", 0 failed") != NULL, "%s", out);

    FILE *f = fopen(csv, "r");
    cr_assert_not_null(f);
    char line[512];
    cr_assert_not_null(fgets(line, sizeof(line), f));
    cr_assert_eq(strncmp(line, CSV_HEADER "\n", sizeof(CSV_HEADER)), 0, "header: %s", line);
    int rows = 0, peak = 0, zero_while_idle = 0, back_while_waking = 0, errors = 0, peak_load = 0;
    row r;
    while (fgets(line, sizeof(line), f)) {
        cr_assert_eq(parse_row(line, &r), 0, "bad row: %s", line);
        rows++;
        errors += r.errors;
        if (r.running > peak) peak = r.running;
        if (r.clients > peak_load) peak_load = r.clients;
        zero_while_idle |= strcmp(r.phase, "idle") == 0 && r.running == 0;
        back_while_waking |= zero_while_idle && strcmp(r.phase, "wake") == 0 && r.running >= 1;
    }
    fclose(f);
    cr_assert_geq(rows, 40, "a row per 0.25 s of an 11.5 s shape: %d", rows);
    cr_assert_eq(errors, 0);
    cr_assert_eq(peak_load, 8);
    cr_assert_geq(peak, 3, "8 clients of 50 ms at target 2 want 4 replicas; peak %d\n%s", peak,
                  out);
    cr_assert(zero_while_idle, "never reached zero replicas while idle:\n%s", out);
    cr_assert(back_while_waking, "no replica came back for the wake phase:\n%s", out);
    cr_assert(strstr(out, "found no replica running took") != NULL, "%s", out);
    free(out);

    /* The chart the demo draws from the same CSV. */
    char png[H_PATH_MAX + 16], vars[2 * H_PATH_MAX + 64], script[H_PATH_MAX];
    snprintf(png, sizeof(png), "%s/run.png", s->dir);
    snprintf(vars, sizeof(vars), "csv='%s'; png='%s'", csv, png);
    snprintf(script, sizeof(script), "%s/examples/autoscale/chart.gp", getenv("SERVE_SOURCE_DIR"));
    const char *gnuplot[] = {"/usr/bin/gnuplot", "-e", vars, script, NULL};
    cr_assert_eq(h_run(s, gnuplot, NULL, "gnuplot.out", &out), 0, "gnuplot: %s", out);
    free(out);
    size_t len = 0;
    char *img = h_read_file(png, &len);
    cr_assert(img && len > 1000 && memcmp(img, "\x89PNG", 4) == 0, "no PNG written");
    free(img);
}

Test(autoscale_demo, failed_requests_make_the_load_generator_fail)
{
    h_serve *s = serve_up("/autoscale?ms=0", "", WORK_APP("{\"cost_ms\": 0}"));
    const char *opts[] = {"--shape", "2/0.5", "--interval", "0.25", NULL};
    char *out = NULL;
    cr_assert_eq(run_loadgen(s, opts, "/autoscale?ms=bad", &out), 1, "%s", out);
    cr_assert(strstr(out, "failed") != NULL, "%s", out);
    free(out);
}

Test(autoscale_demo, a_bad_shape_is_a_usage_error)
{
    h_serve *s = h_serve_new();
    cr_assert_not_null(s);
    const char *opts[] = {"--shape", "ramp:0..8/2,oops", NULL};
    char *out = NULL;
    cr_assert_eq(run_loadgen(s, opts, "/", &out), 2, "%s", out);
    cr_assert(strstr(out, "--shape: segment 2 ('oops')") != NULL, "%s", out);
    free(out);
}
