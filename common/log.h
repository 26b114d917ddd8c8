/*
 * log.h - one logging facility for every process (controller, proxy,
 * replicas), one line format for all of them.
 *
 * A line has a time, a level, the component that wrote it, and, when they
 * apply, the application, deployment, replica id and request id:
 *
 *   2026-11-23T03:49:23.123Z INFO  replica lang/French#ab12cd34 req=5f3a..: message
 *
 * or, with the JSON encoding, one object per line:
 *
 *   {"time":"2026-11-23T03:49:23.123Z","level":"INFO","component":"replica",
 *    "app":"lang","deployment":"French","replica":"ab12cd34",
 *    "request_id":"5f3a..","message":"message"}
 *
 * Each process sets its own fields once (log_set_process); a line may name
 * others (the proxy's access lines name the replica that answered). The
 * request id is per thread: a replica sets it around each request, so
 * that what a plugin logs while handling one carries its id.
 *
 * Every field and the message are escaped (log.c, put_escaped): control
 * bytes, DEL and bytes that are not UTF-8 become \n, \xNN and the like,
 * so whatever a client or plugin puts in a line cannot start another one
 * or reach a terminal raw, and a JSON line is always valid JSON.
 *
 * Lines go to stderr and, once log_open_file was called, to a file as
 * well, each with one write(2) so that lines of processes sharing a
 * terminal or file do not interleave. Library-like code (config, codec,
 * route table) does not log: it returns errors; only process-level code
 * calls these.
 */
#ifndef SERVE_LOG_H
#define SERVE_LOG_H

#include <stdarg.h>
#include <stddef.h>

typedef enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR, LOG_OFF } log_level;
typedef enum log_encoding { LOG_TEXT, LOG_JSON } log_encoding;

/* Lines below this level are not formatted at all. */
extern log_level log_min_level;
extern log_encoding log_encoding_in_use;

/* What a line is about; NULL fields are not shown (log_set_process: the
   process's own, used where a line leaves a field NULL). */
typedef struct log_fields {
    const char *component; /* "controller", "proxy", "access", "replica", ... */
    const char *app;
    const char *deployment;
    const char *replica;
    const char *request_id;
} log_fields;

/* Set this process's fields (copied; request_id is ignored). */
void log_set_process(const log_fields *f);

/* This thread's current request id (NULL: none). The string is not
   copied: it must stay valid until the next call. */
void log_set_request_id(const char *id);

/* "debug", "info", "warn" or "warning", "error", "off", in any case;
   -1 if unknown. */
int log_level_parse(const char *name);
const char *log_level_name(log_level level); /* "DEBUG", ... */

/* "TEXT" or "JSON", in any case; -1 if unknown. */
int log_encoding_parse(const char *name);

/* Also write every line to the file at `path` (created with mode 0600,
   appended to), instead of any file opened before. 0 or a negative errno:
   -ELOOP when `path` is a symbolic link (never followed), -EINVAL when it
   is not a regular file, -EPERM when another user owns it, -EMLINK when
   it has more than one hard link. */
int log_open_file(const char *path);
void log_close_file(void);

/* Format one line, newline included, into `out` (truncated to fit, the
   newline kept, NUL-terminated); returns its length. `size` >= 8; a JSON
   line is a valid object whenever `size` >= 80 (fields that do not fit
   whole are left out, the message is cut). */
size_t log_format(char *out, size_t size, log_level level, const log_fields *f, const char *fmt,
                  va_list ap);

/* Write already formatted lines (`n` bytes) to stderr and the file. */
void log_emit(const char *lines, size_t n);

/* Format and write one line; `f` may be NULL (the process's fields). */
void log_write(log_level level, const log_fields *f, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void log_vwrite(log_level level, const log_fields *f, const char *fmt, va_list ap);

#define LOG_AT(lvl, ...)                                                                           \
    do {                                                                                           \
        if ((lvl) >= log_min_level) log_write((lvl), NULL, __VA_ARGS__);                           \
    } while (0)
#define log_debug(...) LOG_AT(LOG_DEBUG, __VA_ARGS__)
#define log_info(...)  LOG_AT(LOG_INFO, __VA_ARGS__)
#define log_warn(...)  LOG_AT(LOG_WARN, __VA_ARGS__)
#define log_error(...) LOG_AT(LOG_ERROR, __VA_ARGS__)

#endif
