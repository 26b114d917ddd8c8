/*
 * mhd_noop - a plain libmicrohttpd server answering 200 "ok" (text/plain) on
 * any path: the origin server behind nginx in the proxy benchmark
 * (bench/proxy.sh), and a measure of what libmicrohttpd alone costs.
 *
 *   mhd_noop PORT        listen on 127.0.0.1:PORT until SIGINT or SIGTERM
 *
 * The setup is the one of ../shared/bench-notes.md: epoll, an internal
 * thread pool of 2 (one per core here), one shared response.
 */
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct MHD_Response *ok_response;

/*
 * libmicrohttpd calls this at least twice per request: first with the headers
 * only (*con_cls still NULL), then once per body chunk, and last with
 * *upload_data_size == 0. A response queued in the first call makes 0.9.75
 * answer "Connection: close" (see bench-notes): every request would pay a new
 * connection. So the first call only marks the request as seen, and the
 * response is queued once the (empty) upload is over.
 */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    static int seen;
    if (*con_cls == NULL) {
        *con_cls = &seen;
        return MHD_YES;
    }
    if (*upload_data_size != 0) {
        *upload_data_size = 0; /* discard any body */
        return MHD_YES;
    }
    return MHD_queue_response(conn, MHD_HTTP_OK, ok_response);
}

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    stop = sig;
}

int main(int argc, char **argv)
{
    if (argc != 2 || atoi(argv[1]) <= 0 || atoi(argv[1]) > 65535) {
        fprintf(stderr, "usage: %s PORT\n", argv[0]);
        return 2;
    }
    struct sockaddr_in addr = {.sin_family = AF_INET,
                               .sin_port = htons((unsigned short)atoi(argv[1])),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};

    ok_response = MHD_create_response_from_buffer(2, "ok", MHD_RESPMEM_PERSISTENT);
    if (!ok_response ||
        MHD_add_response_header(ok_response, "Content-Type", "text/plain") != MHD_YES) {
        fprintf(stderr, "mhd_noop: cannot build the response\n");
        return 1;
    }
    struct MHD_Daemon *d = MHD_start_daemon(
        MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_ERROR_LOG, 0, NULL, NULL, on_request, NULL,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned int)2, MHD_OPTION_SOCK_ADDR,
        (struct sockaddr *)&addr, MHD_OPTION_CONNECTION_LIMIT, (unsigned int)4096,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)120, MHD_OPTION_END);
    if (!d) {
        fprintf(stderr, "mhd_noop: cannot listen on 127.0.0.1:%s\n", argv[1]);
        return 1;
    }

    /* The daemon's threads do everything; this one only waits for a signal.
       Signals stay blocked except inside sigsuspend, so none is missed. */
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    while (!stop) sigsuspend(&old);

    MHD_stop_daemon(d);
    MHD_destroy_response(ok_response);
    return 0;
}
