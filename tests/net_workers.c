/* SPDX-License-Identifier: MIT */
/*
 * net_workers.c - a server with several workers (udprr_server_opts.workers):
 * SO_REUSEPORT sockets on one address, each served on a thread of its own
 * with its own reply cache and deferred table.
 *
 * Which worker a client lands on is the kernel's choice (a hash of its
 * address and port), so the tests learn it instead of assuming it: the
 * handler reads the worker from the low bits of the request's token (the
 * worker that handed it out), and a test opens clients until every worker
 * has some, within a bound no healthy kernel comes near.
 *
 * Handlers run on the server's threads: they record what they see under a
 * lock and the test's thread asserts on it afterwards.
 */
#include <errno.h>
#include <stdatomic.h>

#include "netutil.h"
#include "testutil.h"

/* A token's low bits name its worker (lib/server.c). */
#define WORKER_MASK 63u

enum { MAX_CLIENTS = 32, MAX_REQUESTS = 4096 };

/* What the handler saw. Requests are "c:r" (client c, its request r),
 * numbered c * per_client + r. */
struct seen {
    pthread_mutex_t lock;
    unsigned per_client;
    unsigned calls[MAX_REQUESTS];  /* handler calls per request */
    int worker[MAX_REQUESTS];      /* which worker handled it */
    unsigned per_worker[UDPRR_MAX_WORKERS];
    unsigned total;
    unsigned bad;                  /* requests it could not parse */
    udprr_server *server;          /* set: answer through the token */
    unsigned token_failures;       /* udprr_server_reply that failed */
};

static void seen_init(struct seen *s, unsigned per_client)
{
    memset(s, 0, sizeof *s);
    pthread_mutex_init(&s->lock, NULL);
    s->per_client = per_client;
    for (unsigned i = 0; i < MAX_REQUESTS; i++)
        s->worker[i] = -1;
}

/* Echoes the request, recording which worker handled it; with a server
 * set, answers through the token from inside the handler and defers. */
static int recording_handler(void *user, const udprr_request *req,
                             void *reply, size_t cap, size_t *reply_len)
{
    struct seen *s = user;
    unsigned c, r;
    char text[32];
    size_t n = req->len < sizeof text - 1 ? req->len : sizeof text - 1;
    memcpy(text, req->data, n);
    text[n] = '\0';
    int worker = req->token != 0 ? (int)(req->token & WORKER_MASK) : -1;
    pthread_mutex_lock(&s->lock);
    if (sscanf(text, "%u:%u", &c, &r) != 2 || r >= s->per_client ||
        c * s->per_client + r >= MAX_REQUESTS || worker < 0) {
        s->bad++;
    } else {
        unsigned id = c * s->per_client + r;
        s->calls[id]++;
        s->worker[id] = worker;
        s->per_worker[worker]++;
        s->total++;
    }
    udprr_server *server = s->server;
    pthread_mutex_unlock(&s->lock);
    if (server != NULL) {
        if (udprr_server_reply(server, req->token, req->data, req->len) !=
            UDPRR_OK) {
            pthread_mutex_lock(&s->lock);
            s->token_failures++;
            pthread_mutex_unlock(&s->lock);
        }
        return UDPRR_DEFER;
    }
    if (req->len > cap)
        return UDPRR_DECLINE;
    memcpy(reply, req->data, req->len);
    *reply_len = req->len;
    return UDPRR_REPLY;
}

static int worker_of(struct seen *s, unsigned id)
{
    pthread_mutex_lock(&s->lock);
    int w = s->worker[id];
    pthread_mutex_unlock(&s->lock);
    return w;
}

/* Sends request r of client c and checks the echo. */
static void request_ok(udprr_client *cl, unsigned c, unsigned r)
{
    char req[32], reply[64];
    int len = snprintf(req, sizeof req, "%u:%u", c, r);
    size_t got = 0;
    ck_assert_int_eq(udprr_client_request(cl, req, (size_t)len, reply,
                                          sizeof reply, &got),
                     UDPRR_OK);
    ck_assert_uint_eq(got, (size_t)len);
    ck_assert_mem_eq(reply, req, (size_t)len);
}

