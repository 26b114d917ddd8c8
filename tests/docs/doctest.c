/*
 * doctest.c - the pure half of the document runner: parse fenced blocks,
 * split console sessions, match output (doctest.h).
 */
#include "doctest.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The kind of block an info string names, or -1. */
static int block_kind(const char *info, size_t len, dt_block *b)
{
    char buf[512];
    snprintf(buf, sizeof(buf), "%.*s", (int)len, info);
    char *lang = strtok(buf, " "), *arg = strtok(NULL, " ");
    if (!lang || strtok(NULL, " ")) return -1;
    if (strcmp(lang, "console") == 0) {
        if (!arg) return DT_CONSOLE;
        return strcmp(arg, "background") == 0 ? DT_BACKGROUND : -1;
    }
    if (!arg) return -1;
    if (strncmp(arg, "file=", 5) == 0 && arg[5]) {
        snprintf(b->path, sizeof(b->path), "%s", arg + 5);
        return DT_WRITE;
    }
    if (strncmp(arg, "expect=", 7) == 0 && arg[7]) {
        snprintf(b->path, sizeof(b->path), "%s", arg + 7);
        return DT_EXPECT;
    }
    return -1;
}

int dt_parse(const char *markdown, dt_block *out, int max, char *err, size_t errlen)
{
    int n = 0, line = 1;
    for (const char *p = markdown; *p; line++) {
        const char *end = strchr(p, '\n');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len >= 3 && strncmp(p, "```", 3) == 0) {
            if (n == max) return snprintf(err, errlen, "more than %d blocks", max), -1;
            dt_block *b = &out[n];
            memset(b, 0, sizeof(*b));
            b->line = line;
            int kind = block_kind(p + 3, len - 3, b);
            if (kind < 0) {
                snprintf(err, errlen, "line %d: a block the test does not run: %.*s", line,
                         (int)len, p);
                dt_free(out, n);
                return -1;
            }
            b->kind = (dt_kind)kind;
            const char *body = end ? end + 1 : p + len, *close = body;
            while (*close && strncmp(close, "```", 3) != 0) {
                const char *nl = strchr(close, '\n');
                close = nl ? nl + 1 : close + strlen(close);
                line++;
            }
            if (!*close) {
                snprintf(err, errlen, "line %d: the block is never closed", b->line);
                dt_free(out, n);
                return -1;
            }
            b->text = strndup(body, (size_t)(close - body));
            n++;
            line++;
            end = strchr(close, '\n');
        }
        p = end ? end + 1 : p + len;
    }
    return n;
}

void dt_free(dt_block *blocks, int n)
{
    for (int i = 0; i < n; i++) free(blocks[i].text);
}

int dt_steps(const char *text, dt_step *out, int max)
{
    int n = 0;
    for (const char *p = text; *p;) {
        const char *end = strchr(p, '\n');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (strncmp(p, "$ ", 2) == 0 && n < max) {
            out[n].command = strndup(p + 2, len - 2);
            out[n++].expected = strdup("");
        } else if (n == 0) {
            dt_steps_free(out, n);
            return -1;
        } else {
            char *grown = NULL;
            if (asprintf(&grown, "%s%.*s\n", out[n - 1].expected, (int)len, p) < 0) grown = NULL;
            free(out[n - 1].expected);
            out[n - 1].expected = grown ? grown : strdup("");
        }
        p = end ? end + 1 : p + len;
    }
    return n;
}

void dt_steps_free(dt_step *steps, int n)
{
    for (int i = 0; i < n; i++) {
        free(steps[i].command);
        free(steps[i].expected);
    }
}

/* Split text into lines (NUL-terminated in a copy), without trailing
   blanks, without the timestamp a log line starts with (2026-11-23T...Z),
   and without the empty lines at the end. */
static char **split_lines(const char *text, size_t *count)
{
    char *copy = strdup(text);
    size_t n = 0, cap = 16;
    char **lines = malloc(cap * sizeof(*lines));
    for (char *save = NULL, *l = strtok_r(copy, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        if (strlen(l) > 25 && isdigit((unsigned char)l[0]) && l[4] == '-' && l[10] == 'T' &&
            l[23] == 'Z' && l[24] == ' ')
            l += 25;
        for (size_t k = strlen(l); k > 0 && isspace((unsigned char)l[k - 1]); k--) l[k - 1] = '\0';
        if (n + 2 > cap) lines = realloc(lines, (cap *= 2) * sizeof(*lines));
        lines[n++] = l;
    }
    while (n > 0 && !*lines[n - 1]) n--;
    lines[n] = copy; /* freed with the array */
    *count = n;
    return lines;
}

/* One line against a pattern where "..." matches any text. */
static int line_match(const char *pat, const char *s)
{
    const char *dots = strstr(pat, "...");
    if (!dots) return strcmp(pat, s) == 0;
    size_t head = (size_t)(dots - pat);
    if (strncmp(pat, s, head) != 0) return 0;
    for (const char *t = s + head;; t++) {
        if (line_match(dots + 3, t)) return 1;
        if (!*t) return 0;
    }
}

static int lines_match(char **pat, size_t np, char **act, size_t na, int open_end)
{
    if (np == 0) return open_end || na == 0;
    if (strcmp(pat[0], "...") == 0) {
        for (size_t k = 0; k <= na; k++)
            if (lines_match(pat + 1, np - 1, act + k, na - k, open_end)) return 1;
        return 0;
    }
    return na > 0 && line_match(pat[0], act[0]) &&
           lines_match(pat + 1, np - 1, act + 1, na - 1, open_end);
}

int dt_match(const char *expected, const char *actual, int open_end)
{
    size_t np, na;
    char **pat = split_lines(expected, &np), **act = split_lines(actual, &na);
    int ok = lines_match(pat, np, act, na, open_end);
    free(pat[np]);
    free(act[na]);
    free(pat);
    free(act);
    return ok;
}

char *dt_replace(const char *text, const char *from, const char *to)
{
    size_t lf = strlen(from), lt = strlen(to), n = 0;
    for (const char *p = strstr(text, from); p; p = strstr(p + lf, from)) n++;
    char *out = malloc(strlen(text) + n * lt + 1), *o = out;
    for (const char *p = text;;) {
        const char *hit = strstr(p, from);
        size_t k = hit ? (size_t)(hit - p) : strlen(p);
        memcpy(o, p, k);
        o += k;
        if (!hit) break;
        memcpy(o, to, lt);
        o += lt;
        p = hit + lf;
    }
    *o = '\0';
    return out;
}
