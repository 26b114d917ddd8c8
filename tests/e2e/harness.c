/*
 * harness.c - run the real `serve` binary from end-to-end tests. See
 * harness.h for the contract; this file is processes, /proc and libcurl.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "harness.h"

#include <ctype.h>
#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define H_POLL_MS       10   /* interval of every wait loop */
#define H_READY_TRY_S   2.0  /* cap on one readiness probe */
#define H_CMDLINE_MAX   4096 /* bytes of /proc/N/cmdline looked at */
#define H_ORPHAN_REAP_S 5.0  /* how long cleanup waits for killed orphans */
#define H_TEARDOWN_S    2.0  /* how long cleanup lets a serve stop cleanly */

extern char **environ;

_Static_assert(sizeof(((h_response *)0)->error) >= CURL_ERROR_SIZE,
               "h_response.error must hold a libcurl error buffer");

static h_serve *registry;
static pthread_once_t process_once = PTHREAD_ONCE_INIT;

/* ---- Small utilities --------------------------------------------------- */

double h_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void h_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) continue;
}

int h_free_port(void)
{
    struct sockaddr_in addr = {
        .sin_family = AF_INET, .sin_port = 0, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(addr);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0 &&
        getsockname(fd, (struct sockaddr *)&addr, &len) == 0)
        port = ntohs(addr.sin_port);
    if (fd >= 0) close(fd);
    return port;
}

int h_connect(int port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}

ssize_t h_read_until_close(int fd, double deadline, char *buf, size_t size, int *closed)
{
    size_t len = 0;
    *closed = 0;
    buf[0] = '\0';
    while (len + 1 < size) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        double left = deadline - h_now();
        if (left <= 0 || poll(&p, 1, (int)(left * 1000) + 1) <= 0) break;
        ssize_t n = recv(fd, buf + len, size - 1 - len, 0);
        if (n <= 0) {
            *closed = 1; /* an orderly end, or reset */
            break;
        }
        len += (size_t)n;
        buf[len] = '\0';
    }
    return (ssize_t)len;
}

uint64_t h_fnv1a64(const void *data, size_t len)
{
    const unsigned char *p = data;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < len; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

char *h_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, n = 0, got;
    char *buf = malloc(cap + 1);
    while (buf && (got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            char *bigger = realloc(buf, cap * 2 + 1);
            if (!bigger) free(buf);
            buf = bigger;
            cap *= 2;
        }
    }
    fclose(f);
    if (!buf) return NULL;
    buf[n] = '\0';
    if (len) *len = n;
    return buf;
}

/* State letter and parent pid of `pid` from /proc/pid/stat; -1 if gone. */
static int proc_stat(pid_t pid, char *state, pid_t *ppid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0) return -1;
    buf[n] = '\0';
    /* "pid (comm) S ppid ...": comm may hold spaces and parentheses. */
    char *end = strrchr(buf, ')');
    int pp;
    if (!end || sscanf(end + 1, " %c %d", state, &pp) != 2) return -1;
    *ppid = (pid_t)pp;
    return 0;
}

int h_pid_alive(pid_t pid)
{
    char state;
    pid_t ppid;
    if (pid <= 0 || (kill(pid, 0) != 0 && errno != EPERM)) return 0;
    return proc_stat(pid, &state, &ppid) == 0 && state != 'Z' && state != 'X';
}

int h_pid_gone_within(pid_t pid, double timeout_s)
{
    double deadline = h_now() + timeout_s;
    while (h_pid_alive(pid)) {
        if (h_now() >= deadline) return 0;
        h_sleep_ms(10);
    }
    return 1;
}

/* Whether any argument of `pid`'s command line contains `needle`. */
static int cmdline_has(pid_t pid, const char *needle)
{
    char path[64], buf[H_CMDLINE_MAX + 1];
    snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    ssize_t n = read(fd, buf, H_CMDLINE_MAX);
    close(fd);
    if (n <= 0) return 0;
    buf[n] = '\0';
    for (char *arg = buf; arg < buf + n; arg += strlen(arg) + 1)
        if (strstr(arg, needle)) return 1;
    return 0;
}

