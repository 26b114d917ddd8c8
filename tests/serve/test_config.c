/*
 * test_config.c - unit tests for serve/config.c: the parser, its defaults,
 * every validation rule (each error must name the exact JSON path), file
 * loading and plugin resolution.
 *
 * JSON in this file is written with single quotes for readability; the
 * helpers turn them into double quotes before parsing.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "serve/config.h"

/* One app "a" with plugin "a.so" and the given deployments. */
#define APP(deps)       "{'name': 'a', 'plugin': 'a.so', 'deployments': [" deps "]}"
#define CONF(apps)      "{'applications': [" apps "]}"
#define DEP(extra)      "{'name': 'd'" extra "}"
#define ONE_DEP(extra)  CONF(APP(DEP(extra)))
#define AUTOSCALE(body) ONE_DEP(", 'autoscaling_config': {" body "}")

/* ---------------------------------------------------------------------- */
/* Helpers                                                                */
/* ---------------------------------------------------------------------- */

/* A malloc'd copy of `s` with every ' turned into ". */
static char *dq(const char *s)
{
    char *copy = strdup(s);
    cr_assert_not_null(copy);
    for (char *p = copy; *p; p++)
        if (*p == '\'') *p = '"';
    return copy;
}

/* Parse `json` (single-quoted) and insist that it succeeds. */
static cfg_config *parse_ok(const char *json)
{
    char err[CFG_ERR_LEN] = "";
    char *text = dq(json);
    cfg_config *cfg = NULL;
    int rc = cfg_parse(text, strlen(text), &cfg, err, sizeof err);
    free(text);
    cr_assert_eq(rc, 0, "cfg_parse failed: %s", err);
    cr_assert_not_null(cfg);
    return cfg;
}

/* Parse `json` and insist that it fails with -EINVAL and exactly `message`. */
static void expect_error(const char *json, const char *message)
{
    char err[CFG_ERR_LEN] = "";
    char *text = dq(json);
    cfg_config *cfg = (cfg_config *)&err; /* must be overwritten with NULL */
    int rc = cfg_parse(text, strlen(text), &cfg, err, sizeof err);
    free(text);
    cr_assert_eq(rc, -EINVAL, "rc %d for %s", rc, json);
    cr_assert_null(cfg);
    cr_assert_str_eq(err, message, "got \"%s\", want \"%s\"", err, message);
    cr_assert_null(strchr(err, '\n'), "message is not one line: %s", err);
}

static void write_file(const char *path, const char *content)
{
    FILE *fp = fopen(path, "w");
    cr_assert_not_null(fp, "fopen %s: %s", path, strerror(errno));
    fputs(content, fp);
    fclose(fp);
}

/* ---------------------------------------------------------------------- */
/* Valid configs                                                          */
/* ---------------------------------------------------------------------- */

static const char full_config[] =
    "{'http_options': {'host': '0.0.0.0', 'port': 9000, 'request_timeout_s': 12.5},"
    " 'admin': {'host': '10.0.0.1', 'port': 9265},"
    " 'applications': ["
    "  {'name': 'lang', 'route_prefix': '/lang', 'plugin': 'build/lang.so',"
    "   'ingress': 'Classifier',"
    "   'deployments': ["
    "    {'name': 'Classifier', 'num_replicas': 3, 'max_ongoing_requests': 40,"
    "     'max_queued_requests': 100,"
    "     'init_args': {'spanish': {'deployment': 'Spanish_v1.2-x'}, 'n': [1, 2]},"
    "     'user_config': {'greeting': 'Hola', 'k': 1.5},"
    "     'graceful_shutdown_timeout_s': 5, 'health_check_period_s': 2.5,"
    "     'health_check_timeout_s': 7, 'max_replica_memory_mb': 512,"
    "     'batching': {'max_batch_size': 32, 'batch_wait_timeout_s': 0.05}},"
    "    {'name': 'Spanish_v1.2-x',"
    "     'autoscaling_config': {'min_replicas': 0, 'initial_replicas': 2, 'max_replicas': 4,"
    "      'target_ongoing_requests': 3.5, 'metrics_interval_s': 1, 'look_back_period_s': 6,"
    "      'upscale_delay_s': 0.5, 'downscale_delay_s': 12, 'downscale_to_zero_delay_s': 60,"
    "      'upscaling_factor': 1.5, 'downscaling_factor': 0.5}}"
    "   ]},"
    "  {'name': 'echo', 'route_prefix': '/', 'plugin': '/opt/echo.so',"
    "   'deployments': [{'name': 'Echo', 'user_config': 7}]}"
    " ]}";

Test(config_valid, a_full_config_parses_every_field)
{
    cfg_config *cfg = parse_ok(full_config);

    cr_assert_str_eq(cfg->http_host, "0.0.0.0");
    cr_assert_eq(cfg->http_port, 9000);
    cr_assert_float_eq(cfg->request_timeout_s, 12.5, 1e-12);
    cr_assert_str_eq(cfg->admin_host, "10.0.0.1");
    cr_assert_eq(cfg->admin_port, 9265);
    cr_assert_eq(cfg->n_apps, 2);

    const cfg_app *lang = &cfg->apps[0];
    cr_assert_str_eq(lang->name, "lang");
    cr_assert_str_eq(lang->route_prefix, "/lang");
    cr_assert_str_eq(lang->plugin, "build/lang.so");
    cr_assert_str_eq(lang->ingress, "Classifier");
    cr_assert_eq(lang->n_deployments, 2);

    const cfg_deployment *c = &lang->deployments[0];
    cr_assert_str_eq(c->name, "Classifier");
    cr_assert_eq(c->num_replicas, 3);
    cr_assert_eq(c->max_ongoing_requests, 40);
    cr_assert_eq(c->max_queued_requests, 100);
    cr_assert_str_eq(c->init_args_json,
                     "{\"spanish\":{\"deployment\":\"Spanish_v1.2-x\"},\"n\":[1,2]}");
    cr_assert_str_eq(c->user_config_json, "{\"greeting\":\"Hola\",\"k\":1.5}");
    cr_assert_float_eq(c->graceful_shutdown_timeout_s, 5, 1e-12);
    cr_assert_float_eq(c->health_check_period_s, 2.5, 1e-12);
    cr_assert_float_eq(c->health_check_timeout_s, 7, 1e-12);
    cr_assert_eq(c->max_replica_memory_mb, 512);
    cr_assert_eq(c->autoscaling.enabled, 0);
    cr_assert_eq(c->batching.enabled, 1);
    cr_assert_eq(c->batching.max_batch_size, 32);
    cr_assert_float_eq(c->batching.batch_wait_timeout_s, 0.05, 1e-12);

    const cfg_deployment *s = &lang->deployments[1];
    const cfg_autoscaling *as = &s->autoscaling;
    cr_assert_str_eq(s->name, "Spanish_v1.2-x");
    cr_assert_eq(as->enabled, 1);
    cr_assert_eq(as->min_replicas, 0);
    cr_assert_eq(as->initial_replicas, 2);
    cr_assert_eq(as->max_replicas, 4);
    cr_assert_float_eq(as->target_ongoing_requests, 3.5, 1e-12);
    cr_assert_float_eq(as->metrics_interval_s, 1, 1e-12);
    cr_assert_float_eq(as->look_back_period_s, 6, 1e-12);
    cr_assert_float_eq(as->upscale_delay_s, 0.5, 1e-12);
    cr_assert_float_eq(as->downscale_delay_s, 12, 1e-12);
    cr_assert_float_eq(as->downscale_to_zero_delay_s, 60, 1e-12);
    cr_assert_float_eq(as->upscaling_factor, 1.5, 1e-12);
    cr_assert_float_eq(as->downscaling_factor, 0.5, 1e-12);
    cr_assert_eq(s->num_replicas, 2, "autoscaled deployments start at initial_replicas");
    cr_assert_eq(s->batching.enabled, 0);
    cr_assert_str_eq(s->init_args_json, "{}");
    cr_assert_null(s->user_config_json);

    const cfg_app *echo = &cfg->apps[1];
    cr_assert_str_eq(echo->name, "echo");
    cr_assert_str_eq(echo->route_prefix, "/");
    cr_assert_str_eq(echo->plugin, "/opt/echo.so");
    cr_assert_str_eq(echo->ingress, "Echo");
    cr_assert_str_eq(echo->deployments[0].user_config_json, "7");

    cr_assert_eq(cfg_app_deployment(lang, "Spanish_v1.2-x"), s);
    cr_assert_eq(cfg_app_deployment(lang, "Classifier"), c);
    cr_assert_null(cfg_app_deployment(lang, "Echo"));
    cfg_free(cfg);
}

