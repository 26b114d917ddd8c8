/*
 * test_router.c - the HTTP proxy end to end: replica choice, bounded
 * queues, deadlines, cancellation, replica failures, HTTP details and the
 * access log, against the real `serve run` binary and real replicas.
 *
 * The workhorse is faulty.so's Gauge deployment: it sleeps ?ms=N and
 * answers {"pid", "inflight", "max_inflight", "calls"} counted per replica
 * process, so a test can see which replica ran a request, how many ran at
 * once there, and whether a request ran at all.
 *
 * Every test starts its own serve on its own free ports; h_cleanup_all, the
 * .fini of every suite, kills whatever a failed test left running. Timing
 * bounds carry generous slack (the machine is shared): they tell "at once"
 * from "after a sleep", never milliseconds apart. Assertion messages end
 * with the tail of the server's log.
 */
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <jansson.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <time.h>

#include "expect.h"
#include "harness.h"

#define REPLACE_S  5.0  /* a killed replica's replacement answers within this */
#define SLACK_S    0.35 /* timing tolerance on a shared, noisy machine */
#define LOG_WAIT_S 3.0  /* access log lines appear within this */
#define KIB        1024

#define ECHO_APP APP("echo", "/echo", "echo.so", "{\"name\": \"Echo\"}")
/* Gauge with n replicas of at most `ongoing` requests each, and `extra`
   more deployment fields (starting with a comma, or ""). */
#define GAUGE_APP(n, ongoing, extra)                                                               \
    APP("gauge", "/g", "faulty.so",                                                                \
        "{\"name\": \"Gauge\", \"num_replicas\": " #n                                              \
        ", \"max_ongoing_requests\": " #ongoing extra "}")
#define SLEEPY_APP(extra)                                                                          \
    APP("sleepy", "/sleepy", "faulty.so",                                                          \
        "{\"name\": \"Sleepy\", \"max_ongoing_requests\": 1" extra "}")

TestSuite(balancing, .fini = h_cleanup_all, .timeout = TEST_TIMEOUT_S);
TestSuite(queueing, .fini = h_cleanup_all, .timeout = TEST_TIMEOUT_S);
TestSuite(timeouts, .fini = h_cleanup_all, .timeout = TEST_TIMEOUT_S);
TestSuite(failures, .fini = h_cleanup_all, .timeout = TEST_TIMEOUT_S);
TestSuite(http, .fini = h_cleanup_all, .timeout = TEST_TIMEOUT_S);
TestSuite(access_log, .fini = h_cleanup_all, .timeout = TEST_TIMEOUT_S);

/* ---- Helpers ----------------------------------------------------------- */

static long long jint(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    cr_assert(json_is_integer(v), "'%s' missing or not an integer", key);
    return (long long)json_integer_value(v);
}

/* The "error" string of a JSON error answer; the test fails without one.
   Copied into `buf`. */
static const char *error_of(const h_serve *s, const h_response *r, char *buf, size_t size)
{
    cr_assert(strstr(r->content_type, "application/json"),
              "status %ld: content-type '%s', expected JSON; body: %s\n%s", r->status,
              r->content_type, r->body, LOG(s));
    json_t *obj = body_json(s, r);
    snprintf(buf, size, "%s", jstr(obj, "error"));
    json_decref(obj);
    cr_assert_neq(buf[0], '\0', "status %ld without an \"error\" reason: %s\n%s", r->status,
                  r->body, LOG(s));
    return buf;
}

/* One Gauge answer. */
typedef struct gauge {
    pid_t pid;
    int inflight, max_inflight, calls;
} gauge;

static gauge gauge_of(const h_serve *s, const h_response *r)
{
    cr_assert_eq(r->status, 200, "Gauge answered %ld: %s\n%s", r->status, r->body, LOG(s));
    json_t *obj = body_json(s, r);
    gauge g = {(pid_t)jint(obj, "pid"), (int)jint(obj, "inflight"), (int)jint(obj, "max_inflight"),
               (int)jint(obj, "calls")};
    json_decref(obj);
    return g;
}

/* GET a Gauge path that must answer 200. */
static gauge gauge_get(h_serve *s, const char *path, const char *const *headers)
{
    h_response r;
    get_expect_h(s, path, headers, 200, &r);
    gauge g = gauge_of(s, &r);
    h_response_free(&r);
    return g;
}

/* Wait for `n` replica processes and until each has answered `path` (a
   replica joins the routing set once ready); fills `procs`. */
static void wait_routable(h_serve *s, const char *path, size_t n, pid_t *procs)
{
    cr_assert_eq(h_serve_wait_replicas(s, n, READY_TIMEOUT_S, procs), 0,
                 "expected %zu replica processes\n%s", n, LOG(s));
    pid_t seen[H_MAX_REPLICAS];
    size_t n_seen = 0;
    double deadline = h_now() + READY_TIMEOUT_S;
    while (n_seen < n && h_now() < deadline) {
        gauge g = gauge_get(s, path, NULL);
        cr_assert(h_pid_in(g.pid, procs, n), "answered by pid %d, not a replica\n%s", g.pid,
                  LOG(s));
        if (!h_pid_in(g.pid, seen, n_seen)) seen[n_seen++] = g.pid;
    }
    cr_assert_eq(n_seen, n, "only %zu of %zu replicas ever answered\n%s", n_seen, n, LOG(s));
}

/* A request in the background (its own thread and connection) and when it
   was started, so that its end is known on the test's clock. */
typedef struct bg {
    h_async *a;
    double t0;
    int rc;
    h_response r;
    double end; /* t0 + elapsed: when the answer was complete */
} bg;

static void bg_start(bg *b, h_serve *s, const char *path, const char *const *headers)
{
    b->t0 = h_now();
    b->a = h_request_async(s, "GET", path, headers, NULL, 0);
    cr_assert_not_null(b->a, "cannot start a background request");
}

static void bg_wait(bg *b)
{
    b->rc = h_async_wait(b->a, &b->r);
    b->a = NULL;
    b->end = b->t0 + b->r.elapsed_s;
}

/* Start `n` copies of GET `path` at once and wait for all of them. */
static void fire(h_serve *s, const char *path, const char *const *headers, bg *b, size_t n)
{
    for (size_t i = 0; i < n; i++) bg_start(&b[i], s, path, headers);
    for (size_t i = 0; i < n; i++) bg_wait(&b[i]);
}

static void bg_free(bg *b, size_t n)
{
    for (size_t i = 0; i < n; i++) h_response_free(&b[i].r);
}

/* Growing byte buffer for the helpers below. */
typedef struct buf {
    char *data;
    size_t len;
} buf;

static size_t on_data(char *data, size_t size, size_t n, void *arg)
{
    buf *b = arg;
    char *p = realloc(b->data, b->len + size * n + 1);
    if (!p) return 0;
    memcpy(p + b->len, data, size * n);
    b->data = p;
    b->len += size * n;
    p[b->len] = '\0';
    return size * n;
}

/* The header block of the final answer only (not of a 100 Continue). */
static size_t on_header_data(char *data, size_t size, size_t n, void *arg)
{
    buf *b = arg;
    if (size * n >= 5 && strncmp(data, "HTTP/", 5) == 0) b->len = 0;
    return on_data(data, size, n, arg);
}

/* The upload of a chunked body, handed to libcurl in pieces of `piece`. */
typedef struct upload {
    const unsigned char *data;
    size_t len, off, piece;
} upload;

static size_t on_read(char *out, size_t size, size_t n, void *arg)
{
    upload *u = arg;
    size_t k = u->len - u->off;
    if (k > u->piece) k = u->piece;
    if (k > size * n) k = size * n;
    memcpy(out, u->data + u->off, k);
    u->off += k;
    return k;
}

/*
 * POST `len` bytes to `path` with Transfer-Encoding: chunked, on a new
 * connection, in chunks of at most `piece` bytes. Fills `out` like
 * h_request (free it with h_response_free); returns 0 when an HTTP answer
 * arrived, -1 otherwise (out->error says why).
 */
static int post_chunked(h_serve *s, const char *path, const void *data, size_t len, size_t piece,
                        h_response *out)
{
    char url[H_PATH_MAX];
    buf body = {0}, head = {0};
    upload u = {data, len, 0, piece};
    memset(out, 0, sizeof(*out));
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", s->port, path);
    CURL *c = curl_easy_init();
    cr_assert_not_null(c);
    struct curl_slist *hdrs = curl_slist_append(NULL, "Transfer-Encoding: chunked");
    hdrs = curl_slist_append(hdrs, "Content-Type: application/octet-stream");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c, CURLOPT_READFUNCTION, on_read);
    curl_easy_setopt(c, CURLOPT_READDATA, &u);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header_data);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &head);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, out->error);
    double t0 = h_now();
    CURLcode rc = curl_easy_perform(c);
    out->elapsed_s = h_now() - t0;
    if (rc == CURLE_OK) curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
    curl_easy_cleanup(c);
    curl_slist_free_all(hdrs);
    out->body = body.data ? body.data : strdup("");
    out->body_len = body.len;
    out->headers = head.data ? head.data : strdup("");
    h_response_header(out, "content-type", out->content_type, sizeof(out->content_type));
    h_response_header(out, "x-request-id", out->request_id, sizeof(out->request_id));
    if (rc != CURLE_OK && !out->error[0])
        snprintf(out->error, sizeof(out->error), "%s", curl_easy_strerror(rc));
    return rc == CURLE_OK ? 0 : -1;
}