size_t h_children(pid_t parent, const char *needle, pid_t *out, size_t max)
{
    DIR *d = opendir("/proc");
    struct dirent *e;
    size_t n = 0;
    if (!d) return 0;
    while ((e = readdir(d))) {
        if (!isdigit((unsigned char)e->d_name[0])) continue;
        pid_t pid = (pid_t)atoi(e->d_name), ppid;
        char state;
        if (proc_stat(pid, &state, &ppid) != 0 || ppid != parent || state == 'Z') continue;
        if (needle && !cmdline_has(pid, needle)) continue;
        if (n < max) out[n] = pid;
        n++;
    }
    closedir(d);
    return n;
}

int h_pid_in(pid_t pid, const pid_t *pids, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (pids[i] == pid) return 1;
    return 0;
}

/* ---- Process-wide setup ------------------------------------------------ */

/* Once per test process: libcurl, SIGPIPE, and becoming a subreaper so that
   replicas outliving their serve become our children (and visible). */
static void process_init(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    signal(SIGPIPE, SIG_IGN);
    prctl(PR_SET_CHILD_SUBREAPER, 1);
}

/* An environment variable turned into an absolute path (NULL if unset). */
static int env_path(const char *name, char out[PATH_MAX])
{
    const char *v = getenv(name);
    if (!v || !*v) {
        fprintf(stderr, "harness: %s is not set (run through `meson test`)\n", name);
        return -1;
    }
    if (!realpath(v, out)) {
        fprintf(stderr, "harness: %s=%s: %s\n", name, v, strerror(errno));
        return -1;
    }
    return 0;
}

/* ---- One serve instance ------------------------------------------------ */

h_serve *h_serve_new(void)
{
    pthread_once(&process_once, process_init);
    h_serve *s = calloc(1, sizeof(*s));
    if (!s) return NULL;
    const char *tmp = getenv("TMPDIR");
    if (!tmp || !*tmp || strlen(tmp) > H_DIR_MAX - 32) tmp = "/tmp";
    snprintf(s->dir, sizeof(s->dir), "%s/serve-e2e-XXXXXX", tmp);
    if (!mkdtemp(s->dir)) {
        fprintf(stderr, "harness: mkdtemp %s: %s\n", s->dir, strerror(errno));
        free(s);
        return NULL;
    }
    snprintf(s->config_path, sizeof(s->config_path), "%s/config.json", s->dir);
    snprintf(s->log_path, sizeof(s->log_path), "%s/serve.log", s->dir);
    s->port = h_free_port();
    do s->admin_port = h_free_port();
    while (s->admin_port == s->port);
    s->pid = -1;
    s->exit_code = -1;
    s->http_timeout_s = H_HTTP_TIMEOUT;
    s->next = registry;
    registry = s;
    return s;
}

int h_serve_write_file(h_serve *s, const char *name, const void *data, size_t len,
                       char path_out[H_PATH_MAX])
{
    char path[H_PATH_MAX];
    if (snprintf(path, sizeof(path), "%s/%s", s->dir, name) >= (int)sizeof(path)) return -1;
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    int ok = fwrite(data, 1, len, f) == len;
    ok = (fclose(f) == 0) && ok;
    if (ok && path_out) memcpy(path_out, path, sizeof(path));
    return ok ? 0 : -1;
}

/* Write the config file from a va_list template. */
static int write_config_v(h_serve *s, const char *fmt, va_list ap)
{
    char *text;
    if (vasprintf(&text, fmt, ap) < 0) return -1;
    int rc = h_serve_write_file(s, "config.json", text, strlen(text), NULL);
    free(text);
    return rc;
}

int h_serve_write_config(h_serve *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = write_config_v(s, fmt, ap);
    va_end(ap);
    return rc;
}

int h_serve_write_apps(h_serve *s, const char *apps_fmt, ...)
{
    char *apps;
    va_list ap;
    va_start(ap, apps_fmt);
    int n = vasprintf(&apps, apps_fmt, ap);
    va_end(ap);
    if (n < 0) return -1;
    int rc = h_serve_write_config(s,
                                  "{\"http_options\": {\"host\": \"127.0.0.1\", \"port\": %d},\n"
                                  " \"admin\": {\"host\": \"127.0.0.1\", \"port\": %d},\n"
                                  " \"applications\": [%s]}\n",
                                  s->port, s->admin_port, apps);
    free(apps);
    return rc;
}

