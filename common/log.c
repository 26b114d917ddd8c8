/*
 * log.c - see log.h.
 */
#include "common/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define LOG_LINE_MAX    2048
#define LOG_MESSAGE_MAX 1536
#define LOG_FIELD_MAX   128

log_level log_min_level = LOG_INFO;
log_encoding log_encoding_in_use = LOG_TEXT;

static const char *const level_names[] = {"DEBUG", "INFO", "WARN", "ERROR", "OFF"};

/* The process's fields, copied by log_set_process. */
static struct {
    char component[LOG_FIELD_MAX], app[LOG_FIELD_MAX], deployment[LOG_FIELD_MAX],
        replica[LOG_FIELD_MAX];
} proc = {.component = "serve"};

static __thread const char *thread_request_id;
static int file_fd = -1;

static void copy_field(char *dst, const char *src)
{
    snprintf(dst, LOG_FIELD_MAX, "%s", src ? src : "");
}

void log_set_process(const log_fields *f)
{
    copy_field(proc.component, f->component);
    copy_field(proc.app, f->app);
    copy_field(proc.deployment, f->deployment);
    copy_field(proc.replica, f->replica);
}

void log_set_request_id(const char *id)
{
    thread_request_id = id;
}

int log_level_parse(const char *name)
{
    static const char *const names[] = {"debug", "info", "warn", "error", "off"};
    if (strcasecmp(name, "warning") == 0) return LOG_WARN;
    for (int i = 0; i <= LOG_OFF; i++)
        if (strcasecmp(name, names[i]) == 0) return i;
    return -1;
}

const char *log_level_name(log_level level)
{
    return level_names[level];
}

int log_encoding_parse(const char *name)
{
    if (strcasecmp(name, "text") == 0) return LOG_TEXT;
    if (strcasecmp(name, "json") == 0) return LOG_JSON;
    return -1;
}

int log_open_file(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) return -errno;
    int old = __atomic_exchange_n(&file_fd, fd, __ATOMIC_ACQ_REL);
    if (old >= 0) close(old);
    return 0;
}

void log_close_file(void)
{
    int old = __atomic_exchange_n(&file_fd, -1, __ATOMIC_ACQ_REL);
    if (old >= 0) close(old);
}

/* ---- Formatting -------------------------------------------------------- */

/* A bounded writer: what does not fit is dropped, and `reserve` bytes are
   kept free for the line's end. */
typedef struct line_buf {
    char *p;
    size_t len, cap;
} line_buf;

static void put(line_buf *b, const char *s, size_t n)
{
    if (b->len + n > b->cap) n = b->cap - b->len;
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

static void puts_(line_buf *b, const char *s)
{
    put(b, s, strlen(s));
}

/* A JSON string's contents: quote, backslash and control bytes escaped;
   other bytes (UTF-8 included) as they are. An escape that does not fit
   whole is left out. */
static void put_json_chars(line_buf *b, const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        char esc[8];
        size_t n = 1;
        esc[0] = (char)c;
        if (c == '"' || c == '\\')
            n = (size_t)snprintf(esc, sizeof(esc), "\\%c", c);
        else if (c == '\n')
            n = (size_t)snprintf(esc, sizeof(esc), "\\n");
        else if (c < 0x20)
            n = (size_t)snprintf(esc, sizeof(esc), "\\u%04x", c);
        if (b->len + n > b->cap) return;
        put(b, esc, n);
    }
}

static void put_json_field(line_buf *b, const char *key, const char *value)
{
    if (!value || !value[0]) return;
    puts_(b, ",\"");
    puts_(b, key);
    puts_(b, "\":\"");
    put_json_chars(b, value);
    puts_(b, "\"");
}

/* The line's field, or the process's when the line leaves it NULL. */
static const char *pick(const char *line_value, const char *process_value)
{
    const char *v = line_value ? line_value : process_value;
    return v && v[0] ? v : NULL;
}

static void format_text(line_buf *b, const char *when, log_level level, const log_fields *f,
                        const char *msg)
{
    char head[LOG_LINE_MAX];
    const char *app = pick(f->app, proc.app), *dep = pick(f->deployment, proc.deployment);
    const char *replica = pick(f->replica, proc.replica);
    const char *req = pick(f->request_id, thread_request_id);
    const char *component = pick(f->component, proc.component);
    size_t n = (size_t)snprintf(head, sizeof(head), "%s %-5s %s", when, level_names[level],
                                component ? component : "serve");
    if (app || dep)
        n += (size_t)snprintf(head + n, sizeof(head) - n, " %s/%s", app ? app : "-",
                              dep ? dep : "-");
    if (replica && n < sizeof(head))
        n += (size_t)snprintf(head + n, sizeof(head) - n, "%s#%s", app || dep ? "" : " ", replica);
    if (req && n < sizeof(head)) snprintf(head + n, sizeof(head) - n, " req=%s", req);
    puts_(b, head);
    puts_(b, ": ");
    puts_(b, msg);
}

static void format_json(line_buf *b, const char *when, log_level level, const log_fields *f,
                        const char *msg)
{
    puts_(b, "{\"time\":\"");
    puts_(b, when);
    puts_(b, "\",\"level\":\"");
    puts_(b, level_names[level]);
    puts_(b, "\"");
    put_json_field(b, "component", pick(f->component, proc.component));
    put_json_field(b, "app", pick(f->app, proc.app));
    put_json_field(b, "deployment", pick(f->deployment, proc.deployment));
    put_json_field(b, "replica", pick(f->replica, proc.replica));
    put_json_field(b, "request_id", pick(f->request_id, thread_request_id));
    puts_(b, ",\"message\":\"");
    put_json_chars(b, msg);
}

size_t log_format(char *out, size_t size, log_level level, const log_fields *f, const char *fmt,
                  va_list ap)
{
    static const log_fields none = {0};
    char when[40], msg[LOG_MESSAGE_MAX];
    struct timeval tv;
    struct tm tm;
    if (size < 8) return 0;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    size_t n = strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(when + n, sizeof(when) - n, ".%03dZ", (int)(tv.tv_usec / 1000));
    vsnprintf(msg, sizeof(msg), fmt, ap);
    int json = log_encoding_in_use == LOG_JSON;
    line_buf b = {out, 0, size - 1 - (json ? 3 : 1)}; /* room for "}\n or \n, and NUL */
    if (json)
        format_json(&b, when, level, f ? f : &none, msg);
    else
        format_text(&b, when, level, f ? f : &none, msg);
    b.cap = size - 1;
    puts_(&b, json ? "\"}\n" : "\n");
    out[b.len] = '\0';
    return b.len;
}

/* ---- Output ------------------------------------------------------------ */

static void write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return;
        p += w;
        n -= (size_t)w;
    }
}

void log_emit(const char *lines, size_t n)
{
    write_all(STDERR_FILENO, lines, n);
    int fd = __atomic_load_n(&file_fd, __ATOMIC_ACQUIRE);
    if (fd >= 0) write_all(fd, lines, n);
}

void log_vwrite(log_level level, const log_fields *f, const char *fmt, va_list ap)
{
    char line[LOG_LINE_MAX];
    log_emit(line, log_format(line, sizeof(line), level, f, fmt, ap));
}

void log_write(log_level level, const log_fields *f, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vwrite(level, f, fmt, ap);
    va_end(ap);
}