/* Echo's answer to a body must report exactly these bytes. */
static void expect_echoed(const h_serve *s, const h_response *r, const void *data, size_t len)
{
    cr_assert_eq(r->status, 200, "status %ld: %s\n%s", r->status, r->body, LOG(s));
    char want[17];
    snprintf(want, sizeof(want), "%016llx", (unsigned long long)h_fnv1a64(data, len));
    json_t *obj = body_json(s, r);
    cr_expect_eq(jint(obj, "body_length"), (long long)len, "body_length %lld, sent %zu",
                 jint(obj, "body_length"), len);
    cr_expect_str_eq(jstr(obj, "body_fnv1a64"), want, "checksum %s, expected %s",
                     jstr(obj, "body_fnv1a64"), want);
    json_decref(obj);
}

/* `n` bytes with NULs all over: a NUL every third byte, a run of them in
   the middle, and every byte value. */
static unsigned char *binary_body(size_t n)
{
    unsigned char *p = malloc(n);
    cr_assert_not_null(p);
    for (size_t i = 0; i < n; i++) p[i] = i % 3 == 0 ? 0 : (unsigned char)(i * 7 + (i >> 8));
    memset(p + n / 2, 0, n / 8);
    return p;
}

/* The access log lines ("access app/dep#replica req=ID: ...") of the log whose request id is
   `id` (NULL: all of them), copied (newline-separated) into `out`; returns how many. */