/* A copy of our environment with SERVE_PLUGIN_PATH pointing at the build
   tree's plugins (none when build_dir is NULL) and TMPDIR at the scratch
   folder `dir`, so that log session folders go away with it.
   NULL-terminated; free with free_strv. */
static char **child_environ(const char *build_dir, const char *dir)
{
    size_t n = 0;
    while (environ[n]) n++;
    char **env = calloc(n + 3, sizeof(*env));
    size_t k = 0;
    for (size_t i = 0; env && i < n; i++)
        if (strncmp(environ[i], "SERVE_PLUGIN_PATH=", 18) != 0 && strncmp(environ[i], "TMPDIR=", 7))
            env[k++] = strdup(environ[i]);
    if (env && build_dir &&
        asprintf(&env[k++], "SERVE_PLUGIN_PATH=%s/examples:%s/tests/plugins", build_dir,
                 build_dir) < 0)
        env[--k] = NULL;
    if (env && asprintf(&env[k++], "TMPDIR=%s", dir) < 0) env[--k] = NULL;
    return env;
}

static void free_strv(char **v)
{
    for (size_t i = 0; v && v[i]; i++) free(v[i]);
    free(v);
}

/* In the forked child: only async-signal-safe calls until execve. */
static void exec_child(const h_serve *s, pid_t parent, int logfd, int nullfd, char *const *argv,
                       char *const *envp)
{
    struct rlimit no_core = {0, 0};
    sigset_t none;
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* die with the test */
    if (getppid() != parent) _exit(127);
    setrlimit(RLIMIT_CORE, &no_core); /* crash tests must not dump cores */
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    if (dup2(nullfd, 0) < 0 || dup2(logfd, 1) < 0 || dup2(logfd, 2) < 0 || chdir(s->dir) != 0)
        _exit(127);
    execve(argv[0], argv, envp);
    _exit(127);
}

