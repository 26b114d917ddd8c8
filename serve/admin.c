/*
 * admin.c - see admin.h. Runs on the controller's loop through the shared
 * libmicrohttpd driver, so handlers read the controller's state directly.
 *
 * A request is looked at twice: once its headers are in (on_headers: the
 * Host and Origin checks, the token, the declared size; a refusal is
 * answered there, before the loop thread, which also runs the proxy,
 * spends anything on a body), and once its body is in (answer).
 */
#include "serve/admin.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <netdb.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/httpd.h"
#include "common/log.h"
#include "ipc/ipc.h"
#include "serve/config.h"
#include "serve/controller.h"

#define ADMIN_APPS_PATH    "/api/serve/applications/"
#define ADMIN_METRICS_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* The dashboard page (dashboard.html, compiled in by scripts/embed.py). */
extern const char admin_dashboard_html[];
extern const size_t admin_dashboard_html_len;
#define ADMIN_MAX_BODY (1u << 20) /* a config larger than this is a mistake */

/* The page is one file with its script and style inline, and it reads
   only its own origin's API; nothing may frame it (clickjacking). */
#define ADMIN_PAGE_CSP                                                                             \
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "                  \
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

#define ADMIN_MIN_TOKEN_LEN  16            /* shorter tokens get a warning at start */
#define ADMIN_REFUSAL_LOG_NS 1000000000ull /* at most one refusal WARN a second */
#define ADMIN_LOG_TEXT       160           /* bytes of a client's text in a log line */
#define ADMIN_LOG_FIELDS     ((log_fields){.component = "admin"})

/* One admin request: its body, collected across upload calls. */
typedef struct admin_req {
    ipc_buf body;
} admin_req;

struct admin {
    httpd *http;
    ctl *c;
    char *token; /* NULL: no auth (then loopback only) */
    size_t token_len;
    char *host;                 /* admin.host, a name the Host header may carry */
    uint64_t refusal_logged_ns; /* when the last refusal WARN was written */
    unsigned refusals_unlogged; /* refusals since then, not logged */
    void (*done)(void *);
    void *done_arg;
};

/* ---- Loopback addresses ------------------------------------------------ */

static int v4_is_loopback(const struct in_addr *a)
{
    return (ntohl(a->s_addr) >> 24) == 127;
}

/* ::1, or an IPv4 loopback address mapped into IPv6 (::ffff:127.x.x.x,
   what a dual-stack socket reports). */
static int v6_is_loopback(const struct in6_addr *a)
{
    if (IN6_IS_ADDR_LOOPBACK(a)) return 1;
    return IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127;
}

static int sockaddr_is_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return v4_is_loopback(&((const struct sockaddr_in *)sa)->sin_addr);
    if (sa->sa_family == AF_INET6)
        return v6_is_loopback(&((const struct sockaddr_in6 *)sa)->sin6_addr);
    return 0;
}

int admin_host_is_loopback(const char *host)
{
    struct in_addr v4;
    struct in6_addr v6;
    if (strcasecmp(host, "localhost") == 0) return 1;
    if (inet_pton(AF_INET, host, &v4) == 1) return v4_is_loopback(&v4);
    return inet_pton(AF_INET6, host, &v6) == 1 && v6_is_loopback(&v6);
}

int admin_host_may_be_loopback(const char *host)
{
    struct in_addr v4;
    struct in6_addr v6;
    int literal = inet_pton(AF_INET, host, &v4) == 1 || inet_pton(AF_INET6, host, &v6) == 1;
    return !literal || admin_host_is_loopback(host);
}

/* Numeric text of an address: "1.2.3.4:port", "[::1]:port", or only the
   host part without `with_port`. "?" when it cannot be printed. */
static void format_sockaddr(const struct sockaddr *sa, int with_port, char *out, size_t size)
{
    char host[INET6_ADDRSTRLEN], port[8];
    socklen_t len =
        sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    snprintf(out, size, "?");
    if (getnameinfo(sa, len, host, sizeof(host), port, sizeof(port),
                    NI_NUMERICHOST | NI_NUMERICSERV) != 0)
        return;
    int v6 = strchr(host, ':') != NULL;
    if (!with_port)
        snprintf(out, size, "%s", host);
    else
        snprintf(out, size, v6 ? "[%s]:%s" : "%s:%s", host, port);
}