Test(config_valid, a_minimal_config_gets_every_default)
{
    cfg_config *cfg = parse_ok(CONF("{'name': 'a', 'plugin': 'a.so', 'deployments': "
                                    "[{'name': 'd'}]}"));

    cr_assert_str_eq(cfg->http_host, "127.0.0.1");
    cr_assert_eq(cfg->http_port, 8000);
    cr_assert_float_eq(cfg->request_timeout_s, 0, 1e-12);
    cr_assert_str_eq(cfg->admin_host, "127.0.0.1");
    cr_assert_eq(cfg->admin_port, 8265);
    cr_assert_eq(cfg->n_apps, 1);

    const cfg_app *app = &cfg->apps[0];
    cr_assert_str_eq(app->route_prefix, "/");
    cr_assert_str_eq(app->ingress, "d");

    const cfg_deployment *d = &app->deployments[0];
    cr_assert_eq(d->num_replicas, 1);
    cr_assert_eq(d->max_ongoing_requests, 5);
    cr_assert_eq(d->max_queued_requests, -1);
    cr_assert_str_eq(d->init_args_json, "{}");
    cr_assert_null(d->user_config_json);
    cr_assert_float_eq(d->graceful_shutdown_timeout_s, 20, 1e-12);
    cr_assert_float_eq(d->health_check_period_s, 10, 1e-12);
    cr_assert_float_eq(d->health_check_timeout_s, 30, 1e-12);
    cr_assert_eq(d->max_replica_memory_mb, 0, "no memory limit by default");

    cr_assert_eq(d->autoscaling.enabled, 0);
    cr_assert_eq(d->batching.enabled, 0);
    cr_assert_eq(d->batching.max_batch_size, 10);
    cr_assert_float_eq(d->batching.batch_wait_timeout_s, 0.01, 1e-12);
    cfg_free(cfg);
}

Test(config_valid, an_empty_autoscaling_config_enables_autoscaling_with_defaults)
{
    cfg_config *cfg = parse_ok(AUTOSCALE(""));
    const cfg_deployment *d = &cfg->apps[0].deployments[0];
    const cfg_autoscaling *as = &d->autoscaling;

    cr_assert_eq(as->enabled, 1);
    cr_assert_eq(as->min_replicas, 1);
    cr_assert_eq(as->initial_replicas, 1);
    cr_assert_eq(as->max_replicas, 1);
    cr_assert_float_eq(as->target_ongoing_requests, 2, 1e-12);
    cr_assert_float_eq(as->metrics_interval_s, 10, 1e-12);
    cr_assert_float_eq(as->look_back_period_s, 30, 1e-12);
    cr_assert_float_eq(as->upscale_delay_s, 30, 1e-12);
    cr_assert_float_eq(as->downscale_delay_s, 600, 1e-12);
    cr_assert_float_eq(as->downscale_to_zero_delay_s, -1, 1e-12);
    cr_assert_float_eq(as->upscaling_factor, 1.0, 1e-12);
    cr_assert_float_eq(as->downscaling_factor, 1.0, 1e-12);
    cr_assert_eq(d->num_replicas, 1);
    cfg_free(cfg);
}

Test(config_valid, initial_replicas_defaults_to_min_replicas)
{
    cfg_config *cfg = parse_ok(AUTOSCALE("'min_replicas': 3, 'max_replicas': 8"));
    const cfg_deployment *d = &cfg->apps[0].deployments[0];
    cr_assert_eq(d->autoscaling.initial_replicas, 3);
    cr_assert_eq(d->num_replicas, 3);
    cfg_free(cfg);
}

Test(config_valid, an_empty_batching_object_enables_batching_with_defaults)
{
    cfg_config *cfg = parse_ok(ONE_DEP(", 'batching': {}"));
    const cfg_batching *b = &cfg->apps[0].deployments[0].batching;
    cr_assert_eq(b->enabled, 1);
    cr_assert_eq(b->max_batch_size, 10);
    cr_assert_float_eq(b->batch_wait_timeout_s, 0.01, 1e-12);
    cfg_free(cfg);
}

Test(config_valid, an_empty_application_list_is_accepted)
{
    cfg_config *cfg = parse_ok("{'applications': []}");
    cr_assert_eq(cfg->n_apps, 0);
    cfg_free(cfg);
}

Test(config_valid, ingress_defaults_to_the_only_deployment)
{
    cfg_config *cfg = parse_ok(CONF(APP("{'name': 'Only'}")));
    cr_assert_str_eq(cfg->apps[0].ingress, "Only");
    cfg_free(cfg);
}

Test(config_valid, an_explicit_ingress_picks_one_of_several_deployments)
{
    cfg_config *cfg = parse_ok(CONF("{'name': 'a', 'plugin': 'a.so', 'ingress': 'y',"
                                    " 'deployments': [{'name': 'x'}, {'name': 'y'}]}"));
    cr_assert_str_eq(cfg->apps[0].ingress, "y");
    cfg_free(cfg);
}

Test(config_valid, user_config_of_any_json_type_is_kept_as_compact_text)
{
    cfg_config *cfg = parse_ok(CONF("{'name': 'a', 'plugin': 'a.so', 'ingress': 'n',"
                                    " 'deployments': ["
                                    "  {'name': 'n', 'user_config': 42},"
                                    "  {'name': 's', 'user_config': 'hi'},"
                                    "  {'name': 'l', 'user_config': [1, {'a': null}]},"
                                    "  {'name': 'b', 'user_config': false}]}"));
    const cfg_app *app = &cfg->apps[0];
    cr_assert_str_eq(cfg_app_deployment(app, "n")->user_config_json, "42");
    cr_assert_str_eq(cfg_app_deployment(app, "s")->user_config_json, "\"hi\"");
    cr_assert_str_eq(cfg_app_deployment(app, "l")->user_config_json, "[1,{\"a\":null}]");
    cr_assert_str_eq(cfg_app_deployment(app, "b")->user_config_json, "false");
    cfg_free(cfg);
}

Test(config_valid, an_integer_is_accepted_where_a_number_is_expected)
{
    cfg_config *cfg = parse_ok(ONE_DEP(", 'health_check_period_s': 3"));
    cr_assert_float_eq(cfg->apps[0].deployments[0].health_check_period_s, 3.0, 1e-12);
    cfg_free(cfg);
}

Test(config_valid, bounds_are_inclusive_at_their_edges)
{
    cfg_config *cfg =
        parse_ok("{'http_options': {'port': 65535, 'request_timeout_s': 0},"
                 " 'admin': {'port': 1},"
                 " 'applications': [" APP(DEP(", 'num_replicas': 0,"
                                              " 'max_queued_requests': -1,"
                                              " 'max_ongoing_requests': 100000")) "]}");
    cr_assert_eq(cfg->http_port, 65535);
    cr_assert_eq(cfg->admin_port, 1);
    cr_assert_eq(cfg->apps[0].deployments[0].num_replicas, 0);
    cr_assert_eq(cfg->apps[0].deployments[0].max_ongoing_requests, 100000);
    cfg_free(cfg);
}

Test(config_valid, cfg_free_accepts_null)
{
    cfg_free(NULL);
    cr_assert_null(cfg_app_deployment(NULL, "x"));
}

/* ---------------------------------------------------------------------- */
/* Top level, http_options, admin                                         */
/* ---------------------------------------------------------------------- */

Test(config_errors, a_document_that_is_not_an_object_is_refused)
{
    expect_error("[]", "top level: must be an object");
}

Test(config_errors, applications_is_required)
{
    expect_error("{'http_options': {}}", "applications: required");
}

