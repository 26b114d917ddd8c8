/*
 * main.c - the `serve` command line.
 *
 *   serve run CONFIG      start the proxy and the replicas in the foreground
 *   serve __replica       (internal) a replica worker, started by the controller
 *
 * Exit codes: 0 success, 1 a runtime failure (a deployment failed to start,
 * the port is taken), 2 a usage or config error.
 */
#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <uv.h>

#include "common/log.h"
#include "common/util.h"
#include "replica/replica.h"
#include "serve/admin.h"
#include "serve/cli.h"
#include "serve/config.h"
#include "serve/controller.h"
#include "serve/skeleton.h"

#define EXIT_RUNTIME 1
#define EXIT_USAGE   2

static const char usage_main[] =
    "usage: serve <command> [options]\n"
    "\n"
    "Serve deployments written as C plugins over HTTP.\n"
    "\n"
    "commands:\n"
    "  run CONFIG     start the proxy and every application of CONFIG in the\n"
    "                 foreground; Ctrl-C drains requests and stops cleanly\n"
    "  status         show the applications, deployments and replicas of a\n"
    "                 running serve (through its admin API)\n"
    "  config         print the config the applications of a running serve\n"
    "                 were deployed with\n"
    "  deploy CONFIG  send CONFIG to a running serve, which applies it live\n"
    "  shutdown       delete every application of a running serve\n"
    "  new PATH       write a deployment to start from: source, meson.build\n"
    "                 and config, in the new folder PATH\n"
    "\n"
    "options:\n"
    "  -h, --help     show this help (also: serve <command> --help)\n"
    "  --version      print the version\n";

static const char usage_run[] =
    "usage: serve run [--watch] [options] CONFIG\n"
    "\n"
    "Start the HTTP proxy on http_options.host:port and num_replicas replica\n"
    "processes for every deployment in CONFIG, then serve until SIGINT or SIGTERM.\n"
    "A bad config is refused before anything starts, naming the field.\n"
    "\n"
    "options:\n"
    "  --watch             re-apply CONFIG whenever it is saved; a broken or\n"
    "                      unsupported change is reported and the running\n"
    "                      state kept. Live: num_replicas, user_config,\n"
    "                      max_ongoing_requests, max_queued_requests\n"
    "  --log-level LEVEL   debug, info (default), warn, error, off\n"
    "  -h, --help          show this help\n"
    "\n"
    "environment:\n"
    "  SERVE_LOG_LEVEL     the default for --log-level, here and in replicas\n"
    "  SERVE_PLUGIN_PATH   colon-separated folders where relative plugin paths are\n"
    "                      looked up after the config file's own folder\n";

#define WATCH_DEBOUNCE_MS 200 /* an editor's save is several events */

/* serve run's state: the controller, and the watch of the config file. */
typedef struct run_state {
    ctl *controller;
    int exit_code;
    const char *config_path;
    const char *exe;
    int watching;
    uv_fs_event_t event;
    uv_timer_t debounce;
    char base[PATH_MAX];
} run_state;

/* Replicas, sockets and client connections all need descriptors: take the
   hard limit rather than the often tiny default soft limit. */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/* The admin API can change what runs: off this machine only with a token
   (admin.auth_token, or $SERVE_ADMIN_TOKEN). An address literal is judged
   here, before anything starts; a name only once admin_start has bound it
   (it refuses an address that is not loopback). Frees cfg and returns
   NULL when the config breaks that rule. */
static cfg_config *check_admin_exposure(cfg_config *cfg, const char *path)
{
    cfg_admin_token_from_env(cfg);
    if (cfg->admin_auth_token || admin_host_may_be_loopback(cfg->admin_host)) return cfg;
    fprintf(stderr,
            "serve: invalid config %s: admin.host: '%s' is not a loopback address; set "
            "admin.auth_token (or SERVE_ADMIN_TOKEN) to expose the admin API\n",
            path, cfg->admin_host);
    cfg_free(cfg);
    return NULL;
}

/* Load and check the config and its plugin paths; print why not. */
static cfg_config *load_config(const char *path, const char *exe)
{
    char err[CFG_ERR_LEN];
    cfg_config *cfg;
    if (cfg_load_file(path, &cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "serve: invalid config: %s\n", err);
        return NULL;
    }
    char *copy = strdup(path), *search = cfg_plugin_search_path(exe);
    int rc = copy && search ? cfg_resolve_plugins(cfg, dirname(copy), search, err, sizeof(err))
                            : -ENOMEM;
    free(copy);
    free(search);
    if (rc != 0) {
        fprintf(stderr, "serve: invalid config %s: %s\n", path, err);
        cfg_free(cfg);
        return NULL;
    }
    return check_admin_exposure(cfg, path);
}

/* The serve binary's own path: replicas are started from it, and plugins
   and the build tree's pkg-config file are found next to it. */
static int own_path(char *exe, size_t size)
{
    if (uv_exepath(exe, &size) == 0) return 0;
    fprintf(stderr, "serve: cannot find my own executable\n");
    return -1;
}

/* `serve new`: the next steps it prints name serve as the user ran it. */
static int cmd_new(int argc, char **argv, const char *argv0)
{
    char exe[PATH_MAX];
    if (own_path(exe, sizeof(exe)) != 0) return EXIT_RUNTIME;
    return skeleton_main(argc, argv, exe, strchr(argv0, '/') ? exe : "serve");
}

/* SERVE_LOG_LEVEL sets the starting level of every process. */
static void log_level_from_env(void)
{
    const char *env = getenv("SERVE_LOG_LEVEL");
    int level = env ? log_level_parse(env) : -1;
    if (level >= 0) log_min_level = (log_level)level;
}

