/*
 * test_tutorial.c - docs/tutorial.md, run as a reader would: serve is
 * installed into a scratch prefix (meson install), put first on PATH with
 * PKG_CONFIG_PATH pointing at it, and every block of the tutorial is
 * written, compared or run in order (tests/docs/doctest.h says how). The
 * test gets its own free ports: 8000 and 8265 in the text become them (and
 * in the output, where `serve new` prints the defaults).
 * First, the runner's own matching, which must be able to fail.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../e2e/harness.h"
#include "doctest.h"

#define MAX_BLOCKS   128
#define MAX_STEPS    32
#define RETRY_S      15.0 /* curl and serve status, until the change lands */
#define BACKGROUND_S 30.0 /* for serve run's log to show what the block shows */

/* ---- the runner's matching ---------------------------------------------------------------- */

Test(doctest, output_matches_line_by_line_with_ellipses)
{
    cr_expect(dt_match("Hello, Ada!\n", "Hello, Ada!\n", 0));
    cr_expect(!dt_match("Hello, Ada!\n", "Hello, Bob!\n", 0));
    cr_expect(!dt_match("Hello\n", "Hello\nmore\n", 0), "extra output fails");
    cr_expect(dt_match("Hello\n", "Hello\nmore\n", 1), "unless the end is open");
    cr_expect(!dt_match("a\nb\n", "a\n", 1), "missing output fails");
    cr_expect(dt_match("a\n...\nd\n", "a\nb\nc\nd\n", 0));
    cr_expect(dt_match("a\n...\nd\n", "a\nd\n", 0));
    cr_expect(!dt_match("a\n...\nd\n", "a\nb\n", 0));
    cr_expect(dt_match("pid ... at ...:8000\n", "pid 42 at 127.0.0.1:8000\n", 0));
    cr_expect(!dt_match("pid ... at ...:8000\n", "pid 42 at 127.0.0.1:8001\n", 0));
    cr_expect(dt_match("INFO  x: y\n", "2026-11-23T12:15:37.871Z INFO  x: y  \n\n", 0),
              "timestamps, trailing blanks and blank lines are ignored");
}

Test(doctest, every_block_must_say_what_the_test_does_with_it)
{
    dt_block b[4];
    char err[256];
    const char *md = "text\n```c file=a.c\nint x;\n```\n```console\n$ ls\na.c\n```\n"
                     "```console background\n$ serve run x\n```\n```json expect=x.json\n{}\n```\n";
    cr_assert_eq(dt_parse(md, b, 4, err, sizeof err), 4, "%s", err);
    cr_expect(b[0].kind == DT_WRITE && !strcmp(b[0].path, "a.c") && !strcmp(b[0].text, "int x;\n"));
    cr_expect(b[1].kind == DT_CONSOLE && b[2].kind == DT_BACKGROUND && b[3].kind == DT_EXPECT);
    cr_expect_eq(b[1].line, 5);
    dt_free(b, 4);
    cr_expect_eq(dt_parse("```sh\nls\n```\n", b, 4, err, sizeof err), -1);
    cr_expect(strstr(err, "line 1: a block the test does not run"), "%s", err);
    cr_expect_eq(dt_parse("```c\nint x;\n```\n", b, 4, err, sizeof err), -1);
    cr_expect_eq(dt_parse("```console\n$ ls\n", b, 4, err, sizeof err), -1);
    cr_expect(strstr(err, "never closed"), "%s", err);
}

Test(doctest, a_console_block_is_commands_each_followed_by_its_output)
{
    dt_step s[4];
    cr_assert_eq(dt_steps("$ cd x\n$ curl y\nHello\nWorld\n$ true\n", s, 4), 3);
    cr_expect_str_eq(s[0].command, "cd x");
    cr_expect_str_eq(s[0].expected, "");
    cr_expect_str_eq(s[1].command, "curl y");
    cr_expect_str_eq(s[1].expected, "Hello\nWorld\n");
    dt_steps_free(s, 3);
    cr_expect_eq(dt_steps("output first\n$ ls\n", s, 4), -1);
}

