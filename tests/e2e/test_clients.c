/*
 * test_clients.c - clients that hold connections without finishing a
 * request (idle, slowloris, slow body), the connection limit, and requests
 * whose framing is ambiguous. None of them may keep the proxy from serving
 * others. Raw sockets, since libcurl is too well behaved for this.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "expect.h"
#include "harness.h"

TestSuite(clients, .fini = h_cleanup_all, .timeout = TEST_TIMEOUT_S);

#define ECHO_APP_1 APP("echo", "/echo", "echo.so", "{\"name\": \"Echo\"}")
#define REQUEST    "GET /echo HTTP/1.1\r\nHost: x\r\n\r\n"

static int connect_proxy(const h_serve *s)
{
    int fd = h_connect(s->port);
    cr_assert_geq(fd, 0, "connect: %m");
    return fd;
}

static void send_all(int fd, const char *text)
{
    size_t len = strlen(text);
    cr_assert_eq(send(fd, text, len, MSG_NOSIGNAL), (ssize_t)len, "send: %m");
}

/* Seconds until the proxy closes `fd` (reading whatever it sends), or -1
   if it is still open after `limit_s`. */
static double closed_after(int fd, double limit_s)
{
    static char buf[65536];
    double start = h_now();
    int closed;
    h_read_until_close(fd, start + limit_s, buf, sizeof(buf), &closed);
    return closed ? h_now() - start : -1;
}

Test(clients, an_idle_keep_alive_connection_is_closed_after_keep_alive_timeout_s)
{
    h_serve *s = serve_up("/echo", ", \"keep_alive_timeout_s\": 1", ECHO_APP_1);
    int used = connect_proxy(s), silent = connect_proxy(s);
    send_all(used, REQUEST);
    char buf[8192];
    int closed;
    h_read_until_close(used, h_now() + 0.5, buf, sizeof(buf), &closed);
    cr_assert(strncmp(buf, "HTTP/1.1 200", 12) == 0 && !closed, "%s", buf);
    /* Both are cut a keep_alive_timeout_s after they were last ready
       (checked once a second); neither earlier than that. */
    double t = closed_after(used, 4);
    cr_expect(t >= 0.4 && t <= 2.6, "the used connection closed after %.2f s", t);
    t = closed_after(silent, 4);
    cr_expect(t >= 0 && t <= 2.6, "the silent connection closed after %.2f s", t);
    close(used);
    close(silent);
}

Test(clients, slowloris_connections_are_cut_and_others_are_served_meanwhile)
{
    /* Eight clients trickle their headers, a byte every 0.2 s, on a proxy
       that takes at most eight connections: they hold every slot until
       client_header_timeout_s cuts them. */
    h_serve *s =
        serve_up("/echo", ", \"client_header_timeout_s\": 1, \"max_connections\": 9", ECHO_APP_1);
    int slow[8];
    for (int i = 0; i < 8; i++) {
        slow[i] = connect_proxy(s);
        send_all(slow[i], "GET /echo HTTP/1.1\r\nHost: x\r\n");
    }
    double start = h_now(), cut[8] = {0};
    int left = 8;
    while (left > 0 && h_now() - start < 5) {
        h_response r; /* the ninth slot: a normal client is served */
        cr_assert_eq(h_get(s, "/echo", &r), 0, "%s", r.error);
        cr_expect_eq(r.status, 200);
        h_response_free(&r);
        for (int i = 0; i < 8; i++) {
            if (cut[i]) continue;
            if (send(slow[i], "X", 1, MSG_NOSIGNAL) != 1 || closed_after(slow[i], 0.01) >= 0) {
                cut[i] = h_now() - start;
                left--;
            }
        }
        h_sleep_ms(200);
    }
    for (int i = 0; i < 8; i++) {
        cr_expect(cut[i] >= 0.9 && cut[i] <= 3.0, "slowloris %d cut after %.2f s", i, cut[i]);
        close(slow[i]);
    }
    wait_log(s, "closed 8 slow client connection(s)", 1);
}

Test(clients, a_slow_body_is_cut_once_it_falls_below_the_minimum_rate)
{
    h_serve *s = serve_up("/echo", ", \"client_header_timeout_s\": 1", ECHO_APP_1);
    int fd = connect_proxy(s);
    send_all(fd, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n");
    double start = h_now(), t = -1;
    while (h_now() - start < 5 && t < 0) { /* a byte every 0.2 s: 5 B/s */
        if (send(fd, "b", 1, MSG_NOSIGNAL) != 1) break;
        t = closed_after(fd, 0.2);
    }
    double took = h_now() - start;
    cr_expect(took >= 0.9 && took <= 3.0, "the slow body was cut after %.2f s", took);
    close(fd);
    h_response r;
    get_expect(s, "/echo", 200, &r);
    h_response_free(&r);
}

Test(clients, past_max_connections_a_client_waits_until_idle_ones_are_cut)
{
    /* The harness's own keep-alive connection and four silent clients fill
       the proxy; a new client waits in the listen backlog until
       keep_alive_timeout_s cuts them, then is served. */
    h_serve *s =
        serve_up("/echo", ", \"max_connections\": 5, \"keep_alive_timeout_s\": 1", ECHO_APP_1);
    int held[4];
    for (int i = 0; i < 4; i++) held[i] = connect_proxy(s);
    h_sleep_ms(100); /* the proxy has accepted them all */
    h_async *fresh = h_request_async(s, "GET", "/echo", NULL, NULL, 0);
    h_response r;
    cr_assert_eq(h_async_wait(fresh, &r), 0, "%s", r.error);
    cr_expect_eq(r.status, 200);
    cr_expect_gt(r.elapsed_s, 0.5, "served at once (%.2f s): the limit did not hold", r.elapsed_s);
    cr_expect_lt(r.elapsed_s, 3.0, "served after %.2f s", r.elapsed_s);
    h_response_free(&r);
    for (int i = 0; i < 4; i++) cr_expect_geq(closed_after(held[i], 0.1), 0, "held %d open", i);
    for (int i = 0; i < 4; i++) close(held[i]);
}

/* Send `request` on a new connection; the answer's status line must be
   400 with `reason` in it, and the connection must close. */
static void expect_400(h_serve *s, const char *request, const char *reason)
{
    int fd = connect_proxy(s);
    send_all(fd, request);
    static char buf[65536];
    int closed;
    h_read_until_close(fd, h_now() + 3, buf, sizeof(buf), &closed);
    close(fd);
    cr_expect(strncmp(buf, "HTTP/1.1 400", 12) == 0, "for %s got: %s", request, buf);
    cr_expect(strstr(buf, reason), "no '%s' in: %s", reason, buf);
    cr_expect(closed, "the connection stayed open after the 400");
}

Test(clients, ambiguous_framing_and_a_method_that_is_no_token_get_400)
{
    h_serve *s = serve_up("/echo", "", ECHO_APP_1);
    expect_400(s,
               "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\n"
               "abcde",
               "conflicting Content-Length");
    expect_400(s,
               "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
               "Transfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n",
               "both Content-Length and Transfer-Encoding");
    expect_400(s, "GE\x1b[31mT /echo HTTP/1.1\r\nHost: x\r\n\r\n", "the method is not a token");
    h_response r; /* and the proxy serves on */
    get_expect(s, "/echo", 200, &r);
    h_response_free(&r);
}
