/*
 * loadgen - steady HTTP load on one URL, and an account of every answer
 * (bench/chaos.sh and bench/soak.sh; see bench/README.md).
 *
 *   loadgen [-c CONNS] [-d SECONDS] [-r RATE] [-t TIMEOUT] [-p] URL
 *
 * CONNS keep-alive connections (default 16) send GET URL for SECONDS
 * (default 10). Without -r each connection sends its next request as soon
 * as it has an answer (closed loop). With -r RATE the requests follow a
 * fixed schedule, RATE per second in all (open loop): request k is due at
 * k / RATE seconds, whatever the server does, and waits for a free
 * connection when all are busy; its latency counts from when it was due,
 * so a stalled server shows as latency, not as a lower rate. TIMEOUT
 * (default 5 s) bounds one request: past it the request counts as a hang.
 *
 * Every request ends in exactly one of: an HTTP answer (counted by status;
 * a non-2xx one also by its reason, the start of its body with hex ids of
 * 8+ digits replaced by '*', so that the same error from two replicas
 * counts once), or a transport error, counted by kind: incomplete (the
 * answer was cut), reset, refused, empty_reply, malformed, timeout (the
 * hang), or libcurl's text for rarer ones. At the end a JSON summary goes to
 * stdout; with -p a line per second goes to stderr. Exit status 0 when the
 * run took place (the summary is the verdict), 1 on a setup failure, 2 on
 * bad usage.
 *
 * One thread, one libcurl multi handle; latencies go into a log-linear
 * histogram (1.6% resolution), so memory stays flat over a long run.
 */
#include <curl/curl.h>
#include <getopt.h>
#include <jansson.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/util.h"

#define LG_MAX_CONNS   4096
#define LG_BODY_KEEP   160 /* bytes of a non-2xx body kept as its reason */
#define LG_MAX_REASONS 64  /* distinct reasons kept; more are only counted */
#define LG_MAX_KINDS   16  /* distinct transport error kinds */
#define LG_SUB_BITS    6   /* histogram: 64 buckets per power of two */
#define LG_BUCKETS     (48 << LG_SUB_BITS)

typedef struct lg_hist {
    uint64_t count[LG_BUCKETS];
    uint64_t n, max_us;
} lg_hist;

typedef struct lg_conn {
    CURL *easy;
    int busy;
    double due; /* when its request was due (paced) or sent */
    char body[LG_BODY_KEEP + 1];
    size_t body_len; /* bytes kept in body */
} lg_conn;

typedef struct lg_tally {
    char key[LG_BODY_KEEP + 1];
    long status; /* 0 for a transport error kind */
    uint64_t count;
} lg_tally;

typedef struct lg {
    const char *url;
    int n_conns, progress;
    double duration_s, rate, timeout_s;
    CURLM *multi;
    lg_conn *conns;
    int busy;
    double t0, t_end, next_due;
    double lag_max; /* the most a request was sent after it was due */
    uint64_t sent, completed, ok, errors, timeouts, connects, reasons_dropped;
    uint64_t by_status[600]; /* index: HTTP status 100..599; 0 for others */
    lg_tally reasons[LG_MAX_REASONS], kinds[LG_MAX_KINDS];
    int n_reasons, n_kinds;
    lg_hist all, second; /* latencies: whole run, current second */
    uint64_t sec_sent, sec_done, sec_non2xx, sec_errors;
    double next_tick;
} lg;

static volatile sig_atomic_t lg_interrupted;

static void on_signal(int sig)
{
    lg_interrupted = 1;
}

/* ---- Latency histogram ------------------------------------------------- */

/* Values under 64 us have a bucket each; above, 64 buckets per power of two. */
static int bucket_of(uint64_t us)
{
    if (us < (1u << LG_SUB_BITS)) return (int)us;
    int e = 63 - __builtin_clzll(us);
    int b = ((e - LG_SUB_BITS + 1) << LG_SUB_BITS) +
            (int)((us >> (e - LG_SUB_BITS)) & ((1u << LG_SUB_BITS) - 1));
    return b < LG_BUCKETS ? b : LG_BUCKETS - 1;
}

static uint64_t bucket_low(int b)
{
    if (b < (1 << LG_SUB_BITS)) return (uint64_t)b;
    int e = (b >> LG_SUB_BITS) + LG_SUB_BITS - 1;
    uint64_t mant = (1u << LG_SUB_BITS) + (uint64_t)(b & ((1 << LG_SUB_BITS) - 1));
    return mant << (e - LG_SUB_BITS);
}