/* ---- the tutorial ------------------------------------------------------------------------- */

static pid_t background = -1; /* the running `serve run`, in its own process group */

static void stop_background(void)
{
    if (background <= 0) return;
    kill(-background, SIGTERM);
    for (int i = 0; i < 200 && waitpid(background, NULL, WNOHANG) == 0; i++) usleep(50000);
    kill(-background, SIGKILL);
    waitpid(background, NULL, WNOHANG);
    background = -1;
}

static void cleanup(void)
{
    stop_background();
    h_cleanup_all();
}

TestSuite(tutorial, .fini = cleanup, .timeout = 300);

/* The session a reader has in their terminal. */
typedef struct session {
    h_serve *s;
    char cwd[H_PATH_MAX];
    char *env; /* the exports put before every command */
    char port[16], admin_port[16];
} session;

static char *ported(const session *t, const char *text)
{
    char *a = dt_replace(text, "8000", t->port), *b = dt_replace(a, "8265", t->admin_port);
    free(a);
    return b;
}

/* As ported(), taking ownership of `text` (which may be NULL). */
static char *ported_owned(const session *t, char *text)
{
    char *out = ported(t, text ? text : "");
    free(text);
    return out;
}

static void path_in(const session *t, const char *name, char *out)
{
    int n = snprintf(out, H_PATH_MAX, "%s/%s", t->cwd, name);
    cr_assert(n < H_PATH_MAX, "path too long: %s/%s", t->cwd, name);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    cr_assert(f, "cannot write %s", path);
    fputs(text, f);
    fclose(f);
}

static int is_retried(const char *command)
{
    return strncmp(command, "curl ", 5) == 0 || strncmp(command, "serve status", 12) == 0;
}

static void run_step(session *t, const dt_block *b, const dt_step *step)
{
    if (strncmp(step->command, "cd ", 3) == 0) {
        char next[H_PATH_MAX];
        path_in(t, step->command + 3, next);
        cr_assert(realpath(next, t->cwd), "line %d: cd %s: no such folder", b->line, next);
        return;
    }
    char *command = ported(t, step->command), *expected = ported(t, step->expected), *line = NULL;
    cr_assert(asprintf(&line, "%s%s", t->env, command) > 0);
    char *out = NULL;
    double deadline = h_now() + (is_retried(command) ? RETRY_S : 0);
    for (;;) {
        free(out);
        out = NULL;
        h_sh(t->s, t->cwd, line, NULL, "step.out", &out);
        out = ported_owned(t, out); /* serve new prints the defaults */
        if (dt_match(expected, out ? out : "", 0) || h_now() >= deadline) break;
        h_sleep_ms(200);
    }
    cr_assert(dt_match(expected, out ? out : "", 0),
              "docs/tutorial.md, block at line %d:\n$ %s\nexpected:\n%s\ngot:\n%s", b->line,
              step->command, expected, out ? out : "");
    free(out);
    free(line);
    free(command);
    free(expected);
}

/* `serve run`, left running as in a second terminal; its output must come
   to match the block. */