/*
 * Without a token the API must be reachable from this machine only. The
 * rule is on the address the socket was bound to, not on admin.host's
 * text: a name, or a short numeric form such as "0" (0.0.0.0 to
 * getaddrinfo), can resolve to any address. Returns 0 or -EACCES (or the
 * errno of getsockname) with a message in `err`.
 */
static int check_bound_loopback(int fd, const char *host, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0) {
        int rc = -errno;
        snprintf(err, errlen, "admin: cannot read the bound address: %s", strerror(errno));
        return rc;
    }
    if (sockaddr_is_loopback((struct sockaddr *)&ss)) return 0;
    char addr[INET6_ADDRSTRLEN + 8];
    format_sockaddr((struct sockaddr *)&ss, 0, addr, sizeof(addr));
    snprintf(err, errlen,
             "admin.host: '%s' resolves to %s, not a loopback address; set "
             "admin.auth_token (or SERVE_ADMIN_TOKEN) to expose the admin API",
             host, addr);
    return -EACCES;
}

/* ---- Who may call ------------------------------------------------------ */

/*
 * Compare a client's guess with the secret in a time that tells neither
 * how much of the guess is right nor how the secret's length compares
 * with the guess's: the loop runs over the secret's own length whatever
 * the guess, reads NULs past the guess's end, and folds a length mismatch
 * into the result instead of returning early.
 */
static int same_secret(const char *guess, const char *secret, size_t secret_len)
{
    size_t guess_len = strlen(guess);
    size_t diff = guess_len ^ secret_len;
    for (size_t i = 0; i < secret_len; i++) {
        unsigned char g = i < guess_len ? (unsigned char)guess[i] : 0;
        diff |= (size_t)(g ^ (unsigned char)secret[i]);
    }
    return diff == 0;
}

/* "Authorization: Bearer TOKEN". The scheme is case-insensitive and may
   be followed by more than one space (RFC 7235, section 2.1). */
static int authorized(const admin *a, struct MHD_Connection *conn)
{
    if (!a->token) return 1;
    const char *h = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "authorization");
    if (!h || strncasecmp(h, "Bearer ", 7) != 0) return 0;
    for (h += 7; *h == ' '; h++) continue;
    return same_secret(h, a->token, a->token_len);
}

/*
 * Split an authority ("host", "host:port", "[v6]", "[v6]:port", or a bare
 * v6 address) into the host, without brackets, and the port text ("" when
 * absent). Returns 0, or -1 when it is malformed or the host is too long.
 */
static int split_authority(const char *text, char *host, size_t size, const char **port)
{
    const char *start = text, *end, *colon;
    if (text[0] == '[') {
        start = text + 1;
        if (!(end = strchr(start, ']'))) return -1;
        colon = end[1] == ':' ? end + 1 : NULL;
        if (end[1] && !colon) return -1;
    } else {
        colon = strchr(text, ':');
        if (colon && strchr(colon + 1, ':')) colon = NULL; /* a bare IPv6 address */
        end = colon ? colon : text + strlen(text);
    }
    size_t n = (size_t)(end - start);
    if (n == 0 || n >= size) return -1;
    memcpy(host, start, n);
    host[n] = '\0';
    *port = colon ? colon + 1 : "";
    return 0;
}

/* A port's text as a number; `dflt` when empty, -1 when not a port. */
static long port_number(const char *text, long dflt)
{
    if (!*text) return dflt;
    char *end;
    long port = strtol(text, &end, 10);
    return *end || port < 0 || port > 65535 ? -1 : port;
}

/* A Host header (its host part) the API may be reached by: admin.host as
   configured, or a loopback name or literal. Never a name an attacker's
   DNS can point at 127.0.0.1, so a rebound page is refused. */
static int host_allowed(const admin *a, const char *value)
{
    char host[256];
    const char *port;
    if (split_authority(value, host, sizeof(host), &port) != 0) return 0;
    return strcasecmp(host, a->host) == 0 || admin_host_is_loopback(host);
}

