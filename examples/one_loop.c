/* SPDX-License-Identifier: MIT */
/*
 * one_loop.c - a server and a client in one program, one thread, one
 * poll(2) loop: the way a program with an event loop of its own gives it
 * libudprr handles of both kinds.
 *
 * The server (on a free port of 127.0.0.1) is driven by
 * udprr_server_fd, udprr_server_timeout_ms and udprr_server_process; the
 * client (connected to it) by udprr_client_fd, udprr_client_timeout_ms and
 * udprr_client_process, with all COUNT requests handed to
 * udprr_client_send at once. The server's handler answers every other
 * request at once; the others it defers (UDPRR_DEFER), keeping the token,
 * and the loop answers them on its next turn, from the same thread, with
 * udprr_server_reply, as a program would once its own I/O for the request
 * had completed. Each turn:
 *
 *     answer what was deferred on an earlier turn (udprr_server_reply)
 *     poll both descriptors, for the earlier of the two timeouts
 *         (0 when answers were just given: process must send them)
 *     udprr_server_process      the handler runs here
 *     udprr_client_process      the done callbacks run here
 *
 * Prints both sides' counters and a summary line; exits 0 when every
 * request got its own reply, 1 otherwise, 2 for a usage error.
 *
 *   one_loop [COUNT [WINDOW]]
 *
 * Build: cc one_loop.c $(pkg-config --cflags --libs udprr)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <udprr.h>

#include "example_util.h"
#include "requests.h"

#define MAX_COUNT 1000000u
#define RUN_LIMIT_S 60.0 /* the loop gives up after this long */

static void usage(FILE *out)
{
    fprintf(out,
            "usage: one_loop [COUNT [WINDOW]]\n"
            "\n"
            "Runs a server and a client in one thread and one poll loop over\n"
            "127.0.0.1: COUNT requests (default 100, at most %u), at most\n"
            "WINDOW in flight (1..65535, default 64). The server answers\n"
            "every other request at once and defers the others to the\n"
            "loop's next turn. Exits 0 when every request got its own\n"
            "reply.\n",
            MAX_COUNT);
}

/* --- the server's side --------------------------------------------------- */

/* A request the handler deferred: answered on a later turn. */
struct deferred {
    struct deferred *next;
    uint64_t token;
    unsigned turn; /* the turn it was deferred on */
    size_t len;
    char bytes[]; /* the request's bytes */
};

struct server_side {
    udprr_server *server;
    unsigned turn;            /* the loop's turn now */
    uint64_t calls;           /* handler calls */
    uint64_t at_once;         /* answered inside the handler */
    uint64_t later;           /* answered on a later turn */
    struct deferred *waiting; /* deferred, not answered yet (a stack) */
};

/* Every answer is the request's text, " -> ", and when it was given. */
static int serve(void *user, const udprr_request *req, void *reply,
                 size_t reply_cap, size_t *reply_len)
{
    struct server_side *side = user;
    side->calls++;
    if (side->calls % 2 == 0 && req->token != 0) {
        /* req->data is valid during this call only: keep a copy. */
        struct deferred *d = malloc(sizeof *d + req->len);
        if (d != NULL) {
            d->token = req->token;
            d->turn = side->turn;
            d->len = req->len;
            memcpy(d->bytes, req->data, req->len);
            d->next = side->waiting;
            side->waiting = d;
            return UDPRR_DEFER;
        }
        /* No memory to keep it: answer at once instead. */
    }
    if (req->len > reply_cap - 32)
        return UDPRR_DECLINE;
    memcpy(reply, req->data, req->len);
    int n = snprintf((char *)reply + req->len, reply_cap - req->len,
                     " -> at once, turn %u", side->turn);
    *reply_len = req->len + (size_t)n;
    side->at_once++;
    return UDPRR_REPLY;
}

/* Answers every request deferred so far: called at the top of a turn,
 * before this turn's udprr_server_process (where the handler runs), so
 * all of them were deferred on an earlier turn. Returns how many.
 * udprr_server_reply only hands the answer over; the next
 * udprr_server_process sends it. */
static unsigned answer_deferred(struct server_side *side)
{
    unsigned answered = 0;
    while (side->waiting != NULL) {
        struct deferred *d = side->waiting;
        char reply[256];
        int n = snprintf(reply, sizeof reply,
                         "%.*s -> deferred on turn %u, answered on turn %u",
                         (int)(d->len > 160 ? 160 : d->len), d->bytes,
                         d->turn, side->turn);
        int rc = udprr_server_reply(side->server, d->token, reply, (size_t)n);
        if (rc != UDPRR_OK)
            fprintf(stderr, "one_loop: reply: %s\n", udprr_strerror(rc));
        else
            side->later++;
        side->waiting = d->next;
        free(d);
        answered++;
    }
    return answered;
}

static void forget_deferred(struct server_side *side)
{
    while (side->waiting != NULL) {
        struct deferred *d = side->waiting;
        side->waiting = d->next;
        free(d);
    }
}

/* --- the loop ------------------------------------------------------------ */

/* The earlier of two event-loop timeouts, where -1 means none. */
static int earlier(int a_ms, int b_ms)
{
    if (a_ms < 0)
        return b_ms;
    if (b_ms < 0)
        return a_ms;
    return a_ms < b_ms ? a_ms : b_ms;
}

/* Turns the loop until every request has ended. 0, or -1 after saying
 * why it stopped early. */