static int access_lines(const h_serve *s, const char *id, char *out, size_t size)
{
    char *log = h_serve_log(s), *save = NULL, needle[H_HEADER_MAX + 8];
    int n = 0;
    size_t used = 0;
    if (size) out[0] = '\0';
    snprintf(needle, sizeof(needle), " req=%s: ", id ? id : "");
    for (char *line = strtok_r(log, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (!strstr(line, " INFO  access ")) continue;
        if (id && !strstr(line, needle)) continue;
        n++;
        int k = snprintf(out + used, size - used, "%s\n", line);
        if (k > 0 && used + (size_t)k < size) used += (size_t)k;
    }
    free(log);
    return n;
}

/* Wait until request `id` has `want` access lines (or LOG_WAIT_S); returns
   how many it has. */
static int wait_access_lines(const h_serve *s, const char *id, int want, char *out, size_t size)
{
    double deadline = h_now() + LOG_WAIT_S;
    int n;
    while ((n = access_lines(s, id, out, size)) < want && h_now() < deadline) h_sleep_ms(20);
    return n;
}

/* ---- 1. Replica choice ------------------------------------------------- */

/* Count how many of `n` Gauge answers came from each of the 3 `pids`, and
   the most each saw running at once (in `peak`, when not NULL). */
static void count_per_pid(const h_serve *s, bg *b, size_t n, const pid_t *pids, int *count,
                          int *peak)
{
    count[0] = count[1] = count[2] = 0;
    int unused[3];
    if (!peak) peak = unused;
    peak[0] = peak[1] = peak[2] = 0;
    for (size_t i = 0; i < n; i++) {
        cr_assert_eq(b[i].rc, 0, "request %zu got no answer: %s\n%s", i, b[i].r.error, LOG(s));
        gauge g = gauge_of(s, &b[i].r);
        cr_expect_leq(g.max_inflight, 2, "pid %d ran %d requests at once (max 2)", g.pid,
                      g.max_inflight);
        cr_expect_leq(g.inflight, 2, "pid %d ran %d requests at once (max 2)", g.pid, g.inflight);
        int k = g.pid == pids[0] ? 0 : g.pid == pids[1] ? 1 : g.pid == pids[2] ? 2 : -1;
        cr_assert_geq(k, 0, "answered by pid %d, not a replica\n%s", g.pid, LOG(s));
        count[k]++;
        if (g.inflight > peak[k]) peak[k] = g.inflight;
    }
}

Test(balancing, p2c_spreads_a_burst_and_never_exceeds_max_ongoing)
{
    h_serve *s = serve_up("/g?ms=0", "", GAUGE_APP(3, 2, ""));
    pid_t procs[H_MAX_REPLICAS];
    wait_routable(s, "/g?ms=0", 3, procs);
    /* Six at once fill the six slots exactly: two per replica, none waits. */
    bg b[6];
    fire(s, "/g?ms=300", NULL, b, 6);
    int count[3], peak[3];
    count_per_pid(s, b, 6, procs, count, peak);
    for (int k = 0; k < 3; k++) {
        cr_expect_eq(count[k], 2, "6 concurrent requests spread %d/%d/%d over the 3 replicas\n%s",
                     count[0], count[1], count[2], LOG(s));
        cr_expect_eq(peak[k], 2,
                     "replica %d got 2 requests at once but ran at most %d at a time "
                     "(max_ongoing_requests is 2)",
                     procs[k], peak[k]);
    }
    /* Nobody waited: a request that did would take 0.6 s. */
    for (int i = 0; i < 6; i++)
        cr_expect_lt(b[i].r.elapsed_s, 0.55, "request %d took %.2f s: it waited for a slot", i,
                     b[i].r.elapsed_s);
    bg_free(b, 6);
    /* 30 more, in waves of six: each wave starts on idle replicas and is
       spread over all of them. (Not checked as exactly 2/2/2: on a loaded
       machine a wave's requests need not all be in flight at once, and a
       replica may then serve three in turn; count_per_pid checks that none
       ever ran more than its max.) */
    for (int wave = 0; wave < 5; wave++) {
        fire(s, "/g?ms=300", NULL, b, 6);
        count_per_pid(s, b, 6, procs, count, NULL);
        cr_expect(count[0] >= 1 && count[1] >= 1 && count[2] >= 1 &&
                      count[0] + count[1] + count[2] == 6,
                  "wave %d spread %d/%d/%d over the 3 replicas\n%s", wave, count[0], count[1],
                  count[2], LOG(s));
        bg_free(b, 6);
    }
    /* And a burst larger than the capacity: the extra ones wait, nothing
       runs above max_ongoing, nothing fails. */
    bg big[10];
    fire(s, "/g?ms=200", NULL, big, 10);
    count_per_pid(s, big, 10, procs, count, NULL);
    cr_expect_eq(count[0] + count[1] + count[2], 10);
    bg_free(big, 10);
}

/* ---- 2. Queue, then 503 ------------------------------------------------ */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

Test(queueing, requests_wait_in_the_queue_then_get_503_at_its_limit)
{
    h_serve *s = serve_up("/sleepy?ms=0", "", SLEEPY_APP(", \"max_queued_requests\": 2"));
    bg b[5];
    fire(s, "/sleepy?ms=500", NULL, b, 5);
    double ok_times[5];
    int n_ok = 0, n_503 = 0;
    for (int i = 0; i < 5; i++) {
        cr_assert_eq(b[i].rc, 0, "request %d got no answer: %s\n%s", i, b[i].r.error, LOG(s));
        if (b[i].r.status == 200) {
            ok_times[n_ok++] = b[i].r.elapsed_s;
            continue;
        }
        cr_assert_eq(b[i].r.status, 503, "request %d: status %ld: %s\n%s", i, b[i].r.status,
                     b[i].r.body, LOG(s));
        n_503++;
        /* At once: not after the running request's 0.5 s. */
        cr_expect_lt(b[i].r.elapsed_s, 0.3, "a refused request took %.2f s", b[i].r.elapsed_s);
        char err[512];
        error_of(s, &b[i].r, err, sizeof(err));
        cr_expect(strstr(err, "queue"), "the 503 reason must mention the queue: %s", err);
        json_t *obj = body_json(s, &b[i].r);
        cr_expect_eq(jint(obj, "queue_length"), 2, "queue_length in %s", b[i].r.body);
        cr_expect_eq(jint(obj, "max_queued_requests"), 2, "max_queued_requests in %s", b[i].r.body);
        json_decref(obj);
        cr_expect_neq(b[i].r.request_id[0], '\0', "a 503 must carry an x-request-id");
    }
    cr_assert_eq(n_ok, 3, "%d requests got 200, expected 3 (1 running + 2 queued)\n%s", n_ok,
                 LOG(s));
    cr_assert_eq(n_503, 2, "%d requests got 503, expected 2\n%s", n_503, LOG(s));
    /* One at a time on the single slot: about 0.5, 1.0 and 1.5 s. */
    qsort(ok_times, 3, sizeof(double), cmp_double);
    for (int i = 0; i < 3; i++) {
        double want = 0.5 * (i + 1);
        cr_expect(ok_times[i] > want - 0.15 && ok_times[i] < want + SLACK_S,
                  "answer %d of the queue came after %.2f s, expected about %.1f s\n%s", i + 1,
                  ok_times[i], want, LOG(s));
    }
    bg_free(b, 5);
    /* The queue is empty again: a request goes straight through. */
    h_response r;
    get_expect(s, "/sleepy?ms=0", 200, &r);
    cr_expect_lt(r.elapsed_s, 0.3, "a request on an idle replica took %.2f s", r.elapsed_s);
    h_response_free(&r);
}

/* ---- 3. Timeouts ------------------------------------------------------- */

static const char *const TIMEOUT_HALF[] = {"x-request-timeout-seconds: 0.5", NULL};
static const char *const TIMEOUT_5[] = {"x-request-timeout-seconds: 5", NULL};

Test(timeouts, a_timed_out_request_gets_408_and_its_slot_frees_when_it_ends)
{
    h_serve *s = serve_up("/g?ms=0", "", GAUGE_APP(1, 1, ""));
    gauge g = gauge_get(s, "/g?ms=100", NULL);
    int calls = g.calls;
    /* Over its timeout: 408 at about 0.5 s, with a reason. */
    h_response r;
    double t_slow = h_now();
    get_expect_h(s, "/g?ms=2000", TIMEOUT_HALF, 408, &r);
    cr_expect(r.elapsed_s > 0.45 && r.elapsed_s < 0.5 + SLACK_S,
              "the 408 came after %.2f s, expected about 0.5 s", r.elapsed_s);
    char err[512];
    error_of(s, &r, err, sizeof(err));
    cr_expect(strstr(err, "timed out") && strstr(err, "0.5"),
              "the 408 reason must say it timed out after 0.5 s: %s", err);
    cr_expect_neq(r.request_id[0], '\0', "a 408 must carry an x-request-id");
    h_response_free(&r);
    /* The replica still runs it (a running handle is not interrupted), so
       the next request waits for its single slot, then runs. */
    gauge after = gauge_get(s, "/g?ms=10", NULL); /* no timeout */
    double ended = h_now() - t_slow;
    cr_expect(ended > 2.0 - 0.1 && ended < 2.0 + SLACK_S,
              "the queued request was answered %.2f s after the slow one started, "
              "expected when it ends (2.0 s)\n%s",
              ended, LOG(s));
    cr_expect_eq(after.calls, calls + 2, "the replica ran %d calls since, expected 2 (slow + this)",
                 after.calls - calls);
    cr_expect_eq(after.inflight, 1);
    /* And it is free again. */
    get_expect(s, "/g?ms=0", 200, &r);
    cr_expect_lt(r.elapsed_s, 0.3, "a request on a free slot took %.2f s", r.elapsed_s);
    h_response_free(&r);
}

Test(timeouts, a_queued_request_that_times_out_leaves_the_queue)
{
    h_serve *s = serve_up("/g?ms=0", "", GAUGE_APP(1, 1, ""));
    int calls = gauge_get(s, "/g?ms=0", NULL).calls;
    const char *const short_timeout[] = {"x-request-timeout-seconds: 0.3", "x-request-id: queued-B",
                                         NULL};
    bg a, b, c;
    bg_start(&a, s, "/g?ms=1500", TIMEOUT_5); /* holds the only slot */
    h_sleep_ms(100);
    bg_start(&b, s, "/g?ms=1000", short_timeout); /* waits, times out */
    h_sleep_ms(50);
    bg_start(&c, s, "/g?ms=10", TIMEOUT_5); /* waits behind B */
    bg_wait(&b);
    bg_wait(&a);
    bg_wait(&c);
    cr_assert_eq(b.rc, 0, "B got no answer: %s\n%s", b.r.error, LOG(s));
    cr_assert_eq(b.r.status, 408, "B: status %ld: %s\n%s", b.r.status, b.r.body, LOG(s));
    cr_expect(b.r.elapsed_s > 0.25 && b.r.elapsed_s < 0.3 + SLACK_S,
              "B's 408 came after %.2f s, expected about 0.3 s", b.r.elapsed_s);
    char err[512];
    error_of(s, &b.r, err, sizeof(err));
    cr_expect(strstr(err, "timed out"), "B's reason: %s", err);
    cr_expect_str_eq(b.r.request_id, "queued-B");
    gauge ga = gauge_of(s, &a.r), gc = gauge_of(s, &c.r);
    cr_expect_eq(ga.calls, calls + 1);
    /* C runs right after A: B, gone from the queue, never ran (it would
       have held the slot for 1 s). */
    cr_expect_eq(gc.calls, calls + 2,
                 "the replica ran %d requests after A, expected only C: the timed-out B ran",
                 gc.calls - ga.calls);
    cr_expect_lt(c.end - a.end, SLACK_S,
                 "C was answered %.2f s after A, expected right after (B must not run)",
                 c.end - a.end);
    bg_free(&a, 1);
    bg_free(&b, 1);
    bg_free(&c, 1);
}

Test(timeouts, the_header_shortens_the_global_timeout_and_a_malformed_one_is_400)
{
    h_serve *s = serve_up("/g?ms=0", ", \"request_timeout_s\": 0.5", GAUGE_APP(1, 1, ""));
    /* "" is sent as an empty header (libcurl's "Name;" form). */
    static const char *const bad[] = {"abc", "0", "-1", "1.5s", "nan", "inf", "1e9", ""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char hdr[128];
        if (bad[i][0])
            snprintf(hdr, sizeof(hdr), "x-request-timeout-seconds: %s", bad[i]);
        else
            snprintf(hdr, sizeof(hdr), "x-request-timeout-seconds;");
        const char *const headers[] = {hdr, NULL};
        h_response r;
        get_expect_h(s, "/g?ms=0", headers, 400, &r);
        char err[512];
        error_of(s, &r, err, sizeof(err));
        cr_expect(strstr(err, "x-request-timeout-seconds"),
                  "the 400 for '%s' must name the header: %s", bad[i], err);
        h_response_free(&r);
    }
    /* Longer than the global: the operator's limit holds (a client cannot
       hold a replica slot longer than it allows). */
    const char *const longer[] = {"x-request-timeout-seconds: 3", NULL};
    h_response r;
    get_expect_h(s, "/g?ms=1000", longer, 408, &r);
    cr_expect(r.elapsed_s < 0.5 + SLACK_S, "the 408 came after %.2f s, not at 0.5 s", r.elapsed_s);
    h_response_free(&r);
    /* Shorter than the global: 408 at the header's deadline. */
    const char *const shorter[] = {"x-request-timeout-seconds: 0.2", NULL};
    get_expect_h(s, "/g?ms=1000", shorter, 408, &r);
    cr_expect(r.elapsed_s > 0.15 && r.elapsed_s < 0.45,
              "the 408 came after %.2f s, expected about 0.2 s (the header), not 0.5 s",
              r.elapsed_s);
    char err[512];
    error_of(s, &r, err, sizeof(err));
    cr_expect(strstr(err, "0.2"), "the reason must give the 0.2 s timeout: %s", err);
    h_response_free(&r);
}

/* ---- 4. Disconnected clients ------------------------------------------- */

/*
 * The router notices a client that hung up while its request waits only on
 * its periodic sweep (every second, for requests waiting over a second), so
 * A holds the slot for 3 s: B, gone after 0.2 s, is swept out of the queue
 * before A ends, and C runs right after A.
 */
Test(queueing, a_client_that_disconnects_cancels_its_queued_request)
{
    h_serve *s = serve_up("/g?ms=0", "", GAUGE_APP(1, 1, ""));
    int calls = gauge_get(s, "/g?ms=0", NULL).calls;
    const char *const ten[] = {"x-request-timeout-seconds: 10", NULL};
    const char *const b_headers[] = {"x-request-timeout-seconds: 10", "x-request-id: gone-B", NULL};
    bg a, b, c;
    bg_start(&a, s, "/g?ms=3000", ten);
    h_sleep_ms(100);
    double saved = s->http_timeout_s;
    s->http_timeout_s = 0.2; /* B's client gives up after 0.2 s */
    bg_start(&b, s, "/g?ms=1000", b_headers);
    s->http_timeout_s = saved;
    h_sleep_ms(200);
    bg_start(&c, s, "/g?ms=10", ten);
    bg_wait(&b);
    bg_wait(&a);
    bg_wait(&c);
    cr_expect_neq(b.rc, 0, "B's client was to give up, yet got %ld", b.r.status);
    cr_assert_eq(a.rc, 0, "A: %s\n%s", a.r.error, LOG(s));
    cr_assert_eq(c.rc, 0, "C: %s\n%s", c.r.error, LOG(s));
    gauge ga = gauge_of(s, &a.r), gc = gauge_of(s, &c.r);
    cr_expect_eq(ga.calls, calls + 1);
    cr_expect_eq(gc.calls, calls + 2,
                 "the replica ran %d requests after A, expected only C: the abandoned B ran\n%s",
                 gc.calls - ga.calls, LOG(s));
    cr_expect_lt(c.end - a.end, SLACK_S, "C was answered %.2f s after A, expected right after",
                 c.end - a.end);
    /* The router logged B as given up by its client (499, nginx's code) and
       never gave it a replica. */
    char lines[2048];
    int n = wait_access_lines(s, "gone-B", 1, lines, sizeof(lines));
    cr_expect_eq(n, 1, "expected one access line for B, got %d:\n%s\n%s", n, lines, LOG(s));
    cr_expect(strstr(lines, " 499 ") && !strchr(lines, '#'),
              "B's access line must say 499 and no replica: %s", lines);
    bg_free(&a, 1);
    bg_free(&b, 1);
    bg_free(&c, 1);
}

/* ---- 5. A replica killed mid-request ----------------------------------- */

Test(failures, a_killed_replica_fails_only_its_requests_with_502_at_once)
{
    h_serve *s = serve_up("/g?ms=0", "", GAUGE_APP(2, 4, ""));
    pid_t procs[H_MAX_REPLICAS];
    wait_routable(s, "/g?ms=0", 2, procs);
    pid_t victim = procs[0], survivor = procs[1];
    /* Eight fill the eight slots: four on each replica. */
    bg b[8];
    for (int i = 0; i < 8; i++) bg_start(&b[i], s, "/g?ms=1000", NULL);
    h_sleep_ms(200);
    double t_kill = h_now();
    cr_assert_eq(kill(victim, SIGKILL), 0);
    int n_ok = 0, n_502 = 0;
    for (int i = 0; i < 8; i++) {
        bg_wait(&b[i]);
        cr_assert_eq(b[i].rc, 0, "request %d got no answer: %s\n%s", i, b[i].r.error, LOG(s));
        if (b[i].r.status == 502) {
            n_502++;
            cr_expect_lt(b[i].end - t_kill, 0.5,
                         "a request of the killed replica got its 502 %.2f s after the kill",
                         b[i].end - t_kill);
            char err[512];
            error_of(s, &b[i].r, err, sizeof(err));
            cr_expect(strstr(err, "replica"), "the 502 reason must name the replica: %s", err);
            continue;
        }
        gauge g = gauge_of(s, &b[i].r);
        n_ok++;
        cr_expect_eq(g.pid, survivor, "a 200 from pid %d, not the surviving replica %d", g.pid,
                     survivor);
        cr_expect(b[i].r.elapsed_s > 0.95 && b[i].r.elapsed_s < 1.0 + SLACK_S,
                  "a request on the surviving replica took %.2f s, expected about 1 s",
                  b[i].r.elapsed_s);
    }
    cr_expect_eq(n_502, 4, "%d requests got 502, expected the killed replica's 4\n%s", n_502,
                 LOG(s));
    cr_expect_eq(n_ok, 4, "%d requests got 200, expected the survivor's 4\n%s", n_ok, LOG(s));
    bg_free(b, 8);
    /* New requests all succeed (none is sent to the dead replica) and the
       replacement soon takes its share. */
    double deadline = h_now() + REPLACE_S;
    pid_t fresh = 0;
    int n = 0;
    while (!fresh && h_now() < deadline) {
        gauge g = gauge_get(s, "/g?ms=0", NULL);
        n++;
        cr_assert_neq(g.pid, victim, "the killed replica answered?");
        if (g.pid != survivor) fresh = g.pid;
    }
    cr_expect_neq(fresh, 0, "no replacement replica answered within %.0f s (%d requests)\n%s",
                  REPLACE_S, n, LOG(s));
    pid_t now[H_MAX_REPLICAS];
    size_t k = h_serve_replicas(s, now, H_MAX_REPLICAS);
    cr_expect(k == 2 && h_pid_in(fresh, now, k) && h_pid_in(survivor, now, k),
              "expected the survivor and its new peer as replicas");
}

/* ---- 6. HTTP details --------------------------------------------------- */

Test(http, keep_alive_reuses_the_connection)
{
    h_serve *s = serve_up("/echo", "", ECHO_APP);
    h_response r;
    long connects = -1, port1 = 0, port2 = 0;
    get_expect(s, "/echo/one", 200, &r);
    curl_easy_getinfo((CURL *)s->curl, CURLINFO_LOCAL_PORT, &port1);
    h_response_free(&r);
    get_expect(s, "/echo/two", 200, &r);
    curl_easy_getinfo((CURL *)s->curl, CURLINFO_NUM_CONNECTS, &connects);
    curl_easy_getinfo((CURL *)s->curl, CURLINFO_LOCAL_PORT, &port2);
    h_response_free(&r);
    cr_expect_eq(connects, 0, "the second request opened %ld new connection(s)", connects);
    cr_expect_eq(port1, port2, "the second request came from port %ld, the first from %ld", port2,
                 port1);
    /* Error answers keep the connection too. */
    get_expect(s, "/nothing", 404, &r);
    h_response_free(&r);
    get_expect(s, "/echo/three", 200, &r);
    curl_easy_getinfo((CURL *)s->curl, CURLINFO_NUM_CONNECTS, &connects);
    h_response_free(&r);
    cr_expect_eq(connects, 0, "a request after a 404 opened %ld new connection(s)", connects);
}

Test(http, a_chunked_body_arrives_intact)
{
    h_serve *s = serve_up("/echo", "", ECHO_APP);
    size_t n = 100 * KIB;
    unsigned char *body = malloc(n);
    cr_assert_not_null(body);
    for (size_t i = 0; i < n; i++) body[i] = (unsigned char)(i ^ (i >> 8) ^ (i >> 13));
    h_response r;
    int rc = post_chunked(s, "/echo/chunked", body, n, 7001, &r);
    cr_assert_eq(rc, 0, "no answer to a chunked POST: %s\n%s", r.error, LOG(s));
    expect_echoed(s, &r, body, n);
    json_t *obj = body_json(s, &r);
    cr_expect_str_eq(jstr(obj, "method"), "POST");
    json_decref(obj);
    h_response_free(&r);
    free(body);
}

Test(http, a_binary_body_with_nuls_arrives_intact)
{
    h_serve *s = serve_up("/echo", "", ECHO_APP);
    size_t n = 10 * KIB + 3;
    unsigned char *body = binary_body(n);
    const char *const headers[] = {"content-type: application/octet-stream", NULL};
    h_response r;
    request_ok(s, "POST", "/echo/bin", headers, body, n, &r);
    expect_echoed(s, &r, body, n);
    h_response_free(&r);
    cr_assert_eq(post_chunked(s, "/echo/bin", body, n, 1000, &r), 0, "chunked: %s\n%s", r.error,
                 LOG(s));
    expect_echoed(s, &r, body, n);
    h_response_free(&r);
    /* A body of NULs only. */
    memset(body, 0, n);
    request_ok(s, "PUT", "/echo/zeros", headers, body, n, &r);
    expect_echoed(s, &r, body, n);
    h_response_free(&r);
    free(body);
}

/* A body over the limit must be answered 413 with a JSON reason that the
   client can read (no reset). */
static void expect_413(const h_serve *s, int rc, const h_response *r, const char *how)
{
    cr_assert_eq(rc, 0, "%s: no answer to an oversized body: %s\n%s", how, r->error, LOG(s));
    cr_assert_eq(r->status, 413, "%s: status %ld: %s\n%s", how, r->status, r->body, LOG(s));
    char err[512];
    error_of(s, r, err, sizeof(err));
    cr_expect(strstr(err, "65536"), "%s: the reason must give the limit: %s", how, err);
    cr_expect_neq(r->request_id[0], '\0', "%s: a 413 must carry an x-request-id", how);
}

Test(http, a_body_over_max_body_bytes_gets_413)
{
    h_serve *s = serve_up("/echo", ", \"max_body_bytes\": 65536", ECHO_APP);
    size_t limit = 64 * KIB, big = 200 * KIB;
    unsigned char *body = binary_body(big);
    h_response r;
    /* At the limit: fine, both ways. */
    request_ok(s, "POST", "/echo", NULL, body, limit, &r);
    expect_echoed(s, &r, body, limit);
    h_response_free(&r);
    cr_assert_eq(post_chunked(s, "/echo", body, limit, 8192, &r), 0, "%s", r.error);
    expect_echoed(s, &r, body, limit);
    h_response_free(&r);
    /* Content-Length over the limit, the client waiting for 100-continue
       (libcurl's default for a body this size) and not waiting. */
    const char *const expect100[] = {"Expect: 100-continue", NULL};
    int rc = h_request(s, "POST", "/echo", expect100, body, big, &r);
    expect_413(s, rc, &r, "Content-Length, Expect: 100-continue");
    h_response_free(&r);
    const char *const no_expect[] = {"Expect:", NULL};
    rc = h_request(s, "POST", "/echo", no_expect, body, big, &r);
    expect_413(s, rc, &r, "Content-Length, body sent at once");
    h_response_free(&r);
    /* Chunked: the excess is only found while reading. */
    rc = post_chunked(s, "/echo", body, big, 8192, &r);
    expect_413(s, rc, &r, "chunked");
    h_response_free(&r);
    rc = post_chunked(s, "/echo", body, limit + 1, 8192, &r);
    expect_413(s, rc, &r, "chunked, one byte over");
    h_response_free(&r);
    /* The server is fine after all that. */
    request_ok(s, "POST", "/echo", NULL, body, 1000, &r);
    expect_echoed(s, &r, body, 1000);
    h_response_free(&r);
    free(body);
}

/* "X-Big: aaaa..." with a value of `n` bytes (malloc'd). */
static char *big_header(size_t n)
{
    char *h = malloc(n + 8);
    cr_assert_not_null(h);
    memcpy(h, "X-Big: ", 7);
    memset(h + 7, 'a', n);
    h[7 + n] = '\0';
    return h;
}

Test(http, headers_over_max_header_bytes_get_431)
{
    h_serve *s = serve_up("/echo", ", \"max_header_bytes\": 8192", ECHO_APP);
    char *small = big_header(4 * KIB), *huge = big_header(64 * KIB);
    h_response r;
    const char *const ok_headers[] = {small, NULL};
    get_expect_h(s, "/echo", ok_headers, 200, &r);
    json_t *obj = body_json(s, &r);
    const char *key, *got = NULL;
    json_t *v;
    json_object_foreach(json_object_get(obj, "headers"), key, v)
    {
        if (strcasecmp(key, "X-Big") == 0) got = json_string_value(v);
    }
    cr_expect(got && strlen(got) == 4 * KIB, "the 4 KiB header did not arrive whole (%zu bytes)",
              got ? strlen(got) : 0);
    json_decref(obj);
    h_response_free(&r);
    const char *const huge_headers[] = {huge, NULL};
    int rc = h_request(s, "GET", "/echo", huge_headers, NULL, 0, &r);
    cr_expect_eq(rc, 0, "no answer to a 64 KiB header: %s\n%s", r.error, LOG(s));
    cr_expect_eq(r.status, 431, "a 64 KiB header got %ld: %s\n%s", r.status, r.body, LOG(s));
    h_response_free(&r);
    /* The server is fine after it. */
    get_expect(s, "/echo", 200, &r);
    h_response_free(&r);
    free(small);
    free(huge);
}

static int is_hex_id(const char *id)
{
    size_t n = strlen(id);
    return n == 16 && strspn(id, "0123456789abcdef") == n;
}

Test(http, x_request_id_is_generated_passed_and_returned)
{
    h_serve *s = serve_up("/echo", "", ECHO_APP);
    h_response r;
    /* Absent: generated, seen by the plugin, returned; different each time. */
    char first[H_HEADER_MAX] = "";
    for (int i = 0; i < 2; i++) {
        get_expect(s, "/echo", 200, &r);
        json_t *obj = body_json(s, &r);
        cr_expect(is_hex_id(r.request_id), "generated id '%s'", r.request_id);
        cr_expect_str_eq(jstr(obj, "request_id"), r.request_id,
                         "the plugin saw '%s', the client '%s'", jstr(obj, "request_id"),
                         r.request_id);
        if (i == 0)
            snprintf(first, sizeof(first), "%s", r.request_id);
        else
            cr_expect_str_neq(r.request_id, first, "two requests got the id '%s'", first);
        json_decref(obj);
        h_response_free(&r);
    }
    /* Given: kept, both ways. */
    const char *const given[] = {"X-Request-Id: trace-7f3a.b_c:d", NULL};
    get_expect_h(s, "/echo", given, 200, &r);
    json_t *obj = body_json(s, &r);
    cr_expect_str_eq(r.request_id, "trace-7f3a.b_c:d");
    cr_expect_str_eq(jstr(obj, "request_id"), "trace-7f3a.b_c:d");
    json_decref(obj);
    h_response_free(&r);
    /* Given but unusable (spaces, too long): replaced by a generated one. */
    char long_id[128] = "x-request-id: ";
    memset(long_id + strlen(long_id), 'z', 100);
    const char *const bad[][2] = {{"x-request-id: has spaces in it", NULL}, {long_id, NULL}};
    for (int i = 0; i < 2; i++) {
        get_expect_h(s, "/echo", bad[i], 200, &r);
        obj = body_json(s, &r);
        cr_expect(is_hex_id(r.request_id), "an unusable id must be replaced: got '%s'",
                  r.request_id);
        cr_expect_str_eq(jstr(obj, "request_id"), r.request_id);
        json_decref(obj);
        h_response_free(&r);
    }
    /* Answers the proxy makes itself carry one too. */
    get_expect(s, "/nothing", 404, &r);
    cr_expect(is_hex_id(r.request_id), "a 404's id '%s'", r.request_id);
    h_response_free(&r);
}

/* ---- 7. Access log ----------------------------------------------------- */

Test(access_log, one_line_per_request_with_method_path_status_replica_and_id)
{
    h_serve *s = serve_up("/echo", "", ECHO_APP);
    const char *const get_h[] = {"x-request-id: acc-get", NULL};
    const char *const post_h[] = {"x-request-id: acc-post", NULL};
    const char *const miss_h[] = {"x-request-id: acc-404", NULL};
    h_response r;
    get_expect_h(s, "/echo/a/b?x=1", get_h, 200, &r);
    json_t *obj = body_json(s, &r);
    char replica[128];
    snprintf(replica, sizeof(replica), "#%s ", jstr(obj, "replica_id"));
    json_decref(obj);
    h_response_free(&r);
    request_ok(s, "POST", "/echo/p", post_h, "xyz", 3, &r);
    h_response_free(&r);
    get_expect_h(s, "/nope", miss_h, 404, &r);
    h_response_free(&r);
    get_expect(s, "/echo/gen", 200, &r);
    char gen[H_HEADER_MAX];
    snprintf(gen, sizeof(gen), "%s", r.request_id);
    h_response_free(&r);

    static const struct {
        const char *id, *want;
    } cases[] = {
        {"acc-get", ": GET /echo/a/b 200 "},
        {"acc-post", ": POST /echo/p 200 "},
        {"acc-404", ": GET /nope 404 "},
    };
    char lines[4096];
    for (size_t i = 0; i < 3; i++) {
        int n = wait_access_lines(s, cases[i].id, 1, lines, sizeof(lines));
        cr_expect_eq(n, 1, "request %s: %d access lines, expected 1:\n%s\n%s", cases[i].id, n,
                     lines, LOG(s));
        cr_expect(strstr(lines, cases[i].want), "request %s: line '%s' lacks '%s'", cases[i].id,
                  lines, cases[i].want);
        /* "... STATUS LATENCYms replica=..." */
        const char *lat = strstr(lines, cases[i].want);
        double ms = -1;
        char unit[3] = "";
        if (lat) sscanf(lat + strlen(cases[i].want), "%lfm%2s", &ms, unit);
        cr_expect(ms >= 0 && ms < 5000 && strncmp(unit, "s", 1) == 0,
                  "request %s: no latency in ms in '%s'", cases[i].id, lines);
    }
    access_lines(s, "acc-get", lines, sizeof(lines));
    cr_expect(strstr(lines, replica), "the access line must name the replica (%s): %s", replica,
              lines);
    access_lines(s, "acc-404", lines, sizeof(lines));
    cr_expect(!strchr(lines, '#'), "a 404 has no replica: %s", lines);
    int n = wait_access_lines(s, gen, 1, lines, sizeof(lines));
    cr_expect_eq(n, 1, "the generated id %s: %d access lines\n%s", gen, n, LOG(s));
}

Test(access_log, access_log_false_writes_none)
{
    h_serve *s = serve_up("/echo", ", \"access_log\": false", ECHO_APP);
    const char *const headers[] = {"x-request-id: silent-1", NULL};
    h_response r;
    get_expect_h(s, "/echo", headers, 200, &r);
    h_response_free(&r);
    get_expect(s, "/nope", 404, &r);
    h_response_free(&r);
    h_sleep_ms(300); /* lines are written within a loop turn: they would be there */
    char lines[4096];
    int n = access_lines(s, NULL, lines, sizeof(lines));
    cr_expect_eq(n, 0, "access_log is false, yet %d access lines:\n%s", n, lines);
}

/* ---- 8. Streamed responses --------------------------------------------- */

TestSuite(streaming, .fini = h_cleanup_all, .timeout = TEST_TIMEOUT_S);

/* What arrived of a streamed body, and when each line did. */
typedef struct arrivals {
    double start;
    double line_at[16];
    int lines;
    char body[1024];
    size_t len;
    int chunked;
} arrivals;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
    arrivals *a = arg;
    size_t len = size * n;
    for (size_t i = 0; i < len && a->len < sizeof(a->body) - 1; i++) {
        a->body[a->len++] = data[i];
        if (data[i] == '\n' && a->lines < 16) a->line_at[a->lines++] = now_s() - a->start;
    }
    return len;
}