Test(config_errors, applications_must_be_an_array)
{
    expect_error("{'applications': {}}", "applications: must be an array");
}

Test(config_errors, an_application_must_be_an_object)
{
    expect_error("{'applications': [3]}", "applications[0]: must be an object");
}

Test(config_errors, an_http_port_above_65535_is_refused)
{
    expect_error("{'http_options': {'port': 65536}, 'applications': []}",
                 "http_options.port: must be <= 65535");
}

Test(config_errors, an_http_port_of_zero_is_refused)
{
    expect_error("{'http_options': {'port': 0}, 'applications': []}",
                 "http_options.port: must be >= 1");
}

Test(config_errors, an_admin_port_given_as_a_string_is_refused)
{
    expect_error("{'admin': {'port': '8265'}, 'applications': []}",
                 "admin.port: must be an integer");
}

Test(config_errors, a_real_is_not_accepted_for_an_integer_field)
{
    expect_error("{'admin': {'port': 8265.0}, 'applications': []}",
                 "admin.port: must be an integer");
}

Test(config_errors, a_negative_request_timeout_is_refused)
{
    expect_error("{'http_options': {'request_timeout_s': -0.5}, 'applications': []}",
                 "http_options.request_timeout_s: must be >= 0");
}

Test(config_errors, a_host_must_be_a_string)
{
    expect_error("{'http_options': {'host': 1}, 'applications': []}",
                 "http_options.host: must be a string");
}

Test(config_errors, http_options_must_be_an_object)
{
    expect_error("{'http_options': [], 'applications': []}", "http_options: must be an object");
}

/* ---------------------------------------------------------------------- */
/* Applications                                                           */
/* ---------------------------------------------------------------------- */

Test(config_errors, an_application_name_is_required)
{
    expect_error(CONF("{'plugin': 'a.so', 'deployments': [{'name': 'd'}]}"),
                 "applications[0].name: required");
}

Test(config_errors, an_application_name_must_not_be_empty)
{
    expect_error(CONF("{'name': '', 'plugin': 'a.so', 'deployments': [{'name': 'd'}]}"),
                 "applications[0].name: must not be empty");
}

Test(config_errors, an_application_plugin_is_required)
{
    expect_error(CONF("{'name': 'a', 'deployments': [{'name': 'd'}]}"),
                 "applications[0].plugin: required");
}

Test(config_errors, an_application_plugin_must_not_be_empty)
{
    expect_error(CONF("{'name': 'a', 'plugin': '', 'deployments': [{'name': 'd'}]}"),
                 "applications[0].plugin: must not be empty");
}

Test(config_errors, deployments_are_required)
{
    expect_error(CONF("{'name': 'a', 'plugin': 'a.so'}"), "applications[0].deployments: required");
}

Test(config_errors, an_application_needs_at_least_one_deployment)
{
    expect_error(CONF(APP("")), "applications[0].deployments: must have at least 1 element(s)");
}

Test(config_errors, a_route_prefix_must_start_with_a_slash)
{
    expect_error(CONF("{'name': 'a', 'route_prefix': 'x', 'plugin': 'a.so',"
                      " 'deployments': [{'name': 'd'}]}"),
                 "applications[0].route_prefix: must start with '/'");
}

Test(config_errors, a_route_prefix_must_leave_v2_to_the_inference_protocol)
{
    expect_error(CONF("{'name': 'a', 'route_prefix': '/v2/x', 'plugin': 'a.so',"
                      " 'deployments': [{'name': 'd'}]}"),
                 "applications[0].route_prefix: must not be /v2 or under it: the proxy serves "
                 "the inference protocol there");
    cfg_free(parse_ok(CONF("{'name': 'a', 'route_prefix': '/v20', 'plugin': 'a.so',"
                           " 'deployments': [{'name': 'd'}]}")));
}

Test(config_valid, batching_makes_room_for_two_batches_by_default)
{
    cfg_config *cfg = parse_ok(CONF("{'name': 'a', 'plugin': 'a.so', 'deployments': ["
                                    "{'name': 'big', 'batching': {'max_batch_size': 32}},"
                                    "{'name': 'small', 'batching': {'max_batch_size': 2}},"
                                    "{'name': 'set', 'max_ongoing_requests': 32,"
                                    " 'batching': {'max_batch_size': 32}}], 'ingress': 'big'}"));
    cr_expect_eq(cfg->apps[0].deployments[0].max_ongoing_requests, 64);
    cr_expect_eq(cfg->apps[0].deployments[1].max_ongoing_requests, 5, "never below Ray's 5");
    cr_expect_eq(cfg->apps[0].deployments[2].max_ongoing_requests, 32, "an explicit value stays");
    cr_expect_float_eq(cfg->apps[0].deployments[0].batching.batch_wait_timeout_s, 0.01, 1e-12);
    cfg_free(cfg);
}

Test(config_errors, max_ongoing_requests_below_the_batch_size_is_refused)
{
    expect_error(CONF("{'name': 'a', 'plugin': 'a.so', 'deployments': [{'name': 'd',"
                      " 'max_ongoing_requests': 8, 'batching': {'max_batch_size': 16}}]}"),
                 "applications[0].deployments[0].max_ongoing_requests: must be >= "
                 "batching.max_batch_size (16), or batches never fill");
}

Test(config_errors, batching_bounds_name_the_field)
{
    expect_error(CONF("{'name': 'a', 'plugin': 'a.so', 'deployments': [{'name': 'd',"
                      " 'batching': {'max_batch_size': 0}}]}"),
                 "applications[0].deployments[0].batching.max_batch_size: must be >= 1");
    expect_error(CONF("{'name': 'a', 'plugin': 'a.so', 'deployments': [{'name': 'd',"
                      " 'batching': {'batch_wait_timeout_s': 61}}]}"),
                 "applications[0].deployments[0].batching.batch_wait_timeout_s: must be <= 60");
}

Test(config_errors, a_route_prefix_must_not_end_with_a_slash)
{
    expect_error(CONF("{'name': 'a', 'route_prefix': '/x/', 'plugin': 'a.so',"
                      " 'deployments': [{'name': 'd'}]}"),
                 "applications[0].route_prefix: must not end with '/'");
}

Test(config_errors, a_route_prefix_must_not_hold_a_query_or_fragment)
{
    expect_error(CONF("{'name': 'a', 'route_prefix': '/x?y', 'plugin': 'a.so',"
                      " 'deployments': [{'name': 'd'}]}"),
                 "applications[0].route_prefix: must not contain '?' or '#'");
    expect_error(CONF("{'name': 'a', 'route_prefix': '/x#y', 'plugin': 'a.so',"
                      " 'deployments': [{'name': 'd'}]}"),
                 "applications[0].route_prefix: must not contain '?' or '#'");
}

Test(config_errors, ingress_is_required_when_there_are_several_deployments)
{
    expect_error(CONF(APP("{'name': 'x'}, {'name': 'y'}")),
                 "applications[0].ingress: required when an application has several deployments");
}

Test(config_errors, an_ingress_naming_no_deployment_is_refused)
{
    expect_error(CONF("{'name': 'a', 'plugin': 'a.so', 'ingress': 'ghost',"
                      " 'deployments': [{'name': 'd'}]}"),
                 "applications[0].ingress: no deployment named 'ghost'");
}

Test(config_errors, application_names_must_be_unique)
{
    expect_error(CONF("{'name': 'x', 'route_prefix': '/1', 'plugin': 'a.so',"
                      " 'deployments': [{'name': 'd'}]},"
                      "{'name': 'x', 'route_prefix': '/2', 'plugin': 'a.so',"
                      " 'deployments': [{'name': 'd'}]}"),
                 "applications[1].name: duplicate application name 'x'");
}

Test(config_errors, route_prefixes_must_be_unique)
{
    expect_error(CONF("{'name': 'a', 'route_prefix': '/x', 'plugin': 'a.so',"
                      " 'deployments': [{'name': 'd'}]},"
                      "{'name': 'b', 'route_prefix': '/y', 'plugin': 'a.so',"
                      " 'deployments': [{'name': 'd'}]},"
                      "{'name': 'c', 'route_prefix': '/x', 'plugin': 'a.so',"
                      " 'deployments': [{'name': 'd'}]}"),
                 "applications[2].route_prefix: '/x' is already used by application 'a'");
}

