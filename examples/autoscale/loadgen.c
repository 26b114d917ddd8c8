/*
 * loadgen - play a load shape against one URL and watch a deployment
 * autoscale (see examples/autoscale/README.md).
 *
 * The load is closed-loop: each of N clients sends a request, waits for the
 * answer and sends the next, and N follows the shape (shape.h) over time.
 * Every --interval seconds it reads the deployment's status from the admin
 * API and takes a sample: clients, requests in flight, answers per second,
 * latency percentiles, errors, and the autoscaler's view (its metric, the
 * target, replicas running and starting). Samples go to a live terminal
 * view (or one line each with --plain or when stdout is not a terminal) and
 * to a CSV file, which examples/autoscale/chart.gp turns into a chart.
 *
 * One thread and one libcurl multi handle drive every connection, loopback
 * only, bounded by the shape's length. Exit status: 0 when every request
 * got a 2xx answer, 1 when any failed, 2 on bad usage.
 */
#include <curl/curl.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/util.h"

#include "shape.h"

#define LG_DEFAULT_SHAPE     "ramp:0..16/20,hold:16/15,spike:32/6,settle:16/10,idle:0/20,wake:4/8"
#define LG_HISTORY           64   /* samples kept for the view's strip charts */
#define LG_BAR_WIDTH         48   /* columns of the view's bars */
#define LG_REQUEST_TIMEOUT_S 60   /* a request that takes longer has failed */
#define LG_DRAIN_S           30.0 /* the most we wait for the last answers */
#define LG_DECISION_MAX      256

typedef struct lg_client {
    CURL *easy;
    double started; /* monotonic seconds; 0 when idle */
    int found_none; /* no replica was running when it started */
} lg_client;

/* The deployment as the admin API last showed it. */
typedef struct lg_status {
    int known; /* 0 until an answer names the deployment */
    int running, starting, target, desired, max_replicas;
    double metric;
    char decision[LG_DECISION_MAX];
} lg_status;

typedef struct lg_options {
    const char *url, *admin, *app, *deployment, *csv_path, *shape_spec;
    double interval_s, tail_s;
    int plain;
} lg_options;

typedef struct lg {
    lg_options opt;
    shape shape;
    CURLM *multi;
    lg_client *clients; /* shape.peak of them */
    int busy;           /* clients with a request in flight */
    CURL *admin;        /* the status request; in the multi while admin_busy */
    int admin_busy;
    char *admin_body;
    size_t admin_len;
    struct curl_slist *admin_headers;
    lg_status st;
    double t0;      /* monotonic start */
    double *lat_ms; /* this interval's latencies */
    size_t n_lat, cap_lat;
    long interval_errors, total_requests, total_errors;
    double cold_start_s; /* slowest request that found no replica running */
    int peak_running;
    FILE *csv;
    int history[3][LG_HISTORY]; /* clients, in flight, running */
    int n_history;
} lg;

static volatile sig_atomic_t lg_interrupted;

static void on_signal(int sig)
{
    lg_interrupted = 1;
}

static size_t discard_body(char *ptr, size_t size, size_t n, void *user)
{
    return size * n;
}

static size_t keep_admin_body(char *ptr, size_t size, size_t n, void *user)
{
    lg *g = user;
    char *next = realloc(g->admin_body, g->admin_len + size * n + 1);
    if (!next) return 0;
    memcpy(next + g->admin_len, ptr, size * n);
    g->admin_len += size * n;
    next[g->admin_len] = '\0';
    g->admin_body = next;
    return size * n;
}

/* ---- Load ---------------------------------------------------------------- */

static void start_request(lg *g, lg_client *c)
{
    c->started = util_mono_s();
    c->found_none = g->st.known && g->st.running == 0;
    curl_multi_add_handle(g->multi, c->easy);
    g->busy++;
}

/* Start idle clients until `want` requests are in flight. Clients above
   `want` are not stopped: they finish their request and stay idle. */
