/*
 * httpd.c - see httpd.h.
 */
#include "common/httpd.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define HTTPD_PUMP_ROUNDS    8
#define HTTPD_LISTEN_BACKLOG 1024

struct httpd {
    struct MHD_Daemon *mhd;
    uv_poll_t poll;
    uv_timer_t timer;
    uv_idle_t pump;
    int pending_closes;
    void (*done)(void *);
    void *done_arg;
};

static void on_timer(uv_timer_t *t);

/* Run MHD until it has nothing due now, then arm the timer for its next
   deadline. After resumes MHD reports a zero timeout for a round or two. */
static void pump(httpd *h)
{
    MHD_UNSIGNED_LONG_LONG ms = 0;
    uv_idle_stop(&h->pump);
    if (!h->mhd) return;
    for (int i = 0; i < HTTPD_PUMP_ROUNDS; i++) {
        MHD_run(h->mhd);
        if (MHD_get_timeout(h->mhd, &ms) != MHD_YES) {
            uv_timer_stop(&h->timer);
            return;
        }
        if (ms > 0) break;
    }
    uv_timer_start(&h->timer, on_timer, ms, 0);
}

static void on_poll(uv_poll_t *p, int status, int events)
{
    pump(p->data);
}

static void on_timer(uv_timer_t *t)
{
    pump(t->data);
}

static void on_idle(uv_idle_t *i)
{
    pump(i->data);
}

int httpd_listen(const char *what, const char *host, int port, char *err, size_t errlen)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *ai;
    char service[16];
    snprintf(service, sizeof(service), "%d", port);
    int rc = getaddrinfo(host, service, &hints, &ai);
    if (rc != 0) {
        snprintf(err, errlen, "%s.host: cannot resolve '%s': %s", what, host, gai_strerror(rc));
        return -EINVAL;
    }
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, HTTPD_LISTEN_BACKLOG) != 0) {
        rc = -errno;
        snprintf(err, errlen, "%s: cannot listen on %s:%d: %s%s", what, host, port, strerror(errno),
                 rc == -EADDRINUSE ? " (another serve, or another server, has it: stop it, or "
                                     "choose another port in the config)"
                                   : "");
        if (fd >= 0) close(fd);
        fd = rc;
    }
    freeaddrinfo(ai);
    return fd;
}

int httpd_start(uv_loop_t *loop, struct MHD_Daemon *mhd, httpd **out)
{
    httpd *h = calloc(1, sizeof(*h));
    if (!h) {
        MHD_stop_daemon(mhd);
        return -ENOMEM;
    }
    h->mhd = mhd;
    uv_poll_init(loop, &h->poll, MHD_get_daemon_info(mhd, MHD_DAEMON_INFO_EPOLL_FD)->epoll_fd);
    uv_timer_init(loop, &h->timer);
    uv_idle_init(loop, &h->pump);
    h->poll.data = h->timer.data = h->pump.data = h;
    uv_poll_start(&h->poll, UV_READABLE, on_poll);
    pump(h);
    *out = h;
    return 0;
}

struct MHD_Daemon *httpd_daemon(const httpd *h)
{
    return h->mhd;
}

void httpd_wake(httpd *h)
{
    uv_idle_start(&h->pump, on_idle);
}

void httpd_quiesce(httpd *h)
{
    int fd = MHD_quiesce_daemon(h->mhd);
    if (fd >= 0) close(fd);
}

static void on_closed(uv_handle_t *handle)
{
    httpd *h = handle->data;
    if (--h->pending_closes > 0) return;
    void (*done)(void *) = h->done;
    void *arg = h->done_arg;
    free(h);
    if (done) done(arg);
}

void httpd_close(httpd *h, void (*done)(void *), void *arg)
{
    h->done = done;
    h->done_arg = arg;
    MHD_run(h->mhd); /* let resumed connections leave the suspended list */
    MHD_stop_daemon(h->mhd);
    h->mhd = NULL;
    uv_handle_t *handles[] = {(uv_handle_t *)&h->poll, (uv_handle_t *)&h->timer,
                              (uv_handle_t *)&h->pump};
    for (size_t i = 0; i < sizeof(handles) / sizeof(handles[0]); i++) {
        h->pending_closes++;
        uv_close(handles[i], on_closed);
    }
}
