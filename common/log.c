/*
 * log.c - see log.h.
 */
#include "common/log.h"

#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

log_level log_min_level = LOG_INFO;

static char process_tag[128] = "serve";

static const char *const level_names[] = {"DEBUG", "INFO", "WARN", "ERROR", "OFF"};

void log_set_tag(const char *tag)
{
    snprintf(process_tag, sizeof(process_tag), "%s", tag);
}

int log_level_parse(const char *name)
{
    static const char *const lower[] = {"debug", "info", "warn", "error", "off"};
    for (int i = 0; i <= LOG_OFF; i++)
        if (strcmp(name, lower[i]) == 0) return i;
    return -1;
}

size_t log_format(char *out, size_t size, log_level level, const char *tag, const char *fmt,
                  va_list ap)
{
    struct timeval tv;
    struct tm tm;

    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    size_t n = strftime(out, size, "%Y-%m-%dT%H:%M:%S", &tm);
    int m = snprintf(out + n, size - n, ".%03dZ %-5s %s: ", (int)(tv.tv_usec / 1000),
                     level_names[level], tag ? tag : process_tag);
    n = (m < 0 || n + (size_t)m >= size - 1) ? size - 2 : n + (size_t)m;
    m = vsnprintf(out + n, size - n, fmt, ap);
    n = (m < 0 || n + (size_t)m >= size - 1) ? size - 2 : n + (size_t)m;
    out[n++] = '\n';
    return n;
}

void log_vwrite(log_level level, const char *tag, const char *fmt, va_list ap)
{
    char line[2048];
    size_t n = log_format(line, sizeof(line), level, tag, fmt, ap);
    /* One write per line: lines of concurrent processes never interleave. */
    ssize_t w = write(STDERR_FILENO, line, n);
    (void)w;
}

void log_write(log_level level, const char *tag, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vwrite(level, tag, fmt, ap);
    va_end(ap);
}
