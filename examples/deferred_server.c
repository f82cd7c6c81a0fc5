/* SPDX-License-Identifier: MIT */
/*
 * deferred_server.c - a server whose handler does not answer: it hands
 * each request to a pool of worker threads, which work on it for a while
 * and answer from their own thread, through the request's token.
 *
 * The handler copies the request's bytes and req->token into a job, queues
 * it for the workers and returns UDPRR_DEFER; a worker takes the job,
 * "works" WORK_MS milliseconds (a sleep stands in for a database query or
 * a call to another service) and gives the answer to udprr_server_reply.
 * The server's thread, in udprr_server_run, sends it (a reply given from
 * another thread wakes it through the server's descriptor).
 *
 * While a request is being worked on, its client may well retransmit it:
 * the client mode below waits only 10 ms for each attempt, well below the
 * 50 ms of work. Those retransmissions never reach the handler: the reply
 * cache holds the request as "in progress", the server drops them and
 * counts them in deferred_retransmissions, and the handler runs exactly
 * once per request. Retransmissions that come after the answer was sent
 * get it again from the cache (cache_hits).
 *
 *   deferred_server [--bind ADDR] [--seconds N] PORT [WORKERS] [WORK_MS]
 *   deferred_server client HOST PORT [COUNT] [WINDOW]
 *
 * SIGINT or SIGTERM stops the server: run returns, the workers finish the
 * job in their hands and are joined (before udprr_server_close, which must
 * not run while another thread may still call udprr_server_reply), the
 * answers they gave meanwhile are sent by one last udprr_server_process,
 * and the counters are printed. Jobs still queued are dropped: close
 * declines their requests, so their clients hear of it at once.
 *
 * Build: cc -pthread deferred_server.c $(pkg-config --cflags --libs udprr)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <udprr.h>

#include "example_util.h"
#include "requests.h"

#define MAX_WORKERS 64u
#define MAX_COUNT 1000000u

static void usage(FILE *out)
{
    fprintf(out,
            "usage: deferred_server [--bind ADDR] [--seconds N] PORT "
            "[WORKERS] [WORK_MS]\n"
            "       deferred_server client HOST PORT [COUNT] [WINDOW]\n"
            "\n"
            "server: answers each request from one of WORKERS threads\n"
            "        (1..%u, default 4) after WORK_MS milliseconds of\n"
            "        simulated work (default 50): the request's text and\n"
            "        \" -> worked N ms on worker W\". PORT 0 picks a free\n"
            "        port; --bind ADDR binds that address only (default:\n"
            "        every interface); --seconds N stops it after N seconds\n"
            "        (default: at SIGINT/SIGTERM). Prints its counters at\n"
            "        exit.\n"
            "client: sends COUNT requests (default 100, at most %u) at\n"
            "        once, at most WINDOW in flight (default 64), with a\n"
            "        fixed 10 ms RTO, so that requests are retransmitted\n"
            "        while the server works on them; checks that each reply\n"
            "        answers its own request. Exits 0 when every one did,\n"
            "        1 otherwise.\n",
            MAX_WORKERS, MAX_COUNT);
}

/* --- server -------------------------------------------------------------- */

/* What the reply adds after the request's bytes, at most. */
#define SUFFIX_MAX 64

/* One deferred request, from the handler to a worker. */
struct job {
    struct job *next;
    uint64_t token;
    size_t len;
    char bytes[]; /* the request's bytes, then room for SUFFIX_MAX more */
};

struct pool {
    udprr_server *server;
    unsigned work_ms;
    pthread_mutex_t lock;
    pthread_cond_t queued;   /* signalled when a job is queued, or stopping */
    struct job *head, *tail; /* FIFO, under lock */
    int stopping;            /* under lock */
    uint64_t replies_given;  /* udprr_server_reply said UDPRR_OK; under lock */
    uint64_t reply_failures; /* it did not; under lock */
};

struct worker {
    struct pool *pool;
    unsigned number; /* 1..WORKERS, for the reply's text */
    pthread_t thread;
};

/* The handler: runs on the server's thread, inside udprr_server_run. It
 * must not keep req->data, so the job takes a copy. */
static int take_request(void *user, const udprr_request *req, void *reply,
                        size_t reply_cap, size_t *reply_len)
{
    struct pool *pool = user;
    (void)reply;
    (void)reply_cap;
    (void)reply_len;
    /* Token 0: max_deferred requests wait for their answers already (or
     * the library had no memory for one more). Say no at once rather
     * than leave the client retrying. */
    if (req->token == 0)
        return UDPRR_DECLINE;
    struct job *job = malloc(sizeof *job + req->len + SUFFIX_MAX);
    if (job == NULL)
        return UDPRR_DECLINE;
    job->next = NULL;
    job->token = req->token;
    job->len = req->len;
    memcpy(job->bytes, req->data, req->len);

    pthread_mutex_lock(&pool->lock);
    if (pool->tail != NULL)
        pool->tail->next = job;
    else
        pool->head = job;
    pool->tail = job;
    pthread_cond_signal(&pool->queued);
    pthread_mutex_unlock(&pool->lock);
    return UDPRR_DEFER;
}