int h_serve_start_args(h_serve *s, const char *const *extra_args)
{
    char bin[PATH_MAX], build[PATH_MAX];
    if (s->pid > 0 || env_path("SERVE_BUILD_DIR", build) != 0) return -1;
    if (s->bin[0])
        snprintf(bin, sizeof(bin), "%s", s->bin);
    else if (env_path("SERVE_BIN", bin) != 0)
        return -1;
    size_t n_extra = 0;
    while (extra_args && extra_args[n_extra]) n_extra++;
    char **argv = calloc(n_extra + 4, sizeof(*argv));
    char **envp = child_environ(s->bin[0] ? NULL : build, s->dir);
    int logfd = open(s->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    int nullfd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    int rc = -1;
    if (!argv || !envp || logfd < 0 || nullfd < 0) goto out;
    argv[0] = bin;
    argv[1] = "run";
    for (size_t i = 0; i < n_extra; i++) argv[2 + i] = (char *)extra_args[i];
    argv[2 + n_extra] = s->config_path;
    pid_t parent = getpid(), pid = fork();
    if (pid == 0) exec_child(s, parent, logfd, nullfd, argv, envp);
    if (pid > 0) {
        setpgid(pid, pid); /* also done by the child: whoever runs first */
        s->pid = pid;
        s->exit_code = -1;
        rc = 0;
    }
out:
    if (logfd >= 0) close(logfd);
    if (nullfd >= 0) close(nullfd);
    free(argv);
    free_strv(envp);
    return rc;
}

int h_serve_start(h_serve *s)
{
    return h_serve_start_args(s, NULL);
}

char *h_serve_log(const h_serve *s)
{
    char *text = h_read_file(s->log_path, NULL);
    return text ? text : strdup("");
}

const char *h_serve_log_tail(const h_serve *s)
{
    static char tail[H_LOG_TAIL_SIZE + 64];
    size_t len;
    char *text = h_read_file(s->log_path, &len);
    if (!text) {
        snprintf(tail, sizeof(tail), "(no log at %s)", s->log_path);
        return tail;
    }
    size_t from = len > H_LOG_TAIL_SIZE ? len - H_LOG_TAIL_SIZE : 0;
    snprintf(tail, sizeof(tail), "%s%s", from ? "[...]" : "", text + from);
    free(text);
    return tail;
}

void h_serve_print_log(const h_serve *s)
{
    char *text = h_serve_log(s);
    fprintf(stderr, "---- serve log (%s) ----\n%s---- end of serve log ----\n", s->log_path, text);
    free(text);
}

/* Turn a wait status into an exit code: the code, or 128 + signal. */
static int exit_code_of(int status)
{
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return -1;
}

int h_serve_running(h_serve *s)
{
    int status;
    if (s->pid <= 0 || s->exit_code >= 0) return 0;
    pid_t got = waitpid(s->pid, &status, WNOHANG);
    if (got == 0) return 1;
    s->exit_code = got == s->pid ? exit_code_of(status) : 255;
    return 0;
}

/* GET `path` with a timeout of at most `cap_s`; its status, 0 if none. */
static long probe(h_serve *s, const char *path, double cap_s)
{
    double saved = s->http_timeout_s;
    h_response r;
    s->http_timeout_s = cap_s < saved ? cap_s : saved;
    h_get(s, path, &r);
    s->http_timeout_s = saved;
    long status = r.status;
    h_response_free(&r);
    return status;
}

/* Has our serve logged that its proxy listens? Until then a probe of the
   port could reach another process that took the port first (the port was
   free when picked, not reserved), e.g. a parallel test's server. */
static int serve_listening(const h_serve *s)
{
    char *log = h_serve_log(s);
    int yes = log && strstr(log, "proxy listening on") != NULL;
    free(log);
    return yes;
}

int h_serve_wait_ready(h_serve *s, const char *path, double timeout_s)
{
    double deadline = h_now() + timeout_s;
    while (h_serve_running(s) && !serve_listening(s)) {
        if (h_now() > deadline) return -1;
        h_sleep_ms(H_POLL_MS);
    }
    while (h_serve_running(s)) {
        double left = deadline - h_now();
        if (left <= 0) return -1;
        if (probe(s, "/-/healthz", left < H_READY_TRY_S ? left : H_READY_TRY_S) == 200 &&
            (!path || probe(s, path, deadline - h_now()) == 200))
            return 0;
        h_sleep_ms(H_POLL_MS);
    }
    return -1;
}

size_t h_serve_replicas(const h_serve *s, pid_t *out, size_t max)
{
    return s->pid > 0 ? h_children(s->pid, "__replica", out, max) : 0;
}

int h_serve_wait_replicas(const h_serve *s, size_t n, double timeout_s, pid_t *out)
{
    double deadline = h_now() + timeout_s;
    do {
        if (h_serve_replicas(s, out, H_MAX_REPLICAS) == n) return 0;
        h_sleep_ms(H_POLL_MS);
    } while (h_now() < deadline);
    return -1;
}

int h_run(const h_serve *s, const char *const *argv, const char *env_extra, const char *out_name,
          char **output)
{
    char path[H_PATH_MAX + H_DIR_MAX];
    snprintf(path, sizeof(path), "%s/%s", s->dir, out_name);
    size_t n_env = 0;
    while (environ[n_env]) n_env++;
    char **env = calloc(n_env + 2, sizeof(*env));
    if (!env) return -1;
    memcpy(env, environ, n_env * sizeof(*env));
    env[n_env] = (char *)env_extra;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    pid_t pid;
    int rc = posix_spawn(&pid, argv[0], &fa, NULL, (char *const *)argv, env);
    posix_spawn_file_actions_destroy(&fa);
    free(env);
    if (rc != 0) return -1;
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (output) *output = h_read_file(path, NULL);
    return exit_code_of(status);
}

int h_sh(const h_serve *s, const char *cwd, const char *command, const char *env_extra,
         const char *out_name, char **output)
{
    char *line = NULL;
    if (asprintf(&line, "cd '%s' && %s", cwd ? cwd : s->dir, command) < 0) return -1;
    const char *argv[] = {"/bin/sh", "-c", line, NULL};
    int code = h_run(s, argv, env_extra, out_name, output);
    free(line);
    return code;
}

/* `dir` under `root` + prefix: as meson install --destdir places it. */
static void install_path(char *out, const char *root, const char *prefix, const char *dir,
                         const char *rest)
{
    int n = dir[0] == '/' ? snprintf(out, H_PATH_MAX, "%s%s%s", root, dir, rest)
                          : snprintf(out, H_PATH_MAX, "%s%s/%s%s", root, prefix, dir, rest);
    if (n >= H_PATH_MAX) out[0] = '\0'; /* too long: no such file */
}

int h_install_into(const h_serve *s, h_install *out)
{
    char build[PATH_MAX], root[H_PATH_MAX], *command = NULL;
    const char *prefix = getenv("SERVE_INSTALL_PREFIX"), *bindir = getenv("SERVE_INSTALL_BINDIR"),
               *libdir = getenv("SERVE_INSTALL_LIBDIR"), *datadir = getenv("SERVE_INSTALL_DATADIR"),
               *includedir = getenv("SERVE_INSTALL_INCLUDEDIR");
    if (env_path("SERVE_BUILD_DIR", build) != 0 || !prefix || !bindir || !libdir || !datadir ||
        !includedir) {
        fprintf(stderr, "harness: SERVE_INSTALL_* are not set (run through `meson test`)\n");
        return -1;
    }
    snprintf(root, sizeof(root), "%s/install", s->dir);
    if (asprintf(&command, "meson install -C '%s' --no-rebuild --quiet --destdir '%s'", build,
                 root) < 0)
        return -1;
    int code = h_sh(s, NULL, command, NULL, "install.out", NULL);
    free(command);
    if (code != 0) return -1;
    install_path(out->bin, root, prefix, bindir, "/serve");
    install_path(out->pkgconfig, root, prefix, libdir, "/pkgconfig");
    install_path(out->include, root, prefix, includedir, "");
    install_path(out->plugindir, root, prefix, libdir, "/serve/plugins");
    install_path(out->demo_config, root, prefix, datadir, "/serve/examples/serve.json");
    return 0;
}

int h_serve_signal(h_serve *s, int sig)
{
    if (!h_serve_running(s)) return -1;
    return kill(s->pid, sig);
}

/* SIGKILL the child's whole process group and the child itself. */
static void kill_group(h_serve *s)
{
    if (s->pid <= 0) return;
    kill(-s->pid, SIGKILL);
    if (s->exit_code < 0) kill(s->pid, SIGKILL);
}

int h_serve_wait_exit(h_serve *s, double timeout_s)
{
    double deadline = h_now() + timeout_s;
    while (h_serve_running(s)) {
        if (h_now() >= deadline) {
            int status;
            kill_group(s);
            if (waitpid(s->pid, &status, 0) == s->pid) s->exit_code = exit_code_of(status);
            return -1;
        }
        h_sleep_ms(H_POLL_MS / 2);
    }
    return s->pid > 0 ? s->exit_code : -1;
}

int h_serve_stop(h_serve *s, int sig, double timeout_s)
{
    if (h_serve_signal(s, sig) != 0) return -1;
    return h_serve_wait_exit(s, timeout_s);
}

size_t h_orphan_replicas(pid_t *out, size_t max)
{
    return h_children(getpid(), "__replica", out, max);
}

/* Wait (bounded) for killed processes that are, or are about to become,
   our children, and reap them. */
static void reap(const pid_t *pids, size_t n)
{
    double deadline = h_now() + H_ORPHAN_REAP_S;
    for (size_t i = 0; i < n; i++) {
        pid_t got;
        while ((got = waitpid(pids[i], NULL, WNOHANG)) != pids[i] && h_now() < deadline) {
            if (got < 0 && !h_pid_alive(pids[i])) break; /* gone, reaped by someone else */
            h_sleep_ms(1);
        }
    }
}

/* SIGKILL replicas re-parented to us and reap them. */
static void kill_orphans(void)
{
    pid_t pids[H_MAX_REPLICAS];
    size_t n = h_orphan_replicas(pids, H_MAX_REPLICAS);
    if (n > H_MAX_REPLICAS) n = H_MAX_REPLICAS;
    for (size_t i = 0; i < n; i++) kill(pids[i], SIGKILL);
    reap(pids, n);
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    remove(path);
    return 0;
}

void h_serve_free(h_serve *s)
{
    if (!s) return;
    for (h_serve **pp = &registry; *pp; pp = &(*pp)->next)
        if (*pp == s) {
            *pp = s->next;
            break;
        }
    pid_t reps[H_MAX_REPLICAS];
    size_t n = h_serve_running(s) ? h_serve_replicas(s, reps, H_MAX_REPLICAS) : 0;
    /* A clean stop first, so that every process exits through its own
       shutdown path, where the sanitizers' leak check runs (make
       test-asan); whatever is still up after a moment is killed. */
    if (h_serve_running(s)) h_serve_stop(s, SIGTERM, H_TEARDOWN_S);
    kill_group(s);
    if (s->pid > 0 && s->exit_code < 0) {
        int status;
        if (waitpid(s->pid, &status, 0) == s->pid) s->exit_code = exit_code_of(status);
    }
    /* Its replicas are ours now (subreaper): reap them, leave no zombie. */
    reap(reps, n < H_MAX_REPLICAS ? n : H_MAX_REPLICAS);
    kill_orphans();
    if (s->curl) curl_easy_cleanup(s->curl);
    if (!getenv("SERVE_E2E_KEEP")) nftw(s->dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(s);
}

void h_cleanup_all(void)
{
    while (registry) h_serve_free(registry);
    kill_orphans();
}

/* ---- HTTP -------------------------------------------------------------- */

/* A growing byte buffer, always NUL-terminated. */
typedef struct h_buf {
    char *data;
    size_t len, cap;
} h_buf;

static int buf_put(h_buf *b, const void *data, size_t len)
{
    if (b->len + len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->len + len + 1) cap *= 2;
        char *p = realloc(b->data, cap);
        if (!p) return -1;
        b->data = p;
        b->cap = cap;
    }
    memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
    return 0;
}

static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
    return buf_put(arg, data, size * n) == 0 ? size * n : 0;
}

