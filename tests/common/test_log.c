/*
 * test_log.c - the line format: fields, encodings, escaping, truncation,
 * and how log files are opened.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"

static size_t fmt(char *out, size_t size, log_level level, const log_fields *f, const char *format,
                  ...)
{
    va_list ap;
    va_start(ap, format);
    size_t n = log_format(out, size, level, f, format, ap);
    va_end(ap);
    return n;
}

static void reset(void)
{
    log_encoding_in_use = LOG_TEXT;
    log_set_process(&(log_fields){.component = "controller"});
    log_set_request_id(NULL);
}

TestSuite(log, .init = reset, .timeout = 10); /* an open that blocks must fail, not hang */

static void assert_matches(const char *line, const char *pattern)
{
    regex_t re;
    cr_assert_eq(regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB), 0, "%s", pattern);
    int rc = regexec(&re, line, 0, NULL, 0);
    regfree(&re);
    cr_assert_eq(rc, 0, "'%s' does not match %s", line, pattern);
}

Test(log, a_text_line_has_time_level_component_and_message)
{
    char line[256];
    size_t n = fmt(line, sizeof(line), LOG_WARN, NULL, "disk %d%% full", 93);
    cr_assert_eq(n, strlen(line));
    assert_matches(line, "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z "
                         "WARN  controller: disk 93% full\n$");
}

Test(log, a_replica_line_names_its_deployment_replica_and_request)
{
    char line[256];
    log_set_process(&(log_fields){"replica", "lang", "French", "ab12cd34"});
    log_set_request_id("5f3a");
    fmt(line, sizeof(line), LOG_INFO, NULL, "bonjour");
    assert_matches(line, "Z INFO  replica lang/French#ab12cd34 req=5f3a: bonjour\n$");
}

Test(log, a_line_may_name_other_fields_than_its_process)
{
    char line[256];
    log_fields f = {
        .component = "access", .app = "a", .deployment = "D", .replica = "r1", .request_id = "id9"};
    fmt(line, sizeof(line), LOG_INFO, &f, "GET / 200");
    assert_matches(line, "Z INFO  access a/D#r1 req=id9: GET / 200\n$");
    fmt(line, sizeof(line), LOG_INFO, &(log_fields){.app = "a", .deployment = "D"}, "x");
    assert_matches(line, "Z INFO  controller a/D: x\n$");
}

Test(log, the_request_id_is_per_thread)
{
    log_set_request_id("mine");
    char line[256];
    fmt(line, sizeof(line), LOG_INFO, NULL, "x");
    cr_assert(strstr(line, "req=mine"));
    log_set_request_id(NULL);
    fmt(line, sizeof(line), LOG_INFO, NULL, "x");
    cr_assert_null(strstr(line, "req="));
}

Test(log, a_json_line_is_one_object_with_every_field_set)
{
    char line[512];
    log_encoding_in_use = LOG_JSON;
    log_set_process(&(log_fields){"replica", "lang", "French", "ab12cd34"});
    log_set_request_id("5f3a");
    size_t n = fmt(line, sizeof(line), LOG_ERROR, NULL, "said \"%s\"\n\tthen\\left", "non");
    cr_assert_eq(line[n - 1], '\n');
    json_error_t err;
    json_t *obj = json_loadb(line, n, 0, &err);
    cr_assert_not_null(obj, "%s: %s", line, err.text);
    cr_assert_str_eq(json_string_value(json_object_get(obj, "level")), "ERROR");
    cr_assert_str_eq(json_string_value(json_object_get(obj, "component")), "replica");
    cr_assert_str_eq(json_string_value(json_object_get(obj, "app")), "lang");
    cr_assert_str_eq(json_string_value(json_object_get(obj, "deployment")), "French");
    cr_assert_str_eq(json_string_value(json_object_get(obj, "replica")), "ab12cd34");
    cr_assert_str_eq(json_string_value(json_object_get(obj, "request_id")), "5f3a");
    cr_assert_str_eq(json_string_value(json_object_get(obj, "message")),
                     "said \"non\"\n\tthen\\left");
    cr_assert_eq(strlen(json_string_value(json_object_get(obj, "time"))), 24);
    json_decref(obj);
}

Test(log, a_json_line_leaves_out_fields_that_are_not_set)
{
    char line[256];
    log_encoding_in_use = LOG_JSON;
    fmt(line, sizeof(line), LOG_INFO, NULL, "up");
    json_t *obj = json_loads(line, 0, NULL);
    cr_assert_not_null(obj, "%s", line);
    cr_assert_eq(json_object_size(obj), 4, "%s", line); /* time, level, component, message */
    json_decref(obj);
}

