/*
 * fuzz_http.c - libFuzzer target for the proxy's request path: each input
 * is the bytes one client sends on one TCP connection, and it goes through
 * the real code: libmicrohttpd's parser, router.c's callbacks (body limits,
 * request ids, timeouts header, builtin endpoints, route table, v2 paths,
 * queue limits, the REQUEST frame, streamed and malformed replica answers)
 * and the answer back to the client.
 *
 * The router is made once, through its public API, on a libuv loop of this
 * process: it listens on 127.0.0.1 at a port the kernel picks. Its route
 * table has
 *   /echo, /echo/deep   a deployment whose replica is this file (below)
 *   /hello              a deployment without replicas and no queue: 503
 *   /mlp                a v2 model; its replica is this file as well
 *   /plain              not a model (its specs declare no inputs)
 *   /starting           no specs reported yet: v2 says "not ready"
 *   /gone               a removed deployment
 * and the builtins /-/healthz and /-/routes; nothing serves "/", so other
 * paths get 404.
 *
 * The fake replica reads the proxy's frames on its end of a socketpair,
 * checks each REQUEST (it decodes; route_path is what is left after the
 * prefix; the request id is sane) and answers at once, so nothing waits:
 * a query with "stream" gets a streamed answer ("abort" cuts it), one with
 * "bad" a malformed response (502); CANCEL gets CANCELLED.
 *
 * One input: connect, send it all, run the loop until nothing moves, shut
 * the write side, run until the proxy closes or goes quiet, then reset the
 * connection and let the loop free it. Whatever the proxy sent back must
 * start as an HTTP/1.x response.
 *
 * The access log is on (JSON, to exercise escaping of client bytes): run
 * with -close_fd_mask=2 to keep it off the terminal, as `make fuzz` does.
 * With FUZZ_HTTP_SHOW set, the answers are printed on stdout.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "fuzz/fuzz.h"
#include "ipc/ipc.h"
#include "router/router.h"

#define MAX_TURNS   200 /* loop turns per input, whatever happens */
#define QUIET_TURNS 4   /* turns without progress before the next step */
#define MAX_FD      1024

/* The replica end of one backend's socketpair and the bytes read from it. */
typedef struct fake_replica {
    int fd;
    const char *prefixes[2]; /* its route prefixes, longest first */
    ipc_buf in;
} fake_replica;

static uv_loop_t loop;
static int show; /* $FUZZ_HTTP_SHOW set: print the answers (for writing seeds) */
static router *proxy;
static struct sockaddr_in proxy_addr;
static fake_replica replicas[] = {{-1, {"/echo/deep", "/echo"}, {0}}, {-1, {"/mlp"}, {0}}};

static const char model_specs[] =
    "{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[-1,3]}],"
    "\"outputs\":[{\"name\":\"y\",\"datatype\":\"FP32\",\"shape\":[-1,3]}]}";

/* ---- The fake replica -------------------------------------------------- */

/* What a REQUEST must look like after the proxy's parsing and routing: a
   v2 infer request keeps its path whole, others lose the route prefix. */
static void check_request(const fake_replica *fr, uint8_t flags, const serve_request *req)
{
    size_t id_len = strlen(req->request_id);
    FUZZ_CHECK(req->method[0] != '\0' && req->path[0] == '/');
    FUZZ_CHECK(id_len >= 1 && id_len <= 64);
    for (size_t i = 0; i < id_len; i++)
        FUZZ_CHECK(req->request_id[i] > 32 && req->request_id[i] < 127);
    if (flags == IPC_FLAG_INFER) {
        FUZZ_CHECK(strncmp(req->path, "/v2/models/mlp/", 15) == 0);
        FUZZ_CHECK(strcmp(req->route_path, req->path) == 0);
        return;
    }
    for (size_t i = 0; i < 2 && fr->prefixes[i]; i++) {
        size_t n = strlen(fr->prefixes[i]);
        if (strncmp(req->path, fr->prefixes[i], n) != 0 || (req->path[n] && req->path[n] != '/'))
            continue; /* the longest prefix that matches on a segment boundary */
        FUZZ_CHECK(strcmp(req->route_path, req->path[n] ? req->path + n : "/") == 0);
        return;
    }
    FUZZ_CHECK(!"a request for a path that none of the replica's prefixes matches");
}