/* Keep only the header block of the last answer (skipping 100 Continue). */
static size_t on_header(char *data, size_t size, size_t n, void *arg)
{
    h_buf *b = arg;
    if (size * n >= 5 && strncmp(data, "HTTP/", 5) == 0) b->len = 0;
    return buf_put(b, data, size * n) == 0 ? size * n : 0;
}

int h_response_header(const h_response *r, const char *name, char *buf, size_t size)
{
    size_t name_len = strlen(name);
    for (const char *line = r->headers; line && *line;) {
        const char *eol = strchr(line, '\n');
        size_t len = eol ? (size_t)(eol - line) : strlen(line);
        if (len > name_len && strncasecmp(line, name, name_len) == 0 && line[name_len] == ':') {
            const char *v = line + name_len + 1, *end = line + len;
            while (v < end && (*v == ' ' || *v == '\t')) v++;
            while (end > v && (end[-1] == '\r' || end[-1] == ' ')) end--;
            snprintf(buf, size, "%.*s", (int)(end - v), v);
            return (int)(end - v);
        }
        line = eol ? eol + 1 : line + len;
    }
    if (size) buf[0] = '\0';
    return -1;
}

/* Set the method and body options of one request. */
static void set_method(CURL *c, const char *method, const void *body, size_t body_len)
{
    if (strcmp(method, "HEAD") == 0) {
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    } else if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        if (strcmp(method, "POST") != 0) curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    } else if (strcmp(method, "GET") == 0) {
        curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    } else {
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    }
}

