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
    cr_assert_eq(ipc_request_encode(&b, 0x1234567890abcdefull, IPC_FLAG_INFER, &in), 0);
    ipc_frame f = frame_of(&b, IPC_REQUEST, 0x1234567890abcdefull);
    cr_expect_eq(f.flags, IPC_FLAG_INFER);
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
    cr_assert_eq(ipc_request_encode(&b, 1, 0, &in), 0);
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

Test(frame, a_call_carries_its_target_and_a_request_the_router_forwards_unread)
{
    serve_header h[] = {{"content-type", "text/plain"}};
    serve_request in = {.method = "POST",
                        .path = "/",
                        .route_path = "/",
                        .query = "n=3",
                        .request_id = "rid-7",
                        .headers = h,
                        .n_headers = 1,
                        .body = "bonjour",
                        .body_len = 7};
    ipc_buf b = {0};
    cr_assert_eq(ipc_call_encode(&b, 42, "lang", "French", 1500, &in), 0);
    ipc_frame f = frame_of(&b, IPC_CALL, 42);
    ipc_call call;
    cr_assert_eq(ipc_call_decode(f.payload, f.len, &call), 0);
    cr_expect_str_eq(call.app, "lang");
    cr_expect_str_eq(call.deployment, "French");
    cr_expect_eq(call.timeout_ms, 1500);

    /* The request part is a REQUEST payload as it stands. */
    ipc_buf fwd = {0};
    cr_assert_eq(ipc_frame_put(&fwd, IPC_REQUEST, 9, call.request, call.request_len), 0);
    ipc_frame g = frame_of(&fwd, IPC_REQUEST, 9);
    serve_request out;
    cr_assert_eq(ipc_request_decode(g.payload, g.len, &out), 0);
    cr_expect_str_eq(out.query, "n=3");
    cr_expect_str_eq(out.request_id, "rid-7");
    cr_expect_str_eq(out.headers[0].value, "text/plain");
    cr_expect_eq(out.body_len, 7);
    free((void *)out.headers);
    ipc_buf_free(&fwd);

    for (uint32_t cut = 0; cut < 14; cut++) /* inside app, deployment or timeout */
        cr_expect_eq(ipc_call_decode(f.payload, cut, &call), -EPROTO, "cut at %u", cut);
    ipc_buf_free(&b);
}

Test(frame, frame_put_flags_sets_the_flags_byte)
{
    ipc_buf b = {0};
    cr_assert_eq(ipc_frame_put_flags(&b, IPC_CALL_RESULT, IPC_FLAG_ABORTED, 5, "xy", 2), 0);
    ipc_frame f = frame_of(&b, IPC_CALL_RESULT, 5);
    cr_expect_eq(f.flags, IPC_FLAG_ABORTED);
    cr_expect_eq(f.len, 2);
    ipc_buf_free(&b);
}

Test(frame, reserve_exact_allocates_what_is_asked_and_reserve_doubles)
{
    ipc_buf b = {0};
    ipc_buf_put(&b, "abc", 3);
    cr_assert_eq(ipc_buf_reserve_exact(&b, 1000), 0);
    cr_expect_eq(b.cap, 1003, "exactly the bytes held and the room asked for");
    cr_assert_eq(ipc_buf_reserve_exact(&b, 10), 0);
    cr_expect_eq(b.cap, 1003, "room already there: nothing moves");
    cr_expect_eq(memcmp(b.data, "abc", 3), 0);
    cr_assert_eq(ipc_buf_reserve(&b, 1001), 0);
    cr_expect_eq(b.cap, 2006, "the amortised reserve doubles");
    cr_expect_eq(ipc_buf_reserve_exact(&b, SIZE_MAX), -ENOMEM);
    cr_expect(b.oom, "a reserve that cannot be met is sticky, like the others");
    ipc_buf_free(&b);
}