/* The simulated work: WORK_MS of nothing. */
static void work_for(unsigned ms)
{
    struct timespec left = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&left, &left) != 0 && errno == EINTR)
        ;
}

static void *work(void *arg)
{
    struct worker *w = arg;
    struct pool *pool = w->pool;
    for (;;) {
        pthread_mutex_lock(&pool->lock);
        while (pool->head == NULL && !pool->stopping)
            pthread_cond_wait(&pool->queued, &pool->lock);
        if (pool->stopping) {
            pthread_mutex_unlock(&pool->lock);
            return NULL;
        }
        struct job *job = pool->head;
        pool->head = job->next;
        if (pool->head == NULL)
            pool->tail = NULL;
        pthread_mutex_unlock(&pool->lock);

        work_for(pool->work_ms);

        int n = snprintf(job->bytes + job->len, SUFFIX_MAX,
                         " -> worked %u ms on worker %u", pool->work_ms,
                         w->number);
        size_t len = job->len + (size_t)n;
        if (len > UDPRR_MAX_PAYLOAD) /* a request near the largest */
            len = UDPRR_MAX_PAYLOAD;
        /* From this thread: the library queues the answer and wakes the
         * server's thread, which sends it and caches it. */
        int rc = udprr_server_reply(pool->server, job->token, job->bytes, len);
        if (rc != UDPRR_OK)
            fprintf(stderr, "deferred_server: worker %u: reply: %s\n",
                    w->number, udprr_strerror(rc));
        pthread_mutex_lock(&pool->lock);
        if (rc == UDPRR_OK)
            pool->replies_given++;
        else
            pool->reply_failures++;
        pthread_mutex_unlock(&pool->lock);
        free(job);
    }
}

/* Starts the workers with SIGINT, SIGTERM and SIGALRM blocked, so that
 * the signals that stop the server reach the main thread, never a worker
 * in the middle of its work. Returns how many started. */
static unsigned start_workers(struct worker *workers, unsigned count,
                              struct pool *pool)
{
    sigset_t stop_signals, old;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGALRM);
    pthread_sigmask(SIG_BLOCK, &stop_signals, &old);
    unsigned started = 0;
    for (; started < count; started++) {
        workers[started].pool = pool;
        workers[started].number = started + 1;
        int err = pthread_create(&workers[started].thread, NULL, work,
                                 &workers[started]);
        if (err != 0) {
            fprintf(stderr, "deferred_server: cannot start worker %u: %s\n",
                    started + 1, strerror(err));
            break;
        }
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return started;
}

/* Tells the workers to stop, waits for each to finish the job in its
 * hands, and frees the jobs nobody took. Returns how many those were. */
static uint64_t stop_workers(struct worker *workers, unsigned count,
                             struct pool *pool)
{
    pthread_mutex_lock(&pool->lock);
    pool->stopping = 1;
    pthread_cond_broadcast(&pool->queued);
    pthread_mutex_unlock(&pool->lock);
    for (unsigned i = 0; i < count; i++)
        pthread_join(workers[i].thread, NULL);
    uint64_t dropped = 0;
    while (pool->head != NULL) {
        struct job *job = pool->head;
        pool->head = job->next;
        free(job);
        dropped++;
    }
    pool->tail = NULL;
    return dropped;
}

static void print_server_stats(const udprr_server *server)
{
    struct udprr_server_stats s = {.size = sizeof s};
    udprr_server_stats(server, &s);
    printf("Server stats: received %llu, handled %llu, deferred %llu, "
           "deferred_answered %llu, deferred_retransmissions %llu, "
           "cache_hits %llu, answered %llu, declined %llu, "
           "deferred_pending %llu, deferred_expired %llu, "
           "deferred_refused %llu, dropped_malformed %llu\n",
           (unsigned long long)s.received, (unsigned long long)s.handled,
           (unsigned long long)s.deferred,
           (unsigned long long)s.deferred_answered,
           (unsigned long long)s.deferred_retransmissions,
           (unsigned long long)s.cache_hits, (unsigned long long)s.answered,
           (unsigned long long)s.declined,
           (unsigned long long)s.deferred_pending,
           (unsigned long long)s.deferred_expired,
           (unsigned long long)s.deferred_refused,
           (unsigned long long)s.dropped_malformed);
}