static void fill(lg *g, int want)
{
    for (int i = 0; i < g->shape.peak && g->busy < want; i++)
        if (g->clients[i].started == 0) start_request(g, &g->clients[i]);
}

static void record_latency(lg *g, double ms)
{
    if (g->n_lat == g->cap_lat) {
        size_t cap = g->cap_lat ? g->cap_lat * 2 : 1024;
        double *next = realloc(g->lat_ms, cap * sizeof(*next));
        if (!next) return; /* the sample's percentiles miss this one */
        g->lat_ms = next;
        g->cap_lat = cap;
    }
    g->lat_ms[g->n_lat++] = ms;
}

static void finish_request(lg *g, lg_client *c, CURLcode result)
{
    long code = 0;
    curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &code);
    double took = util_mono_s() - c->started;
    curl_multi_remove_handle(g->multi, c->easy);
    g->busy--;
    g->total_requests++;
    if (result != CURLE_OK || code < 200 || code > 299) {
        g->interval_errors++;
        g->total_errors++;
    } else {
        record_latency(g, took * 1e3);
    }
    if (c->found_none && took > g->cold_start_s) g->cold_start_s = took;
    c->started = 0;
}

/* ---- Admin status -------------------------------------------------------- */

static void count_replicas(lg_status *st, json_t *replicas)
{
    size_t i;
    json_t *r;
    st->running = st->starting = 0;
    json_array_foreach(replicas, i, r)
    {
        const char *state = json_string_value(json_object_get(r, "state"));
        if (!state) continue;
        st->running += strcmp(state, "RUNNING") == 0;
        st->starting += strcmp(state, "STARTING") == 0;
    }
}

static int json_int(json_t *obj, const char *key)
{
    return (int)json_integer_value(json_object_get(obj, key));
}

/* Read the watched deployment out of the admin API's status document. */
static void parse_status(lg *g)
{
    json_t *doc = json_loads(g->admin_body ? g->admin_body : "", 0, NULL);
    json_t *app = json_object_get(json_object_get(doc, "applications"), g->opt.app);
    json_t *dep = json_object_get(json_object_get(app, "deployments"), g->opt.deployment);
    lg_status *st = &g->st;
    st->known = json_is_object(dep);
    if (st->known) {
        count_replicas(st, json_object_get(dep, "replicas"));
        st->target = json_int(dep, "target_num_replicas");
        json_t *as = json_object_get(dep, "autoscaling");
        st->desired = json_is_object(as) ? json_int(as, "desired") : st->target;
        st->max_replicas = json_is_object(as) ? json_int(as, "max_replicas") : st->target;
        st->metric = json_real_value(json_object_get(as, "metric"));
        const char *why = json_string_value(json_object_get(as, "last_decision"));
        snprintf(st->decision, sizeof(st->decision), "%s", why ? why : "not autoscaled");
        if (st->running > g->peak_running) g->peak_running = st->running;
    }
    json_decref(doc);
}

static void poll_admin(lg *g)
{
    if (g->admin_busy) return; /* the last one has not answered yet */
    g->admin_len = 0;
    g->admin_busy = 1;
    curl_multi_add_handle(g->multi, g->admin);
}

static void finish_admin(lg *g, CURLcode result)
{
    curl_multi_remove_handle(g->multi, g->admin);
    g->admin_busy = 0;
    if (result == CURLE_OK)
        parse_status(g);
    else
        g->st.known = 0;
}

/* Handle every transfer that has ended. */
static void collect(lg *g)
{
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(g->multi, &left))) {
        if (m->msg != CURLMSG_DONE) continue;
        if (m->easy_handle == g->admin) {
            finish_admin(g, m->data.result);
            continue;
        }
        lg_client *c;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&c);
        finish_request(g, c, m->data.result);
    }
}

