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
 *
 * $TMPDIR is usually /tmp, which every local user can write, and the
 * session names are easy to guess: another user could create /tmp/serve
 * first and plant serve.log -> a file of ours, and we would append to it.
 * So the base folder is used only if it is a real folder (not a symbolic
 * link) that we own and nobody else can write; otherwise we warn and log to
 * stderr only. Inside it, the session folder must be new (made by this
 * call, never an existing one), and every folder we make is 0700, every
 * file 0600 (log_open_file, which also refuses to follow a symbolic link).
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

/* mkdir -p: every missing folder of `path`, made 0700 (logs are private).
   0 or a negative errno. */
static int make_dirs(const char *path)
{
    char buf[4096];
    if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf)) return -ENAMETOOLONG;
    for (char *p = buf + 1;; p++) {
        if (*p != '/' && *p != '\0') continue;
        char c = *p;
        *p = '\0';
        if (mkdir(buf, 0700) != 0 && errno != EEXIST) return -errno;
        if (c == '\0') return 0;
        *p = c;
    }
}

/* Make `base` (0700) unless it exists, and check that it is ours alone: a
   folder, not a symbolic link, owned by us, not writable by group or
   others. NULL, or what is wrong, in words (a static string). */
static const char *own_base(const char *base)
{
    struct stat st;
    if (mkdir(base, 0700) != 0 && errno != EEXIST) return strerror(errno);
    if (lstat(base, &st) != 0) return strerror(errno);
    if (S_ISLNK(st.st_mode)) return "it is a symbolic link";
    if (!S_ISDIR(st.st_mode)) return "it is not a folder";
    if (st.st_uid != geteuid()) return "another user owns it";
    if (st.st_mode & (S_IWGRP | S_IWOTH)) return "other users can write to it";
    return NULL;
}

/* Point <base>/session_latest at `session` (a name in base), replacing
   the old link in one rename so that readers never miss it. Base is ours
   alone (own_base), so nobody can race us for the temporary name. */
static void link_latest(const char *base, const char *session)
{
    char tmp[4200], link[4200];
    snprintf(tmp, sizeof(tmp), "%s/.session_latest.%d", base, (int)getpid());
    snprintf(link, sizeof(link), "%s/session_latest", base);
    unlink(tmp);
    if (symlink(session, tmp) != 0 || rename(tmp, link) != 0) unlink(tmp);
}

/* A new session folder's logs folder (a new string), or NULL after a
   warning saying why. */
static char *session_logs_dir(void)
{
    const char *tmp = getenv("TMPDIR");
    char base[4096], session[128], path[4300];
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    snprintf(base, sizeof(base), "%s/serve", tmp && tmp[0] ? tmp : "/tmp");
    const char *why = own_base(base);
    if (why) {
        log_warn("not using %s for logs (%s): logging to stderr only; set "
                 "logging_config.logs_dir, or remove %s",
                 base, why, base);
        return NULL;
    }
    size_t n = strftime(session, sizeof(session), "session_%Y-%m-%d_%H-%M-%S", &tm);
    snprintf(session + n, sizeof(session) - n, "_%d", (int)getpid());
    /* EEXIST too is a failure: the folder must be one we just made. */
    snprintf(path, sizeof(path), "%s/%s", base, session);
    if (mkdir(path, 0700) != 0) goto fail;
    snprintf(path, sizeof(path), "%s/%s/logs", base, session);
    if (mkdir(path, 0700) != 0) goto fail;
    link_latest(base, session);
    return strdup(path);
fail:
    log_warn("cannot create %s: %s; logging to stderr only", path, strerror(errno));
    return NULL;
}

/* Why serve.log cannot be opened, in words (rc from log_open_file). */
static const char *open_error(int rc)
{
    switch (rc) {
    case -ELOOP:
        return "it is a symbolic link, which serve does not follow";
    case -EINVAL:
        return "it is not a regular file";
    case -EPERM:
        return "another user owns it";
    case -EMLINK:
        return "it has other hard links";
    default:
        return strerror(-rc);
    }
}

/* A given logs_dir that others can write is the operator's choice, but
   worth a word: they can put files there before us (which log_open_file
   then refuses, so serve would not start). */
static void check_given(const char *dir)
{
    struct stat st;
    if (stat(dir, &st) == 0 && (st.st_mode & (S_IWGRP | S_IWOTH)))
        log_warn("logging_config.logs_dir %s is writable by other users", dir);
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
        check_given(c->logs_dir);
    } else if (!(c->logs_dir = session_logs_dir())) {
        return 0;
    }
    char path[4200];
    snprintf(path, sizeof(path), "%s/serve.log", c->logs_dir);
    if ((rc = log_open_file(path)) != 0) {
        snprintf(err, errlen, "cannot open %s: %s", path, open_error(rc));
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