static size_t on_header(char *data, size_t size, size_t n, void *arg)
{
    arrivals *a = arg;
    if (strncasecmp(data, "transfer-encoding: chunked", 26) == 0) a->chunked = 1;
    return size * n;
}

/* GET `path` with libcurl, recording when each line of the body arrives. */
static long get_streamed(h_serve *s, const char *path, arrivals *a)
{
    char url[256];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", s->port, path);
    memset(a, 0, sizeof(*a));
    CURL *e = curl_easy_init();
    cr_assert_not_null(e);
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, a);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, a);
    curl_easy_setopt(e, CURLOPT_TIMEOUT, 10L);
    a->start = now_s();
    CURLcode rc = curl_easy_perform(e);
    long status = 0;
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(e);
    return rc == CURLE_OK ? status : -(long)rc;
}

Test(streaming, each_part_reaches_the_client_as_soon_as_the_plugin_flushes_it)
{
    h_serve *s =
        serve_up("/stream?n=1&ms=0", ", \"request_timeout_s\": 0.5",
                 "{\"name\": \"stream\", \"route_prefix\": \"/stream\","
                 " \"plugin\": \"stream.so\", \"deployments\": [{\"name\": \"Streamer\"}]}");
    arrivals a;
    /* Four lines 300 ms apart: 0.9 s in all, longer than the 0.5 s request
       timeout, which only bounds the wait for the first part. */
    long status = get_streamed(s, "/stream?n=4&ms=300", &a);
    cr_assert_eq(status, 200, "status %ld\n%s", status, LOG(s));
    cr_expect(a.chunked, "a streamed response uses chunked transfer encoding");
    a.body[a.len] = '\0';
    cr_expect_str_eq(a.body, "token 1 of 4\ntoken 2 of 4\ntoken 3 of 4\ntoken 4 of 4\n");
    cr_assert_eq(a.lines, 4);
    cr_expect_lt(a.line_at[0], 0.25, "the first line came after %.2f s", a.line_at[0]);
    for (int i = 1; i < 4; i++) {
        double gap = a.line_at[i] - a.line_at[i - 1];
        cr_expect(gap > 0.2 && gap < 0.6, "line %d came %.2f s after the previous one", i + 1, gap);
    }
}