/* The config file is the operator's: `serve deploy` of it may load what
   it names (ctl_trust_file). */
static int trust_file(run_state *s)
{
    char copy[PATH_MAX], dir[PATH_MAX];
    snprintf(copy, sizeof(copy), "%s", s->config_path);
    int rc = realpath(dirname(copy), dir) ? ctl_trust_file(s->controller, dir) : -errno;
    if (rc != 0) log_warn("%s: %s", s->config_path, strerror(-rc));
    return rc;
}

/* ---- serve run --watch ------------------------------------------------- */

static void on_debounced(uv_timer_t *t)
{
    run_state *s = t->data;
    char err[CFG_ERR_LEN];
    cfg_config *next = load_config(s->config_path, s->exe);
    if (!next)
        log_warn("%s not applied; still serving the previous config", s->config_path);
    else if (ctl_apply(s->controller, next, err, sizeof(err)) != 0)
        log_error("%s not applied: %s; still serving the previous config", s->config_path, err);
    else {
        log_info("%s applied", s->config_path);
        trust_file(s); /* a failure is logged; the config is applied either way */
    }
}

/* Editors save by writing in place or by renaming a new file over the old
   one: watch the folder and react to any event on the file's name. */
static void on_config_event(uv_fs_event_t *h, const char *filename, int events, int status)
{
    run_state *s = h->data;
    if (status == 0 && filename && strcmp(filename, s->base) == 0)
        uv_timer_start(&s->debounce, on_debounced, WATCH_DEBOUNCE_MS, 0);
}

static int watch_start(uv_loop_t *loop, run_state *s)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s", s->config_path);
    snprintf(s->base, sizeof(s->base), "%s", basename(dir));
    snprintf(dir, sizeof(dir), "%s", s->config_path);
    uv_fs_event_init(loop, &s->event);
    uv_timer_init(loop, &s->debounce);
    s->event.data = s->debounce.data = s;
    s->watching = 1;
    return uv_fs_event_start(&s->event, on_config_event, dirname(dir), 0);
}

static void on_done(void *arg, int exit_code)
{
    run_state *s = arg;
    s->exit_code = exit_code;
    if (!s->watching) return;
    s->watching = 0;
    uv_close((uv_handle_t *)&s->event, NULL);
    uv_close((uv_handle_t *)&s->debounce, NULL);
}

static int cmd_run(int argc, char **argv)
{
    static const struct option opts[] = {{"help", no_argument, NULL, 'h'},
                                         {"log-level", required_argument, NULL, 'l'},
                                         {"watch", no_argument, NULL, 'w'},
                                         {NULL, 0, NULL, 0}};
    int c, level, watch = 0;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'h':
            fputs(usage_run, stdout);
            return 0;
        case 'l':
            if ((level = log_level_parse(optarg)) < 0) {
                fprintf(stderr, "serve run: --log-level: unknown level '%s'\n", optarg);
                return EXIT_USAGE;
            }
            log_min_level = (log_level)level;
            setenv("SERVE_LOG_LEVEL", optarg, 1); /* replicas inherit it */
            break;
        case 'w':
            watch = 1;
            break;
        default:
            fputs(usage_run, stderr);
            return EXIT_USAGE;
        }
    }
    if (optind != argc - 1) {
        fputs(usage_run, stderr);
        return EXIT_USAGE;
    }
    char exe[PATH_MAX], err[512];
    if (own_path(exe, sizeof(exe)) != 0) return EXIT_RUNTIME;
    cfg_config *cfg = load_config(argv[optind], exe);
    if (!cfg) return EXIT_USAGE;
    raise_fd_limit();
    util_keep_freed_heap(); /* the proxy's request bodies */
    signal(SIGPIPE, SIG_IGN);
    log_set_process(&(log_fields){.component = "controller"});

    uv_loop_t loop;
    uv_loop_init(&loop);
    run_state s = {.config_path = argv[optind], .exe = exe};
    if (ctl_start(&loop, cfg, exe, on_done, &s, &s.controller, err, sizeof(err)) != 0) {
        fprintf(stderr, "serve: %s\n", err);
        s.exit_code = EXIT_RUNTIME;
    } else {
        trust_file(&s);
        if (watch && (level = watch_start(&loop, &s)) < 0) {
            log_error("--watch: cannot watch %s: %s", s.config_path, uv_strerror(level));
            ctl_shutdown(s.controller);
        }
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    int rc = uv_loop_close(&loop);
    if (rc != 0) log_warn("event loop closed with handles open: %s", uv_strerror(rc));
    return s.exit_code ? EXIT_RUNTIME : 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs(usage_main, stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "help") == 0) {
        fputs(usage_main, stdout);
        return 0;
    }
    if (strcmp(cmd, "--version") == 0) {
        printf("serve %s\n", SERVE_VERSION);
        return 0;
    }
    log_level_from_env();
    if (strcmp(cmd, "run") == 0) return cmd_run(argc - 1, argv + 1);
    if (strcmp(cmd, "status") == 0) return cli_status(argc - 1, argv + 1);
    if (strcmp(cmd, "config") == 0) return cli_config(argc - 1, argv + 1);
    if (strcmp(cmd, "deploy") == 0) return cli_deploy(argc - 1, argv + 1);
    if (strcmp(cmd, "shutdown") == 0) return cli_shutdown(argc - 1, argv + 1);
    if (strcmp(cmd, "new") == 0) return cmd_new(argc - 1, argv + 1, argv[0]);
    if (strcmp(cmd, "__replica") == 0) return replica_main();
    fprintf(stderr, "serve: unknown command '%s'\n\n%s", cmd, usage_main);
    return EXIT_USAGE;
}