Test(config_errors, two_applications_cannot_both_default_to_the_root_prefix)
{
    expect_error(CONF("{'name': 'a', 'plugin': 'a.so', 'deployments': [{'name': 'd'}]},"
                      "{'name': 'b', 'plugin': 'b.so', 'deployments': [{'name': 'd'}]}"),
                 "applications[1].route_prefix: '/' is already used by application 'a'");
}

/* ---------------------------------------------------------------------- */
/* Deployments                                                            */
/* ---------------------------------------------------------------------- */

Test(config_errors, a_deployment_name_is_required)
{
    expect_error(CONF(APP("{'num_replicas': 1}")), "applications[0].deployments[0].name: required");
}

Test(config_errors, a_deployment_name_with_a_slash_is_refused)
{
    expect_error(CONF(APP("{'name': 'a/b'}")),
                 "applications[0].deployments[0].name: may only contain letters, digits, '_', "
                 "'-', '.'");
}

Test(config_errors, an_application_name_with_a_newline_is_refused)
{
    /* Names end up in log lines and file names: a newline would forge a
       log line, a slash would name another folder. */
    expect_error(CONF("{'name': 'a\\nb', 'plugin': 'a.so', 'deployments': [{'name': 'd'}]}"),
                 "applications[0].name: may only contain letters, digits, '_', '-', '.'");
    expect_error(CONF("{'name': '../x', 'plugin': 'a.so', 'deployments': [{'name': 'd'}]}"),
                 "applications[0].name: may only contain letters, digits, '_', '-', '.'");
}

Test(config_errors, a_negative_max_replica_memory_mb_is_refused)
{
    expect_error(CONF(APP("{'name': 'd', 'max_replica_memory_mb': -1}")),
                 "applications[0].deployments[0].max_replica_memory_mb: must be >= 0");
}

Test(config_errors, deployment_names_must_be_unique_within_an_app)
{
    expect_error(CONF("{'name': 'a', 'plugin': 'a.so', 'ingress': 'd',"
                      " 'deployments': [{'name': 'd'}, {'name': 'e'}, {'name': 'd'}]}"),
                 "applications[0].deployments[2].name: duplicate deployment name 'd'");
}

Test(config_valid, the_same_deployment_name_in_two_apps_is_fine)
{
    cfg_config *cfg = parse_ok(CONF("{'name': 'a', 'route_prefix': '/a', 'plugin': 'a.so',"
                                    " 'deployments': [{'name': 'd'}]},"
                                    "{'name': 'b', 'route_prefix': '/b', 'plugin': 'a.so',"
                                    " 'deployments': [{'name': 'd'}]}"));
    cr_assert_eq(cfg->n_apps, 2);
    cfg_free(cfg);
}

Test(config_errors, a_negative_num_replicas_is_refused_in_the_second_deployment)
{
    expect_error(CONF("{'name': 'a', 'plugin': 'a.so', 'ingress': 'x',"
                      " 'deployments': [{'name': 'x'}, {'name': 'y', 'num_replicas': -1}]}"),
                 "applications[0].deployments[1].num_replicas: must be >= 0");
}

Test(config_errors, num_replicas_above_1024_is_refused)
{
    expect_error(ONE_DEP(", 'num_replicas': 1025"),
                 "applications[0].deployments[0].num_replicas: must be <= 1024");
}

Test(config_errors, num_replicas_must_be_an_integer)
{
    expect_error(ONE_DEP(", 'num_replicas': 1.5"),
                 "applications[0].deployments[0].num_replicas: must be an integer");
    expect_error(ONE_DEP(", 'num_replicas': true"),
                 "applications[0].deployments[0].num_replicas: must be an integer");
    expect_error(ONE_DEP(", 'num_replicas': null"),
                 "applications[0].deployments[0].num_replicas: must be an integer");
}

Test(config_errors, max_ongoing_requests_must_be_between_1_and_100000)
{
    expect_error(ONE_DEP(", 'max_ongoing_requests': 0"),
                 "applications[0].deployments[0].max_ongoing_requests: must be >= 1");
    expect_error(ONE_DEP(", 'max_ongoing_requests': 100001"),
                 "applications[0].deployments[0].max_ongoing_requests: must be <= 100000");
}

Test(config_errors, max_queued_requests_below_minus_one_is_refused)
{
    expect_error(ONE_DEP(", 'max_queued_requests': -2"),
                 "applications[0].deployments[0].max_queued_requests: must be >= -1");
}

Test(config_errors, an_integer_beyond_int_range_is_refused)
{
    expect_error(ONE_DEP(", 'max_queued_requests': 3000000000"),
                 "applications[0].deployments[0].max_queued_requests: must be <= 2147483647");
}

Test(config_errors, init_args_must_be_an_object)
{
    expect_error(ONE_DEP(", 'init_args': [1, 2]"),
                 "applications[0].deployments[0].init_args: must be an object");
}

Test(config_errors, a_boolean_is_not_a_number)
{
    expect_error(ONE_DEP(", 'graceful_shutdown_timeout_s': true"),
                 "applications[0].deployments[0].graceful_shutdown_timeout_s: must be a number");
}

Test(config_errors, a_numeric_string_is_not_a_number)
{
    expect_error(ONE_DEP(", 'graceful_shutdown_timeout_s': '20'"),
                 "applications[0].deployments[0].graceful_shutdown_timeout_s: must be a number");
}

Test(config_errors, a_negative_graceful_shutdown_timeout_is_refused)
{
    expect_error(ONE_DEP(", 'graceful_shutdown_timeout_s': -1"),
                 "applications[0].deployments[0].graceful_shutdown_timeout_s: must be >= 0");
}

Test(config_errors, health_check_period_and_timeout_must_be_positive)
{
    expect_error(ONE_DEP(", 'health_check_period_s': 0"),
                 "applications[0].deployments[0].health_check_period_s: must be > 0");
    expect_error(ONE_DEP(", 'health_check_timeout_s': -3"),
                 "applications[0].deployments[0].health_check_timeout_s: must be > 0");
}

/* ---------------------------------------------------------------------- */
/* autoscaling_config and batching                                        */
/* ---------------------------------------------------------------------- */

Test(config_errors, autoscaling_config_must_be_an_object)
{
    expect_error(ONE_DEP(", 'autoscaling_config': 3"),
                 "applications[0].deployments[0].autoscaling_config: must be an object");
}

Test(config_errors, max_replicas_below_min_replicas_is_refused)
{
    expect_error(AUTOSCALE("'min_replicas': 4, 'max_replicas': 2"),
                 "applications[0].deployments[0].autoscaling_config.max_replicas: "
                 "must be >= min_replicas");
}

Test(config_errors, max_replicas_of_zero_is_refused)
{
    expect_error(AUTOSCALE("'min_replicas': 0, 'max_replicas': 0"),
                 "applications[0].deployments[0].autoscaling_config.max_replicas: must be >= 1");
}

Test(config_errors, initial_replicas_above_max_replicas_is_refused)
{
    expect_error(AUTOSCALE("'initial_replicas': 5, 'max_replicas': 4"),
                 "applications[0].deployments[0].autoscaling_config.initial_replicas: "
                 "must be <= max_replicas");
}

Test(config_errors, initial_replicas_below_min_replicas_is_refused)
{
    expect_error(AUTOSCALE("'min_replicas': 2, 'initial_replicas': 1, 'max_replicas': 4"),
                 "applications[0].deployments[0].autoscaling_config.initial_replicas: "
                 "must be >= min_replicas");
}

Test(config_errors, a_negative_min_replicas_is_refused)
{
    expect_error(AUTOSCALE("'min_replicas': -1"),
                 "applications[0].deployments[0].autoscaling_config.min_replicas: must be >= 0");
}

Test(config_errors, target_ongoing_requests_must_be_positive)
{
    expect_error(AUTOSCALE("'target_ongoing_requests': 0"),
                 "applications[0].deployments[0].autoscaling_config.target_ongoing_requests: "
                 "must be > 0");
}

