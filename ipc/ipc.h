/*
 * ipc.h - the framed protocol between the controller/router and replicas.
 *
 * Every message is a frame: a 16-byte header (payload length u32, type u8,
 * flags u8, reserved u16, id u64; all little-endian) and a payload. Integers
 * in payloads are little-endian; a string is a u32 length, the bytes and a
 * NUL (not counted), so a decoder can hand out pointers into the frame as C
 * strings without copying.
 *
 * Two parts: a pure codec (ipc_buf writer, ipc_reader, request/response
 * encode/decode), unit tested and fuzzable; and ipc_conn, a framed stream
 * over a libuv pipe that reads whole frames and batches writes so that all
 * frames queued during one loop turn leave in one write(2).
 *
 * Channels: each replica has a control channel (controller <-> replica:
 * INIT/READY/FAILED/STOP) and a data channel (router <-> replica:
 * REQUEST/RESPONSE), each a Unix socketpair inherited by the replica as
 * fds 3 and 4. The id of a data frame is the router's request id.
 *
 * Handle calls ride the data channel too: a replica sends CALL (the target
 * deployment and a request), the router forwards the request to one of the
 * target's replicas as a REQUEST with its own id, and sends the answer back
 * as CALL_PART / CALL_RESULT frames carrying the RESPONSE payloads
 * unchanged under the caller's id.
 */
#ifndef SERVE_IPC_H
#define SERVE_IPC_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "serve_plugin.h"

#define IPC_HEADER_SIZE 16
#define IPC_MAX_PAYLOAD (1u << 30) /* a frame larger than this is corrupt */

/* Inherited descriptors of a replica process. */
#define IPC_REPLICA_CONTROL_FD 3
#define IPC_REPLICA_DATA_FD    4

typedef enum ipc_type {
    /* control channel */
    IPC_INIT = 1,          /* ctl -> replica: JSON {app, deployment, plugin, replica_id,
                              init_args, user_config, max_ongoing_requests,
                              bindings: [{name, app, deployment}],
                              logging: {level, encoding, dir?},
                              batching?: {max_batch_size, batch_wait_timeout_s}} */
    IPC_READY = 2,         /* replica -> ctl: init done, serving; JSON {inputs,
                              outputs}, the declared tensors (infer_specs_json) */
    IPC_FAILED = 3,        /* replica -> ctl: text; load or init failed, exiting */
    IPC_STOP = 4,          /* ctl -> replica: finish running requests, finalize, exit */
    IPC_RECONFIGURE = 5,   /* ctl -> replica: a new user_config (JSON text) */
    IPC_RECONFIGURED = 6,  /* replica -> ctl: applied (flags 0) or refused (flags
                              IPC_FLAG_FAILED, payload: the plugin's message) */
    IPC_HEALTH = 7,        /* ctl -> replica: run check_health */
    IPC_HEALTH_RESULT = 8, /* replica -> ctl: healthy (flags 0) or not (flags
                              IPC_FLAG_FAILED, payload: the plugin's message) */
    IPC_STATS = 9,         /* replica -> ctl: its histograms since it started, JSON
                              {latency, batch} (metrics_hist_to_json), sent about
                              once a second while it serves and once as it stops */
    IPC_LOGGING = 10,      /* ctl -> replica: JSON {level, encoding}, a live change */
    /* data channel */
    IPC_REQUEST = 16,       /* router -> replica: encoded serve_request; flag
                               IPC_FLAG_INFER: a v2 infer request */
    IPC_RESPONSE = 17,      /* replica -> router: encoded response */
    IPC_CANCEL = 18,        /* router -> replica: drop request `id` if not started */
    IPC_CANCELLED = 19,     /* replica -> router: `id` dropped before it ran */
    IPC_RESPONSE_PART = 20, /* replica -> router: a streamed part; RESPONSE ends it */
    /* handle calls on the data channel: `id` is the calling replica's own */
    IPC_CALL = 21,        /* replica -> router: call (ipc_call_encode) */
    IPC_CALL_CANCEL = 22, /* replica -> router: the caller no longer waits for `id` */
    IPC_CALL_PART = 23,   /* router -> replica: a streamed part of the answer */
    IPC_CALL_RESULT = 24, /* router -> replica: the answer (a response payload) */
} ipc_type;

