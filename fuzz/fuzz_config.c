/*
 * fuzz_config.c - libFuzzer target for the config parser (serve/config.h).
 *
 * The config reaches cfg_parse from a file and from the admin API's PUT, so
 * its bytes are untrusted. Each input is parsed as a whole config; beyond
 * "no crash, no leak, no undefined behaviour" the target checks the
 * parser's contract:
 *   - failure: a negative code, no config, and a non-empty NUL-terminated
 *     message that fits the caller's buffer even when that is tiny;
 *   - success: rules the controller relies on hold (route prefixes are
 *     well formed, the ingress is a deployment of its app), and the
 *     compact document kept for `serve config` parses back to the same
 *     applications (what `serve config > x.json; serve deploy x.json`
 *     does).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz/fuzz.h"
#include "serve/config.h"

/* Parse with an error buffer of exactly `errlen` heap bytes, so that ASan
   sees a message written past it. */
static int parse(const uint8_t *data, size_t size, cfg_config **cfg, size_t errlen)
{
    char *err = malloc(errlen);
    FUZZ_CHECK(err);
    memset(err, 'x', errlen);
    int rc = cfg_parse((const char *)data, size, cfg, err, errlen);
    if (rc != 0) {
        FUZZ_CHECK(rc < 0 && *cfg == NULL);
        FUZZ_CHECK(memchr(err, '\0', errlen) != NULL); /* terminated within the buffer */
        FUZZ_CHECK(err[0] != '\0');                    /* and says something */
    } else {
        FUZZ_CHECK(*cfg != NULL);
    }
    free(err);
    return rc;
}

/* The rules of config.h that later code takes for granted. */
static void check_config(const cfg_config *cfg)
{
    FUZZ_CHECK(cfg->source_json && cfg->http_host && cfg->admin_host);
    FUZZ_CHECK(cfg->http_port >= 1 && cfg->http_port <= 65535);
    for (size_t i = 0; i < cfg->n_apps; i++) {
        const cfg_app *app = &cfg->apps[i];
        size_t n = strlen(app->route_prefix);
        FUZZ_CHECK(app->name && app->plugin && n >= 1 && app->route_prefix[0] == '/');
        FUZZ_CHECK(n == 1 || app->route_prefix[n - 1] != '/');
        FUZZ_CHECK(app->n_deployments >= 1 && cfg_app_deployment(app, app->ingress));
        for (size_t j = 0; j < app->n_deployments; j++) {
            const cfg_deployment *dep = &app->deployments[j];
            FUZZ_CHECK(dep->num_replicas >= 0 && dep->max_ongoing_requests >= 1);
            FUZZ_CHECK(dep->init_args_json && cfg_log_level(cfg, app, dep));
        }
    }
}

/* The document kept for `serve config` is itself a valid config with the
   same applications. */
static void check_round_trip(const cfg_config *cfg)
{
    cfg_config *again = NULL;
    const char *text = cfg->source_json;
    int rc = parse((const uint8_t *)text, strlen(text), &again, CFG_ERR_LEN);
    FUZZ_CHECK(rc == 0 && again->n_apps == cfg->n_apps);
    for (size_t i = 0; i < cfg->n_apps; i++) {
        FUZZ_CHECK(strcmp(again->apps[i].name, cfg->apps[i].name) == 0);
        FUZZ_CHECK(strcmp(again->apps[i].route_prefix, cfg->apps[i].route_prefix) == 0);
        FUZZ_CHECK(again->apps[i].n_deployments == cfg->apps[i].n_deployments);
    }
    cfg_free(again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cfg_config *cfg = NULL;
    if (parse(data, size, &cfg, CFG_ERR_LEN) == 0) {
        check_config(cfg);
        check_round_trip(cfg);
        cfg_free(cfg);
    } else {
        /* The same refusal, its message cut to a 16-byte buffer. */
        FUZZ_CHECK(parse(data, size, &cfg, 16) != 0);
    }
    return 0;
}
