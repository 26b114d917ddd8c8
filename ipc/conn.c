/*
 * conn.c - a framed connection over a libuv pipe.
 *
 * Reading: libuv reads into one growable input buffer; every whole frame in
 * it is handed to on_frame in order, then the remainder is moved to the
 * front. A frame larger than the buffer grows it to exactly fit.
 *
 * Writing: frames are appended to `out` during a loop turn; a prepare handle
 * (which runs just before the loop blocks for I/O) flushes them with one
 * write. Under load that carries many requests per syscall, which is where
 * the proxy's throughput comes from. If the socket cannot take everything at
 * once, the rest moves to a uv_write request and new frames wait in `out`
 * until it completes, so frame order is kept.
 */
#include "ipc/ipc.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CONN_READ_SIZE (64 * 1024) /* the input buffer, unless a frame is larger */

struct ipc_conn {
    uv_pipe_t pipe;
    uv_prepare_t flusher;
    uv_write_t write_req;
    ipc_buf in;
    ipc_buf out;
    ipc_buf inflight; /* bytes handed to uv_write, owned until its callback */
    ipc_frame_cb on_frame;
    ipc_close_cb on_close;
    void *data;
    int writing;
    int closing;
    int close_after_flush;
    int pending_closes;
    int close_status;
};

static void conn_fail(ipc_conn *c, int status);
static void on_prepare(uv_prepare_t *h);

void *ipc_conn_data(const ipc_conn *c)
{
    return c->data;
}

ipc_buf *ipc_conn_out(ipc_conn *c)
{
    return &c->out;
}

void ipc_conn_flush_later(ipc_conn *c)
{
    if (!c->closing && !c->writing && c->out.len) uv_prepare_start(&c->flusher, on_prepare);
}

static void on_written(uv_write_t *req, int status)
{
    ipc_conn *c = req->data;
    c->writing = 0;
    c->inflight.len = 0;
    if (c->closing) return;
    if (status < 0) {
        conn_fail(c, status);
        return;
    }
    if (c->close_after_flush && c->out.len == 0) {
        conn_fail(c, 0);
        return;
    }
    ipc_conn_flush_later(c);
}

/* Write what `out` holds: directly if the socket takes it all, else hand the
   rest to uv_write by swapping buffers (no copy). */
static void flush(ipc_conn *c)
{
    if (c->closing || c->writing || c->out.len == 0) return;
    uv_buf_t buf = uv_buf_init(c->out.data, (unsigned)c->out.len);
    int n = uv_try_write((uv_stream_t *)&c->pipe, &buf, 1);
    if (n == UV_EAGAIN) n = 0;
    if (n < 0) {
        conn_fail(c, n);
        return;
    }
    if ((size_t)n == c->out.len) {
        c->out.len = 0;
        return;
    }
    ipc_buf tmp = c->inflight;
    c->inflight = c->out;
    c->out = tmp;
    c->out.len = 0;
    buf = uv_buf_init(c->inflight.data + n, (unsigned)(c->inflight.len - (size_t)n));
    c->writing = 1;
    c->write_req.data = c;
    int rc = uv_write(&c->write_req, (uv_stream_t *)&c->pipe, &buf, 1, on_written);
    if (rc < 0) {
        c->writing = 0;
        conn_fail(c, rc);
    }
}

static void on_prepare(uv_prepare_t *h)
{
    ipc_conn *c = h->data;
    uv_prepare_stop(h);
    flush(c);
}

void ipc_conn_flush_now(ipc_conn *c)
{
    uv_prepare_stop(&c->flusher);
    flush(c);
}

int ipc_conn_send(ipc_conn *c, uint8_t type, uint64_t id, const void *payload, size_t len)
{
    if (c->closing) return -EPIPE;
    int rc = ipc_frame_put(&c->out, type, id, payload, len);
    if (rc == 0) ipc_conn_flush_later(c);
    return rc;
}