Test(config_errors, an_explicit_downscale_to_zero_delay_must_not_be_negative)
{
    expect_error(AUTOSCALE("'downscale_to_zero_delay_s': -1"),
                 "applications[0].deployments[0].autoscaling_config.downscale_to_zero_delay_s: "
                 "must be >= 0");
}

Test(config_errors, scaling_factors_must_be_positive)
{
    expect_error(AUTOSCALE("'upscaling_factor': 0"),
                 "applications[0].deployments[0].autoscaling_config.upscaling_factor: "
                 "must be > 0");
    expect_error(AUTOSCALE("'downscaling_factor': -0.5"),
                 "applications[0].deployments[0].autoscaling_config.downscaling_factor: "
                 "must be > 0");
}

Test(config_errors, scaling_delays_must_not_be_negative)
{
    expect_error(AUTOSCALE("'upscale_delay_s': -1"),
                 "applications[0].deployments[0].autoscaling_config.upscale_delay_s: "
                 "must be >= 0");
    expect_error(AUTOSCALE("'downscale_delay_s': -1"),
                 "applications[0].deployments[0].autoscaling_config.downscale_delay_s: "
                 "must be >= 0");
}

Test(config_errors, num_replicas_cannot_be_set_together_with_autoscaling)
{
    expect_error(ONE_DEP(", 'num_replicas': 2, 'autoscaling_config': {'max_replicas': 3}"),
                 "applications[0].deployments[0].num_replicas: "
                 "cannot be set together with autoscaling_config");
}

Test(config_errors, max_batch_size_must_be_at_least_one)
{
    expect_error(ONE_DEP(", 'batching': {'max_batch_size': 0}"),
                 "applications[0].deployments[0].batching.max_batch_size: must be >= 1");
}

Test(config_errors, a_negative_batch_wait_timeout_is_refused)
{
    expect_error(ONE_DEP(", 'batching': {'batch_wait_timeout_s': -0.01}"),
                 "applications[0].deployments[0].batching.batch_wait_timeout_s: must be >= 0");
}

Test(config_errors, batching_must_be_an_object)
{
    expect_error(ONE_DEP(", 'batching': true"),
                 "applications[0].deployments[0].batching: must be an object");
}

/* ---------------------------------------------------------------------- */
/* Unknown fields, at every level                                         */
/* ---------------------------------------------------------------------- */

Test(config_unknown, an_unknown_top_level_key_is_refused)
{
    expect_error("{'applications': [], 'proxy_location': 'x'}",
                 "proxy_location: unknown field (docs/config.md lists every field)");
}

Test(config_unknown, an_unknown_http_options_key_is_refused)
{
    expect_error("{'http_options': {'prot': 1}, 'applications': []}",
                 "http_options.prot: unknown field; did you mean \"port\"?");
}

Test(config_unknown, an_unknown_admin_key_is_refused)
{
    expect_error("{'admin': {'hots': 'x'}, 'applications': []}",
                 "admin.hots: unknown field; did you mean \"host\"?");
}

Test(config_unknown, an_unknown_application_key_is_refused)
{
    expect_error(
        CONF("{'name': 'a', 'plugin': 'a.so', 'import_path': 'x',"
             " 'deployments': [{'name': 'd'}]}"),
        "applications[0].import_path: unknown field; serve runs C plugins: name the .so in "
        "\"plugin\"");
}

Test(config_unknown, an_unknown_deployment_key_is_refused)
{
    expect_error(
        ONE_DEP(", 'colour': 'red'"),
        "applications[0].deployments[0].colour: unknown field (docs/config.md lists every field)");
}

Test(config_unknown, an_unknown_autoscaling_key_is_refused)
{
    expect_error(AUTOSCALE("'max_replica': 2"),
                 "applications[0].deployments[0].autoscaling_config.max_replica: unknown field; "
                 "did you mean \"max_replicas\"?");
}

Test(config_unknown, an_unknown_batching_key_is_refused)
{
    expect_error(ONE_DEP(", 'batching': {'size': 2}"),
                 "applications[0].deployments[0].batching.size: unknown field (docs/config.md "
                 "lists every field)");
}

/* ---------------------------------------------------------------------- */
/* JSON syntax and the error buffer                                       */
/* ---------------------------------------------------------------------- */

Test(config_syntax, a_syntax_error_gives_line_and_column)
{
    const char *text = "{\n  \"applications\": [\n    ,\n  ]\n}";
    char err[CFG_ERR_LEN] = "";
    cfg_config *cfg = (cfg_config *)&err;
    int rc = cfg_parse(text, strlen(text), &cfg, err, sizeof err);
    cr_assert_eq(rc, -EINVAL);
    cr_assert_null(cfg);
    cr_assert(!strncmp(err, "line 3, column 5: ", strlen("line 3, column 5: ")), "err: %s", err);
}

Test(config_syntax, a_duplicate_key_is_refused)
{
    const char *text = "{\"applications\": [], \"applications\": []}";
    char err[CFG_ERR_LEN] = "";
    cfg_config *cfg = (cfg_config *)&err;
    int rc = cfg_parse(text, strlen(text), &cfg, err, sizeof err);
    cr_assert_eq(rc, -EINVAL);
    cr_assert_null(cfg);
    cr_assert(strstr(err, "duplicate object key"), "err: %s", err);
    cr_assert(!strncmp(err, "line 1, column ", strlen("line 1, column ")), "err: %s", err);
}

Test(config_syntax, a_duplicate_key_in_a_deployment_is_refused)
{
    char *text = dq(CONF(APP("{'name': 'd', 'num_replicas': 1, 'num_replicas': 2}")));
    char err[CFG_ERR_LEN] = "";
    cfg_config *cfg = NULL;
    cr_assert_eq(cfg_parse(text, strlen(text), &cfg, err, sizeof err), -EINVAL);
    cr_assert_null(cfg);
    cr_assert(strstr(err, "duplicate object key"), "err: %s", err);
    free(text);
}

Test(config_syntax, empty_text_is_refused)
{
    char err[CFG_ERR_LEN] = "";
    cfg_config *cfg = NULL;
    cr_assert_eq(cfg_parse("", 0, &cfg, err, sizeof err), -EINVAL);
    cr_assert_null(cfg);
    cr_assert(!strncmp(err, "line 1, column", strlen("line 1, column")), "err: %s", err);
}

Test(config_syntax, only_len_bytes_are_parsed)
{
    const char *text = "{\"applications\": []}garbage";
    char err[CFG_ERR_LEN] = "";
    cfg_config *cfg = NULL;
    cr_assert_eq(cfg_parse(text, strlen("{\"applications\": []}"), &cfg, err, sizeof err), 0, "%s",
                 err);
    cfg_free(cfg);
}

Test(config_syntax, a_short_error_buffer_is_truncated_and_terminated)
{
    char *text = dq(ONE_DEP(", 'colour': 'red'"));
    char err[16];
    memset(err, 'X', sizeof err);
    cfg_config *cfg = NULL;
    cr_assert_eq(cfg_parse(text, strlen(text), &cfg, err, 12), -EINVAL);
    cr_assert_str_eq(err, "application");
    cr_assert_eq(err[12], 'X', "wrote past errlen");
    free(text);
}

/* ---------------------------------------------------------------------- */
/* cfg_load_file                                                          */
/* ---------------------------------------------------------------------- */