/* Does an Origin ("scheme://host[:port]") name the same host and port as
   the Host header? The admin API speaks plain HTTP: a Host without a
   port means 80. */
static int same_origin(const char *origin, const char *host_header)
{
    const char *sep = strstr(origin, "://");
    if (!host_header || !sep) return 0; /* "null" (sandboxed, file:) included */
    size_t scheme = (size_t)(sep - origin);
    long dflt = scheme == 5 && strncasecmp(origin, "https", 5) == 0 ? 443 : 80;
    char oh[256], hh[256];
    const char *op, *hp;
    if (split_authority(sep + 3, oh, sizeof(oh), &op) != 0 ||
        split_authority(host_header, hh, sizeof(hh), &hp) != 0)
        return 0;
    long oport = port_number(op, dflt);
    return strcasecmp(oh, hh) == 0 && oport >= 0 && oport == port_number(hp, 80);
}

static int is_get(const char *method)
{
    return strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
}

/* The methods that change what runs (and are audited). */
static int is_change(const char *method)
{
    return strcmp(method, "PUT") == 0 || strcmp(method, "DELETE") == 0;
}

/*
 * Browsers, for an API without a token (with one, a foreign page has no
 * token to send). A browser always sends Host, naming the host the page
 * believes it talks to: after DNS rebinding, the attacker's own name. A
 * missing Host is allowed (HTTP/1.0 tools). A write whose Origin differs
 * from its Host comes from another site's page. The page `/` is checked
 * too: it holds no data, but under a foreign name every read it makes
 * would be refused anyway, and a 403 on the page says why at once.
 * Returns why the request is refused, or NULL.
 */
static const char *browser_refusal(const admin *a, struct MHD_Connection *conn, const char *method)
{
    const char *host = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST);
    if (host && !host_allowed(a, host))
        return "Host names neither admin.host nor a loopback address (DNS rebinding?); "
               "use http://127.0.0.1:PORT or set admin.auth_token";
    const char *origin = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_ORIGIN);
    if (origin && !is_get(method) && !same_origin(origin, host))
        return "cross-origin request: Origin does not match Host";
    return NULL;
}

/* ---- Answers ----------------------------------------------------------- */

/* Queue `resp` (consumed) with the headers every admin answer carries:
   no content sniffing (a JSON error quoting a client's text stays JSON)
   and no caching (answers are live state, and may carry configs). */
static enum MHD_Result queue(struct MHD_Connection *conn, unsigned status,
                             struct MHD_Response *resp, const char *type)
{
    if (!resp) return MHD_NO;
    MHD_add_response_header(resp, "content-type", type);
    MHD_add_response_header(resp, "x-content-type-options", "nosniff");
    MHD_add_response_header(resp, "cache-control", "no-store");
    if (status == MHD_HTTP_UNAUTHORIZED)
        MHD_add_response_header(resp, "www-authenticate", "Bearer");
    enum MHD_Result ret = MHD_queue_response(conn, status, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* Queue `obj` (reference stolen) as a JSON answer. */
static enum MHD_Result reply(struct MHD_Connection *conn, unsigned status, json_t *obj)
{
    char *text = obj ? json_dumps(obj, JSON_COMPACT | JSON_INDENT(0)) : NULL;
    json_decref(obj);
    const char *body = text ? text : "{\"error\":\"out of memory\"}";
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_MUST_COPY);
    free(text);
    return queue(conn, status, resp, "application/json");
}

/* {"error": why}, a new reference. */
static json_t *error_doc(const char *why)
{
    return json_pack("{s:s}", "error", why);
}

static enum MHD_Result reply_error(struct MHD_Connection *conn, unsigned status, const char *why)
{
    return reply(conn, status, error_doc(why));
}

/* GET /: the dashboard, compiled in (never copied). */
static enum MHD_Result reply_page(struct MHD_Connection *conn)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(
        admin_dashboard_html_len, (void *)admin_dashboard_html, MHD_RESPMEM_PERSISTENT);
    if (resp) MHD_add_response_header(resp, "content-security-policy", ADMIN_PAGE_CSP);
    return queue(conn, MHD_HTTP_OK, resp, "text/html; charset=utf-8");
}