/* Answer one REQUEST as the query asks (see the top). */
static void answer(ipc_buf *out, uint64_t id, const serve_request *req)
{
    serve_header h[] = {{"content-type", "text/plain"},
                        {"content-length", "999"}, /* hop-by-hop: the proxy drops it */
                        {"x-route", req->route_path}};
    const char *body = req->route_path;
    if (strstr(req->query, "bad")) {
        ipc_frame_put(out, IPC_RESPONSE, id, "\x2a", 1); /* a cut status: 502 */
    } else if (strstr(req->query, "stream")) {
        ipc_response_encode_frame(out, IPC_RESPONSE_PART, 0, id, 200, h, 3, "part", 4);
        ipc_response_encode_frame(out, IPC_RESPONSE, strstr(req->query, "abort") ? 1 : 0, id, 200,
                                  NULL, 0, body, strlen(body));
    } else {
        ipc_response_encode(out, id, 200, h, 3, body, strlen(body));
    }
}

/* Read what the proxy sent; answer every whole frame. Returns whether any
   byte came. */
static int replica_serve(fake_replica *fr)
{
    char buf[16384];
    ssize_t n;
    int got = 0;
    while ((n = recv(fr->fd, buf, sizeof(buf), MSG_DONTWAIT)) > 0) {
        ipc_buf_put(&fr->in, buf, (size_t)n);
        got = 1;
    }
    ipc_buf out = {0};
    size_t off = 0;
    ipc_frame f;
    while (fr->in.len - off >= IPC_HEADER_SIZE &&
           ipc_frame_header_decode(fr->in.data + off, fr->in.len - off, &f) == 0 &&
           fr->in.len - off - IPC_HEADER_SIZE >= f.len) {
        serve_request req;
        if (f.type == IPC_REQUEST) {
            FUZZ_CHECK(ipc_request_decode(f.payload, f.len, &req) == 0);
            check_request(fr, f.flags, &req);
            answer(&out, f.id, &req);
            free((void *)req.headers);
        } else if (f.type == IPC_CANCEL) {
            ipc_frame_put(&out, IPC_CANCELLED, f.id, NULL, 0);
        }
        off += IPC_HEADER_SIZE + f.len;
    }
    if (off) {
        memmove(fr->in.data, fr->in.data + off, fr->in.len - off);
        fr->in.len -= off;
    }
    FUZZ_CHECK(!out.oom);
    if (out.len) FUZZ_CHECK(send(fr->fd, out.data, out.len, MSG_NOSIGNAL) == (ssize_t)out.len);
    ipc_buf_free(&out);
    return got;
}

/* ---- Setting up the proxy ---------------------------------------------- */

/* The proxy's listening socket is the only one in this process: find it
   and its port (router.h does not hand out the port it got). */
static void find_proxy_port(void)
{
    for (int fd = 3; fd < MAX_FD; fd++) {
        int listening = 0;
        socklen_t len = sizeof(listening);
        if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0 || !listening)
            continue;
        len = sizeof(proxy_addr);
        FUZZ_CHECK(getsockname(fd, (struct sockaddr *)&proxy_addr, &len) == 0);
        FUZZ_CHECK(proxy_addr.sin_family == AF_INET);
        return;
    }
    FUZZ_CHECK(!"no listening socket");
}

static router_pool *add_pool(const char *app, const char *dep, int max_queued, const char *specs)
{
    router_pool *p = router_pool_get(proxy, app, dep);
    FUZZ_CHECK(p);
    router_pool_configure(p, 2, max_queued, 0);
    if (specs) router_pool_set_model(p, specs, strlen(specs));
    return p;
}