Test(log, a_long_message_is_cut_but_the_line_stays_whole)
{
    char big[3000], line[300];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    size_t n = fmt(line, sizeof(line), LOG_INFO, NULL, "%s", big);
    cr_assert_leq(n, sizeof(line));
    cr_assert_eq(line[n - 1], '\n');
    log_encoding_in_use = LOG_JSON;
    big[100] = '"'; /* an escape near the cut must not break the object */
    n = fmt(line, sizeof(line), LOG_INFO, NULL, "%s", big);
    cr_assert_leq(n, sizeof(line));
    json_t *obj = json_loadb(line, n, 0, NULL);
    cr_assert_not_null(obj, "%.*s", (int)n, line);
    json_decref(obj);
}

/* ---- Escaping: one line per call, whatever the input ----------------- */

/* The message part of a TEXT line ("...: MESSAGE\n"), copied into out. */
static void text_message(const char *line, char *out, size_t size)
{
    const char *m = strstr(line, ": ");
    cr_assert_not_null(m, "%s", line);
    snprintf(out, size, "%.*s", (int)(strlen(m + 2) - 1), m + 2);
}

/* Exactly one newline, at the end, and no other control byte or DEL. */
static void assert_one_clean_line(const char *line, size_t n)
{
    cr_assert_gt(n, 0);
    cr_assert_eq(line[n - 1], '\n', "%s", line);
    for (size_t i = 0; i + 1 < n; i++) {
        unsigned char c = (unsigned char)line[i];
        cr_assert(c >= 0x20 && c != 0x7f, "byte 0x%02x at %zu of: %s", c, i, line);
    }
}

Test(log, a_newline_in_the_message_cannot_start_a_forged_line)
{
    char line[512], msg[256];
    size_t n = fmt(line, sizeof(line), LOG_INFO, NULL, "GET %s 200",
                   "/x\n2026-01-01T00:00:00.000Z ERROR controller: forged");
    assert_one_clean_line(line, n);
    text_message(line, msg, sizeof(msg));
    cr_assert_str_eq(msg, "GET /x\\n2026-01-01T00:00:00.000Z ERROR controller: forged 200");
}

Test(log, control_bytes_and_del_are_escaped_in_text)
{
    char line[512], msg[256];
    size_t n = fmt(line, sizeof(line), LOG_INFO, NULL, "a\rb\tc\x1b[31md\x7f\x01\x1f");
    assert_one_clean_line(line, n);
    text_message(line, msg, sizeof(msg));
    cr_assert_str_eq(msg, "a\\rb\\tc\\x1b[31md\\x7f\\x01\\x1f");
}

Test(log, a_backslash_is_doubled_in_text_so_an_escape_cannot_be_faked)
{
    char line[256], msg[128];
    fmt(line, sizeof(line), LOG_INFO, NULL, "%s|%s", "\\n", "\n");
    text_message(line, msg, sizeof(msg));
    cr_assert_str_eq(msg, "\\\\n|\\n");
}

Test(log, valid_utf8_is_kept_as_it_is)
{
    const char *s =
        "caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80 \xc2\xa0 \xf4\x8f\xbf\xbf";
    char line[256], msg[128];
    fmt(line, sizeof(line), LOG_INFO, NULL, "%s", s);
    text_message(line, msg, sizeof(msg));
    cr_assert_str_eq(msg, s);
}

Test(log, bytes_that_are_not_utf8_and_c1_controls_are_escaped_in_text)
{
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"\xff", "\\xff"},                            /* never in UTF-8 */
        {"\x80x", "\\x80x"},                          /* lone continuation */
        {"\xc0\xaf", "\\xc0\\xaf"},                   /* overlong '/' */
        {"\xe0\x80\xaf", "\\xe0\\x80\\xaf"},          /* overlong, 3 bytes */
        {"\xed\xa0\x80", "\\xed\\xa0\\x80"},          /* a surrogate */
        {"\xf4\x90\x80\x80", "\\xf4\\x90\\x80\\x80"}, /* above U+10FFFF */
        {"\xe6\x97", "\\xe6\\x97"},                   /* cut short */
        {"\xe6\x97\n", "\\xe6\\x97\\n"},              /* cut by a newline */
        {"\xc2\x9b"
         "31m",
         "\\xc2\\x9b"
         "31m"},                    /* C1 CSI */
        {"\xc2\x85", "\\xc2\\x85"}, /* C1 NEL */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char line[256], msg[128];
        size_t n = fmt(line, sizeof(line), LOG_INFO, NULL, "%s", cases[i].in);
        assert_one_clean_line(line, n);
        text_message(line, msg, sizeof(msg));
        cr_expect_str_eq(msg, cases[i].out, "case %zu", i);
    }
}