typedef struct ipc_frame {
    uint8_t type;
    uint8_t flags;
    uint64_t id;
    const char *payload; /* valid only during the callback that gives it */
    uint32_t len;
} ipc_frame;

/* ---- Writer ------------------------------------------------------------ */

/* A growable byte buffer. Allocation failure is sticky: `oom` is set, later
   puts do nothing, and the caller checks once at the end. */
typedef struct ipc_buf {
    char *data;
    size_t len;
    size_t cap;
    int oom;
} ipc_buf;

void ipc_buf_free(ipc_buf *b);
int ipc_buf_reserve(ipc_buf *b, size_t extra);
/* Room for `extra` more bytes, allocating no more than that (ipc_buf_reserve
   doubles): for a buffer about to receive one large frame of known size. */
int ipc_buf_reserve_exact(ipc_buf *b, size_t extra);
void ipc_buf_put(ipc_buf *b, const void *p, size_t n);
void ipc_buf_put_u16(ipc_buf *b, uint16_t v);
void ipc_buf_put_u32(ipc_buf *b, uint32_t v);
void ipc_buf_put_str(ipc_buf *b, const char *s, size_t n); /* len, bytes, NUL */
void ipc_buf_put_cstr(ipc_buf *b, const char *s);          /* NULL is "" */

/* Start a frame in `b` and return its offset; after the payload is put,
   ipc_frame_end patches the length in. Returns 0 or -ENOMEM / -EMSGSIZE;
   on failure the frame is dropped whole, so the frames before it in `b`
   stay intact (after -ENOMEM clear b->oom to go on using b). */
size_t ipc_frame_begin(ipc_buf *b, uint8_t type, uint64_t id);
int ipc_frame_end(ipc_buf *b, size_t start);

/* Append a whole frame with the given payload. Returns 0 or negative. */
int ipc_frame_put(ipc_buf *b, uint8_t type, uint64_t id, const void *payload, size_t len);
/* The same with flags. */
int ipc_frame_put_flags(ipc_buf *b, uint8_t type, uint8_t flags, uint64_t id, const void *payload,
                        size_t len);

/* ---- Reader ------------------------------------------------------------ */

/* Decode a frame header from `len` available bytes: 0 and *f filled (payload
   pointer set to buf + 16), -EAGAIN when fewer than 16 bytes, -EPROTO for a
   length above IPC_MAX_PAYLOAD or a nonzero reserved field. */
int ipc_frame_header_decode(const void *buf, size_t len, ipc_frame *f);

typedef struct ipc_reader {
    const char *p;
    size_t left;
    int bad; /* sticky: set by any read past the end or malformed string */
} ipc_reader;

void ipc_reader_init(ipc_reader *r, const void *p, size_t n);
uint16_t ipc_get_u16(ipc_reader *r);
uint32_t ipc_get_u32(ipc_reader *r);
const char *ipc_get_str(ipc_reader *r, size_t *len); /* NULL when bad */

/* ---- Requests and responses -------------------------------------------- */

/* Append a REQUEST frame for `req` with `flags` (0 or IPC_FLAG_INFER) to
   `b`. Returns 0 or negative. */
int ipc_request_encode(ipc_buf *b, uint64_t id, uint8_t flags, const serve_request *req);

/* Decode a REQUEST payload into `req`, whose strings then point into the
   payload. req->headers is a new array the caller frees. 0 or -EPROTO /
   -ENOMEM. */
int ipc_request_decode(const char *payload, size_t len, serve_request *req);