static void hist_add(lg_hist *h, double seconds)
{
    uint64_t us = seconds > 0 ? (uint64_t)(seconds * 1e6) : 0;
    h->count[bucket_of(us)]++;
    h->n++;
    if (us > h->max_us) h->max_us = us;
}

/* The q-quantile in milliseconds (the low edge of its bucket), 0 when empty. */
static double hist_ms(const lg_hist *h, double q)
{
    if (h->n == 0) return 0;
    uint64_t rank = (uint64_t)(q * (double)h->n), seen = 0;
    if (rank >= h->n) rank = h->n - 1;
    for (int b = 0; b < LG_BUCKETS; b++) {
        seen += h->count[b];
        if (seen > rank) return bucket_low(b) / 1e3;
    }
    return h->max_us / 1e3;
}

/* ---- Outcomes ---------------------------------------------------------- */

/* Count one under `key` in table[0..*n), adding it when there is room. */
static int tally(lg_tally *table, int *n, int max, long status, const char *key)
{
    for (int i = 0; i < *n; i++)
        if (table[i].status == status && strcmp(table[i].key, key) == 0) {
            table[i].count++;
            return 0;
        }
    if (*n == max) return -1;
    lg_tally *t = &table[(*n)++];
    snprintf(t->key, sizeof(t->key), "%s", key);
    t->status = status;
    t->count = 1;
    return 0;
}

static int is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

static int is_word(char c)
{
    return is_hex(c) || (c >= 'g' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

/* The reason of a non-2xx answer: its body, printable, ids made '*'. */
static void reason_of(const lg_conn *c, char out[LG_BODY_KEEP + 1])
{
    size_t o = 0;
    for (size_t i = 0; i < c->body_len && o < LG_BODY_KEEP;) {
        size_t run = 0;
        if (i == 0 || !is_word(c->body[i - 1]))
            while (i + run < c->body_len && is_hex(c->body[i + run])) run++;
        if (run >= 8 && (i + run == c->body_len || !is_word(c->body[i + run]))) {
            out[o++] = '*';
            i += run;
            continue;
        }
        char ch = c->body[i++];
        out[o++] = ch >= ' ' && ch < 127 ? ch : ' ';
    }
    while (o > 0 && out[o - 1] == ' ') o--;
    out[o] = '\0';
}

static const char *error_kind(CURLcode rc)
{
    switch (rc) {
    case CURLE_OPERATION_TIMEDOUT:
        return "timeout";
    case CURLE_PARTIAL_FILE:
        return "incomplete";
    case CURLE_GOT_NOTHING:
        return "empty_reply";
    case CURLE_COULDNT_CONNECT:
        return "refused";
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
        return "reset";
    case CURLE_WEIRD_SERVER_REPLY:
        return "malformed";
    default:
        return curl_easy_strerror(rc);
    }
}

static void finish(lg *g, lg_conn *c, CURLcode rc)
{
    double now = util_mono_s();
    long status = 0, connects = 0;
    curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(c->easy, CURLINFO_NUM_CONNECTS, &connects);
    curl_multi_remove_handle(g->multi, c->easy);
    c->busy = 0;
    g->busy--;
    g->connects += (uint64_t)connects;
    if (rc != CURLE_OK) {
        g->errors++;
        g->sec_errors++;
        g->timeouts += rc == CURLE_OPERATION_TIMEDOUT;
        tally(g->kinds, &g->n_kinds, LG_MAX_KINDS, 0, error_kind(rc));
        return;
    }
    g->completed++;
    g->sec_done++;
    g->by_status[status >= 100 && status < 600 ? status : 0]++;
    hist_add(&g->all, now - c->due);
    hist_add(&g->second, now - c->due);
    if (status >= 200 && status < 300) {
        g->ok++;
        return;
    }
    g->sec_non2xx++;
    char key[LG_BODY_KEEP + 1];
    reason_of(c, key);
    if (tally(g->reasons, &g->n_reasons, LG_MAX_REASONS, status, key) != 0) g->reasons_dropped++;
}

/* ---- Sending ----------------------------------------------------------- */

static size_t keep_body(char *ptr, size_t size, size_t n, void *user)
{
    lg_conn *c = user;
    size_t len = size * n, room = LG_BODY_KEEP - c->body_len;
    memcpy(c->body + c->body_len, ptr, len < room ? len : room);
    c->body_len += len < room ? len : room;
    return len;
}

static int conn_init(lg *g, lg_conn *c)
{
    c->easy = curl_easy_init();
    if (!c->easy) return -1;
    curl_easy_setopt(c->easy, CURLOPT_URL, g->url);
    curl_easy_setopt(c->easy, CURLOPT_WRITEFUNCTION, keep_body);
    curl_easy_setopt(c->easy, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(c->easy, CURLOPT_PRIVATE, c);
    curl_easy_setopt(c->easy, CURLOPT_TIMEOUT_MS, (long)(g->timeout_s * 1e3));
    curl_easy_setopt(c->easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c->easy, CURLOPT_TCP_NODELAY, 1L);
    return 0;
}

static void send_on(lg *g, lg_conn *c, double now, double due)
{
    if (now - due > g->lag_max) g->lag_max = now - due;
    c->due = due;
    c->body_len = 0;
    c->busy = 1;
    g->busy++;
    g->sent++;
    g->sec_sent++;
    curl_multi_add_handle(g->multi, c->easy);
}

/* Start what is due: with a rate, every request whose time has come while a
   connection is free; without, one on every free connection. */
static void send_due(lg *g, double now)
{
    for (int i = 0; i < g->n_conns && g->busy < g->n_conns; i++) {
        if (g->conns[i].busy) continue;
        if (g->rate > 0 && g->next_due > now) return;
        send_on(g, &g->conns[i], now, g->rate > 0 ? g->next_due : now);
        g->next_due += g->rate > 0 ? 1.0 / g->rate : 0;
    }
}

static void collect(lg *g)
{
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(g->multi, &left))) {
        if (m->msg != CURLMSG_DONE) continue;
        lg_conn *c;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&c);
        finish(g, c, m->data.result);
    }
}