Test(log, every_field_is_escaped_in_text)
{
    char line[512];
    log_fields f = {.component = "acc\ness",
                    .app = "a\n2026-01-01T00:00:00.000Z ERROR x",
                    .deployment = "D\x1b[2J",
                    .replica = "r\r",
                    .request_id = "id\xff"};
    size_t n = fmt(line, sizeof(line), LOG_INFO, &f, "m");
    assert_one_clean_line(line, n);
    assert_matches(line, "Z INFO  acc\\\\ness a\\\\n2026-01-01T00:00:00\\.000Z ERROR x/"
                         "D\\\\x1b\\[2J#r\\\\r req=id\\\\xff: m\n$");
}

Test(log, a_process_field_with_a_newline_is_escaped_too)
{
    char line[256];
    log_set_process(&(log_fields){"replica", "app\nX", "dep", "r1"});
    size_t n = fmt(line, sizeof(line), LOG_INFO, NULL, "ready");
    assert_one_clean_line(line, n);
    assert_matches(line, "Z INFO  replica app\\\\nX/dep#r1: ready\n$");
}

/* Parse a JSON line; fails the test if it is not one object. */
static json_t *load_line(const char *line, size_t n)
{
    json_error_t err;
    json_t *obj = json_loadb(line, n, 0, &err);
    cr_assert(json_is_object(obj), "%s: %s", err.text, line);
    return obj;
}

Test(log, a_json_line_stays_valid_json_for_any_bytes)
{
    char line[512];
    log_encoding_in_use = LOG_JSON;
    log_fields f = {.app = "a\xff", .deployment = "d\n", .request_id = "\xc3"};
    size_t n = fmt(line, sizeof(line), LOG_INFO, &f, "x\xc0\xaf\x1b[1m\x7f\xc2\x9b\xc3\xa9\"\\");
    assert_one_clean_line(line, n);
    json_t *obj = load_line(line, n);
    /* Controls round-trip through JSON escapes; bytes that are not UTF-8
       become the text \xNN; valid UTF-8 stays. */
    cr_assert_str_eq(json_string_value(json_object_get(obj, "message")),
                     "x\\xc0\\xaf\x1b[1m\x7f\xc2\x9b\xc3\xa9\"\\");
    cr_assert_str_eq(json_string_value(json_object_get(obj, "app")), "a\\xff");
    cr_assert_str_eq(json_string_value(json_object_get(obj, "deployment")), "d\n");
    cr_assert_str_eq(json_string_value(json_object_get(obj, "request_id")), "\\xc3");
    json_decref(obj);
}

/* Random bytes, any cut: a TEXT line is one clean line, a JSON line one
   clean line and one object. */
Test(log, random_bytes_always_make_one_line)
{
    srand(7);
    for (int round = 0; round < 2000; round++) {
        char in[200], line[192];
        size_t len = (size_t)(rand() % (int)(sizeof(in) - 1));
        for (size_t i = 0; i < len; i++) in[i] = (char)(1 + rand() % 255);
        in[len] = '\0';
        size_t size = 80 + (size_t)(rand() % 112);
        log_encoding_in_use = round % 2 ? LOG_JSON : LOG_TEXT;
        log_fields f = {.app = in + len / 2};
        size_t n = fmt(line, size, LOG_INFO, &f, "%s", in);
        cr_assert_lt(n, size);
        assert_one_clean_line(line, n);
        if (log_encoding_in_use == LOG_JSON) json_decref(load_line(line, n));
    }
}

Test(log, a_cut_never_splits_an_escape_or_a_character)
{
    char big[600];
    for (size_t i = 0; i + 2 < sizeof(big); i += 2)
        memcpy(big + i, i % 4 ? "\xc3\xa9" : "\x01\x01", 2);
    big[sizeof(big) - 1] = '\0';
    for (size_t size = 80; size < 200; size++) {
        char line[200], msg[200];
        log_encoding_in_use = LOG_TEXT;
        size_t n = fmt(line, size, LOG_INFO, NULL, "%s", big);
        assert_one_clean_line(line, n);
        text_message(line, msg, sizeof(msg));
        /* whole escapes (4 bytes) and whole characters (2) only */
        for (const char *p = msg; *p;) {
            if (*p == '\\') {
                cr_assert(strncmp(p, "\\x01", 4) == 0, "size %zu: %s", size, msg);
                p += 4;
            } else {
                cr_assert(strncmp(p, "\xc3\xa9", 2) == 0, "size %zu: %s", size, msg);
                p += 2;
            }
        }
        log_encoding_in_use = LOG_JSON;
        n = fmt(line, size, LOG_INFO, NULL, "%s", big);
        json_decref(load_line(line, n));
    }
}