static int run_server(const char *bind_addr, const char *port,
                      unsigned nworkers, unsigned work_ms, unsigned seconds)
{
    udprr_server *server;
    int rc = udprr_server_open(&server, bind_addr, port, NULL);
    if (rc != UDPRR_OK) {
        fprintf(stderr, "deferred_server: cannot serve on port %s: %s\n",
                port, udprr_strerror(rc));
        return 1;
    }

    struct pool pool = {.server = server, .work_ms = work_ms};
    pthread_mutex_init(&pool.lock, NULL);
    pthread_cond_init(&pool.queued, NULL);
    struct worker workers[MAX_WORKERS];
    unsigned started = start_workers(workers, nworkers, &pool);
    if (started == nworkers) {
        example_print_listening_no_newline(server);
        printf(", %u worker%s, %u ms of work per request\n", nworkers,
               nworkers == 1 ? "" : "s", work_ms);
        fflush(stdout);
        example_stop_on_signals(server, seconds);
        rc = udprr_server_run(server, take_request, &pool);
        if (rc != UDPRR_OK)
            fprintf(stderr, "deferred_server: %s\n", udprr_strerror(rc));
        example_forget_signals();
    } else {
        rc = UDPRR_ESYS;
    }

    /* The header's order: no thread may call udprr_server_reply once
     * close has begun, so the workers are joined first. */
    uint64_t dropped = stop_workers(workers, started, &pool);
    /* A stopped server's process takes no more requests, but sends the
     * answers the workers gave since run returned, so that the counters
     * below count them (close would send them too). The stop is already
     * in place unless a worker failed to start. */
    udprr_server_stop(server);
    udprr_server_process(server, take_request, &pool);

    print_server_stats(server);
    printf("Workers: %llu answers given, %llu refused by the server; "
           "%llu requests still queued at the stop, declined by close\n",
           (unsigned long long)pool.replies_given,
           (unsigned long long)pool.reply_failures,
           (unsigned long long)dropped);
    fflush(stdout);
    udprr_server_close(server);
    pthread_cond_destroy(&pool.queued);
    pthread_mutex_destroy(&pool.lock);
    return rc == UDPRR_OK ? 0 : 1;
}

/* --- client -------------------------------------------------------------- */

/* Request i is "request i"; the server's answer starts with it and " -> "
 * (requests.h's requests_text_bytes and requests_text_own). */
static int run_client(const char *host, const char *port, unsigned count,
                      unsigned window)
{
    udprr_client_opts opts;
    udprr_client_opts_init(&opts);
    /* The textbook client with a short, fixed first wait: 10 ms, doubled
     * for each retransmission, whatever the round trips measure. */
    opts.initial_rto_ms = 10;
    opts.min_rto_ms = 10;
    opts.fixed_rto = 1;
    opts.max_window = window;
    struct requests rs;
    if (requests_init(&rs, "deferred_server client", count,
                      requests_text_bytes, requests_text_own) != 0)
        return 1;
    int rc = udprr_client_open(&rs.client, host, port, &opts);
    if (rc != UDPRR_OK) {
        fprintf(stderr, "deferred_server client: cannot reach %s port %s: "
                "%s\n", host, port, udprr_strerror(rc));
        requests_free(&rs);
        return 1;
    }
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);

    requests_send_more(&rs);
    /* Bounded: every request ends by the handle's deadline (10 s by
     * default) at the latest. */
    while (!requests_finished(&rs)) {
        int timeout_ms = udprr_client_timeout_ms(rs.client);
        if (timeout_ms < 0) {
            fprintf(stderr, "deferred_server client: %u requests never "
                    "ended\n", rs.count - rs.ended);
            break;
        }
        struct pollfd pfd = {.fd = udprr_client_fd(rs.client),
                             .events = POLLIN};
        if (poll(&pfd, 1, timeout_ms) < 0 && errno != EINTR) {
            fprintf(stderr, "deferred_server client: poll: %s\n",
                    strerror(errno));
            break;
        }
        udprr_client_process(rs.client);
        requests_send_more(&rs);
    }

    requests_close_no_newline(&rs, window, &start);
    printf("\n");
    fflush(stdout);
    return requests_free(&rs);
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"bind", required_argument, NULL, 'b'},
        {"seconds", required_argument, NULL, 'S'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    const char *bind_addr = NULL;
    unsigned seconds = 0;
    int opt;

    setvbuf(stdout, NULL, _IOLBF, 0);
    while ((opt = getopt_long(argc, argv, "b:S:h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'b': bind_addr = optarg; break;
        case 'S':
            if (example_parse_uint(optarg, 0, 86400, &seconds) != 0) {
                usage(stderr);
                return 2;
            }
            break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    char **args = argv + optind;
    int nargs = argc - optind;

    if (nargs >= 1 && strcmp(args[0], "client") == 0) {
        unsigned count = 100, window = 64;
        if (nargs < 3 || nargs > 5 ||
            (nargs > 3 && example_parse_uint(args[3], 1, MAX_COUNT, &count)) ||
            (nargs > 4 && example_parse_uint(args[4], 1, 65535, &window))) {
            usage(stderr);
            return 2;
        }
        return run_client(args[1], args[2], count, window);
    }

    unsigned nworkers = 4, work_ms = 50;
    if (nargs < 1 || nargs > 3 ||
        (nargs > 1 &&
         example_parse_uint(args[1], 1, MAX_WORKERS, &nworkers)) ||
        (nargs > 2 && example_parse_ms(args[2], &work_ms))) {
        usage(stderr);
        return 2;
    }
    return run_server(bind_addr, args[0], nworkers, work_ms, seconds);
}