/* Give `pool` a backend whose other end is `fr`. */
static void add_replica(router_pool *pool, fake_replica *fr, const char *id)
{
    int sv[2];
    router_backend *b;
    FUZZ_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    FUZZ_CHECK(router_add_backend(proxy, pool, sv[0], id, NULL, &b) == 0);
    fr->fd = sv[1];
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char err[256];
    router_options opts = {.host = "127.0.0.1",
                           .port = 0, /* any free port */
                           .max_body_bytes = 4096,
                           .max_header_bytes = 1024,
                           .request_timeout_s = 30,
                           .access_log = 1};
    log_encoding_in_use = LOG_JSON;
    show = getenv("FUZZ_HTTP_SHOW") != NULL;
    FUZZ_CHECK(uv_loop_init(&loop) == 0);
    if (router_start(&loop, &opts, &proxy, err, sizeof(err)) != 0) {
        fprintf(stderr, "fuzz_http: %s\n", err);
        abort();
    }
    find_proxy_port();
    router_pool *echo = add_pool("echo", "Echo", 0, "{}");
    router_pool *model = add_pool("mlp", "MLP", 0, model_specs);
    router_pool *pools[] = {echo,
                            echo,
                            add_pool("hello", "Hello", 0, "{}"),
                            model,
                            add_pool("plain", "Plain", 0, "{\"inputs\":[]}"),
                            add_pool("starting", "Starting", 0, NULL),
                            add_pool("gone", "Gone", 0, "{}")};
    const char *prefixes[] = {"/echo",  "/echo/deep", "/hello", "/mlp",
                              "/plain", "/starting",  "/gone"};
    const char *apps[] = {"echo", "echo", "hello", "mlp", "plain", "starting", "gone"};
    FUZZ_CHECK(router_set_routes(proxy, prefixes, apps, pools, 7) == 0);
    router_pool_close(pools[6]);
    add_replica(echo, &replicas[0], "echo0001");
    add_replica(model, &replicas[1], "mlp00001");
    return 0;
}

/* ---- One input --------------------------------------------------------- */

/* One loop turn, the fake replicas' answers, and the client's reading.
   Returns whether anything moved; *eof once the proxy closed. */
static int turn(int client, char *head, size_t *head_len, int *eof)
{
    char buf[16384];
    ssize_t n;
    int moved = 0;
    uv_run(&loop, UV_RUN_NOWAIT);
    for (size_t i = 0; i < sizeof(replicas) / sizeof(replicas[0]); i++)
        moved |= replica_serve(&replicas[i]);
    if (client < 0) return moved;
    while ((n = recv(client, buf, sizeof(buf), MSG_DONTWAIT)) > 0) {
        if (*head_len < 8) {
            size_t take = (size_t)n < 8 - *head_len ? (size_t)n : 8 - *head_len;
            memcpy(head + *head_len, buf, take);
            *head_len += take;
        }
        if (show) fwrite(buf, 1, (size_t)n, stdout);
        moved = 1;
    }
    if (n == 0 || (n < 0 && errno != EAGAIN)) *eof = 1;
    return moved;
}

/* A new connection to the proxy. Over millions of connections on one
   port pair the kernel now and then refuses one (a SYN meeting an old
   connection's TIME_WAIT): such a connect is tried again. */
static int connect_to_proxy(void)
{
    for (int attempt = 0;; attempt++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        FUZZ_CHECK(fd >= 0);
        if (connect(fd, (struct sockaddr *)&proxy_addr, sizeof(proxy_addr)) == 0) return fd;
        int err = errno;
        close(fd);
        if (attempt == 10) {
            fprintf(stderr, "fuzz_http: connect: %s\n", strerror(err));
            abort();
        }
        uv_run(&loop, UV_RUN_NOWAIT);
        usleep(1000);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int client = connect_to_proxy();
    char head[8];
    size_t head_len = 0, sent = 0;
    int eof = 0, shut = 0, quiet = 0;
    for (int i = 0; i < MAX_TURNS && !eof; i++) {
        if (sent < size) {
            ssize_t n = send(client, data + sent, size - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (n > 0) sent += (size_t)n;
            quiet = 0;
        } else if (quiet >= QUIET_TURNS) {
            if (shut) break; /* half-closed and still quiet: give up on it */
            shutdown(client, SHUT_WR);
            shut = 1;
            quiet = 0;
        }
        quiet = turn(client, head, &head_len, &eof) ? 0 : quiet + 1;
    }
    /* Whatever came back is HTTP. */
    FUZZ_CHECK(head_len == 0 || memcmp(head, "HTTP/1.", head_len < 7 ? head_len : 7) == 0);
    /* Reset rather than close: no TIME_WAIT piles up over millions of
       inputs. Then let the proxy see it go and free the connection. */
    struct linger reset = {1, 0};
    setsockopt(client, SOL_SOCKET, SO_LINGER, &reset, sizeof(reset));
    close(client);
    for (int i = 0; i < QUIET_TURNS; i++) turn(-1, head, &head_len, &eof);
    return 0;
}
