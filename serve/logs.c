/*
 * logs.c - where and how the controller's processes log: the level and
 * encoding of each from logging_config, and the logs folder, which holds
 * serve.log (the controller, proxy and admin API, access lines included)
 * and one replica_<app>_<deployment>_<id>.log per replica.
 *
 * Without logging_config.logs_dir, each `serve run` gets a new session
 * folder, $TMPDIR/serve/session_<date>_<time>_<pid>/logs, and
 * $TMPDIR/serve/session_latest points at the newest, as Ray's
 * /tmp/ray/session_latest does.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "serve/internal.h"

/* mkdir -p: every missing folder of `path`. 0 or a negative errno. */
static int make_dirs(const char *path)
{
    char buf[4096];
    if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf)) return -ENAMETOOLONG;
    for (char *p = buf + 1;; p++) {
        if (*p != '/' && *p != '\0') continue;
        char c = *p;
        *p = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST) return -errno;
        if (c == '\0') return 0;
        *p = c;
    }
}

/* Point <base>/session_latest at `session` (a name in base), replacing
   the old link in one rename so that readers never miss it. */
static void link_latest(const char *base, const char *session)
{
    char tmp[4200], link[4200];
    snprintf(tmp, sizeof(tmp), "%s/.session_latest.%d", base, (int)getpid());
    snprintf(link, sizeof(link), "%s/session_latest", base);
    unlink(tmp);
    if (symlink(session, tmp) != 0 || rename(tmp, link) != 0) unlink(tmp);
}

/* A new session folder's logs folder (a new string), or NULL. */
static char *session_logs_dir(void)
{
    const char *tmp = getenv("TMPDIR");
    char base[4096], session[128], *dir = NULL;
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    snprintf(base, sizeof(base), "%s/serve", tmp && tmp[0] ? tmp : "/tmp");
    size_t n = strftime(session, sizeof(session), "session_%Y-%m-%d_%H-%M-%S", &tm);
    snprintf(session + n, sizeof(session) - n, "_%d", (int)getpid());
    if (asprintf(&dir, "%s/%s/logs", base, session) < 0) return NULL;
    if (make_dirs(dir) != 0) {
        free(dir);
        return NULL;
    }
    link_latest(base, session);
    return dir;
}

int ctl__logs_open(ctl *c, char *err, size_t errlen)
{
    const char *given = c->cfg->logging.logs_dir;
    int rc;
    if (given) {
        if ((rc = make_dirs(given)) != 0 || !(c->logs_dir = realpath(given, NULL))) {
            snprintf(err, errlen, "logging_config.logs_dir: cannot create %s: %s", given,
                     strerror(rc ? -rc : errno));
            return rc ? rc : -errno;
        }
    } else if (!(c->logs_dir = session_logs_dir())) {
        log_warn("cannot create a logs folder under $TMPDIR/serve: logging to stderr only");
        return 0;
    }
    char path[4200];
    snprintf(path, sizeof(path), "%s/serve.log", c->logs_dir);
    if ((rc = log_open_file(path)) != 0) {
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(-rc));
        return rc;
    }
    log_info("logs in %s", c->logs_dir);
    return 0;
}

/* The controller's level: SERVE_LOG_LEVEL (which --log-level sets) beats
   the file, as a command line usually does. */
static const char *top_level(const ctl *c)
{
    const char *env = getenv("SERVE_LOG_LEVEL");
    return env && log_level_parse(env) >= 0 ? env : cfg_log_level(c->cfg, NULL, NULL);
}

/* A replica's level: its deployment's or application's, else the top's. */
static const char *replica_level(const ctl_dep *d)
{
    const char *own = cfg_log_level(d->ref->cfg, d->app, d->cfg);
    int set_below = d->cfg->logging.log_level || d->app->logging.log_level;
    return set_below ? own : top_level(d->c);
}

json_t *ctl__replica_logging(const ctl_dep *d, int with_dir)
{
    return json_pack("{s:s, s:s, s:s*}", "level", replica_level(d), "encoding",
                     cfg_log_encoding(d->ref->cfg, d->app, d->cfg), "dir",
                     with_dir ? d->c->logs_dir : NULL);
}

void ctl__logs_apply(ctl *c)
{
    log_min_level = (log_level)log_level_parse(top_level(c));
    log_encoding_in_use = (log_encoding)log_encoding_parse(cfg_log_encoding(c->cfg, NULL, NULL));
    for (ctl_dep *d = c->deps; d; d = d->next) {
        json_t *msg = ctl__replica_logging(d, 0);
        char *text = msg ? json_dumps(msg, JSON_COMPACT) : NULL;
        for (rep *p = d->reps; text && p; p = p->next)
            if (p->control) ipc_conn_send(p->control, IPC_LOGGING, 0, text, strlen(text));
        free(text);
        json_decref(msg);
    }
}
