/*
 * test_frame.c - the frame codec: headers, strings, requests and
 * responses survive a round trip, and malformed input is refused, never
 * read past.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ipc/ipc.h"

/* Decode the one frame at the start of b; check its header. */
static ipc_frame frame_of(const ipc_buf *b, uint8_t type, uint64_t id)
{
    ipc_frame f;
    cr_assert_eq(ipc_frame_header_decode(b->data, b->len, &f), 0);
    cr_assert_eq(f.type, type);
    cr_assert_eq(f.id, id);
    cr_assert_eq((size_t)f.len + IPC_HEADER_SIZE, b->len);
    return f;
}

Test(frame, a_request_round_trips_with_binary_body_and_headers)
{
    unsigned char body[1000];
    for (size_t i = 0; i < sizeof(body); i++) body[i] = (unsigned char)(i * 7);
    serve_header h[] = {{"Host", "x"}, {"X-Empty", ""}, {"Accept", "*/*"}};
    serve_request in = {.method = "POST",
                        .path = "/app/a b",
                        .route_path = "/a b",
                        .query = "x=1&y=%20",
                        .request_id = "abc",
                        .headers = h,
                        .n_headers = 3,
                        .body = body,
                        .body_len = sizeof(body)};
    ipc_buf b = {0};
    cr_assert_eq(ipc_request_encode(&b, 0x1234567890abcdefull, &in), 0);
    ipc_frame f = frame_of(&b, IPC_REQUEST, 0x1234567890abcdefull);
    serve_request out;
    cr_assert_eq(ipc_request_decode(f.payload, f.len, &out), 0);
    cr_expect_str_eq(out.method, "POST");
    cr_expect_str_eq(out.path, "/app/a b");
    cr_expect_str_eq(out.route_path, "/a b");
    cr_expect_str_eq(out.query, "x=1&y=%20");
    cr_expect_str_eq(out.request_id, "abc");
    cr_assert_eq(out.n_headers, 3);
    cr_expect_str_eq(out.headers[1].name, "X-Empty");
    cr_expect_str_eq(out.headers[1].value, "");
    cr_expect_str_eq(out.headers[2].value, "*/*");
    cr_assert_eq(out.body_len, sizeof(body));
    cr_expect_eq(memcmp(out.body, body, sizeof(body)), 0);
    cr_expect_eq(((const char *)out.body)[out.body_len], '\0', "body is NUL-terminated");
    free((void *)out.headers);
    ipc_buf_free(&b);
}

Test(frame, a_response_round_trips_and_frames_concatenate)
{
    serve_header h[] = {{"content-type", "text/plain"}};
    ipc_buf b = {0};
    cr_assert_eq(ipc_response_encode(&b, 7, 201, h, 1, "hello", 5), 0);
    size_t first = b.len;
    cr_assert_eq(ipc_response_encode(&b, 8, 404, NULL, 0, NULL, 0), 0);

    ipc_frame f;
    ipc_response r;
    cr_assert_eq(ipc_frame_header_decode(b.data, b.len, &f), 0);
    cr_assert_eq(f.id, 7);
    cr_assert_eq(ipc_response_decode(f.payload, f.len, &r), 0);
    cr_expect_eq(r.status, 201);
    cr_expect_eq(r.n_headers, 1);
    cr_expect_str_eq(r.headers[0].value, "text/plain");
    cr_expect_eq(r.body_len, 5);
    cr_expect_eq(memcmp(r.body, "hello", 5), 0);
    ipc_response_release(&r);

    cr_assert_eq(ipc_frame_header_decode(b.data + first, b.len - first, &f), 0);
    cr_assert_eq(f.id, 8);
    cr_assert_eq(ipc_response_decode(f.payload, f.len, &r), 0);
    cr_expect_eq(r.status, 404);
    cr_expect_eq(r.n_headers, 0);
    cr_expect_eq(r.body_len, 0);
    ipc_buf_free(&b);
}

Test(frame, a_short_header_asks_for_more_and_a_huge_length_is_refused)
{
    unsigned char h[IPC_HEADER_SIZE] = {0};
    ipc_frame f;
    cr_expect_eq(ipc_frame_header_decode(h, IPC_HEADER_SIZE - 1, &f), -EAGAIN);
    h[3] = 0x7f; /* length 2 GiB - something */
    cr_expect_eq(ipc_frame_header_decode(h, sizeof(h), &f), -EPROTO);
    h[3] = 0;
    h[6] = 1; /* reserved must be zero */
    cr_expect_eq(ipc_frame_header_decode(h, sizeof(h), &f), -EPROTO);
}

Test(frame, every_truncation_of_a_request_is_refused)
{
    serve_header h[] = {{"a", "b"}};
    serve_request in = {.method = "GET",
                        .path = "/",
                        .route_path = "/",
                        .query = "",
                        .request_id = "r",
                        .headers = h,
                        .n_headers = 1,
                        .body = "xyz",
                        .body_len = 3};
    ipc_buf b = {0};
    cr_assert_eq(ipc_request_encode(&b, 1, &in), 0);
    const char *payload = b.data + IPC_HEADER_SIZE;
    size_t len = b.len - IPC_HEADER_SIZE;
    for (size_t n = 0; n < len; n++) {
        char *copy = malloc(n ? n : 1); /* exact size: ASan catches any overread */
        memcpy(copy, payload, n);
        serve_request out;
        cr_expect_eq(ipc_request_decode(copy, n, &out), -EPROTO, "truncated at %zu", n);
        free(copy);
    }
    ipc_buf_free(&b);
}

Test(frame, a_string_without_its_nul_or_a_lying_header_count_is_refused)
{
    ipc_buf b = {0};
    ipc_buf_put_u32(&b, 3);
    ipc_buf_put(&b, "GETX", 4); /* the byte after the string must be NUL */
    serve_request out;
    cr_expect_eq(ipc_request_decode(b.data, b.len, &out), -EPROTO);
    ipc_buf_free(&b);

    /* status, then a header count far beyond what the payload can hold */
    ipc_buf_put_u16(&b, 200);
    ipc_buf_put_u32(&b, 0xffffffffu);
    ipc_response r;
    cr_expect_eq(ipc_response_decode(b.data, b.len, &r), -EPROTO);
    ipc_buf_free(&b);
}

Test(frame, a_response_with_an_impossible_status_is_refused)
{
    ipc_buf b = {0};
    cr_assert_eq(ipc_response_encode(&b, 1, 42, NULL, 0, "", 0), 0);
    ipc_response r;
    cr_expect_eq(ipc_response_decode(b.data + IPC_HEADER_SIZE, b.len - IPC_HEADER_SIZE, &r),
                 -EPROTO);
    ipc_buf_free(&b);
}

Test(frame, frame_put_and_begin_end_agree)
{
    ipc_buf a = {0}, b = {0};
    cr_assert_eq(ipc_frame_put(&a, IPC_READY, 99, "abc", 3), 0);
    size_t start = ipc_frame_begin(&b, IPC_READY, 99);
    ipc_buf_put(&b, "abc", 3);
    cr_assert_eq(ipc_frame_end(&b, start), 0);
    cr_assert_eq(a.len, b.len);
    cr_expect_eq(memcmp(a.data, b.data, a.len), 0);
    ipc_frame f = frame_of(&a, IPC_READY, 99);
    cr_expect_eq(f.len, 3);
    cr_expect_eq(memcmp(f.payload, "abc", 3), 0);
    ipc_buf_free(&a);
    ipc_buf_free(&b);
}
