/*
 * test_router.c - the proxy itself (router.c) on a real loop and socket,
 * for what the end-to-end tests cannot see: requests that libmicrohttpd
 * gives up on must not stay counted, or the drain waits for them.
 */
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "router/router.h"

/* The proxy's listening socket is the only one in this process. */
static struct sockaddr_in proxy_address(void)
{
    struct sockaddr_in addr;
    for (int fd = 3; fd < 1024; fd++) {
        int listening = 0;
        socklen_t len = sizeof(listening);
        if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0 || !listening)
            continue;
        len = sizeof(addr);
        cr_assert_eq(getsockname(fd, (struct sockaddr *)&addr, &len), 0);
        return addr;
    }
    cr_assert_fail("the router listens on no socket");
    return addr;
}

/* Send `request` on a new connection, let the proxy read it for 200 ms,
   then reset the connection, as a client given no answer may. */
static void send_and_reset(uv_loop_t *loop, const char *request)
{
    struct sockaddr_in addr = proxy_address();
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_eq(connect(fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
    cr_assert_eq(send(fd, request, strlen(request), 0), (ssize_t)strlen(request));
    char buf[4096];
    uint64_t until = uv_hrtime() + 200000000u;
    while (uv_hrtime() < until) {
        uv_run(loop, UV_RUN_NOWAIT);
        if (recv(fd, buf, sizeof(buf), MSG_DONTWAIT) == 0) break;
    }
    struct linger reset = {1, 0}; /* a reset: libmicrohttpd notices at once */
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, sizeof(reset));
    close(fd);
    for (int i = 0; i < 10; i++) uv_run(loop, UV_RUN_NOWAIT);
}

static void drained(void *arg)
{
    *(uint64_t *)arg = uv_hrtime();
}

/*
 * Found by fuzz/fuzz_http.c: a query with more arguments than fit in the
 * connection's memory pool makes libmicrohttpd give up on the request
 * after its request line (on_uri) and later free the connection without
 * calling on_completed. The request allocated in on_uri leaked, ~600 bytes
 * a time for anyone who sends "GET /?&&&&...", and stayed counted as in
 * progress: a drain waited its whole timeout for it.
 */
Test(router, a_request_libmicrohttpd_drops_is_freed_and_does_not_hold_up_the_drain)
{
    uv_loop_t loop;
    router *r;
    char err[256];
    router_options opts = {.host = "127.0.0.1", .max_body_bytes = 4096, .max_header_bytes = 1024};
    log_min_level = LOG_OFF; /* libmicrohttpd's complaint is expected */
    cr_assert_eq(uv_loop_init(&loop), 0);
    cr_assert_eq(router_start(&loop, &opts, &r, err, sizeof(err)), 0, "%s", err);

    char request[512] = "GET /x?";
    memset(request + strlen(request), '&', 200);
    strcat(request, " HTTP/1.1\r\nHost: x\r\n\r\n");
    send_and_reset(&loop, request);
    /* libmicrohttpd frees a connection it closed as it next runs: other
       traffic. */
    send_and_reset(&loop, "GET /-/healthz HTTP/1.1\r\nHost: x\r\n\r\n");

    uint64_t start = uv_hrtime(), done = 0;
    router_drain(r, 10.0, drained, &done);
    while (!done && uv_hrtime() - start < 3000000000u) uv_run(&loop, UV_RUN_ONCE);
    cr_expect(done && done - start < 1000000000u, "drained at once, not after its timeout");

    router_close(r);
    cr_expect_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
    cr_expect_eq(uv_loop_close(&loop), 0);
}