/* GET /metrics: every metric, rendered now into a memory stream. */
static enum MHD_Result reply_metrics(admin *a, struct MHD_Connection *conn)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) return reply_error(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory");
    ctl_write_metrics(a->c, f);
    if (fclose(f) != 0) {
        free(text);
        return reply_error(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory");
    }
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_COPY);
    free(text);
    return queue(conn, MHD_HTTP_OK, resp, ADMIN_METRICS_TYPE);
}

/* ---- Audit ------------------------------------------------------------- */

/* A client's text (method, path, an error quoting a config) for a log
   line: printable ASCII only, others as '?', cut at ADMIN_LOG_TEXT. */
static const char *printable(const char *in, char out[ADMIN_LOG_TEXT + 1])
{
    size_t n = 0;
    for (; in[n] && n < ADMIN_LOG_TEXT; n++) out[n] = in[n] >= 0x20 && in[n] < 0x7f ? in[n] : '?';
    out[n] = '\0';
    return out;
}

static void client_address(struct MHD_Connection *conn, char *out, size_t size)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (ci && ci->client_addr)
        format_sockaddr(ci->client_addr, 1, out, size);
    else
        snprintf(out, size, "?");
}

/* One INFO line per change (PUT, DELETE) that got past the checks: who
   asked, and what came of it. */
static void audit(struct MHD_Connection *conn, const char *method, const char *url, unsigned status,
                  const char *why)
{
    if (LOG_INFO < log_min_level) return;
    char from[INET6_ADDRSTRLEN + 16], m[ADMIN_LOG_TEXT + 1], u[ADMIN_LOG_TEXT + 1];
    char w[ADMIN_LOG_TEXT + 1];
    client_address(conn, from, sizeof(from));
    log_write(LOG_INFO, &ADMIN_LOG_FIELDS, "%s %s from %s: %u%s%s", printable(method, m),
              printable(url, u), from, status, why ? " " : "", why ? printable(why, w) : "");
}

/*
 * One WARN per refused request (403, 401), but at most one a second, so
 * that someone guessing tokens cannot flood the log; the next line that
 * is written says how many went unlogged in between.
 */
static void warn_refused(admin *a, struct MHD_Connection *conn, const char *method, const char *url,
                         unsigned status)
{
    uint64_t now = uv_hrtime();
    if (LOG_WARN < log_min_level) return;
    if (a->refusal_logged_ns && now - a->refusal_logged_ns < ADMIN_REFUSAL_LOG_NS) {
        a->refusals_unlogged++;
        return;
    }
    char from[INET6_ADDRSTRLEN + 16], m[ADMIN_LOG_TEXT + 1], u[ADMIN_LOG_TEXT + 1];
    client_address(conn, from, sizeof(from));
    char more[64] = "";
    if (a->refusals_unlogged)
        snprintf(more, sizeof(more), " (%u more refused since the last warning)",
                 a->refusals_unlogged);
    log_write(LOG_WARN, &ADMIN_LOG_FIELDS, "refused %s %s from %s: %u%s", printable(method, m),
              printable(url, u), from, status, more);
    a->refusal_logged_ns = now;
    a->refusals_unlogged = 0;
}

/* ---- Requests ---------------------------------------------------------- */

/* What the headers alone decide: 0 to go on, else the status of the
   refusal with its reason in `why`. The page and the metrics are read
   only (405 for anything else, token or not). */
static unsigned check_headers(const admin *a, struct MHD_Connection *conn, const char *url,
                              const char *method, const char **why)
{
    int page = strcmp(url, "/") == 0, metrics = strcmp(url, "/metrics") == 0;
    if (!a->token && (*why = browser_refusal(a, conn, method))) return MHD_HTTP_FORBIDDEN;
    if ((page || metrics) && !is_get(method)) {
        *why = "use GET";
        return MHD_HTTP_METHOD_NOT_ALLOWED;
    }
    if (!page && !authorized(a, conn)) {
        *why = "missing or wrong bearer token (Authorization: Bearer TOKEN)";
        return MHD_HTTP_UNAUTHORIZED;
    }
    const char *cl =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl && strtoull(cl, NULL, 10) > ADMIN_MAX_BODY) {
        *why = "config over 1 MiB";
        return MHD_HTTP_CONTENT_TOO_LARGE;
    }
    return 0;
}