/* One request on handle `c` (reset first, its connections kept). */
static int do_request(CURL *c, int port, double timeout_s, const char *method, const char *path,
                      const char *const *headers, const void *body, size_t body_len,
                      h_response *out)
{
    char url[H_PATH_MAX + 64];
    h_buf resp_body = {0}, resp_headers = {0};
    struct curl_slist *list = NULL;
    memset(out, 0, sizeof(*out));
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);
    for (size_t i = 0; headers && headers[i]; i++) list = curl_slist_append(list, headers[i]);
    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)(timeout_s * 1000));
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, list);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &resp_body);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &resp_headers);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, out->error);
    set_method(c, method, body, body_len);
    double t0 = h_now();
    CURLcode rc = curl_easy_perform(c);
    out->elapsed_s = h_now() - t0;
    curl_slist_free_all(list);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, NULL);
    buf_put(&resp_body, "", 0);
    buf_put(&resp_headers, "", 0);
    out->body = resp_body.data ? resp_body.data : strdup("");
    out->body_len = resp_body.len;
    out->headers = resp_headers.data ? resp_headers.data : strdup("");
    if (rc != CURLE_OK) {
        if (!out->error[0]) snprintf(out->error, sizeof(out->error), "%s", curl_easy_strerror(rc));
        return -1;
    }
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
    h_response_header(out, "content-type", out->content_type, sizeof(out->content_type));
    h_response_header(out, "x-request-id", out->request_id, sizeof(out->request_id));
    return 0;
}

