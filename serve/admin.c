/*
 * admin.c - see admin.h. Runs on the controller's loop through the shared
 * libmicrohttpd driver, so handlers read the controller's state directly.
 */
#include "serve/admin.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "common/httpd.h"
#include "ipc/ipc.h"
#include "serve/config.h"
#include "serve/controller.h"

#define ADMIN_APPS_PATH    "/api/serve/applications/"
#define ADMIN_METRICS_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* The dashboard page (dashboard.html, compiled in by scripts/embed.py). */
extern const char admin_dashboard_html[];
extern const size_t admin_dashboard_html_len;
#define ADMIN_MAX_BODY (1u << 20) /* a config larger than this is a mistake */

/* One admin request: its body, collected across upload calls. */
typedef struct admin_req {
    ipc_buf body;
    int too_large;
} admin_req;

struct admin {
    httpd *http;
    ctl *c;
    char *token;
    void (*done)(void *);
    void *done_arg;
};

int admin_host_is_loopback(const char *host)
{
    return strcmp(host, "localhost") == 0 || strncmp(host, "127.", 4) == 0 ||
           strcmp(host, "::1") == 0;
}

/* Compare without stopping at the first difference: the time taken does
   not tell an attacker how much of a guess was right. */
static int same_secret(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    unsigned char diff = la != lb;
    for (size_t i = 0; i < la && i < lb; i++) diff |= (unsigned char)(a[i] ^ b[i]);
    return diff == 0;
}

