/* SPDX-License-Identifier: MIT */
/*
 * uv_client.c - poll_client's requests driven by libuv: the integration a
 * libuv program writes to give its loop a libudprr handle.
 *
 * Two libuv handles do it all:
 *   - a uv_poll_t on udprr_client_fd, readable when replies (or an ICMP
 *     error) wait: then udprr_client_process;
 *   - a uv_timer_t, armed after every udprr_client_process from
 *     udprr_client_timeout_ms (stopped when it says -1): when it fires,
 *     udprr_client_process again, which retransmits what is due and ends
 *     what has run out of time.
 * Once every request has ended both handles are closed, the loop runs
 * out of work, uv_loop_close succeeds, and only then is the udprr handle
 * closed: its socket must outlive the uv_poll_t that watches it.
 *
 *   udp_remote server 127.0.0.1 -p 0 &       (prints its port)
 *   uv_client 127.0.0.1 PORT [COUNT] [WINDOW]
 *
 * Build: cc uv_client.c $(pkg-config --cflags --libs udprr libuv)
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>

#include <uv.h>

#include <udprr.h>

#include "pipeline.h"

struct uv_client {
    struct pipeline pipeline;
    uv_loop_t loop;
    uv_poll_t readable; /* on udprr_client_fd */
    uv_timer_t timer;   /* the handle's next retransmission or deadline */
    int closing;        /* uv_close has been called on both handles */
    int loop_failed;    /* libuv reported an error: exit 1 */
};

/* Closing both handles leaves the loop nothing to do: uv_run returns. */
static void stop(struct uv_client *uc)
{
    if (uc->closing)
        return;
    uc->closing = 1;
    uv_close((uv_handle_t *)&uc->readable, NULL);
    uv_close((uv_handle_t *)&uc->timer, NULL);
}

static void on_timer(uv_timer_t *timer);

/* One turn for the handle: the socket was readable, the timer fired, or
 * the requests were just sent. */
static void drive(struct uv_client *uc)
{
    struct requests *rs = &uc->pipeline.requests;
    udprr_client_process(rs->client);
    requests_send_more(rs);
    if (requests_finished(rs)) {
        stop(uc);
        return;
    }
    int timeout_ms = udprr_client_timeout_ms(rs->client);
    if (timeout_ms < 0) {
        /* Nothing pending, yet not every request has ended. */
        fprintf(stderr, "uv_client: %u requests never ended\n",
                rs->count - rs->ended);
        uc->loop_failed = 1;
        stop(uc);
        return;
    }
    /* libuv counts a timer from the loop's cached "now", taken before the
     * callbacks of this turn ran: bring it up to date, or the timer fires
     * early by however long they took. */
    uv_update_time(&uc->loop);
    uv_timer_start(&uc->timer, on_timer, (uint64_t)timeout_ms, 0);
}

static void on_readable(uv_poll_t *readable, int status, int events)
{
    struct uv_client *uc = readable->data;
    (void)events;
    if (status < 0) {
        fprintf(stderr, "uv_client: polling the socket: %s\n",
                uv_strerror(status));
        uc->loop_failed = 1;
        stop(uc);
        return;
    }
    drive(uc);
}

static void on_timer(uv_timer_t *timer)
{
    drive(timer->data);
}

/* Bounded: every request ends by its deadline (the handle's, 10 s by
 * default) at the latest, and then both handles are closed. */
static int run(struct uv_client *uc)
{
    int rc = uv_loop_init(&uc->loop);
    if (rc != 0) {
        fprintf(stderr, "uv_client: uv_loop_init: %s\n", uv_strerror(rc));
        return -1;
    }
    uv_timer_init(&uc->loop, &uc->timer);
    uc->timer.data = uc;
    rc = uv_poll_init(&uc->loop, &uc->readable,
                      udprr_client_fd(uc->pipeline.requests.client));
    if (rc == 0) {
        uc->readable.data = uc;
        rc = uv_poll_start(&uc->readable, UV_READABLE, on_readable);
    }
    if (rc != 0) {
        fprintf(stderr, "uv_client: polling the socket: %s\n",
                uv_strerror(rc));
        uc->loop_failed = 1;
        /* A poll handle that failed to initialize is not one to close. */
        uc->closing = 1;
        uv_close((uv_handle_t *)&uc->timer, NULL);
    } else {
        drive(uc); /* sends the requests, arms the timer */
    }
    uv_run(&uc->loop, UV_RUN_DEFAULT);
    rc = uv_loop_close(&uc->loop);
    if (rc != 0) {
        fprintf(stderr, "uv_client: uv_loop_close: %s\n", uv_strerror(rc));
        return -1;
    }
    return uc->loop_failed ? -1 : 0;
}

int main(int argc, char **argv)
{
    struct uv_client uc;
    memset(&uc, 0, sizeof uc);
    struct pipeline *p = &uc.pipeline;
    int rc = pipeline_init(p, "uv_client", argc, argv);
    if (rc != 0)
        return rc < 0 ? 0 : rc;

    udprr_client_opts opts;
    udprr_client_opts_init(&opts);
    opts.max_window = p->max_window;
    rc = udprr_client_open(&p->requests.client, p->host, p->port, &opts);
    if (rc != UDPRR_OK) {
        fprintf(stderr, "uv_client: cannot reach %s port %s: %s\n", p->host,
                p->port, udprr_strerror(rc));
        requests_free(&p->requests);
        return 1;
    }
    int loop_rc = run(&uc);
    /* The loop is closed, the uv_poll_t with it: the socket may go. */
    int status = pipeline_close(p);
    return loop_rc == 0 ? status : 1;
}