static void tick(lg *g, double now)
{
    if (now < g->next_tick) return;
    if (g->progress)
        fprintf(stderr,
                "t=%.0f sent=%llu done=%llu non2xx=%llu errors=%llu inflight=%d p50_ms=%.3f "
                "p99_ms=%.3f\n",
                g->next_tick - g->t0, (unsigned long long)g->sec_sent,
                (unsigned long long)g->sec_done, (unsigned long long)g->sec_non2xx,
                (unsigned long long)g->sec_errors, g->busy, hist_ms(&g->second, 0.5),
                hist_ms(&g->second, 0.99));
    g->sec_sent = g->sec_done = g->sec_non2xx = g->sec_errors = 0;
    memset(&g->second, 0, sizeof(g->second));
    g->next_tick += 1;
}

/* Send until the duration is over, then wait for the requests in flight
   (each ends within the timeout, the wait within the timeout and 2 s). */
static void run(lg *g)
{
    g->t0 = g->next_due = util_mono_s();
    g->t_end = g->t0 + g->duration_s;
    g->next_tick = g->t0 + 1;
    double deadline = g->t_end + g->timeout_s + 2;
    for (;;) {
        double now = util_mono_s();
        int sending = now < g->t_end && !lg_interrupted;
        if (sending) send_due(g, now);
        int running;
        curl_multi_perform(g->multi, &running);
        collect(g);
        now = util_mono_s();
        tick(g, now);
        if (!sending && (g->busy == 0 || now > deadline)) break;
        double wait = g->next_tick - now, until = sending ? g->t_end : deadline;
        if (sending && g->busy < g->n_conns) {
            double due = g->rate > 0 ? g->next_due - now : 0;
            if (due < wait) wait = due;
        }
        if (until - now < wait) wait = until - now;
        /* Rounded up: a wake-up a little late rather than a busy loop. */
        curl_multi_poll(g->multi, NULL, 0, wait > 0 ? (int)(wait * 1e3 + 0.999) : 0, NULL);
    }
    /* Never the case unless libcurl misses its timeout: still counted. */
    for (int i = 0; i < g->n_conns; i++) {
        if (!g->conns[i].busy) continue;
        g->errors++;
        tally(g->kinds, &g->n_kinds, LG_MAX_KINDS, 0, "unfinished");
    }
}

/* ---- Summary ----------------------------------------------------------- */

static json_t *tallies(const lg_tally *t, int n, int with_status)
{
    json_t *out = with_status ? json_array() : json_object();
    for (int i = 0; i < n; i++) {
        if (with_status)
            json_array_append_new(out,
                                  json_pack("{s:I, s:I, s:s}", "status", (json_int_t)t[i].status,
                                            "count", (json_int_t)t[i].count, "reason", t[i].key));
        else
            json_object_set_new(out, t[i].key, json_integer((json_int_t)t[i].count));
    }
    return out;
}