static int run_loop(struct server_side *srv, struct requests *cli,
                    const struct timespec *start)
{
    requests_send_more(cli);
    while (!requests_finished(cli)) {
        if (example_seconds_since(start) > RUN_LIMIT_S) {
            fprintf(stderr, "one_loop: gave up after %.0f s\n", RUN_LIMIT_S);
            return -1;
        }
        srv->turn++;
        unsigned answered = answer_deferred(srv);
        int timeout_ms = answered > 0
                             ? 0
                             : earlier(udprr_server_timeout_ms(srv->server),
                                       udprr_client_timeout_ms(cli->client));
        if (timeout_ms < 0) {
            /* Requests pending, yet no timer: nothing would wake us. */
            fprintf(stderr, "one_loop: %u requests never ended\n",
                    cli->count - cli->ended);
            return -1;
        }
        struct pollfd fds[2] = {
            {.fd = udprr_server_fd(srv->server), .events = POLLIN},
            {.fd = udprr_client_fd(cli->client), .events = POLLIN}};
        if (poll(fds, 2, timeout_ms) < 0 && errno != EINTR) {
            fprintf(stderr, "one_loop: poll: %s\n", strerror(errno));
            return -1;
        }
        /* Both every turn: a process with nothing to do returns at once,
         * and the server's must run after answers were given. */
        udprr_server_process(srv->server, serve, srv);
        udprr_client_process(cli->client);
        requests_send_more(cli);
    }
    return 0;
}

/* The port the server is bound to, as a string for udprr_client_open. */
static int server_port(const udprr_server *server, char *out, size_t cap)
{
    struct sockaddr_in addr;
    socklen_t len = sizeof addr;
    if (udprr_server_sockname(server, (struct sockaddr *)&addr, &len) !=
            UDPRR_OK ||
        addr.sin_family != AF_INET)
        return -1;
    snprintf(out, cap, "%u", (unsigned)ntohs(addr.sin_port));
    return 0;
}

static void print_stats(const udprr_server *server,
                        const udprr_client *client)
{
    struct udprr_client_stats c = {.size = sizeof c};
    struct udprr_server_stats s = {.size = sizeof s};
    udprr_client_stats(client, &c);
    udprr_server_stats(server, &s);
    printf("Client stats: requests %llu, completed %llu, attempts %llu, "
           "retransmissions %llu, timeouts %llu, declined %llu\n",
           (unsigned long long)c.requests, (unsigned long long)c.completed,
           (unsigned long long)c.attempts,
           (unsigned long long)c.retransmissions,
           (unsigned long long)c.timeouts, (unsigned long long)c.declined);
    printf("Server stats: received %llu, handled %llu, answered %llu, "
           "deferred %llu, deferred_answered %llu, deferred_pending %llu, "
           "deferred_retransmissions %llu, cache_hits %llu\n",
           (unsigned long long)s.received, (unsigned long long)s.handled,
           (unsigned long long)s.answered, (unsigned long long)s.deferred,
           (unsigned long long)s.deferred_answered,
           (unsigned long long)s.deferred_pending,
           (unsigned long long)s.deferred_retransmissions,
           (unsigned long long)s.cache_hits);
}

int main(int argc, char **argv)
{
    unsigned count = 100, window = 64;
    if (argc == 2 &&
        (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        usage(stdout);
        return 0;
    }
    if (argc > 3 ||
        (argc > 1 && example_parse_uint(argv[1], 1, MAX_COUNT, &count)) ||
        (argc > 2 && example_parse_uint(argv[2], 1, 65535, &window))) {
        usage(stderr);
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);

    struct server_side srv = {0};
    int rc = udprr_server_open(&srv.server, "127.0.0.1", "0", NULL);
    if (rc != UDPRR_OK) {
        fprintf(stderr, "one_loop: cannot serve: %s\n", udprr_strerror(rc));
        return 1;
    }
    char port[8];
    if (server_port(srv.server, port, sizeof port) != 0) {
        fprintf(stderr, "one_loop: the server's port is unknown\n");
        udprr_server_close(srv.server);
        return 1;
    }

    /* Request i is "request i"; the server's answer starts with it and
     * " -> " (requests.h's requests_text_bytes and requests_text_own). */
    struct requests cli;
    if (requests_init(&cli, "one_loop", count, requests_text_bytes,
                      requests_text_own) != 0) {
        udprr_server_close(srv.server);
        return 1;
    }
    udprr_client_opts opts;
    udprr_client_opts_init(&opts);
    opts.max_window = window;
    rc = udprr_client_open(&cli.client, "127.0.0.1", port, &opts);
    if (rc != UDPRR_OK) {
        fprintf(stderr, "one_loop: cannot reach 127.0.0.1 port %s: %s\n",
                port, udprr_strerror(rc));
        requests_free(&cli);
        udprr_server_close(srv.server);
        return 1;
    }
    printf("one_loop: server at 127.0.0.1:%s, %u requests, window %u\n",
           port, count, window);

    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    run_loop(&srv, &cli, &start);
    double seconds = example_seconds_since(&start);

    print_stats(srv.server, cli.client);
    printf("one_loop: %u requests, %u completed, %u failed, %u wrong "
           "replies; %llu handler calls: %llu answered at once, %llu "
           "deferred to a later turn; %u loop turns, %.3f s\n",
           cli.count, cli.completed, cli.failed, cli.wrong,
           (unsigned long long)srv.calls, (unsigned long long)srv.at_once,
           (unsigned long long)srv.later, srv.turn, seconds);

    /* The client first: its pending requests (none, unless the loop gave
     * up) end with UDPRR_ECANCELED. Then the server, which declines what
     * is still deferred; the copies kept for it are freed. */
    udprr_client_close(cli.client);
    udprr_server_close(srv.server);
    forget_deferred(&srv);
    return requests_free(&cli);
}