/* ---- Samples: CSV, plain lines and the live view ------------------------- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The q-quantile (nearest rank) of sorted v[0..n), 0 when empty. */
static double quantile(const double *v, size_t n, double q)
{
    if (n == 0) return 0;
    size_t rank = (size_t)ceil(q * (double)n);
    return v[rank ? rank - 1 : 0];
}

typedef struct lg_sample {
    double t;
    const char *phase;
    int clients, in_flight;
    double per_s, p50, p99;
    long errors;
} lg_sample;

static void write_csv_row(lg *g, const lg_sample *s)
{
    const lg_status *st = &g->st;
    fprintf(g->csv, "%.2f,%s,%d,%d,%.1f,%.2f,%.2f,%ld,%.2f,%d,%d,%d,%d\n", s->t, s->phase,
            s->clients, s->in_flight, s->per_s, s->p50, s->p99, s->errors, st->metric, st->desired,
            st->target, st->running, st->starting);
    fflush(g->csv);
}

static void print_plain(lg *g, const lg_sample *s)
{
    const lg_status *st = &g->st;
    printf("t=%.1fs phase=%s clients=%d in_flight=%d ongoing=%.1f replicas=%d starting=%d "
           "target=%d per_s=%.0f p50_ms=%.1f p99_ms=%.1f errors=%ld\n",
           s->t, s->phase, s->clients, s->in_flight, st->metric, st->running, st->starting,
           st->target, s->per_s, s->p50, s->p99, s->errors);
    fflush(stdout);
}

/* Append a bar of `value` on a scale where `full` fills LG_BAR_WIDTH. */
static void bar(char *out, size_t size, double value, double full)
{
    static const char *eighths[] = {"", "▏", "▎", "▍", "▌", "▋", "▊", "▉"};
    double cols = full > 0 ? value / full * LG_BAR_WIDTH : 0;
    if (cols > LG_BAR_WIDTH) cols = LG_BAR_WIDTH;
    int whole = (int)cols, part = (int)((cols - whole) * 8);
    size_t len = strlen(out);
    for (int i = 0; i < whole && len + 4 < size; i++, len += 3) memcpy(out + len, "█", 4);
    snprintf(out + len, size - len, "%s", eighths[part]);
}

/* Append a strip chart of history row `which`, scaled to `full`. */
static void strip(const lg *g, char *out, size_t size, int which, int full)
{
    static const char *levels[] = {" ", "▁", "▂", "▃", "▄", "▅", "▆", "▇", "█"};
    size_t len = strlen(out);
    for (int i = 0; i < g->n_history && len + 4 < size; i++) {
        int v = g->history[which][i], level = full > 0 ? (v * 8 + full - 1) / full : 0;
        len += (size_t)snprintf(out + len, size - len, "%s", levels[level > 8 ? 8 : level]);
    }
}

static void remember(lg *g, const lg_sample *s)
{
    if (g->n_history == LG_HISTORY) {
        for (int k = 0; k < 3; k++)
            memmove(g->history[k], g->history[k] + 1, (LG_HISTORY - 1) * sizeof(int));
        g->n_history--;
    }
    g->history[0][g->n_history] = s->clients;
    g->history[1][g->n_history] = s->in_flight;
    g->history[2][g->n_history] = g->st.running;
    g->n_history++;
}