/* ---- Log files ---------------------------------------------------------- */

/* A scratch folder (mkdtemp) for one test; path in out. */
static void scratch(char *out, size_t size)
{
    snprintf(out, size, "/tmp/test_log.XXXXXX");
    cr_assert_not_null(mkdtemp(out));
}

static void cleanup(const char *dir)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

/* The descriptor this process has open on `path`, or -1. */
static int fd_of(const char *path)
{
    for (int fd = 3; fd < 1024; fd++) {
        char link[64], target[256];
        snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
        ssize_t n = readlink(link, target, sizeof(target) - 1);
        if (n > 0 && (target[n] = '\0', strcmp(target, path) == 0)) return fd;
    }
    return -1;
}

Test(log, a_new_log_file_is_0600_and_close_on_exec)
{
    char dir[64], path[128];
    scratch(dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/serve.log", dir);
    mode_t old = umask(0);
    int rc = log_open_file(path);
    umask(old);
    cr_assert_eq(rc, 0, "%s", strerror(-rc));
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    cr_expect_eq(st.st_mode & 07777, 0600, "mode %o", st.st_mode & 07777);
    int fd = fd_of(path);
    cr_assert_geq(fd, 0);
    cr_expect(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    cr_expect_eq(fcntl(fd, F_GETFL) & (O_APPEND | O_NONBLOCK), O_APPEND);
    log_close_file();
    cleanup(dir);
}

Test(log, a_symbolic_link_is_not_followed)
{
    char dir[64], path[128], victim[128];
    scratch(dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/serve.log", dir);
    snprintf(victim, sizeof(victim), "%s/victim", dir);
    FILE *v = fopen(victim, "w");
    cr_assert_not_null(v);
    fputs("precious\n", v);
    fclose(v);
    cr_assert_eq(symlink(victim, path), 0);
    cr_assert_eq(log_open_file(path), -ELOOP);
    log_write(LOG_ERROR, NULL, "must not reach the victim");
    char buf[64] = "";
    v = fopen(victim, "r");
    cr_assert_not_null(v);
    size_t n = fread(buf, 1, sizeof(buf) - 1, v);
    fclose(v);
    cr_expect_eq(n, strlen("precious\n"));
    cleanup(dir);
}

Test(log, a_file_with_another_hard_link_or_that_is_not_regular_is_refused)
{
    char dir[64], path[128], other[128];
    scratch(dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/serve.log", dir);
    snprintf(other, sizeof(other), "%s/mine", dir);
    close(open(other, O_WRONLY | O_CREAT, 0600));
    cr_assert_eq(link(other, path), 0);
    cr_expect_eq(log_open_file(path), -EMLINK);
    cr_assert_eq(unlink(path), 0);
    cr_assert_eq(mkfifo(path, 0600), 0);
    int rc = log_open_file(path); /* must not block on a FIFO without reader */
    cr_expect(rc == -ENXIO || rc == -EINVAL, "%d", rc);
    cleanup(dir);
}

Test(log, a_file_another_user_owns_is_refused)
{
    if (geteuid() != 0) cr_skip_test("needs root to make a file another user owns");
    char dir[64], path[128];
    scratch(dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/serve.log", dir);
    close(open(path, O_WRONLY | O_CREAT, 0666));
    cr_assert_eq(chown(path, 65534, 65534), 0);
    cr_expect_eq(log_open_file(path), -EPERM);
    cleanup(dir);
}

Test(log, level_and_encoding_names_parse_in_any_case)
{
    cr_assert_eq(log_level_parse("DEBUG"), LOG_DEBUG);
    cr_assert_eq(log_level_parse("info"), LOG_INFO);
    cr_assert_eq(log_level_parse("Warning"), LOG_WARN);
    cr_assert_eq(log_level_parse("warn"), LOG_WARN);
    cr_assert_eq(log_level_parse("ERROR"), LOG_ERROR);
    cr_assert_eq(log_level_parse("off"), LOG_OFF);
    cr_assert_eq(log_level_parse("verbose"), -1);
    cr_assert_eq(log_encoding_parse("json"), LOG_JSON);
    cr_assert_eq(log_encoding_parse("TEXT"), LOG_TEXT);
    cr_assert_eq(log_encoding_parse("xml"), -1);
}