static json_t *summary(const lg *g, double elapsed)
{
    json_t *by_status = json_object();
    for (int s = 0; s < 600; s++) {
        if (!g->by_status[s]) continue;
        char key[8];
        snprintf(key, sizeof(key), "%d", s);
        json_object_set_new(by_status, key, json_integer((json_int_t)g->by_status[s]));
    }
    /* Requests due before the end that never found a free connection. */
    json_int_t scheduled =
        g->rate > 0 ? (json_int_t)(g->duration_s * g->rate + 0.999999) : (json_int_t)g->sent;
    json_int_t unsent = scheduled > (json_int_t)g->sent ? scheduled - (json_int_t)g->sent : 0;
    return json_pack(
        "{s:s, s:i, s:f, s:f, s:f, s:f, s:I, s:I, s:I, s:f, s:I, s:I, s:o, s:o, s:I, s:o, s:I, "
        "s:I, s:I, s:{s:f, s:f, s:f, s:f}, s:f}",
        "url", g->url, "connections", g->n_conns, "duration_s", g->duration_s, "rate", g->rate,
        "timeout_s", g->timeout_s, "elapsed_s", elapsed, "scheduled", scheduled, "sent",
        (json_int_t)g->sent, "unsent", unsent, "schedule_lag_max_ms", g->lag_max * 1e3, "completed",
        (json_int_t)g->completed, "ok", (json_int_t)g->ok, "by_status", by_status, "reasons",
        tallies(g->reasons, g->n_reasons, 1), "reasons_dropped", (json_int_t)g->reasons_dropped,
        "errors", tallies(g->kinds, g->n_kinds, 0), "errors_total", (json_int_t)g->errors,
        "timeouts", (json_int_t)g->timeouts, "connects", (json_int_t)g->connects, "latency_ms",
        "p50", hist_ms(&g->all, 0.5), "p90", hist_ms(&g->all, 0.9), "p99", hist_ms(&g->all, 0.99),
        "max", g->all.max_us / 1e3, "achieved_rps", elapsed > 0 ? g->completed / elapsed : 0.0);
}

/* ---- Command line ------------------------------------------------------ */

static void usage(void)
{
    fprintf(stderr, "usage: loadgen [-c CONNS] [-d SECONDS] [-r RATE] [-t TIMEOUT] [-p] URL\n"
                    "  -c  keep-alive connections (default 16)\n"
                    "  -d  seconds of load (default 10)\n"
                    "  -r  requests per second in all, on a fixed schedule (default: unpaced)\n"
                    "  -t  seconds before a request counts as a hang (default 5)\n"
                    "  -p  a line per second on stderr\n");
}

static int parse_number(const char *s, double lo, double hi, double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (!*s || *end || !(v >= lo && v <= hi)) return -1;
    *out = v;
    return 0;
}

static int parse_args(lg *g, int argc, char **argv)
{
    double conns = 16;
    g->duration_s = 10;
    g->timeout_s = 5;
    int opt;
    while ((opt = getopt(argc, argv, "c:d:r:t:ph")) != -1) {
        int bad = 0;
        switch (opt) {
        case 'c':
            bad = parse_number(optarg, 1, LG_MAX_CONNS, &conns);
            break;
        case 'd':
            bad = parse_number(optarg, 0.1, 86400, &g->duration_s);
            break;
        case 'r':
            bad = parse_number(optarg, 0, 1e7, &g->rate);
            break;
        case 't':
            bad = parse_number(optarg, 0.001, 3600, &g->timeout_s);
            break;
        case 'p':
            g->progress = 1;
            break;
        default:
            bad = -1;
        }
        if (bad) return -1;
    }
    if (optind != argc - 1) return -1;
    g->url = argv[optind];
    g->n_conns = (int)conns;
    return 0;
}

int main(int argc, char **argv)
{
    static lg g; /* large (histograms): not on the stack */
    if (parse_args(&g, argc, argv) != 0) {
        usage();
        return 2;
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGPIPE, SIG_IGN);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0) return 1;
    g.multi = curl_multi_init();
    g.conns = calloc((size_t)g.n_conns, sizeof(*g.conns));
    if (!g.multi || !g.conns) return 1;
    curl_multi_setopt(g.multi, CURLMOPT_MAXCONNECTS, (long)g.n_conns);
    for (int i = 0; i < g.n_conns; i++)
        if (conn_init(&g, &g.conns[i]) != 0) return 1;

    run(&g);
    json_t *out = summary(&g, util_mono_s() - g.t0);
    json_dumpf(out, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
    fputc('\n', stdout);
    json_decref(out);

    for (int i = 0; i < g.n_conns; i++) {
        if (g.conns[i].busy) curl_multi_remove_handle(g.multi, g.conns[i].easy);
        curl_easy_cleanup(g.conns[i].easy);
    }
    free(g.conns);
    curl_multi_cleanup(g.multi);
    curl_global_cleanup();
    return 0;
}