Test(streaming, a_stream_still_streams_after_a_run_of_fast_requests)
{
    /* Fast requests let a replica run requests on its I/O thread; a stream
       must still leave part by part, and go to the workers from then on. */
    h_serve *s =
        serve_up("/stream?n=1&ms=0", "",
                 "{\"name\": \"stream\", \"route_prefix\": \"/stream\","
                 " \"plugin\": \"stream.so\", \"deployments\": [{\"name\": \"Streamer\"}]}");
    h_response r;
    for (int i = 0; i < 100; i++) {
        get_expect(s, "/stream?n=1&ms=0", 200, &r);
        h_response_free(&r);
    }
    for (int round = 0; round < 2; round++) {
        arrivals a;
        cr_assert_eq(get_streamed(s, "/stream?n=3&ms=300", &a), 200);
        cr_assert_eq(a.lines, 3);
        cr_expect_lt(a.line_at[0], 0.25, "round %d: the first line came after %.2f s", round,
                     a.line_at[0]);
        cr_expect_gt(a.line_at[2] - a.line_at[0], 0.45, "round %d: lines came together", round);
    }
}

Test(streaming, a_handler_failing_after_a_flush_cuts_the_stream_at_once)
{
    h_serve *s = serve_up(NULL, "", APP("sf", "/sf", "faulty.so", "{\"name\": \"StreamFail\"}"));
    arrivals a;
    long status = get_streamed(s, "/sf", &a);
    double took = now_s() - a.start;
    cr_expect(status < 0 && status != -CURLE_OPERATION_TIMEDOUT,
              "a failed stream must end in a transfer error (status %ld)", status);
    cr_expect_eq(a.lines, 1, "the flushed line arrives, nothing after it (%d lines)", a.lines);
    cr_expect_lt(took, 2.0, "the failed stream ended %.2f s after it began", took);
}

