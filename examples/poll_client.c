/* SPDX-License-Identifier: MIT */
/*
 * poll_client.c - many requests in flight from one thread, driven by
 * poll(2): the asynchronous client with the plainest event loop there is.
 *
 * All COUNT requests are handed to udprr_client_send at once; the library
 * keeps at most a congestion window of them in flight (never more than
 * WINDOW) and queues the rest. The loop waits on the handle's socket for
 * at most udprr_client_timeout_ms, then lets udprr_client_process read
 * the replies, retransmit what is due and send what the window now
 * allows; the done callbacks run from inside it.
 *
 *   udp_remote server 127.0.0.1 -p 0 &       (prints its port)
 *   poll_client 127.0.0.1 PORT [COUNT] [WINDOW]
 *
 * Build: cc poll_client.c $(pkg-config --cflags --libs udprr)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>

#include <udprr.h>

#include "pipeline.h"

int main(int argc, char **argv)
{
    struct pipeline p;
    int rc = pipeline_init(&p, "poll_client", argc, argv);
    if (rc != 0)
        return rc < 0 ? 0 : rc;

    struct requests *rs = &p.requests;
    udprr_client_opts opts;
    udprr_client_opts_init(&opts);
    opts.max_window = p.max_window;
    rc = udprr_client_open(&rs->client, p.host, p.port, &opts);
    if (rc != UDPRR_OK) {
        fprintf(stderr, "poll_client: cannot reach %s port %s: %s\n", p.host,
                p.port, udprr_strerror(rc));
        requests_free(rs);
        return 1;
    }

    requests_send_more(rs);
    /* Bounded: every request ends by its deadline (the handle's, 10 s by
     * default) at the latest, and then its done callback has run. */
    while (!requests_finished(rs)) {
        int timeout_ms = udprr_client_timeout_ms(rs->client);
        if (timeout_ms < 0) {
            /* Nothing pending, yet not every request has ended. */
            fprintf(stderr, "poll_client: %u requests never ended\n",
                    rs->count - rs->ended);
            break;
        }
        struct pollfd pfd = {.fd = udprr_client_fd(rs->client),
                             .events = POLLIN};
        if (poll(&pfd, 1, timeout_ms) < 0 && errno != EINTR) {
            fprintf(stderr, "poll_client: poll: %s\n", strerror(errno));
            break;
        }
        udprr_client_process(rs->client);
        requests_send_more(rs);
    }
    return pipeline_close(&p);
}