/*
 * A CALL frame: the target's app and deployment, a timeout in milliseconds
 * (0: none), then a request exactly as in a REQUEST payload, so that the
 * router forwards it without decoding it.
 */
int ipc_call_encode(ipc_buf *b, uint64_t id, const char *app, const char *deployment,
                    uint32_t timeout_ms, const serve_request *req);

/* Decode a CALL payload's head: app and deployment point into it, and the
   request is the `request_len` bytes at `request`. 0 or -EPROTO. */
typedef struct ipc_call {
    const char *app, *deployment;
    uint32_t timeout_ms;
    const char *request;
    size_t request_len;
} ipc_call;
int ipc_call_decode(const char *payload, size_t len, ipc_call *call);

/* A decoded response; strings and body point into the payload, `headers`
   is allocated and freed by ipc_response_release. */
typedef struct ipc_response {
    int status;
    serve_header *headers;
    size_t n_headers;
    const char *body;
    size_t body_len;
} ipc_response;

/* Flags of a RESPONSE frame that ends a stream. */
#define IPC_FLAG_ABORTED 1 /* the handler failed after streaming began */
#define IPC_FLAG_FAILED  1 /* RECONFIGURED: reconfigure returned an error */
#define IPC_FLAG_INFER   1 /* REQUEST: a v2 infer request, for the replica to decode */

int ipc_response_encode(ipc_buf *b, uint64_t id, int status, const serve_header *headers,
                        size_t n_headers, const void *body, size_t body_len);
/* The same payload as a frame of any type (RESPONSE or RESPONSE_PART) with
   flags. A streamed response is RESPONSE_PART frames, the first carrying
   status and headers, then one RESPONSE with the rest of the body. */
int ipc_response_encode_frame(ipc_buf *b, uint8_t type, uint8_t flags, uint64_t id, int status,
                              const serve_header *headers, size_t n_headers, const void *body,
                              size_t body_len);
int ipc_response_decode(const char *payload, size_t len, ipc_response *res);
void ipc_response_release(ipc_response *res);

/* ---- Framed connection over libuv -------------------------------------- */

typedef struct ipc_conn ipc_conn;

/* A whole frame arrived. The frame's memory is valid only during the call.
   The callback may call ipc_conn_close. */
typedef void (*ipc_frame_cb)(ipc_conn *c, const ipc_frame *f);
/* The connection ended: EOF (status UV_EOF), an I/O or protocol error
   (negative), or ipc_conn_close (0). Called exactly once; the ipc_conn is
   freed right after it returns. */
typedef void (*ipc_close_cb)(ipc_conn *c, int status);

/* Take ownership of `fd` (a connected stream socket) and start reading.
   On failure the fd is closed and a negative code returned. */
int ipc_conn_open(uv_loop_t *loop, int fd, ipc_frame_cb on_frame, ipc_close_cb on_close, void *data,
                  ipc_conn **out);

void *ipc_conn_data(const ipc_conn *c);

/* The outgoing buffer: append frames with ipc_frame_* then call
   ipc_conn_flush_later. Everything appended in one loop turn is written
   together, just before the loop next waits for I/O. */
ipc_buf *ipc_conn_out(ipc_conn *c);
void ipc_conn_flush_later(ipc_conn *c);
/* Write what is queued now, without waiting for the end of the loop turn
   (for a caller that is about to keep the loop busy). */
void ipc_conn_flush_now(ipc_conn *c);

/* Append one frame and schedule the flush. Returns 0 or negative. */
int ipc_conn_send(ipc_conn *c, uint8_t type, uint64_t id, const void *payload, size_t len);

/* Stop reading, drop unsent output, close the socket. on_close(c, 0) follows
   from the loop unless the connection had already ended. Safe to call
   twice and from inside on_frame. */
void ipc_conn_close(ipc_conn *c);

/* Like ipc_conn_close, but first write everything already queued. */
void ipc_conn_shutdown(ipc_conn *c);

#endif