static udprr_server_opts workers_opts(unsigned workers)
{
    udprr_server_opts so;
    udprr_server_opts_init(&so);
    so.workers = workers;
    return so;
}

/* Opens clients of port and sends each its request 0, until every one of
 * the n_workers workers has at least `each` of them (at most MAX_CLIENTS:
 * with a hash that spreads at all, far more than enough). Returns how many
 * were opened; client c's worker goes to worker[c]. */
static unsigned open_clients_on_every_worker(const char *port,
                                             const udprr_client_opts *o,
                                             struct seen *s,
                                             unsigned n_workers,
                                             unsigned each,
                                             udprr_client **clients,
                                             int *worker)
{
    unsigned n = 0, count[UDPRR_MAX_WORKERS] = {0}, covered = 0;
    while (covered < n_workers) {
        ck_assert_msg(n < MAX_CLIENTS,
                      "%u clients did not reach all %u workers", n,
                      n_workers);
        clients[n] = test_client_open(port, o);
        request_ok(clients[n], n, 0);
        worker[n] = worker_of(s, n * s->per_client);
        ck_assert_int_ge(worker[n], 0);
        ck_assert_int_lt(worker[n], (int)n_workers);
        if (++count[worker[n]] == each)
            covered++;
        n++;
    }
    return n;
}

/* --- every request answered once, the counters adding up ----------------- */

struct client_thread {
    pthread_t thread;
    udprr_client *client;
    unsigned index, from, to;
    unsigned ok; /* requests answered byte-exact */
};

static void *client_main(void *arg)
{
    struct client_thread *t = arg;
    for (unsigned r = t->from; r < t->to; r++) {
        char req[32], reply[64];
        int len = snprintf(req, sizeof req, "%u:%u", t->index, r);
        size_t got = 0;
        if (udprr_client_request(t->client, req, (size_t)len, reply,
                                 sizeof reply, &got) == UDPRR_OK &&
            got == (size_t)len && memcmp(reply, req, got) == 0)
            t->ok++;
    }
    return NULL;
}

START_TEST(test_two_workers_answer_every_request_once)
{
    enum { PER_CLIENT = 100 };
    static struct seen seen;
    seen_init(&seen, PER_CLIENT);
    udprr_server_opts so = workers_opts(2);
    struct fixture_server ts;
    test_server_start(&ts, "127.0.0.1", &so, recording_handler, &seen);

    /* Each client its own socket, so its own source port: at least two
     * on each worker. */
    udprr_client *clients[MAX_CLIENTS];
    int worker[MAX_CLIENTS];
    unsigned n = open_clients_on_every_worker(ts.port, NULL, &seen, 2, 2,
                                              clients, worker);
    /* Then all at once, each from a thread of its own. */
    static struct client_thread threads[MAX_CLIENTS];
    for (unsigned c = 0; c < n; c++) {
        threads[c] = (struct client_thread){.client = clients[c], .index = c,
                                            .from = 1, .to = PER_CLIENT};
        ck_assert_int_eq(pthread_create(&threads[c].thread, NULL,
                                        client_main, &threads[c]),
                         0);
    }
    uint64_t sent = 0;
    for (unsigned c = 0; c < n; c++) {
        ck_assert_int_eq(pthread_join(threads[c].thread, NULL), 0);
        ck_assert_uint_eq(threads[c].ok, PER_CLIENT - 1);
        struct udprr_client_stats cs = test_client_stats(clients[c]);
        sent += cs.attempts;
        udprr_client_close(clients[c]);
    }
    struct udprr_server_stats ss;
    test_server_stop(&ts, &ss);

    /* Once each, and every request of a client on its client's worker. */
    ck_assert_uint_eq(seen.bad, 0);
    ck_assert_uint_eq(seen.total, n * PER_CLIENT);
    for (unsigned c = 0; c < n; c++)
        for (unsigned r = 0; r < PER_CLIENT; r++) {
            ck_assert_uint_eq(seen.calls[c * PER_CLIENT + r], 1);
            ck_assert_int_eq(seen.worker[c * PER_CLIENT + r], worker[c]);
        }
    ck_assert_uint_gt(seen.per_worker[0], 0);
    ck_assert_uint_gt(seen.per_worker[1], 0);
    /* The stats are both workers' together. */
    ck_assert_uint_eq(ss.handled, n * PER_CLIENT);
    /* Every datagram the server took was a client's transmission (a late
     * retransmission may still sit in a socket at the stop). */
    ck_assert_uint_le(ss.received, sent);
    ck_assert_uint_eq(ss.received, ss.handled + ss.cache_hits);
    ck_assert_uint_eq(ss.answered, ss.received);
    ck_assert_uint_eq(ss.cache_entries, n * PER_CLIENT);
    ck_assert_uint_eq(ss.uncached, 0);
    ck_assert_uint_eq(ss.declined, 0);
    pthread_mutex_destroy(&seen.lock);
}
END_TEST