int h_request(h_serve *s, const char *method, const char *path, const char *const *headers,
              const void *body, size_t body_len, h_response *out)
{
    pthread_once(&process_once, process_init);
    if (!s->curl) s->curl = curl_easy_init();
    if (!s->curl) {
        memset(out, 0, sizeof(*out));
        out->body = strdup("");
        snprintf(out->error, sizeof(out->error), "curl_easy_init failed");
        return -1;
    }
    return do_request(s->curl, s->port, s->http_timeout_s, method, path, headers, body, body_len,
                      out);
}

int h_get(h_serve *s, const char *path, h_response *out)
{
    return h_request(s, "GET", path, NULL, NULL, 0, out);
}

void h_response_free(h_response *r)
{
    free(r->body);
    free(r->headers);
    memset(r, 0, sizeof(*r));
}

/* ---- Requests in the background ---------------------------------------- */

struct h_async {
    pthread_t thread;
    int port;
    double timeout_s;
    char *method, *path;
    char **headers;
    void *body;
    size_t body_len;
    int has_body;
    int rc;
    h_response res;
};

static void *async_main(void *arg)
{
    h_async *a = arg;
    CURL *c = curl_easy_init();
    if (!c) {
        a->rc = -1;
        a->res.body = strdup("");
        return NULL;
    }
    a->rc =
        do_request(c, a->port, a->timeout_s, a->method, a->path, (const char *const *)a->headers,
                   a->has_body ? a->body : NULL, a->body_len, &a->res);
    curl_easy_cleanup(c);
    return NULL;
}

static void async_free(h_async *a)
{
    free(a->method);
    free(a->path);
    free_strv(a->headers);
    free(a->body);
    free(a);
}

h_async *h_request_async(h_serve *s, const char *method, const char *path,
                         const char *const *headers, const void *body, size_t body_len)
{
    pthread_once(&process_once, process_init);
    h_async *a = calloc(1, sizeof(*a));
    size_t n = 0;
    while (headers && headers[n]) n++;
    if (!a || !(a->headers = calloc(n + 1, sizeof(char *)))) goto fail;
    for (size_t i = 0; i < n; i++)
        if (!(a->headers[i] = strdup(headers[i]))) goto fail;
    a->port = s->port;
    a->timeout_s = s->http_timeout_s;
    a->method = strdup(method);
    a->path = strdup(path);
    a->body = malloc(body_len ? body_len : 1);
    a->has_body = body != NULL;
    a->body_len = body_len;
    if (!a->method || !a->path || !a->body) goto fail;
    if (body_len) memcpy(a->body, body, body_len);
    if (pthread_create(&a->thread, NULL, async_main, a) != 0) goto fail;
    return a;
fail:
    if (a) async_free(a);
    return NULL;
}

int h_async_wait(h_async *a, h_response *out)
{
    if (!a) {
        memset(out, 0, sizeof(*out));
        out->body = strdup("");
        snprintf(out->error, sizeof(out->error), "the request could not be started");
        return -1;
    }
    pthread_join(a->thread, NULL);
    *out = a->res;
    int rc = a->rc;
    async_free(a);
    return rc;
}