static int authorized(const admin *a, struct MHD_Connection *conn)
{
    if (!a->token) return 1;
    const char *h = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "authorization");
    return h && strncmp(h, "Bearer ", 7) == 0 && same_secret(h + 7, a->token);
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
    if (!resp) return MHD_NO;
    MHD_add_response_header(resp, "content-type", "application/json");
    if (status == MHD_HTTP_UNAUTHORIZED)
        MHD_add_response_header(resp, "www-authenticate", "Bearer");
    enum MHD_Result ret = MHD_queue_response(conn, status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result reply_error(struct MHD_Connection *conn, unsigned status, const char *why)
{
    return reply(conn, status, json_pack("{s:s}", "error", why));
}

/* Queue `len` bytes of `body` with a content type; `copy` when the bytes
   do not outlive the call. */
static enum MHD_Result reply_bytes(struct MHD_Connection *conn, const char *type, const char *body,
                                   size_t len, int copy)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(
        len, (void *)body, copy ? MHD_RESPMEM_MUST_COPY : MHD_RESPMEM_PERSISTENT);
    if (!resp) return MHD_NO;
    MHD_add_response_header(resp, "content-type", type);
    MHD_add_response_header(resp, "cache-control", "no-store");
    enum MHD_Result ret = MHD_queue_response(conn, MHD_HTTP_OK, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* GET /metrics: every metric, rendered now into a memory stream. */
static enum MHD_Result reply_metrics(admin *a, struct MHD_Connection *conn)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) return reply_error(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory");
    ctl_write_metrics(a->c, f);
    int failed = fclose(f) != 0;
    enum MHD_Result ret = failed
                              ? reply_error(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory")
                              : reply_bytes(conn, ADMIN_METRICS_TYPE, text, len, 1);
    free(text);
    return ret;
}

/* The read-only pages: the dashboard (open to all: it holds no data, and
   asks for the token when the API wants one) and the metrics. */
static int is_get(const char *method)
{
    return strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
}

/*
 * PUT: the whole desired config, as in Ray Serve. It is checked as a file
 * is at start (plugins must resolve inside the plugin folders), then
 * applied: 200 once ctl_apply accepted it (replicas then start, stop or
 * reconfigure in the background); 400 naming the field otherwise.
 */
static enum MHD_Result put_config(admin *a, struct MHD_Connection *conn, admin_req *req)
{
    char err[CFG_ERR_LEN], exe[4096];
    size_t exe_len = sizeof(exe);
    cfg_config *next;
    if (req->too_large) return reply_error(conn, MHD_HTTP_CONTENT_TOO_LARGE, "config over 1 MiB");
    if (cfg_parse(req->body.data ? req->body.data : "", req->body.len, &next, err, sizeof(err)))
        return reply_error(conn, MHD_HTTP_BAD_REQUEST, err);
    cfg_admin_token_from_env(next);
    char *search = uv_exepath(exe, &exe_len) == 0 ? cfg_plugin_search_path(exe) : NULL;
    int rc = search ? cfg_resolve_plugins_within(next, search, err, sizeof(err)) : -ENOMEM;
    free(search);
    if (rc != 0) {
        cfg_free(next);
        return reply_error(conn, MHD_HTTP_BAD_REQUEST, rc == -ENOMEM ? "out of memory" : err);
    }
    rc = ctl_apply(a->c, next, err, sizeof(err));
    if (rc != 0)
        return reply_error(
            conn, rc == -ECANCELED ? MHD_HTTP_SERVICE_UNAVAILABLE : MHD_HTTP_BAD_REQUEST, err);
    return reply(conn, MHD_HTTP_OK, json_object());
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
    if (!req) { /* first call: headers only; answering now would close keep-alive */
        *con_cls = calloc(1, sizeof(admin_req));
        return *con_cls ? MHD_YES : MHD_NO;
    }
    if (*upload_size) {
        if (req->body.len + *upload_size > ADMIN_MAX_BODY)
            req->too_large = 1;
        else
            ipc_buf_put(&req->body, upload, *upload_size);
        *upload_size = 0;
        return req->body.oom ? MHD_NO : MHD_YES;
    }
    int page = strcmp(url, "/") == 0, metrics = strcmp(url, "/metrics") == 0;
    if ((page || metrics) && !is_get(method))
        return reply_error(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "use GET");
    if (page)
        return reply_bytes(conn, "text/html; charset=utf-8", admin_dashboard_html,
                           admin_dashboard_html_len, 0);
    if (!authorized(a, conn))
        return reply_error(conn, MHD_HTTP_UNAUTHORIZED,
                           "missing or wrong bearer token (Authorization: Bearer TOKEN)");
    if (metrics) return reply_metrics(a, conn);
    if (strcmp(url, ADMIN_APPS_PATH) != 0 && strcmp(url, "/api/serve/applications") != 0)
        return reply_error(conn, MHD_HTTP_NOT_FOUND, "no such endpoint");
    if (strcmp(method, "GET") == 0) return reply(conn, MHD_HTTP_OK, ctl_status(a->c));
    if (strcmp(method, "PUT") == 0) return put_config(a, conn, req);
    if (strcmp(method, "DELETE") == 0) {
        char err[CFG_ERR_LEN];
        if (ctl_delete_all(a->c, err, sizeof(err)) != 0)
            return reply_error(conn, MHD_HTTP_SERVICE_UNAVAILABLE, err);
        return reply(conn, MHD_HTTP_OK, json_object());
    }
    return reply_error(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "use GET, PUT or DELETE");
}

int admin_start(uv_loop_t *loop, ctl *c, const char *host, int port, const char *token, admin **out,
                char *err, size_t errlen)
{
    admin *a = calloc(1, sizeof(*a));
    if (!a || (token && !(a->token = strdup(token)))) {
        free(a);
        return -ENOMEM;
    }
    a->c = c;
    int fd = httpd_listen("admin", host, port, err, errlen);
    int rc = fd;
    if (fd < 0) goto fail;
    struct MHD_Daemon *mhd =
        MHD_start_daemon(HTTPD_MHD_FLAGS, 0, NULL, NULL, on_request, a, MHD_OPTION_LISTEN_SOCKET,
                         fd, MHD_OPTION_NOTIFY_COMPLETED, on_completed, a,
                         MHD_OPTION_CONNECTION_TIMEOUT, 30u, MHD_OPTION_END);
    rc = -EIO;
    if (!mhd) {
        close(fd);
        goto fail;
    }
    if ((rc = httpd_start(loop, mhd, &a->http)) < 0) goto fail;
    *out = a;
    return 0;
fail:
    free(a->token);
    free(a);
    return rc;
}

static void on_closed(void *arg)
{
    admin *a = arg;
    void (*done)(void *) = a->done;
    void *done_arg = a->done_arg;
    free(a->token);
    free(a);
    if (done) done(done_arg);
}

void admin_close(admin *a, void (*done)(void *), void *arg)
{
    a->done = done;
    a->done_arg = arg;
    httpd_close(a->http, on_closed, a);
}
