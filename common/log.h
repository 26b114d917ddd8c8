/*
 * log.h - one logging facility for every process (controller, router,
 * replicas): "2026-11-23T03:49:23.123Z INFO  controller: message".
 *
 * Each process sets its tag once (log_set_tag) and its minimum level; the
 * macros check the level before formatting. Lines go to stderr, written with
 * one write(2) each so that lines from replicas sharing the terminal do not
 * interleave. Library-like code (config, codec, route table) does not log:
 * it returns errors; only the process-level code calls these.
 */
#ifndef SERVE_LOG_H
#define SERVE_LOG_H

#include <stdarg.h>
#include <stddef.h>

typedef enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR, LOG_OFF } log_level;

extern log_level log_min_level;

/* Set this process's tag, e.g. "controller" or "replica lang/French#ab12". */
void log_set_tag(const char *tag);

/* Parse "debug", "info", "warn", "error", "off"; returns -1 if unknown. */
int log_level_parse(const char *name);

/* Format one line, newline included, into `out` (truncated to fit);
   returns its length. For callers that batch lines themselves. */
size_t log_format(char *out, size_t size, log_level level, const char *tag, const char *fmt,
                  va_list ap);

/* Write one line tagged with `tag` (NULL: the process tag). */
void log_write(log_level level, const char *tag, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void log_vwrite(log_level level, const char *tag, const char *fmt, va_list ap);

#define LOG_AT(lvl, ...)                                                                           \
    do {                                                                                           \
        if ((lvl) >= log_min_level) log_write((lvl), NULL, __VA_ARGS__);                           \
    } while (0)
#define log_debug(...) LOG_AT(LOG_DEBUG, __VA_ARGS__)
#define log_info(...)  LOG_AT(LOG_INFO, __VA_ARGS__)
#define log_warn(...)  LOG_AT(LOG_WARN, __VA_ARGS__)
#define log_error(...) LOG_AT(LOG_ERROR, __VA_ARGS__)

#endif