/* ---- Reading ----------------------------------------------------------- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    ipc_conn *c = h->data;
    ipc_frame f;
    int rc;
    /* The buffer holds CONN_READ_SIZE bytes, or the frame being read when
       it is larger: exactly, since doubling would reserve up to twice the
       frame (2 GiB for the largest, of 1 GiB). */
    size_t room = CONN_READ_SIZE;
    if (ipc_frame_header_decode(c->in.data, c->in.len, &f) == 0 &&
        IPC_HEADER_SIZE + (size_t)f.len > room)
        room = IPC_HEADER_SIZE + (size_t)f.len;
    if (room > c->in.len)
        rc = ipc_buf_reserve_exact(&c->in, room - c->in.len);
    else /* not reached: whole frames were dispatched */
        rc = ipc_buf_reserve(&c->in, CONN_READ_SIZE);
    if (rc != 0) {
        *buf = uv_buf_init(NULL, 0); /* libuv reports UV_ENOBUFS */
        return;
    }
    *buf = uv_buf_init(c->in.data + c->in.len, (unsigned)(c->in.cap - c->in.len));
}

/* Hand every whole frame in the input buffer to on_frame. */
static int dispatch(ipc_conn *c)
{
    size_t off = 0;
    while (!c->closing) {
        ipc_frame f;
        int rc = ipc_frame_header_decode(c->in.data + off, c->in.len - off, &f);
        if (rc == -EAGAIN) break;
        if (rc < 0) return rc;
        if (c->in.len - off - IPC_HEADER_SIZE < f.len) break;
        c->on_frame(c, &f);
        off += IPC_HEADER_SIZE + f.len;
    }
    if (c->closing) return 0;
    memmove(c->in.data, c->in.data + off, c->in.len - off);
    c->in.len -= off;
    return 0;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    ipc_conn *c = s->data;
    if (n < 0) {
        conn_fail(c, (int)n);
        return;
    }
    c->in.len += (size_t)n;
    int rc = dispatch(c);
    if (rc < 0) conn_fail(c, rc);
}

/* ---- Lifecycle --------------------------------------------------------- */

static void on_handle_closed(uv_handle_t *h)
{
    ipc_conn *c = h->data;
    if (--c->pending_closes > 0) return;
    if (c->on_close) c->on_close(c, c->close_status);
    ipc_buf_free(&c->in);
    ipc_buf_free(&c->out);
    ipc_buf_free(&c->inflight);
    free(c);
}

static void conn_fail(ipc_conn *c, int status)
{
    if (c->closing) return;
    c->closing = 1;
    c->close_status = status;
    c->pending_closes = 2;
    uv_close((uv_handle_t *)&c->pipe, on_handle_closed);
    uv_close((uv_handle_t *)&c->flusher, on_handle_closed);
}

void ipc_conn_close(ipc_conn *c)
{
    conn_fail(c, 0);
}

void ipc_conn_shutdown(ipc_conn *c)
{
    if (c->closing) return;
    c->close_after_flush = 1;
    flush(c);
    if (!c->closing && !c->writing) conn_fail(c, 0);
}

static void free_on_close(uv_handle_t *h)
{
    free(h->data);
}

int ipc_conn_open(uv_loop_t *loop, int fd, ipc_frame_cb on_frame, ipc_close_cb on_close, void *data,
                  ipc_conn **out)
{
    int rc = -ENOMEM;
    ipc_conn *c = calloc(1, sizeof(*c));
    if (!c) goto fail_alloc;
    c->on_frame = on_frame;
    c->on_close = on_close;
    c->data = data;
    c->pipe.data = c;
    c->flusher.data = c;
    rc = uv_pipe_init(loop, &c->pipe, 0);
    if (rc < 0) goto fail_init;
    rc = uv_pipe_open(&c->pipe, fd);
    if (rc < 0) goto fail_open;
    uv_prepare_init(loop, &c->flusher);
    rc = uv_read_start((uv_stream_t *)&c->pipe, on_alloc, on_read);
    if (rc < 0) {
        /* The pipe owns the fd now; close it the normal way, silently: the
           caller has not got the connection yet. */
        c->on_close = NULL;
        conn_fail(c, rc);
        return rc;
    }
    *out = c;
    return 0;

fail_open:
    uv_close((uv_handle_t *)&c->pipe, free_on_close);
    close(fd);
    return rc;
fail_init:
    free(c);
fail_alloc:
    close(fd);
    return rc;
}