/* A fresh temporary folder; tests run in their own process, so no cleanup race. */
static char *make_tmpdir(void)
{
    static char dir[64];
    snprintf(dir, sizeof dir, "/tmp/test_config.XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    return dir;
}

static void join(char *out, size_t len, const char *dir, const char *name)
{
    int n = snprintf(out, len, "%s/%s", dir, name);
    cr_assert(n > 0 && (size_t)n < len, "path too long");
}

Test(config_file, a_missing_file_names_the_path_and_errno)
{
    char err[CFG_ERR_LEN] = "";
    cfg_config *cfg = (cfg_config *)&err;
    int rc = cfg_load_file("/nonexistent/serve.json", &cfg, err, sizeof err);
    cr_assert_eq(rc, -ENOENT);
    cr_assert_null(cfg);
    cr_assert_str_eq(err, "/nonexistent/serve.json: No such file or directory");
}

Test(config_file, a_valid_file_loads)
{
    char *dir = make_tmpdir(), path[PATH_MAX], err[CFG_ERR_LEN] = "";
    join(path, sizeof path, dir, "serve.json");
    char *text = dq(full_config);
    write_file(path, text);
    free(text);

    cfg_config *cfg = NULL;
    cr_assert_eq(cfg_load_file(path, &cfg, err, sizeof err), 0, "%s", err);
    cr_assert_eq(cfg->n_apps, 2);
    cr_assert_str_eq(cfg->apps[0].deployments[1].name, "Spanish_v1.2-x");
    cfg_free(cfg);
    unlink(path);
    rmdir(dir);
}

Test(config_file, a_syntax_error_in_a_file_gives_path_line_and_column)
{
    char *dir = make_tmpdir(), path[PATH_MAX], expect[PATH_MAX + 16], err[CFG_ERR_LEN] = "";
    join(path, sizeof path, dir, "bad.json");
    write_file(path, "{\n  \"applications\": [\n    ,\n  ]\n}\n");

    cfg_config *cfg = (cfg_config *)&err;
    cr_assert_eq(cfg_load_file(path, &cfg, err, sizeof err), -EINVAL);
    cr_assert_null(cfg);
    snprintf(expect, sizeof expect, "%s:3:5: ", path);
    cr_assert(!strncmp(err, expect, strlen(expect)), "err: %s", err);
    unlink(path);
    rmdir(dir);
}

Test(config_file, a_rule_broken_in_a_file_names_the_field)
{
    char *dir = make_tmpdir(), path[PATH_MAX], err[CFG_ERR_LEN] = "";
    join(path, sizeof path, dir, "bad.json");
    char *text = dq("{'http_options': {'port': 70000}, 'applications': []}");
    write_file(path, text);
    free(text);

    cfg_config *cfg = NULL;
    cr_assert_eq(cfg_load_file(path, &cfg, err, sizeof err), -EINVAL);
    cr_assert_null(cfg);
    cr_assert_str_eq(err, "http_options.port: must be <= 65535");
    unlink(path);
    rmdir(dir);
}

Test(config_file, a_directory_is_not_a_config_file)
{
    char *dir = make_tmpdir(), err[CFG_ERR_LEN] = "";
    cfg_config *cfg = NULL;
    int rc = cfg_load_file(dir, &cfg, err, sizeof err);
    cr_assert_eq(rc, -EISDIR, "rc %d: %s", rc, err);
    cr_assert_null(cfg);
    cr_assert(!strncmp(err, dir, strlen(dir)), "err: %s", err);
    rmdir(dir);
}

/* ---------------------------------------------------------------------- */
/* cfg_resolve_plugins                                                    */
/* ---------------------------------------------------------------------- */

/* A config with one app whose plugin is `plugin`. */
static cfg_config *config_with_plugin(const char *plugin)
{
    char json[PATH_MAX + 128];
    snprintf(json, sizeof json,
             "{'applications': [{'name': 'a', 'plugin': '%s', 'deployments': [{'name': 'd'}]}]}",
             plugin);
    return parse_ok(json);
}

/* The canonical path of `dir`/`name`, as the resolver should store it. */
static void real_join(char *out, const char *dir, const char *name)
{
    char path[PATH_MAX];
    join(path, sizeof path, dir, name);
    cr_assert_not_null(realpath(path, out), "realpath %s", path);
}

Test(config_plugins, a_relative_plugin_resolves_against_the_config_folder)
{
    char *dir = make_tmpdir(), path[PATH_MAX], want[PATH_MAX], err[CFG_ERR_LEN] = "";
    join(path, sizeof path, dir, "lang.so");
    write_file(path, "");
    real_join(want, dir, "lang.so");

    cfg_config *cfg = config_with_plugin("lang.so");
    cr_assert_eq(cfg_resolve_plugins(cfg, dir, "/nonexistent", err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(cfg->apps[0].plugin, want);
    cfg_free(cfg);
    unlink(path);
    rmdir(dir);
}

Test(config_plugins, a_relative_plugin_with_dot_dot_is_made_canonical)
{
    char *dir = make_tmpdir(), sub[PATH_MAX], path[PATH_MAX], want[PATH_MAX];
    char err[CFG_ERR_LEN] = "";
    join(sub, sizeof sub, dir, "conf");
    cr_assert_eq(mkdir(sub, 0700), 0);
    join(path, sizeof path, dir, "p.so");
    write_file(path, "");
    real_join(want, dir, "p.so");

    cfg_config *cfg = config_with_plugin("../p.so");
    cr_assert_eq(cfg_resolve_plugins(cfg, sub, NULL, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(cfg->apps[0].plugin, want);
    cfg_free(cfg);
    unlink(path);
    rmdir(sub);
    rmdir(dir);
}

Test(config_plugins, a_plugin_is_found_through_the_search_path)
{
    char *dir = make_tmpdir(), a[PATH_MAX], b[PATH_MAX], path[PATH_MAX], want[PATH_MAX];
    char search[2 * PATH_MAX + 2], err[CFG_ERR_LEN] = "";
    join(a, sizeof a, dir, "a");
    join(b, sizeof b, dir, "b");
    cr_assert_eq(mkdir(a, 0700), 0);
    cr_assert_eq(mkdir(b, 0700), 0);
    join(path, sizeof path, b, "x.so");
    write_file(path, "");
    real_join(want, b, "x.so");
    snprintf(search, sizeof search, "%s::%s", a, b);

    cfg_config *cfg = config_with_plugin("x.so");
    cr_assert_eq(cfg_resolve_plugins(cfg, dir, search, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(cfg->apps[0].plugin, want);
    cfg_free(cfg);
    unlink(path);
    rmdir(a);
    rmdir(b);
    rmdir(dir);
}

Test(config_plugins, the_config_folder_wins_over_the_search_path)
{
    char *dir = make_tmpdir(), a[PATH_MAX], p1[PATH_MAX], p2[PATH_MAX], want[PATH_MAX];
    char err[CFG_ERR_LEN] = "";
    join(a, sizeof a, dir, "a");
    cr_assert_eq(mkdir(a, 0700), 0);
    join(p1, sizeof p1, dir, "x.so");
    join(p2, sizeof p2, a, "x.so");
    write_file(p1, "");
    write_file(p2, "");
    real_join(want, dir, "x.so");

    cfg_config *cfg = config_with_plugin("x.so");
    cr_assert_eq(cfg_resolve_plugins(cfg, dir, a, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(cfg->apps[0].plugin, want);
    cfg_free(cfg);
    unlink(p1);
    unlink(p2);
    rmdir(a);
    rmdir(dir);
}

Test(config_plugins, a_null_config_folder_means_the_working_directory)
{
    char *dir = make_tmpdir(), path[PATH_MAX], want[PATH_MAX], err[CFG_ERR_LEN] = "";
    join(path, sizeof path, dir, "w.so");
    write_file(path, "");
    real_join(want, dir, "w.so");
    cr_assert_eq(chdir(dir), 0);

    cfg_config *cfg = config_with_plugin("w.so");
    cr_assert_eq(cfg_resolve_plugins(cfg, NULL, NULL, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(cfg->apps[0].plugin, want);
    cfg_free(cfg);
    unlink(path);
    rmdir(dir);
}

Test(config_plugins, an_absolute_plugin_is_taken_as_is)
{
    char *dir = make_tmpdir(), path[PATH_MAX], want[PATH_MAX], err[CFG_ERR_LEN] = "";
    join(path, sizeof path, dir, "abs.so");
    write_file(path, "");
    real_join(want, dir, "abs.so");

    cfg_config *cfg = config_with_plugin(want);
    cr_assert_eq(cfg_resolve_plugins(cfg, "/nonexistent", NULL, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(cfg->apps[0].plugin, want);
    cfg_free(cfg);
    unlink(path);
    rmdir(dir);
}

Test(config_plugins, a_missing_plugin_lists_the_folders_tried)
{
    char err[CFG_ERR_LEN] = "";
    cfg_config *cfg = config_with_plugin("x.so");
    int rc = cfg_resolve_plugins(cfg, "/nonexistent/conf", "/a:/b", err, sizeof err);
    cr_assert_eq(rc, -ENOENT);
    cr_assert_str_eq(err,
                     "applications[0].plugin: no such file: x.so (looked in: /nonexistent/conf, "
                     "/a, /b)");
    cr_assert_str_eq(cfg->apps[0].plugin, "x.so", "a failed resolution changes nothing");
    cfg_free(cfg);
}

Test(config_plugins, a_missing_plugin_does_not_list_the_config_folder_twice)
{
    char err[CFG_ERR_LEN] = "";
    cfg_config *cfg = config_with_plugin("x.so");
    cr_assert_eq(cfg_resolve_plugins(cfg, "/a", "/a:/b", err, sizeof err), -ENOENT);
    cr_assert_str_eq(err, "applications[0].plugin: no such file: x.so (looked in: /a, /b)");
    cfg_free(cfg);
}

/* cfg_resolve_plugins_within (the admin API's rule): dir/run holds the
   plugin the running config was started with, dir/lib is the search path,
   dir/other is neither. */
Test(config_plugins, an_admin_config_loads_from_the_search_path_and_trusted_folders_only)
{
    char *dir = make_tmpdir(), run[PATH_MAX], lib[PATH_MAX], other[PATH_MAX], path[PATH_MAX];
    char want[PATH_MAX], err[CFG_ERR_LEN] = "";
    const char *names[] = {"run", "lib", "other"};
    char *dirs[] = {run, lib, other};
    for (int i = 0; i < 3; i++) {
        join(dirs[i], PATH_MAX, dir, names[i]);
        cr_assert_eq(mkdir(dirs[i], 0700), 0);
        join(path, sizeof path, dirs[i], "p.so");
        write_file(path, "");
    }
    /* relative names: the base folder first, then the search path */
    cfg_config *cfg = config_with_plugin("run/p.so");
    cr_assert_eq(cfg_resolve_plugins_within(cfg, dir, lib, run, err, sizeof err), 0, "%s", err);
    real_join(want, run, "p.so");
    cr_expect_str_eq(cfg->apps[0].plugin, want);
    cfg_free(cfg);
    cfg = config_with_plugin("p.so");
    cr_assert_eq(cfg_resolve_plugins_within(cfg, dir, lib, run, err, sizeof err), 0, "%s", err);
    real_join(want, lib, "p.so");
    cr_expect_str_eq(cfg->apps[0].plugin, want);
    cfg_free(cfg);
    /* without a base folder, the first folder of the search path */
    cfg = config_with_plugin("p.so");
    cr_assert_eq(cfg_resolve_plugins_within(cfg, NULL, lib, NULL, err, sizeof err), 0, "%s", err);
    cr_expect_str_eq(cfg->apps[0].plugin, want);
    cfg_free(cfg);
    /* found, but in no known folder: refused, saying how to fix it */
    cfg = config_with_plugin("other/p.so");
    cr_expect_eq(cfg_resolve_plugins_within(cfg, dir, lib, run, err, sizeof err), -EPERM);
    cr_expect(strstr(err, "applications[0].plugin: ") && strstr(err, "other/p.so is outside the "
                                                                     "plugin folders"),
              "%s", err);
    cr_expect(strstr(err, "SERVE_PLUGIN_PATH"), "%s", err);
    cfg_free(cfg);
    /* and the trusted folder is trusted only when given */
    cfg = config_with_plugin("run/p.so");
    cr_expect_eq(cfg_resolve_plugins_within(cfg, dir, lib, NULL, err, sizeof err), -EPERM);
    cfg_free(cfg);
    for (int i = 0; i < 3; i++) {
        join(path, sizeof path, dirs[i], "p.so");
        unlink(path);
        rmdir(dirs[i]);
    }
    rmdir(dir);
}

Test(config_plugins, a_missing_absolute_plugin_is_refused)
{
    char err[CFG_ERR_LEN] = "";
    cfg_config *cfg = config_with_plugin("/nonexistent/x.so");
    cr_assert_eq(cfg_resolve_plugins(cfg, "/tmp", NULL, err, sizeof err), -ENOENT);
    cr_assert_str_eq(err, "applications[0].plugin: no such file: /nonexistent/x.so");
    cfg_free(cfg);
}

Test(config_plugins, a_directory_is_not_a_plugin)
{
    char *dir = make_tmpdir(), sub[PATH_MAX], err[CFG_ERR_LEN] = "";
    join(sub, sizeof sub, dir, "p.so");
    cr_assert_eq(mkdir(sub, 0700), 0);

    cfg_config *cfg = config_with_plugin("p.so");
    cr_assert_eq(cfg_resolve_plugins(cfg, dir, NULL, err, sizeof err), -ENOENT);
    cr_assert(strstr(err, "applications[0].plugin: no such file: p.so"), "err: %s", err);
    cfg_free(cfg);
    rmdir(sub);
    rmdir(dir);
}

Test(config_plugins, the_failing_application_is_named_and_earlier_ones_stay_unchanged)
{
    char *dir = make_tmpdir(), path[PATH_MAX], err[CFG_ERR_LEN] = "";
    join(path, sizeof path, dir, "ok.so");
    write_file(path, "");

    cfg_config *cfg = parse_ok(CONF("{'name': 'a', 'route_prefix': '/a', 'plugin': 'ok.so',"
                                    " 'deployments': [{'name': 'd'}]},"
                                    "{'name': 'b', 'route_prefix': '/b', 'plugin': 'gone.so',"
                                    " 'deployments': [{'name': 'd'}]}"));
    cr_assert_eq(cfg_resolve_plugins(cfg, dir, NULL, err, sizeof err), -ENOENT);
    cr_assert(!strncmp(err, "applications[1].plugin: no such file: gone.so",
                       strlen("applications[1].plugin: no such file: gone.so")),
              "err: %s", err);
    cr_assert_str_eq(cfg->apps[0].plugin, "ok.so");
    cfg_free(cfg);
    unlink(path);
    rmdir(dir);
}

Test(config_valid, a_null_user_config_counts_as_absent)
{
    cfg_config *cfg = parse_ok(CONF("{'name': 'a', 'plugin': 'a.so',"
                                    " 'deployments': [{'name': 'n', 'user_config': null}]}"));
    cr_expect_null(cfg->apps[0].deployments[0].user_config_json);
    cfg_free(cfg);
}

Test(config_errors, autoscaling_replica_counts_are_capped_like_num_replicas)
{
    expect_error(CONF("{'name': 'a', 'plugin': 'a.so', 'deployments': [{'name': 'n',"
                      " 'autoscaling_config': {'max_replicas': 5000}}]}"),
                 "applications[0].deployments[0].autoscaling_config.max_replicas: "
                 "must be <= 1024");
    expect_error(CONF("{'name': 'a', 'plugin': 'a.so', 'deployments': [{'name': 'n',"
                      " 'autoscaling_config': {'initial_replicas': 5000, 'max_replicas': 8}}]}"),
                 "applications[0].deployments[0].autoscaling_config.initial_replicas: "
                 "must be <= 1024");
}

Test(config_valid, the_router_limits_and_access_log_have_defaults_and_can_be_set)
{
    cfg_config *cfg = parse_ok("{\"applications\": []}");
    cr_expect_eq(cfg->max_body_bytes, 64 << 20);
    cr_expect_eq(cfg->max_header_bytes, 8 << 10);
    cr_expect_eq(cfg->access_log, 1);
    cfg_free(cfg);
    cfg = parse_ok("{'http_options': {'max_body_bytes': 10, 'max_header_bytes': 2048,"
                   " 'access_log': false}, 'applications': []}");
    cr_expect_eq(cfg->max_body_bytes, 10);
    cr_expect_eq(cfg->max_header_bytes, 2048);
    cr_expect_eq(cfg->access_log, 0);
    cfg_free(cfg);
    expect_error("{'http_options': {'access_log': 1}, 'applications': []}",
                 "http_options.access_log: must be true or false");
    expect_error("{'http_options': {'max_header_bytes': 100}, 'applications': []}",
                 "http_options.max_header_bytes: must be >= 1024");
}

/* ---------------------------------------------------------------------- */
/* Handle bindings                                                        */
/* ---------------------------------------------------------------------- */

#define TWO_DEPS(args_a, args_b)                                                                   \
    CONF("{'name': 'a', 'plugin': 'a.so', 'ingress': 'A', 'deployments': ["                        \
         "{'name': 'A', 'init_args': " args_a "}, {'name': 'B', 'init_args': " args_b "}]}")

Test(bindings, init_args_deployment_objects_become_bindings_in_the_same_app_by_default)
{
    cfg_config *cfg = parse_ok(CONF(
        "{'name': 'a', 'plugin': 'a.so', 'ingress': 'A', 'deployments': ["
        "{'name': 'A', 'init_args': {'x': 1, 'fr': {'deployment': 'B'}, "
        "'other': {'deployment': 'C', 'app': 'b'}, 'plain': {'k': 'v'}}}, {'name': 'B'}]}, "
        "{'name': 'b', 'route_prefix': '/b', 'plugin': 'b.so', 'deployments': [{'name': 'C'}]}"));
    const cfg_deployment *d = &cfg->apps[0].deployments[0];
    cr_assert_eq(d->n_bindings, 2);
    cr_expect_str_eq(d->bindings[0].name, "fr");
    cr_expect_str_eq(d->bindings[0].app, "a");
    cr_expect_str_eq(d->bindings[0].deployment, "B");
    cr_expect_str_eq(d->bindings[1].name, "other");
    cr_expect_str_eq(d->bindings[1].app, "b");
    cr_expect_str_eq(d->bindings[1].deployment, "C");
    cr_expect_eq(cfg->apps[0].deployments[1].n_bindings, 0);
    cr_expect(strstr(d->init_args_json, "\"fr\"") != NULL, "init still sees the binding");
    cfg_free(cfg);
}

Test(bindings, a_chain_and_a_diamond_are_fine)
{
    cfg_free(parse_ok(CONF("{'name': 'a', 'plugin': 'a.so', 'ingress': 'A', 'deployments': ["
                           "{'name': 'A', 'init_args': {'b': {'deployment': 'B'}, "
                           "'c': {'deployment': 'C'}}}, "
                           "{'name': 'B', 'init_args': {'d': {'deployment': 'D'}}}, "
                           "{'name': 'C', 'init_args': {'d': {'deployment': 'D'}}}, "
                           "{'name': 'D'}]}")));
}

Test(bindings, a_missing_deployment_is_named)
{
    expect_error(TWO_DEPS("{'fr': {'deployment': 'French'}}", "{}"),
                 "applications[0].deployments[0].init_args.fr: binds to deployment 'French', "
                 "which application 'a' does not have");
}

Test(bindings, a_missing_application_is_named)
{
    expect_error(TWO_DEPS("{}", "{'x': {'deployment': 'A', 'app': 'nope'}}"),
                 "applications[0].deployments[1].init_args.x: binds to application 'nope', "
                 "which does not exist");
}

Test(bindings, a_cycle_is_refused_with_its_path)
{
    expect_error(TWO_DEPS("{'b': {'deployment': 'B'}}", "{'a': {'deployment': 'A'}}"),
                 "applications[0].deployments[1].init_args.a: bindings form a cycle: "
                 "a/A -> a/B -> a/A");
}

Test(bindings, a_deployment_bound_to_itself_is_a_cycle)
{
    expect_error(ONE_DEP(", 'init_args': {'me': {'deployment': 'd'}}"),
                 "applications[0].deployments[0].init_args.me: bindings form a cycle: a/d -> a/d");
}

Test(bindings, a_cycle_across_applications_is_refused)
{
    expect_error(CONF("{'name': 'a', 'plugin': 'a.so', 'deployments': ["
                      "{'name': 'A', 'init_args': {'y': {'deployment': 'B', 'app': 'b'}}}]}, "
                      "{'name': 'b', 'route_prefix': '/b', 'plugin': 'b.so', 'deployments': ["
                      "{'name': 'B', 'init_args': {'x': {'deployment': 'A', 'app': 'a'}}}]}"),
                 "applications[1].deployments[0].init_args.x: bindings form a cycle: "
                 "a/A -> b/B -> a/A");
}

Test(bindings, a_binding_object_has_only_deployment_and_app)
{
    expect_error(TWO_DEPS("{'b': {'deployment': 'B', 'replicas': 2}}", "{}"),
                 "applications[0].deployments[0].init_args.b.replicas: unknown field: a binding "
                 "has only \"deployment\" and \"app\"");
    expect_error(TWO_DEPS("{'b': {'deployment': 3}}", "{}"),
                 "applications[0].deployments[0].init_args.b.deployment: must be a non-empty "
                 "string");
    expect_error(TWO_DEPS("{'b': {'deployment': 'B', 'app': ''}}", "{}"),
                 "applications[0].deployments[0].init_args.b.app: must be a non-empty string");
}

/* ---------------------------------------------------------------------- */
/* logging_config                                                         */
/* ---------------------------------------------------------------------- */

Test(config_logging, without_logging_config_replicas_log_info_as_text)
{
    cfg_config *cfg = parse_ok(ONE_DEP(""));
    cr_assert_str_eq(cfg_log_level(cfg, &cfg->apps[0], &cfg->apps[0].deployments[0]), "INFO");
    cr_assert_str_eq(cfg_log_encoding(cfg, NULL, NULL), "TEXT");
    cr_assert_null(cfg->logging.logs_dir);
    cfg_free(cfg);
}

Test(config_logging, the_nearest_level_that_sets_a_field_wins)
{
    cfg_config *cfg = parse_ok(
        "{'logging_config': {'log_level': 'WARNING', 'encoding': 'JSON', 'logs_dir': '/x'},"
        " 'applications': [{'name': 'a', 'plugin': 'a.so', 'logging_config': {'log_level': "
        "'error'}, 'deployments': [{'name': 'd', 'logging_config': {'log_level': 'DEBUG'}},"
        " {'name': 'e'}, {'name': 'f', 'logging_config': {'encoding': 'text'}}], 'ingress': 'd'},"
        " {'name': 'b', 'route_prefix': '/b', 'plugin': 'b.so', 'deployments': [{'name': 'd'}]}]}");
    const cfg_app *a = &cfg->apps[0], *b = &cfg->apps[1];
    cr_assert_str_eq(cfg_log_level(cfg, a, &a->deployments[0]), "DEBUG");
    cr_assert_str_eq(cfg_log_level(cfg, a, &a->deployments[1]), "error");
    cr_assert_str_eq(cfg_log_level(cfg, b, &b->deployments[0]), "WARNING");
    cr_assert_str_eq(cfg_log_encoding(cfg, a, &a->deployments[0]), "JSON");
    cr_assert_str_eq(cfg_log_encoding(cfg, a, &a->deployments[2]), "text");
    cr_assert_str_eq(cfg->logging.logs_dir, "/x");
    cfg_free(cfg);
}

Test(config_logging, an_unknown_level_is_refused_with_the_field_named)
{
    expect_error(ONE_DEP(", 'logging_config': {'log_level': 'LOUD'}"),
                 "applications[0].deployments[0].logging_config.log_level: must be DEBUG, INFO, "
                 "WARNING, ERROR or OFF");
    expect_error("{'logging_config': {'encoding': 'XML'}, 'applications': []}",
                 "logging_config.encoding: must be TEXT or JSON");
}

Test(config_logging, logs_dir_is_only_a_top_level_field)
{
    expect_error(ONE_DEP(", 'logging_config': {'logs_dir': '/tmp'}"),
                 "applications[0].deployments[0].logging_config.logs_dir: unknown field "
                 "(docs/config.md lists every field)");
    expect_error("{'logging_config': {'logs_dir': ''}, 'applications': []}",
                 "logging_config.logs_dir: must not be empty");
}
