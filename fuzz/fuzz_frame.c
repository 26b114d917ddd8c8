/*
 * fuzz_frame.c - libFuzzer target for the proxy <-> replica protocol
 * (ipc/ipc.h): each input is the byte stream one process receives from the
 * other on its socket.
 *
 * The bytes go through the real reader: a socketpair, an ipc_conn on one
 * end (conn.c cuts the stream into frames, growing its buffer for large
 * ones), the input written into the other end and the write side closed.
 * Every frame it hands over is decoded as its receiver would:
 *   REQUEST                      ipc_request_decode (the replica)
 *   RESPONSE(_PART), CALL_PART,  ipc_response_decode (the proxy, the
 *   CALL_RESULT                  calling replica)
 *   CALL                         ipc_call_decode, then its request (the proxy
 *                                reads its id; the callee decodes it)
 *   READY                        the declared tensors as the proxy's v2
 *                                metadata (router_pool_set_model, v2.c)
 *   STATS                        the histograms (metrics_hist_from_json, as
 *                                the controller) and their exposition
 *   LOGGING                      the level and encoding (the replica)
 * INIT is not here: the replica parses it in a static function that loads
 * a plugin, and only the controller sends it.
 *
 * Invariants checked: frames arrive in order, whole, and byte for byte as
 * sent; the stream ends with EOF or a protocol error; whatever decodes
 * encodes back into a frame that decodes to the same thing.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "common/metrics.h"
#include "fuzz/fuzz.h"
#include "ipc/ipc.h"
#include "router/router.h"

#define FRAME_CLAIM_MAX (1u << 20) /* see feedable() */

/* One input's run: the bytes, how far the frames handed over reach, and
   how the connection ended. */
typedef struct run {
    const uint8_t *data;
    size_t size;
    size_t off;
    int closed, status;
} run;

static uv_loop_t loop;
static FILE *sink; /* /dev/null: exposition output is only formatted */