static void print_view(lg *g, const lg_sample *s)
{
    const lg_status *st = &g->st;
    int scale = st->max_replicas > 0 ? st->max_replicas : 1;
    char b[3][LG_BAR_WIDTH * 3 + 16] = {"", "", ""}, h[3][LG_HISTORY * 3 + 16] = {"", "", ""};
    bar(b[0], sizeof(b[0]), s->clients, g->shape.peak);
    bar(b[1], sizeof(b[1]), st->metric, g->shape.peak);
    bar(b[2], sizeof(b[2]), st->running, scale);
    strip(g, h[0], sizeof(h[0]), 0, g->shape.peak);
    strip(g, h[1], sizeof(h[1]), 1, g->shape.peak);
    strip(g, h[2], sizeof(h[2]), 2, scale);
    printf("\033[H\033[J"
           "serve autoscaling demo   %s   t %.1f s of %.0f s   phase: %s\n\n"
           "  clients   %5d  %s\n"
           "  ongoing   %5.1f  %s\n"
           "  replicas  %5d  %s\n"
           "            target %d (desired %d, at most %d), %d starting\n\n"
           "  answers %.0f/s   p50 %.1f ms   p99 %.1f ms   errors %ld (%ld in all)\n"
           "  last decision: %s\n\n"
           "  the last %.0f s, a column per sample:\n"
           "  clients   |%s\n  in flight |%s\n  replicas  |%s\n",
           g->opt.url, s->t, g->shape.total_s + g->opt.tail_s, s->phase, s->clients, b[0],
           st->metric, b[1], st->running, b[2], st->target, st->desired, st->max_replicas,
           st->starting, s->per_s, s->p50, s->p99, s->errors, g->total_errors,
           st->known ? st->decision : "(deployment not found in the admin API)",
           LG_HISTORY * g->opt.interval_s, h[0], h[1], h[2]);
    fflush(stdout);
}

static void take_sample(lg *g, double now, double span_s)
{
    lg_sample s = {.t = now - g->t0, .in_flight = g->busy, .errors = g->interval_errors};
    s.clients = shape_clients_at(&g->shape, s.t, &s.phase);
    if (g->n_lat) qsort(g->lat_ms, g->n_lat, sizeof(double), cmp_double); /* may be NULL */
    s.per_s = span_s > 0 ? (double)(g->n_lat + (size_t)g->interval_errors) / span_s : 0;
    s.p50 = quantile(g->lat_ms, g->n_lat, 0.50);
    s.p99 = quantile(g->lat_ms, g->n_lat, 0.99);
    g->n_lat = 0;
    g->interval_errors = 0;
    remember(g, &s);
    if (g->csv) write_csv_row(g, &s);
    if (g->opt.plain)
        print_plain(g, &s);
    else
        print_view(g, &s);
}

/* ---- Run ----------------------------------------------------------------- */

static CURL *new_easy(const char *url)
{
    CURL *e = curl_easy_init();
    if (!e) return NULL;
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard_body);
    curl_easy_setopt(e, CURLOPT_TIMEOUT, (long)LG_REQUEST_TIMEOUT_S);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    return e;
}

/* Make the clients and the admin handle. Returns 0 or -1. */
static int setup(lg *g)
{
    g->multi = curl_multi_init();
    g->clients = calloc((size_t)g->shape.peak + 1, sizeof(*g->clients));
    g->admin = new_easy(g->opt.admin);
    if (!g->multi || !g->clients || !g->admin) return -1;
    curl_multi_setopt(g->multi, CURLMOPT_MAXCONNECTS, (long)g->shape.peak + 1);
    for (int i = 0; i < g->shape.peak; i++) {
        lg_client *c = &g->clients[i];
        if (!(c->easy = new_easy(g->opt.url))) return -1;
        curl_easy_setopt(c->easy, CURLOPT_PRIVATE, (char *)c);
    }
    curl_easy_setopt(g->admin, CURLOPT_WRITEFUNCTION, keep_admin_body);
    curl_easy_setopt(g->admin, CURLOPT_WRITEDATA, g);
    const char *token = getenv("SERVE_ADMIN_TOKEN");
    if (token && *token) {
        char header[512];
        snprintf(header, sizeof(header), "Authorization: Bearer %s", token);
        g->admin_headers = curl_slist_append(NULL, header);
        curl_easy_setopt(g->admin, CURLOPT_HTTPHEADER, g->admin_headers);
    }
    return 0;
}