static void run_background(session *t, const dt_block *b, const dt_step *step)
{
    char log[H_PATH_MAX + 16], *command = ported(t, step->command), *line = NULL;
    char *expected = ported(t, step->expected);
    snprintf(log, sizeof(log), "%s/background.log", t->s->dir);
    cr_assert_eq(background, -1, "line %d: one background command at a time", b->line);
    cr_assert(asprintf(&line, "%sexec %s", t->env, command) > 0);
    pid_t pid = fork();
    if (pid == 0) {
        setpgid(0, 0);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0 || chdir(t->cwd) != 0) _exit(127);
        dup2(fd, 1);
        dup2(fd, 2);
        execl("/bin/sh", "sh", "-c", line, (char *)NULL);
        _exit(127);
    }
    cr_assert(pid > 0);
    setpgid(pid, pid);
    background = pid;
    char *text = NULL;
    for (double deadline = h_now() + BACKGROUND_S; h_now() < deadline; h_sleep_ms(100)) {
        free(text);
        text = h_read_file(log, NULL);
        if (text && dt_match(expected, text, 1)) break;
    }
    cr_assert(text && dt_match(expected, text, 1),
              "docs/tutorial.md, block at line %d:\n$ %s\nexpected:\n%s\ngot:\n%s", b->line,
              step->command, expected, text ? text : "");
    free(text);
    free(line);
    free(command);
    free(expected);
}

static void run_block(session *t, const dt_block *b)
{
    char path[H_PATH_MAX], *text = ported(t, b->text);
    if (b->kind == DT_WRITE) {
        path_in(t, b->path, path);
        write_file(path, text);
    } else if (b->kind == DT_EXPECT) {
        path_in(t, b->path, path);
        char *have = h_read_file(path, NULL);
        cr_assert(have, "docs/tutorial.md, block at line %d: no file %s", b->line, path);
        cr_assert_str_eq(have, b->text, "docs/tutorial.md, block at line %d differs from %s",
                         b->line, path);
        free(have);
        write_file(path, text); /* with this test's ports */
    } else {
        dt_step steps[MAX_STEPS];
        int n = dt_steps(b->text, steps, MAX_STEPS);
        cr_assert(n > 0, "docs/tutorial.md, block at line %d: no command", b->line);
        cr_assert(b->kind == DT_CONSOLE || n == 1, "line %d: one background command", b->line);
        for (int i = 0; i < n; i++)
            (b->kind == DT_CONSOLE ? run_step : run_background)(t, b, &steps[i]);
        dt_steps_free(steps, n);
    }
    free(text);
}

Test(tutorial, every_block_of_docs_tutorial_md_runs_as_shown)
{
    char doc[H_PATH_MAX], err[256];
    snprintf(doc, sizeof(doc), "%s/docs/tutorial.md", getenv("SERVE_SOURCE_DIR"));
    char *markdown = h_read_file(doc, NULL);
    cr_assert(markdown, "cannot read %s", doc);
    static dt_block blocks[MAX_BLOCKS];
    int n = dt_parse(markdown, blocks, MAX_BLOCKS, err, sizeof err);
    cr_assert(n > 0, "docs/tutorial.md: %s", err);

    session t = {.s = h_serve_new()};
    h_install inst;
    cr_assert(t.s);
    cr_assert_eq(h_install_into(t.s, &inst), 0, "meson install failed");
    snprintf(t.port, sizeof(t.port), "%d", t.s->port);
    snprintf(t.admin_port, sizeof(t.admin_port), "%d", t.s->admin_port);
    snprintf(t.cwd, sizeof(t.cwd), "%s", t.s->dir);
    *strrchr(inst.bin, '/') = '\0';
    cr_assert(asprintf(&t.env,
                       "unset SERVE_PLUGIN_PATH; export PATH='%s':\"$PATH\" "
                       "PKG_CONFIG_PATH='%s' SERVE_ADDRESS=http://127.0.0.1:%d TMPDIR='%s' "
                       "CURL_HOME='%s'; ",
                       inst.bin, inst.pkgconfig, t.s->admin_port, t.s->dir, t.s->dir) > 0);
    /* curl's progress meter shows when its output is not a terminal */
    char curlrc[H_PATH_MAX];
    path_in(&t, ".curlrc", curlrc);
    write_file(curlrc, "silent\nshow-error\n");
    for (int i = 0; i < n; i++) run_block(&t, &blocks[i]);
    stop_background();
    free(t.env);
    dt_free(blocks, n);
    free(markdown);
}