static uint32_t le32(const uint8_t *p)
{
    return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Two header lists hold the same strings. */
static void same_headers(const serve_header *a, const serve_header *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        FUZZ_CHECK(strcmp(a[i].name, b[i].name) == 0 && strcmp(a[i].value, b[i].value) == 0);
}

/* A decoded request encodes back into a frame that decodes to the same
   request. (Not always to the same bytes: a header may hold a NUL, and the
   decoder hands out C strings.) */
static void request(const char *p, size_t n)
{
    serve_request req, again;
    if (ipc_request_decode(p, n, &req) != 0) return;
    FUZZ_CHECK(((const char *)req.body)[req.body_len] == '\0');
    ipc_buf b = {0};
    FUZZ_CHECK(ipc_request_encode(&b, 1, 0, &req) == 0);
    FUZZ_CHECK(ipc_request_decode(b.data + IPC_HEADER_SIZE, b.len - IPC_HEADER_SIZE, &again) == 0);
    FUZZ_CHECK(strcmp(req.method, again.method) == 0 && strcmp(req.path, again.path) == 0);
    FUZZ_CHECK(strcmp(req.route_path, again.route_path) == 0);
    FUZZ_CHECK(strcmp(req.query, again.query) == 0);
    FUZZ_CHECK(strcmp(req.request_id, again.request_id) == 0);
    FUZZ_CHECK(req.n_headers == again.n_headers && req.body_len == again.body_len);
    FUZZ_CHECK(memcmp(req.body, again.body, req.body_len) == 0);
    same_headers(req.headers, again.headers, req.n_headers);
    free((void *)again.headers);
    ipc_buf_free(&b);
    free((void *)req.headers);
}

static void response(const char *p, size_t n)
{
    ipc_response res, again;
    if (ipc_response_decode(p, n, &res) != 0) return;
    FUZZ_CHECK(res.status >= 100 && res.status <= 599);
    ipc_buf b = {0};
    FUZZ_CHECK(ipc_response_encode(&b, 1, res.status, res.headers, res.n_headers, res.body,
                                   res.body_len) == 0);
    FUZZ_CHECK(ipc_response_decode(b.data + IPC_HEADER_SIZE, b.len - IPC_HEADER_SIZE, &again) == 0);
    FUZZ_CHECK(res.status == again.status && res.n_headers == again.n_headers);
    FUZZ_CHECK(res.body_len == again.body_len && memcmp(res.body, again.body, res.body_len) == 0);
    same_headers(res.headers, again.headers, res.n_headers);
    ipc_response_release(&again);
    ipc_buf_free(&b);
    ipc_response_release(&res);
}

static void call(const char *p, size_t n)
{
    ipc_call c;
    if (ipc_call_decode(p, n, &c) != 0) return;
    FUZZ_CHECK(c.app && c.deployment && c.request + c.request_len == p + n);
    request(c.request, c.request_len);
}

static void ready(const char *p, size_t n)
{
    json_t *specs = json_loadb(p, n, 0, NULL); /* unreadable: no tensors, as the proxy */
    if (!specs) specs = json_object();
    json_t *meta = v2_model_metadata("m", specs);
    char *text = json_dumps(meta, JSON_COMPACT);
    FUZZ_CHECK(v2_is_model(specs) == (json_array_size(json_object_get(meta, "inputs")) > 0));
    free(text);
    json_decref(meta);
    json_decref(specs);
}

static void stats(const char *p, size_t n)
{
    json_t *doc = json_loadb(p, n, 0, NULL);
    metrics_hist h = {0};
    if (metrics_hist_from_json(json_object_get(doc, "latency"), &metrics_latency_buckets, &h) == 0)
        metrics_histogram(sink, "x", NULL, &h, &metrics_latency_buckets);
    if (metrics_hist_from_json(json_object_get(doc, "batch"), &metrics_batch_buckets, &h) == 0)
        metrics_histogram(sink, "x", NULL, &h, &metrics_batch_buckets);
    json_decref(doc);
}

static void logging(const char *p, size_t n)
{
    json_t *doc = json_loadb(p, n, 0, NULL);
    const char *level = json_string_value(json_object_get(doc, "level"));
    const char *encoding = json_string_value(json_object_get(doc, "encoding"));
    if (level) log_level_parse(level);
    if (encoding) log_encoding_parse(encoding);
    json_decref(doc);
}

static void on_frame(ipc_conn *c, const ipc_frame *f)
{
    run *r = ipc_conn_data(c);
    /* The frame is the next one of the input, whole and unchanged. */
    FUZZ_CHECK(r->size - r->off >= IPC_HEADER_SIZE + (size_t)f->len);
    FUZZ_CHECK(memcmp(f->payload, r->data + r->off + IPC_HEADER_SIZE, f->len) == 0);
    FUZZ_CHECK(f->type == r->data[r->off + 4] && f->flags == r->data[r->off + 5]);
    r->off += IPC_HEADER_SIZE + f->len;
    switch (f->type) {
    case IPC_REQUEST:
        request(f->payload, f->len);
        break;
    case IPC_RESPONSE:
    case IPC_RESPONSE_PART:
    case IPC_CALL_PART:
    case IPC_CALL_RESULT:
        response(f->payload, f->len);
        break;
    case IPC_CALL:
        call(f->payload, f->len);
        break;
    case IPC_READY:
        ready(f->payload, f->len);
        break;
    case IPC_STATS:
        stats(f->payload, f->len);
        break;
    case IPC_LOGGING:
        logging(f->payload, f->len);
        break;
    default:
        break;
    }
}

static void on_close(ipc_conn *c, int status)
{
    run *r = ipc_conn_data(c);
    r->closed = 1;
    r->status = status;
}

/* How much of the input to send: all of it, but for a frame whose header
   claims more than FRAME_CLAIM_MAX bytes that never come. The reader would
   allocate the whole claim (up to 1 GiB, which takes ASan a second), and
   inputs are far shorter, so the frame stops the input at its header. */
static size_t feedable(const uint8_t *data, size_t size)
{
    size_t off = 0;
    ipc_frame f;
    while (ipc_frame_header_decode(data + off, size - off, &f) == 0) {
        if (f.len > FRAME_CLAIM_MAX && IPC_HEADER_SIZE + (size_t)f.len > size - off) return off;
        if (IPC_HEADER_SIZE + (size_t)f.len > size - off) break;
        off += IPC_HEADER_SIZE + f.len;
    }
    return size;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    FUZZ_CHECK(uv_loop_init(&loop) == 0);
    sink = fopen("/dev/null", "w");
    FUZZ_CHECK(sink);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size = feedable(data, size);
    int sv[2];
    run r = {.data = data, .size = size};
    ipc_conn *conn;
    FUZZ_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    FUZZ_CHECK(ipc_conn_open(&loop, sv[0], on_frame, on_close, &r, &conn) == 0);
    /* Feed the stream as the socket takes it, letting the reader run in
       between, then end it. */
    fcntl(sv[1], F_SETFL, O_NONBLOCK);
    for (size_t sent = 0; sent < size && !r.closed;) {
        ssize_t n = send(sv[1], data + sent, size - sent, MSG_NOSIGNAL);
        if (n > 0) sent += (size_t)n;
        uv_run(&loop, UV_RUN_NOWAIT);
    }
    close(sv[1]);
    while (!r.closed) uv_run(&loop, UV_RUN_ONCE);
    /* EOF after whole frames and at most a cut one, or a corrupt header. */
    size_t left = size - r.off;
    FUZZ_CHECK(r.status == UV_EOF || r.status == -EPROTO);
    FUZZ_CHECK(r.status != UV_EOF || left < IPC_HEADER_SIZE ||
               IPC_HEADER_SIZE + (size_t)le32(data + r.off) > left);
    uv_run(&loop, UV_RUN_NOWAIT); /* the close callbacks: nothing left behind */
    FUZZ_CHECK(!uv_loop_alive(&loop));
    return 0;
}