static void teardown(lg *g)
{
    for (int i = 0; g->clients && i < g->shape.peak; i++) {
        if (g->clients[i].started) curl_multi_remove_handle(g->multi, g->clients[i].easy);
        curl_easy_cleanup(g->clients[i].easy);
    }
    if (g->admin_busy) curl_multi_remove_handle(g->multi, g->admin);
    curl_easy_cleanup(g->admin);
    curl_slist_free_all(g->admin_headers);
    curl_multi_cleanup(g->multi);
    free(g->clients);
    free(g->lat_ms);
    free(g->admin_body);
}

/* One turn: keep `want` requests in flight, move transfers on, wait up to
   wait_ms for the next event. */
static void turn(lg *g, int want, int wait_ms)
{
    int running;
    fill(g, want);
    curl_multi_perform(g->multi, &running);
    collect(g);
    curl_multi_poll(g->multi, NULL, 0, wait_ms, NULL);
}

/* Play the shape, sampling every interval, then wait for the last answers. */
static void play(lg *g)
{
    double next = g->t0 + g->opt.interval_s, last = g->t0;
    double end = g->t0 + g->shape.total_s + g->opt.tail_s;
    poll_admin(g);
    for (double now = g->t0; !lg_interrupted && (now < end || g->busy > 0); now = util_mono_s()) {
        if (now > end + LG_DRAIN_S) break; /* answers that never come count as errors */
        int want = now < end ? shape_clients_at(&g->shape, now - g->t0, NULL) : 0;
        if (now >= next) {
            take_sample(g, now, now - last);
            last = now;
            next += g->opt.interval_s;
            poll_admin(g);
        }
        int wait_ms = (int)((next - now) * 1e3);
        turn(g, want, wait_ms < 1 ? 1 : wait_ms > 50 ? 50 : wait_ms);
    }
    g->total_errors += g->busy; /* cut off by Ctrl-C or the drain bound */
    take_sample(g, util_mono_s(), util_mono_s() - last);
}

static void summary(const lg *g)
{
    printf("\n%ld requests, %ld failed; replicas peaked at %d", g->total_requests + g->busy,
           g->total_errors, g->peak_running);
    if (g->cold_start_s > 0)
        printf("; the slowest request that found no replica running took %.2f s", g->cold_start_s);
    printf("\n");
    if (g->opt.csv_path) printf("samples: %s\n", g->opt.csv_path);
}

static void usage(FILE *to)
{
    fprintf(
        to,
        "usage: loadgen [options] URL\n"
        "Play a load shape against URL and watch a deployment autoscale.\n\n"
        "  -s, --shape SPEC        segments [label:]CLIENTS[..CLIENTS]/SECONDS, comma-separated\n"
        "                          (default " LG_DEFAULT_SHAPE ")\n"
        "  -a, --admin URL         the admin API (default $SERVE_ADDRESS, else\n"
        "                          http://127.0.0.1:8265, as for the serve CLI)\n"
        "      --app NAME          the application to watch (default autoscale)\n"
        "      --deployment NAME   the deployment to watch (default Work)\n"
        "  -o, --csv FILE          write one row per sample to FILE\n"
        "  -i, --interval SECONDS  the sample period (default 0.5)\n"
        "      --tail SECONDS      keep sampling this long after the shape ends (default 0)\n"
        "      --plain             one line per sample, even on a terminal\n"
        "  -h, --help              this text\n\n"
        "SERVE_ADMIN_TOKEN, when set, is sent to the admin API as a bearer token.\n"
        "Exit status: 0 when every request got a 2xx answer, 1 otherwise, 2 on bad usage.\n");
}

/* Parse a number of seconds in (min, 3600]. */
static int parse_seconds(const char *text, double min, double *out)
{
    char *end;
    double v = strtod(text, &end);
    if (end == text || *end || !(v > min) || v > SHAPE_MAX_SECONDS) return -1;
    *out = v;
    return 0;
}