/* --- retransmissions find the worker that cached the reply ---------------- */

START_TEST(test_retransmissions_reach_the_worker_that_cached_the_reply)
{
    enum { PER_CLIENT = 40 };
    static struct seen seen;
    seen_init(&seen, PER_CLIENT);
    udprr_server_opts so = workers_opts(2);
    struct fixture_server ts;
    test_server_start(&ts, "127.0.0.1", &so, recording_handler, &seen);

    udprr_client_opts o;
    udprr_client_opts_init(&o);
    o.initial_rto_ms = 20;
    o.min_rto_ms = 2;
    o.max_rto_ms = 80;
    o.deadline_ms = 0;
    o.max_attempts = 0; /* until it works: bounded by Check's timeout */

    /* One relay per client (a relay answers whoever spoke last), each
     * dropping half the replies: the server sees each relay's socket as
     * one client, whose retransmissions must come back to the worker
     * that holds its answers. Pairs are added until both workers have
     * had some. */
    unsigned n = 0;
    int on_worker[2] = {0, 0};
    uint64_t sent = 0, dropped = 0;
    while (n < 4 || !on_worker[0] || !on_worker[1]) {
        ck_assert_msg(n < MAX_CLIENTS, "%u relays did not reach both workers",
                      n);
        char port[16];
        struct impair_config lossy = {.drop_permille = 500};
        struct relay *relay =
            test_relay_in_front(&ts, NULL, &lossy, 20261130 + n, port);
        udprr_client *c = test_client_open(port, &o);
        for (unsigned r = 0; r < PER_CLIENT; r++)
            request_ok(c, n, r);
        int w = worker_of(&seen, n * PER_CLIENT);
        ck_assert(w == 0 || w == 1);
        on_worker[w] = 1;
        sent += test_client_stats(c).attempts;
        udprr_client_close(c);
        struct relay_stats rs;
        relay_stop(relay, &rs);
        dropped += rs.to_client.impair.dropped;
        n++;
    }
    struct udprr_server_stats ss;
    test_server_stop(&ts, &ss);

    ck_assert_uint_gt(dropped, 0);
    ck_assert_uint_gt(sent, n * PER_CLIENT); /* replies were lost */
    ck_assert_uint_eq(seen.bad, 0);
    for (unsigned c = 0; c < n; c++)
        for (unsigned r = 0; r < PER_CLIENT; r++) {
            ck_assert_uint_eq(seen.calls[c * PER_CLIENT + r], 1);
            ck_assert_int_eq(seen.worker[c * PER_CLIENT + r],
                             seen.worker[c * PER_CLIENT]);
        }
    /* A retransmission that reached the other worker would have run the
     * handler again there: handled counts distinct requests only, and
     * every other datagram was answered from the right cache. */
    ck_assert_uint_eq(ss.handled, n * PER_CLIENT);
    ck_assert_uint_gt(ss.cache_hits, 0);
    ck_assert_uint_eq(ss.received, ss.handled + ss.cache_hits);
    ck_assert_uint_eq(ss.answered, ss.received);
    pthread_mutex_destroy(&seen.lock);
}
END_TEST