/*
 * First call, headers only. A refusal is answered now, before the body
 * (MHD then closes the connection instead of reading it). Anything else
 * waits for its body: answering now would close keep-alive.
 */
static enum MHD_Result on_headers(admin *a, struct MHD_Connection *conn, const char *url,
                                  const char *method, void **con_cls)
{
    const char *why = NULL;
    unsigned status = check_headers(a, conn, url, method, &why);
    if (status == MHD_HTTP_FORBIDDEN || status == MHD_HTTP_UNAUTHORIZED)
        warn_refused(a, conn, method, url, status);
    else if (status == MHD_HTTP_CONTENT_TOO_LARGE && is_change(method))
        audit(conn, method, url, status, why);
    if (status) return reply_error(conn, status, why);
    *con_cls = calloc(1, sizeof(admin_req));
    return *con_cls ? MHD_YES : MHD_NO;
}

/* A piece of the body. One that grows past the limit (a chunked body, or
   one longer than declared) is cut: the connection closes unanswered. */
static enum MHD_Result take_body(struct MHD_Connection *conn, admin_req *req, const char *url,
                                 const char *method, const char *data, size_t *size)
{
    if (req->body.len + *size > ADMIN_MAX_BODY) {
        audit(conn, method, url, MHD_HTTP_CONTENT_TOO_LARGE,
              "body over 1 MiB: connection closed unanswered");
        return MHD_NO;
    }
    ipc_buf_put(&req->body, data, *size);
    *size = 0;
    return req->body.oom ? MHD_NO : MHD_YES;
}

/*
 * PUT: the whole desired config, as in Ray Serve. It is checked as a file
 * is at start (plugins must resolve inside the plugin folders), then
 * applied: 200 once ctl_apply accepted it (replicas then start, stop or
 * reconfigure in the background); 400 naming the field otherwise. Returns
 * the answer (a new reference) and its status.
 */
static json_t *put_config(admin *a, admin_req *req, unsigned *status)
{
    char err[CFG_ERR_LEN], exe[4096];
    size_t exe_len = sizeof(exe);
    cfg_config *next;
    *status = MHD_HTTP_BAD_REQUEST;
    if (cfg_parse(req->body.data ? req->body.data : "", req->body.len, &next, err, sizeof(err)))
        return error_doc(err);
    cfg_admin_token_from_env(next);
    char *search = uv_exepath(exe, &exe_len) == 0 ? cfg_plugin_search_path(exe) : NULL;
    int rc = search ? cfg_resolve_plugins_within(next, ctl_file_dir(a->c), search,
                                                 ctl_trusted_folders(a->c), err, sizeof(err))
                    : -ENOMEM;
    free(search);
    if (rc != 0) {
        cfg_free(next);
        return error_doc(rc == -ENOMEM ? "out of memory" : err);
    }
    rc = ctl_apply(a->c, next, err, sizeof(err));
    if (rc != 0) {
        if (rc == -ECANCELED) *status = MHD_HTTP_SERVICE_UNAVAILABLE;
        return error_doc(err);
    }
    *status = MHD_HTTP_OK;
    return json_object();
}

/* DELETE: remove every application (serve shutdown). */
static json_t *delete_all(admin *a, unsigned *status)
{
    char err[CFG_ERR_LEN];
    *status = MHD_HTTP_SERVICE_UNAVAILABLE;
    if (ctl_delete_all(a->c, err, sizeof(err)) != 0) return error_doc(err);
    *status = MHD_HTTP_OK;
    return json_object();
}

/* A change, answered and written to the audit log. */
static enum MHD_Result change(admin *a, struct MHD_Connection *conn, const char *url,
                              const char *method, admin_req *req)
{
    unsigned status;
    json_t *doc = strcmp(method, "PUT") == 0 ? put_config(a, req, &status) : delete_all(a, &status);
    audit(conn, method, url, status, json_string_value(json_object_get(doc, "error")));
    return reply(conn, status, doc);
}