static int parse_options(lg_options *o, int argc, char **argv)
{
    static const struct option longs[] = {
        {"shape", required_argument, NULL, 's'}, {"admin", required_argument, NULL, 'a'},
        {"app", required_argument, NULL, 'A'},   {"deployment", required_argument, NULL, 'D'},
        {"csv", required_argument, NULL, 'o'},   {"interval", required_argument, NULL, 'i'},
        {"tail", required_argument, NULL, 't'},  {"plain", no_argument, NULL, 'p'},
        {"help", no_argument, NULL, 'h'},        {NULL, 0, NULL, 0},
    };
    const char *address = getenv("SERVE_ADDRESS");
    *o = (lg_options){.admin = address && *address ? address : "http://127.0.0.1:8265",
                      .app = "autoscale",
                      .deployment = "Work",
                      .shape_spec = LG_DEFAULT_SHAPE,
                      .interval_s = 0.5,
                      .plain = !isatty(STDOUT_FILENO)};
    int ch;
    while ((ch = getopt_long(argc, argv, "s:a:o:i:h", longs, NULL)) != -1) {
        switch (ch) {
        case 's':
            o->shape_spec = optarg;
            break;
        case 'a':
            o->admin = optarg;
            break;
        case 'A':
            o->app = optarg;
            break;
        case 'D':
            o->deployment = optarg;
            break;
        case 'o':
            o->csv_path = optarg;
            break;
        case 'p':
            o->plain = 1;
            break;
        case 'i':
            if (parse_seconds(optarg, 0.05, &o->interval_s) != 0) {
                fprintf(stderr, "loadgen: --interval: must be seconds from 0.05 to 3600\n");
                return -1;
            }
            break;
        case 't':
            if (parse_seconds(optarg, -1e-9, &o->tail_s) != 0) {
                fprintf(stderr, "loadgen: --tail: must be seconds from 0 to 3600\n");
                return -1;
            }
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            return -1;
        }
    }
    if (optind != argc - 1) {
        usage(stderr);
        return -1;
    }
    o->url = argv[optind];
    return 0;
}

/* The admin URL of the status document, from the admin API's base. */
static char *status_url(const char *base)
{
    size_t len = strlen(base);
    while (len && base[len - 1] == '/') len--;
    char *url = malloc(len + sizeof("/api/serve/applications/"));
    if (url) sprintf(url, "%.*s/api/serve/applications/", (int)len, base);
    return url;
}

static int open_csv(lg *g)
{
    if (!g->opt.csv_path) return 0;
    g->csv = fopen(g->opt.csv_path, "w");
    if (!g->csv) {
        perror(g->opt.csv_path);
        return -1;
    }
    fprintf(g->csv, "t_s,phase,clients,in_flight,answers_per_s,p50_ms,p99_ms,errors,"
                    "ongoing_metric,desired,target_replicas,running_replicas,starting_replicas\n");
    return 0;
}

int main(int argc, char **argv)
{
    lg g = {0};
    char err[256];
    if (parse_options(&g.opt, argc, argv) != 0) return 2;
    if (shape_parse(&g.shape, g.opt.shape_spec, err, sizeof(err)) != 0) {
        fprintf(stderr, "loadgen: --shape: %s\n", err);
        return 2;
    }
    char *admin_url = status_url(g.opt.admin);
    g.opt.admin = admin_url;
    if (open_csv(&g) != 0) return 2;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int rc = 1;
    if (admin_url && setup(&g) == 0) {
        signal(SIGINT, on_signal);
        signal(SIGTERM, on_signal);
        g.t0 = util_mono_s();
        play(&g);
        summary(&g);
        rc = g.total_errors ? 1 : 0;
    } else {
        fprintf(stderr, "loadgen: out of memory\n");
    }
    teardown(&g);
    curl_global_cleanup();
    if (g.csv) fclose(g.csv);
    free(admin_url);
    return rc;
}