/* --- stop ------------------------------------------------------------------ */

START_TEST(test_stop_stops_every_worker)
{
    static struct seen seen;
    seen_init(&seen, 4);
    udprr_server_opts so = workers_opts(2);
    struct fixture_server ts;
    test_server_start(&ts, "127.0.0.1", &so, recording_handler, &seen);
    udprr_client_opts o;
    udprr_client_opts_init(&o);
    o.deadline_ms = 300;
    udprr_client *clients[MAX_CLIENTS];
    int worker[MAX_CLIENTS];
    unsigned n = open_clients_on_every_worker(ts.port, &o, &seen, 2, 1,
                                              clients, worker);

    /* run returns (the fixture's thread joins) only once every worker's
     * thread has returned. */
    udprr_server_stop(ts.server);
    ck_assert_int_eq(pthread_join(ts.thread, NULL), 0);
    ck_assert_int_eq(ts.run_status, UDPRR_OK);
    unsigned before = seen.total;
    /* No worker takes requests any more: each client, whichever worker it
     * had, waits out its deadline. */
    for (unsigned c = 0; c < n; c++) {
        char reply[16];
        size_t got;
        ck_assert_int_eq(udprr_client_request(clients[c], "0:1", 3, reply,
                                              sizeof reply, &got),
                         UDPRR_ETIMEDOUT);
        udprr_client_close(clients[c]);
    }
    ck_assert_uint_eq(seen.total, before);
    /* A stopped server stays stopped: a second run returns at once. */
    ck_assert_int_eq(udprr_server_run(ts.server, recording_handler, &seen),
                     UDPRR_OK);
    ck_assert_uint_eq(seen.total, before);
    struct udprr_server_stats ss = {.size = sizeof ss};
    ck_assert_int_eq(udprr_server_stats(ts.server, &ss), UDPRR_OK);
    ck_assert_uint_eq(ss.handled, n);
    udprr_server_close(ts.server);
    pthread_mutex_destroy(&seen.lock);
}
END_TEST

START_TEST(test_stop_before_run_returns_at_once)
{
    udprr_server_opts so = workers_opts(4);
    udprr_server *s = NULL;
    ck_assert_int_eq(udprr_server_open(&s, "127.0.0.1", "0", &so), UDPRR_OK);
    udprr_server_stop(s);
    ck_assert_int_eq(udprr_server_run(s, test_echo_handler, NULL), UDPRR_OK);
    udprr_server_close(s);
}
END_TEST

/* --- deferred answers through the worker's token --------------------------- */

START_TEST(test_tokens_take_answers_to_their_worker)
{
    enum { PER_CLIENT = 20 };
    static struct seen seen;
    seen_init(&seen, PER_CLIENT);
    udprr_server_opts so = workers_opts(2);
    udprr_server *s = NULL;
    ck_assert_int_eq(udprr_server_open(&s, "127.0.0.1", "0", &so), UDPRR_OK);
    seen.server = s; /* the handler answers through the token */
    struct fixture_server ts;
    test_server_serve(&ts, s, recording_handler, &seen);

    udprr_client *clients[MAX_CLIENTS];
    int worker[MAX_CLIENTS];
    unsigned n = open_clients_on_every_worker(ts.port, NULL, &seen, 2, 1,
                                              clients, worker);
    for (unsigned c = 0; c < n; c++) {
        for (unsigned r = 1; r < PER_CLIENT; r++)
            request_ok(clients[c], c, r);
        udprr_client_close(clients[c]);
    }
    /* A token naming no worker, or one never handed out, names nothing. */
    ck_assert_int_eq(udprr_server_reply(s, 5, "x", 1), UDPRR_ENOTPENDING);
    ck_assert_int_eq(udprr_server_reply(s, (uint64_t)1 << 40, "x", 1),
                     UDPRR_ENOTPENDING);
    ck_assert_int_eq(udprr_server_decline(s, 0), UDPRR_ENOTPENDING);
    struct udprr_server_stats ss;
    test_server_stop(&ts, &ss);

    ck_assert_uint_eq(seen.token_failures, 0);
    ck_assert_uint_eq(seen.bad, 0);
    ck_assert_uint_eq(seen.total, n * PER_CLIENT);
    for (unsigned c = 0; c < n; c++)
        for (unsigned r = 0; r < PER_CLIENT; r++)
            ck_assert_int_eq(seen.worker[c * PER_CLIENT + r], worker[c]);
    ck_assert_uint_eq(ss.deferred, n * PER_CLIENT);
    ck_assert_uint_eq(ss.deferred_answered, n * PER_CLIENT);
    ck_assert_uint_eq(ss.deferred_pending, 0);
    ck_assert_uint_eq(ss.handled, n * PER_CLIENT);
    pthread_mutex_destroy(&seen.lock);
}
END_TEST

