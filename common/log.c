/*
 * log.c - see log.h.
 */
#include "common/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
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

/* Open `path` to append to it, as a log file must be opened where others
   may have been first: a symbolic link is not followed (-ELOOP), a FIFO or
   device does not block us (O_NONBLOCK, then -EINVAL), and neither a file
   another user owns (-EPERM) nor one with a second hard link (-EMLINK,
   which could be one of ours linked there by someone else) is written to.
   A file we create is 0600. Returns the descriptor or a negative errno. */
static int open_append(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0600);
    if (fd < 0) return -errno;
    struct stat st;
    int rc = fstat(fd, &st) != 0                ? -errno
             : !S_ISREG(st.st_mode)             ? -EINVAL
             : st.st_uid != geteuid()           ? -EPERM
             : st.st_nlink > 1                  ? -EMLINK
             : fcntl(fd, F_SETFL, O_APPEND) < 0 ? -errno
                                                : 0;
    if (rc < 0) {
        close(fd);
        return rc;
    }
    return fd;
}

int log_open_file(const char *path)
{
    int fd = open_append(path);
    if (fd < 0) return fd;
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

/* A bounded writer: what does not fit is dropped (and `cut` set); the
   caller keeps room for the line's end out of `cap`. */
typedef struct line_buf {
    char *p;
    size_t len, cap;
    int cut; /* something was dropped */
} line_buf;

static void put(line_buf *b, const char *s, size_t n)
{
    if (b->len + n > b->cap) {
        n = b->cap - b->len;
        b->cut = 1;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

static void puts_(line_buf *b, const char *s)
{
    put(b, s, strlen(s));
}

/* ---- Escaping ----------------------------------------------------------
 *
 * What a line holds comes partly from outside: request paths and methods,
 * application names, plugin messages. A newline in one would start a forged
 * line, an ESC would reach the terminal of whoever tails the log, and a
 * byte that is not UTF-8 would make a JSON line unreadable. So every field
 * and the message go through put_escaped, which keeps printable ASCII and
 * well-formed UTF-8 and writes everything else as an escape:
 *
 *   byte or character           TEXT         JSON
 *   \n \r \t                    \n \r \t     \n \r \t
 *   other C0, DEL               \x1b         \u001b
 *   C1 (U+0080..U+009F)         \xc2\x9b     \u009b
 *   not UTF-8 (stray, overlong) \xff         \\xff (the text \xff)
 *   backslash                   \\           \\
 *   quote                       as is        \"
 *
 * Escaping the backslash in TEXT keeps an escape apart from the same four
 * characters sent literally. Most lines need no escape at all: the common
 * case is one scan of printable ASCII and one copy.
 */

typedef enum esc_mode { ESC_TEXT, ESC_JSON } esc_mode;

static const char hex_digits[] = "0123456789abcdef";

/* Append `n` bytes only if they all fit; 0 if they did not. Escapes and
   UTF-8 sequences go in whole or not at all, so a cut never leaves half
   of one. */
static int put_whole(line_buf *b, const char *s, size_t n)
{
    if (b->len + n > b->cap) {
        b->cut = 1;
        return 0;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    return 1;
}

/* The length of the well-formed UTF-8 sequence at `s` (2 to 4), or 0
   (RFC 3629: no overlongs, no surrogates, nothing above U+10FFFF). */
static size_t utf8_length(const unsigned char *s)
{
    unsigned char c = s[0], lo = 0x80, hi = 0xbf;
    size_t n;
    if (c >= 0xc2 && c <= 0xdf)
        n = 2;
    else if (c >= 0xe0 && c <= 0xef)
        n = 3, lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;
    else if (c >= 0xf0 && c <= 0xf4)
        n = 4, lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;
    else
        return 0;
    if (s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < n; i++)
        if (s[i] < 0x80 || s[i] > 0xbf) return 0;
    return n;
}

/* Bytes that go out as they are: printable ASCII but the backslash, and
   the quote only in TEXT. */
static int plain(unsigned char c, esc_mode mode)
{
    return c >= 0x20 && c < 0x7f && c != '\\' && (c != '"' || mode == ESC_TEXT);
}

/* The escape of the single byte `c` (a control, DEL, a backslash or quote,
   or a byte of a C1 character or of no character: `stray`) into `out`;
   returns its length. */
static size_t escape_byte(char *out, unsigned char c, esc_mode mode, int stray)
{
    size_t n = 0;
    out[n++] = '\\';
    if (stray && mode == ESC_JSON) out[n++] = '\\'; /* the text \xNN in the string */
    if (c == '\n' || c == '\r' || c == '\t' || c == '\\' || c == '"') {
        out[n++] = c == '\n' ? 'n' : c == '\r' ? 'r' : c == '\t' ? 't' : (char)c;
        return n;
    }
    if (mode == ESC_JSON && !stray) {
        memcpy(out + n, "u00", 3);
        n += 3;
    } else {
        out[n++] = 'x';
    }
    out[n++] = hex_digits[c >> 4];
    out[n++] = hex_digits[c & 15];
    return n;
}

/* Append `s`, escaped for `mode` (table above). What does not fit is left
   out from the first escape or character that does not fit whole. */
static void put_escaped(line_buf *b, const char *s, esc_mode mode)
{
    const unsigned char *p = (const unsigned char *)s;
    for (;;) {
        size_t n = 0;
        while (plain(p[n], mode)) n++;
        put(b, (const char *)p, n);
        p += n;
        if (!*p) return;
        char esc[16];
        size_t len = utf8_length(p), e = 0;
        if (len == 2 && p[0] == 0xc2 && p[1] < 0xa0) { /* C1 control */
            if (mode == ESC_JSON) {
                e = escape_byte(esc, p[1], mode, 0);
            } else {
                e = escape_byte(esc, p[0], mode, 1);
                e += escape_byte(esc + e, p[1], mode, 1);
            }
        } else if (len > 0) {
            memcpy(esc, p, len);
            e = len;
        } else {
            len = 1;
            e = escape_byte(esc, p[0], mode, p[0] >= 0x80);
        }
        if (!put_whole(b, esc, e)) return;
        p += len;
    }
}

/* ,"key":"value" when value is set. A field is all there or not at all:
   a field cut short would leave its string open and the object broken. */
static void put_json_field(line_buf *b, const char *key, const char *value)
{
    if (!value || !value[0]) return;
    size_t mark = b->len;
    b->cut = 0;
    puts_(b, ",\"");
    puts_(b, key);
    puts_(b, "\":\"");
    put_escaped(b, value, ESC_JSON);
    puts_(b, "\"");
    if (b->cut) b->len = mark;
}

/* The line's field, or the process's when the line leaves it NULL. */
static const char *pick(const char *line_value, const char *process_value)
{
    const char *v = line_value ? line_value : process_value;
    return v && v[0] ? v : NULL;
}

/* "TIME LEVEL component app/dep#replica req=ID: message", the fields that
   are set, each escaped. */
static void format_text(line_buf *b, const char *when, log_level level, const log_fields *f,
                        const char *msg)
{
    static const char *const padded[] = {"DEBUG ", "INFO  ", "WARN  ", "ERROR ", "OFF   "};
    const char *app = pick(f->app, proc.app), *dep = pick(f->deployment, proc.deployment);
    const char *replica = pick(f->replica, proc.replica);
    const char *req = pick(f->request_id, thread_request_id);
    const char *component = pick(f->component, proc.component);
    puts_(b, when);
    puts_(b, " ");
    puts_(b, padded[level]);
    put_escaped(b, component ? component : "serve", ESC_TEXT);
    if (app || dep) {
        puts_(b, " ");
        put_escaped(b, app ? app : "-", ESC_TEXT);
        puts_(b, "/");
        put_escaped(b, dep ? dep : "-", ESC_TEXT);
    }
    if (replica) {
        puts_(b, app || dep ? "#" : " #");
        put_escaped(b, replica, ESC_TEXT);
    }
    if (req) {
        puts_(b, " req=");
        put_escaped(b, req, ESC_TEXT);
    }
    puts_(b, ": ");
    put_escaped(b, msg, ESC_TEXT);
}

static void format_json(line_buf *b, const char *when, log_level level, const log_fields *f,
                        const char *msg)
{
    puts_(b, "{\"time\":\"");
    puts_(b, when);
    puts_(b, "\",\"level\":\"");
    puts_(b, level_names[level]);
    puts_(b, "\"");
    /* The message's key must fit after the fields: keep room for it. */
    static const char message_key[] = ",\"message\":\"";
    size_t cap = b->cap;
    b->cap = b->len + sizeof(message_key) - 1 < cap ? cap - (sizeof(message_key) - 1) : b->len;
    put_json_field(b, "component", pick(f->component, proc.component));
    put_json_field(b, "app", pick(f->app, proc.app));
    put_json_field(b, "deployment", pick(f->deployment, proc.deployment));
    put_json_field(b, "replica", pick(f->replica, proc.replica));
    put_json_field(b, "request_id", pick(f->request_id, thread_request_id));
    b->cap = cap;
    puts_(b, message_key);
    put_escaped(b, msg, ESC_JSON);
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