/* The whole request is in (headers checked by check_headers, body read):
   answer it. */
static enum MHD_Result answer(admin *a, struct MHD_Connection *conn, const char *url,
                              const char *method, admin_req *req)
{
    if (strcmp(url, "/") == 0) return reply_page(conn);
    if (strcmp(url, "/metrics") == 0) return reply_metrics(a, conn);
    if (strcmp(url, ADMIN_APPS_PATH) != 0 && strcmp(url, "/api/serve/applications") != 0)
        return reply_error(conn, MHD_HTTP_NOT_FOUND, "no such endpoint");
    if (strcmp(method, "GET") == 0) return reply(conn, MHD_HTTP_OK, ctl_status(a->c));
    if (is_change(method)) return change(a, conn, url, method, req);
    return reply_error(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "use GET, PUT or DELETE");
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode code)
{
    admin_req *req = *con_cls;
    if (!req) return;
    ipc_buf_free(&req->body);
    free(req);
    *con_cls = NULL;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls)
{
    admin *a = cls;
    admin_req *req = *con_cls;
    if (!req) return on_headers(a, conn, url, method, con_cls);
    if (*upload_size) return take_body(conn, req, url, method, upload, upload_size);
    return answer(a, conn, url, method, req);
}

/* ---- Start and stop ---------------------------------------------------- */

static void admin_free(admin *a)
{
    free(a->token);
    free(a->host);
    free(a);
}

/* Copy what the handlers need; warn about a token short enough to guess
   (nothing limits the rate of 401s). */
static admin *admin_new(ctl *c, const char *host, const char *token)
{
    admin *a = calloc(1, sizeof(*a));
    if (!a) return NULL;
    a->c = c;
    a->host = strdup(host);
    if (token) {
        a->token = strdup(token);
        a->token_len = strlen(token);
    }
    if (!a->host || (token && !a->token)) {
        admin_free(a);
        return NULL;
    }
    if (token && a->token_len < ADMIN_MIN_TOKEN_LEN && LOG_WARN >= log_min_level)
        log_write(LOG_WARN, &ADMIN_LOG_FIELDS,
                  "admin.auth_token is only %zu bytes: use at least %d random bytes "
                  "(openssl rand -hex 32)",
                  a->token_len, ADMIN_MIN_TOKEN_LEN);
    return a;
}

int admin_start(uv_loop_t *loop, ctl *c, const char *host, int port, const char *token, admin **out,
                char *err, size_t errlen)
{
    admin *a = admin_new(c, host, token);
    if (!a) return -ENOMEM;
    int fd = httpd_listen("admin", host, port, err, errlen);
    int rc = fd;
    if (fd < 0) goto fail;
    if (!token && (rc = check_bound_loopback(fd, host, err, errlen)) < 0) goto fail_fd;
    struct MHD_Daemon *mhd =
        MHD_start_daemon(HTTPD_MHD_FLAGS, 0, NULL, NULL, on_request, a, MHD_OPTION_LISTEN_SOCKET,
                         fd, MHD_OPTION_NOTIFY_COMPLETED, on_completed, a,
                         MHD_OPTION_CONNECTION_TIMEOUT, 30u, MHD_OPTION_END);
    rc = -EIO;
    if (!mhd) {
        snprintf(err, errlen, "admin: cannot start the HTTP server on %s:%d", host, port);
        goto fail_fd;
    }
    if ((rc = httpd_start(loop, mhd, &a->http)) < 0) goto fail;
    *out = a;
    return 0;
fail_fd:
    close(fd);
fail:
    admin_free(a);
    return rc;
}

static void on_closed(void *arg)
{
    admin *a = arg;
    void (*done)(void *) = a->done;
    void *done_arg = a->done_arg;
    admin_free(a);
    if (done) done(done_arg);
}

void admin_close(admin *a, void (*done)(void *), void *arg)
{
    a->done = done;
    a->done_arg = arg;
    httpd_close(a->http, on_closed, a);
}