/* --- the option itself ----------------------------------------------------- */

START_TEST(test_workers_are_for_run_alone)
{
    udprr_server_opts so = workers_opts(2);
    udprr_server *s = NULL;
    ck_assert_int_eq(udprr_server_open(&s, "127.0.0.1", "0", &so), UDPRR_OK);
    ck_assert_int_eq(udprr_server_fd(s), -1);
    ck_assert_int_eq(udprr_server_timeout_ms(s), -1);
    ck_assert_int_eq(udprr_server_process(s, test_echo_handler, NULL),
                     UDPRR_EINVAL);
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    ck_assert_int_eq(udprr_server_sockname(s, (struct sockaddr *)&ss, &len),
                     UDPRR_OK);
    ck_assert_uint_ne(ntohs(((struct sockaddr_in *)&ss)->sin_port), 0);
    udprr_server_close(s);
}
END_TEST

START_TEST(test_workers_option_range)
{
    udprr_server *s = NULL;
    udprr_server_opts so = workers_opts(UDPRR_MAX_WORKERS + 1);
    ck_assert_int_eq(udprr_server_open(&s, "127.0.0.1", "0", &so),
                     UDPRR_EINVAL);
    ck_assert_ptr_null(s);
    /* Zero is the default: one worker, the event-loop API available. */
    so = workers_opts(0);
    ck_assert_int_eq(udprr_server_open(&s, "127.0.0.1", "0", &so), UDPRR_OK);
    ck_assert_int_ge(udprr_server_fd(s), 0);
    udprr_server_close(s);
    so = workers_opts(UDPRR_MAX_WORKERS);
    ck_assert_int_eq(udprr_server_open(&s, NULL, "0", &so), UDPRR_OK);
    udprr_server_close(s);
}
END_TEST

START_TEST(test_workers_bind_a_port_in_use_fails)
{
    /* Only sockets that all ask for SO_REUSEPORT share a port: a port a
     * plain socket holds is refused, and nothing is left open. */
    char port[16];
    int fd = test_plain_socket("127.0.0.1", port);
    udprr_server_opts so = workers_opts(2);
    udprr_server *s = NULL;
    ck_assert_int_eq(udprr_server_open(&s, "127.0.0.1", port, &so),
                     UDPRR_ESYS);
    ck_assert_int_eq(errno, EADDRINUSE);
    ck_assert_ptr_null(s);
    close(fd);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("net_workers");
    TCase *tc = tcase_create("workers");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_two_workers_answer_every_request_once);
    tcase_add_test(tc, test_retransmissions_reach_the_worker_that_cached_the_reply);
    tcase_add_test(tc, test_stop_stops_every_worker);
    tcase_add_test(tc, test_stop_before_run_returns_at_once);
    tcase_add_test(tc, test_tokens_take_answers_to_their_worker);
    tcase_add_test(tc, test_workers_are_for_run_alone);
    tcase_add_test(tc, test_workers_option_range);
    tcase_add_test(tc, test_workers_bind_a_port_in_use_fails);
    suite_add_tcase(s, tc);
    return udprr_test_run(s);
}
