/*
 * doctest.h - run a markdown document's code blocks as a test, so that a
 * tutorial cannot drift from what the code does (tests/docs/test_tutorial.c).
 *
 * Every fenced block must say what the test does with it, in its info
 * string (GitHub shows only the first word, the language):
 *
 *   ```c file=greeter.c         write the block to that file (relative to
 *                               the session's current folder)
 *   ```c expect=greeter.c       the file must hold exactly this text (it
 *                               shows a file a command wrote)
 *   ```console                  commands and the output they print: lines
 *                               starting with "$ " are run, the lines after
 *                               each are its expected output
 *   ```console background       one command that keeps running (serve run):
 *                               its output must come to match
 *
 * A block of any other kind is an error: nothing in the document escapes
 * the test.
 *
 * Expected output matches line by line, ignoring blank lines, trailing
 * blanks and the timestamps that begin log lines. A line "..." matches any number of
 * lines, and "..." inside a line matches any text.
 */
#ifndef SERVE_TESTS_DOCTEST_H
#define SERVE_TESTS_DOCTEST_H

#include <stddef.h>

typedef enum dt_kind { DT_WRITE, DT_EXPECT, DT_CONSOLE, DT_BACKGROUND } dt_kind;

typedef struct dt_block {
    dt_kind kind;
    char path[256]; /* DT_WRITE and DT_EXPECT */
    char *text;     /* the block's lines, each ending in '\n' */
    int line;       /* of the opening fence, 1-based */
} dt_block;

/* Parse every fenced block of `markdown` into `out` (room for `max`).
   Returns the number of blocks, or -1 with the reason in `err`. */
int dt_parse(const char *markdown, dt_block *out, int max, char *err, size_t errlen);
void dt_free(dt_block *blocks, int n);

/* One command of a console block and the output shown after it. */
typedef struct dt_step {
    char *command;
    char *expected;
} dt_step;

/* Split a console block into steps (room for `max`). Returns their
   number, or -1 when text comes before the first "$ ". */
int dt_steps(const char *text, dt_step *out, int max);
void dt_steps_free(dt_step *steps, int n);

/* Does `actual` match `expected`? With `open_end`, actual may go on
   after the last expected line (a log that is still being written). */
int dt_match(const char *expected, const char *actual, int open_end);

/* `text` with every `from` replaced by `to`, malloc'd. */
char *dt_replace(const char *text, const char *from, const char *to);

#endif