Test(streaming, a_replica_that_dies_mid_stream_cuts_the_response_short)
{
    h_serve *s =
        serve_up("/stream?n=1&ms=0", "",
                 "{\"name\": \"stream\", \"route_prefix\": \"/stream\","
                 " \"plugin\": \"stream.so\", \"deployments\": [{\"name\": \"Streamer\"}]}");
    pid_t pids[H_MAX_REPLICAS];
    cr_assert_eq(h_serve_wait_replicas(s, 1, 5, pids), 0);
    arrivals a;
    pid_t victim = pids[0];
    pid_t killer = fork();
    if (killer == 0) {
        h_sleep_ms(500);
        kill(victim, SIGKILL);
        _exit(0);
    }
    long status = get_streamed(s, "/stream?n=10&ms=200", &a);
    double took = now_s() - a.start;
    waitpid(killer, NULL, 0);
    /* The headers and the first lines arrived; then the chunked body was cut
       short, at once: curl reports a transfer error, not a complete answer
       and not its own timeout. */
    cr_expect(status < 0 && status != -CURLE_OPERATION_TIMEDOUT,
              "a cut stream must end in a transfer error (status %ld)", status);
    cr_expect(a.lines >= 1 && a.lines < 10, "%d lines arrived", a.lines);
    cr_expect_lt(took, 2.0, "the cut stream ended %.2f s after it began", took);
}
