/* SPDX-License-Identifier: MIT */
/*
 * net_deferred.c - the server's deferred answers (UDPRR_DEFER, tokens,
 * udprr_server_reply/_decline) and the server in the program's own event
 * loop (udprr_server_fd/_timeout_ms/_process), over real sockets on
 * loopback:
 *
 *   - answers from worker threads long after the client's RTO, through the
 *     seeded impairment relay: each request runs the handler once and gets
 *     its own reply, and the retransmissions that came while the work ran
 *     are counted and dropped;
 *   - answers from the server's own thread: from inside the handler, from
 *     a later handler call, and on a later turn of the program's loop;
 *   - declines through the token, token expiry, the deferred maximum,
 *     unknown and spent tokens, answers too big;
 *   - one thread, one poll loop driving a server and a client; the
 *     server's descriptor woken by an answer from another thread;
 *   - a deferred request's retransmissions dropped, never handled again,
 *     after a flood of answers has evicted everything from a small reply
 *     cache;
 *   - a stopped server's descriptor quiet with datagrams on its socket,
 *     woken by an answer still;
 *   - stop from a signal handler while requests are deferred, then close
 *     (valgrind in make check watches for leaks);
 *   - the counters read from another thread while the server runs.
 *
 * Check's assertions run on the test's own thread only: handlers on a
 * server thread and the worker threads record what they saw, and the test
 * asserts on it afterwards. Every wait is bounded (WAIT_MS, far above what
 * any test needs). The only sleeps are the workers' "work", which must
 * make time pass so that the client retransmits; no result depends on how
 * long they last.
 */
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>

#include "impair.h"
#include "netutil.h"
#include "relay.h"
#include "testutil.h"

#define MS 1000ull

/* The bound on every wait for a condition. */
#define WAIT_MS 60000

/* The most request bytes a test keeps, and the most requests per test. */
enum { REQ_MAX = 96, BOX_MAX = 64, WORKERS_MAX = 4 };

/* --- small helpers ------------------------------------------------------- */

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
        ;
}

static struct udprr_server_stats server_stats(const udprr_server *s)
{
    struct udprr_server_stats st = {.size = sizeof st};
    ck_assert_int_eq(udprr_server_stats(s, &st), UDPRR_OK);
    return st;
}

static udprr_server *open_server(const udprr_server_opts *opts)
{
    udprr_server *s = NULL;
    ck_assert_int_eq(udprr_server_open(&s, "127.0.0.1", "0", opts), UDPRR_OK);
    ck_assert_ptr_nonnull(s);
    return s;
}

/* The port a server listens on, as udprr_client_open takes it. */
static void server_port(const udprr_server *s, char port[16])
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    ck_assert_int_eq(udprr_server_sockname(s, (struct sockaddr *)&ss, &len),
                     UDPRR_OK);
    ck_assert_int_eq(ss.ss_family, AF_INET);
    snprintf(port, 16, "%u", ntohs(((struct sockaddr_in *)&ss)->sin_port));
}

/* The defaults with a deadline no test reaches unless the library hangs. */
static udprr_client_opts patient_opts(void)
{
    udprr_client_opts opts;
    udprr_client_opts_init(&opts);
    opts.deadline_ms = WAIT_MS;
    return opts;
}

/* patient_opts with a fixed 5 ms RTO: retransmits all along a request's
 * wait for a deferred answer. */
static udprr_client_opts eager_opts(void)
{
    udprr_client_opts opts = patient_opts();
    opts.initial_rto_ms = 5;
    opts.min_rto_ms = 1;
    opts.max_rto_ms = 5;
    opts.fixed_rto = 1;
    opts.backoff_pct = 100;
    opts.jitter_pct = 0;
    return opts;
}

/* patient_opts with a fixed RTO longer than any test: nothing is
 * retransmitted, so the server's counts are exact. */
static udprr_client_opts quiet_opts(void)
{
    udprr_client_opts opts = patient_opts();
    opts.initial_rto_ms = opts.min_rto_ms = opts.max_rto_ms = 30000;
    opts.fixed_rto = 1;
    return opts;
}

/* A request names its index: "<kind>:<index>:" and filler bytes, whose
 * number differs from one index to the next, so a reply given to the
 * wrong request shows in its length as well as its bytes. */
static size_t make_request(unsigned char *out, size_t cap, const char *kind,
                           unsigned index)
{
    int n = snprintf((char *)out, cap, "%s:%u:", kind, index);
    ck_assert_int_gt(n, 0);
    size_t len = (size_t)n + (index * 7) % 23;
    ck_assert_uint_le(len, cap);
    for (size_t j = (size_t)n; j < len; j++)
        out[j] = (unsigned char)('a' + (index + j) % 26);
    return len;
}

/* The answer every test gives to a request: "ans:" and its bytes. */
static size_t make_answer(unsigned char *out, size_t cap, const void *req,
                          size_t len)
{
    if (len + 4 > cap)
        return 0;
    memcpy(out, "ans:", 4);
    memcpy(out + 4, req, len);
    return len + 4;
}

/* The kind and index a request names; 0 when it names none. */
static int parse_request(const void *data, size_t len, char kind[16],
                         unsigned *index)
{
    char text[REQ_MAX + 1];
    if (len > REQ_MAX)
        return 0;
    memcpy(text, data, len);
    text[len] = '\0';
    const char *colon = strchr(text, ':');
    if (colon == NULL || colon == text || (size_t)(colon - text) >= 16)
        return 0;
    memcpy(kind, text, (size_t)(colon - text));
    kind[colon - text] = '\0';
    char *end;
    unsigned long i = strtoul(colon + 1, &end, 10);
    if (end == colon + 1 || *end != ':' || i >= BOX_MAX)
        return 0;
    *index = (unsigned)i;
    return 1;
}

/* --- the client's side --------------------------------------------------- */

/* What one request's done callback saw. Done callbacks run on the test's
 * thread (inside udprr_client_process), so they may assert. */
struct outcome {
    unsigned calls; /* must end as exactly 1 */
    int status;
    size_t reply_len;
    unsigned char reply[128];
    const void *expect; /* when set: the reply must be these bytes */
    size_t expect_len;
    int matched;        /* the reply was expect[0..expect_len) */
};

static unsigned done_calls; /* every done callback of the test */

static void on_done(void *user, int status, const void *reply, size_t len)
{
    struct outcome *o = user;
    o->calls++;
    done_calls++;
    o->status = status;
    o->reply_len = len;
    if (status != UDPRR_OK) {
        ck_assert_ptr_null(reply);
        ck_assert_uint_eq(len, 0);
        return;
    }
    if (len > 0)
        ck_assert_ptr_nonnull(reply);
    memcpy(o->reply, reply, len < sizeof o->reply ? len : sizeof o->reply);
    o->matched = o->expect != NULL && len == o->expect_len &&
                 (len == 0 || memcmp(reply, o->expect, len) == 0);
}

static void send_request(udprr_client *c, const void *req, size_t len,
                         struct outcome *o)
{
    ck_assert_int_eq(udprr_client_send(c, req, len, on_done, o), UDPRR_OK);
}

static void assert_answered(const struct outcome *o, unsigned index)
{
    ck_assert_msg(o->calls == 1, "request %u: done ran %u times", index,
                  o->calls);
    ck_assert_msg(o->status == UDPRR_OK, "request %u ended with %s", index,
                  udprr_status_name(o->status));
    ck_assert_msg(o->matched, "request %u got a reply not its own", index);
}

static void assert_declined(const struct outcome *o, unsigned index)
{
    ck_assert_msg(o->calls == 1, "request %u: done ran %u times", index,
                  o->calls);
    ck_assert_msg(o->status == UDPRR_EREMOTE, "request %u ended with %s",
                  index, udprr_status_name(o->status));
}

/* Sends request `index` of `kind` (make_request, built in req). With
 * ans, the outcome expects the answer every test gives (make_answer,
 * built in ans). */
static void send_numbered(udprr_client *c, const char *kind, unsigned index,
                          unsigned char req[REQ_MAX],
                          unsigned char ans[REQ_MAX + 4], struct outcome *o)
{
    size_t len = make_request(req, REQ_MAX, kind, index);
    if (ans != NULL) {
        o->expect = ans;
        o->expect_len = make_answer(ans, REQ_MAX + 4, req, len);
    }
    send_request(c, req, len, o);
}

/* Requests "req:0:" to "req:<n-1>:" (with ans: each expecting its
 * answer). */
static void send_numbered_all(udprr_client *c, unsigned char (*req)[REQ_MAX],
                              unsigned char (*ans)[REQ_MAX + 4],
                              struct outcome *o, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        send_numbered(c, "req", i, req[i], ans != NULL ? ans[i] : NULL,
                      &o[i]);
}

static void assert_all_answered(const struct outcome *o, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        assert_answered(&o[i], i);
}

typedef int (*until_fn)(void *arg);

/* test_pump_until (netutil.h), polling at most 20 ms at a time so that a condition
 * set by another thread (the server runs elsewhere) is seen soon. */
static int pump_until(udprr_client *c, until_fn until, void *arg,
                      unsigned timeout_ms)
{
    return test_pump_until(c, until, arg, timeout_ms, 20);
}

static int has_run(void *arg)
{
    return ((const struct outcome *)arg)->calls > 0;
}

static int done_reached(void *arg)
{
    return done_calls >= *(const unsigned *)arg;
}

/* Pumps the client until n done callbacks of the test have run. */
static void await_done(udprr_client *c, unsigned n)
{
    ck_assert_msg(pump_until(c, done_reached, &n, WAIT_MS),
                  "only %u of %u requests ended", done_calls, n);
}

/* Pumps the client until o[0..n) have ended; each got its answer. */
static void await_answered(udprr_client *c, const struct outcome *o,
                           unsigned n)
{
    await_done(c, n);
    assert_all_answered(o, n);
}

/* The server's deferred counters once nothing waits: `handled` requests
 * ran the handler, `deferred` of them were deferred, `answered` of those
 * answered, and none is pending. */
static void assert_deferred_end(const struct udprr_server_stats *ss,
                                uint64_t handled, uint64_t deferred,
                                uint64_t answered)
{
    ck_assert_uint_eq(ss->handled, handled);
    ck_assert_uint_eq(ss->deferred, deferred);
    ck_assert_uint_eq(ss->deferred_answered, answered);
    ck_assert_uint_eq(ss->deferred_pending, 0);
}

/* --- the server's side: a handler that hands requests over --------------- */

/* What the handler saw of one deferred request. */
struct deferral {
    uint64_t token;
    unsigned index;
    size_t len;
    unsigned char data[REQ_MAX];
    int inside_rc, inside_again_rc; /* answers given from inside the call */
};

/* Requests handed from the handler (on the server's thread) to the test or
 * to workers. Everything under `lock`. */
struct box {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    udprr_server *s;
    struct deferral d[BOX_MAX]; /* in the order the handler saw them */
    unsigned count;             /* deferrals in d */
    unsigned taken;             /* by workers */
    unsigned calls[BOX_MAX];    /* handler calls per request index */
    unsigned handler_calls;
    unsigned zero_tokens;       /* calls that saw token 0 */
    unsigned bad;               /* requests the handler could not place */
    int quit;                   /* workers: stop once the box is empty */
};

static void box_init(struct box *b)
{
    memset(b, 0, sizeof *b);
    ck_assert_int_eq(pthread_mutex_init(&b->lock, NULL), 0);
    ck_assert_int_eq(pthread_cond_init(&b->cond, NULL), 0);
}

static void box_destroy(struct box *b)
{
    pthread_cond_destroy(&b->cond);
    pthread_mutex_destroy(&b->lock);
}

/* Defers every request, copied into the box. Kinds:
 *   req        deferred; the test or a worker answers it later;
 *   inreply    answered from inside the call, then answered again (which
 *              must fail), then UDPRR_DEFER;
 *   indecline  declined from inside the call, then UDPRR_DEFER. */
static int box_handler(void *user, const udprr_request *req, void *reply,
                       size_t cap, size_t *reply_len)
{
    (void)reply;
    (void)cap;
    (void)reply_len;
    struct box *b = user;
    char kind[16];
    unsigned index;
    pthread_mutex_lock(&b->lock);
    b->handler_calls++;
    if (!parse_request(req->data, req->len, kind, &index) ||
        b->count == BOX_MAX) {
        b->bad++;
        pthread_mutex_unlock(&b->lock);
        return UDPRR_DECLINE;
    }
    b->calls[index]++;
    if (req->token == 0)
        b->zero_tokens++;
    struct deferral *d = &b->d[b->count];
    d->token = req->token;
    d->index = index;
    d->len = req->len;
    memcpy(d->data, req->data, req->len);
    if (strcmp(kind, "inreply") == 0) {
        unsigned char ans[REQ_MAX + 4];
        size_t n = make_answer(ans, sizeof ans, req->data, req->len);
        d->inside_rc = udprr_server_reply(b->s, req->token, ans, n);
        d->inside_again_rc = udprr_server_reply(b->s, req->token, "x", 1);
    } else if (strcmp(kind, "indecline") == 0) {
        d->inside_rc = udprr_server_decline(b->s, req->token);
        d->inside_again_rc = udprr_server_decline(b->s, req->token);
    } else if (strcmp(kind, "req") != 0) {
        b->bad++;
    }
    b->count++;
    pthread_cond_broadcast(&b->cond);
    pthread_mutex_unlock(&b->lock);
    return UDPRR_DEFER;
}

struct box_wait {
    struct box *b;
    unsigned count;
};

static int box_reached(void *arg)
{
    struct box_wait *w = arg;
    pthread_mutex_lock(&w->b->lock);
    int reached = w->b->count >= w->count;
    pthread_mutex_unlock(&w->b->lock);
    return reached;
}

/* Pumps the client until the handler has deferred `count` requests. */
static void await_deferrals(udprr_client *c, struct box *b, unsigned count)
{
    struct box_wait w = {b, count};
    ck_assert_msg(pump_until(c, box_reached, &w, WAIT_MS),
                  "the handler saw %u of %u requests", b->count, count);
}

/* The deferral of request `index` (copied under the lock). */
static struct deferral deferral_of(struct box *b, unsigned index)
{
    struct deferral d;
    int found = 0;
    pthread_mutex_lock(&b->lock);
    for (unsigned i = 0; i < b->count; i++) {
        if (b->d[i].index == index) {
            d = b->d[i];
            found = 1;
            break;
        }
    }
    pthread_mutex_unlock(&b->lock);
    ck_assert_msg(found, "request %u never reached the handler", index);
    return d;
}

/* Answers a deferral as every test does: "ans:" and the request. */
static int answer(udprr_server *s, const struct deferral *d)
{
    unsigned char ans[REQ_MAX + 4];
    size_t n = make_answer(ans, sizeof ans, d->data, d->len);
    return udprr_server_reply(s, d->token, ans, n);
}

/* An empty box, and a server with box_handler on a thread
 * (udprr_server_run). */
static void start_box_server(struct fixture_server *ts, struct box *b,
                             const udprr_server_opts *opts)
{
    box_init(b);
    b->s = open_server(opts);
    test_server_serve(ts, b->s, box_handler, b);
}

/* start_box_server, and a client of that server (NULL copts: the
 * library's defaults). */
static udprr_client *start_box_test(struct fixture_server *ts, struct box *b,
                                    const udprr_server_opts *sopts,
                                    const udprr_client_opts *copts)
{
    start_box_server(ts, b, sopts);
    return test_client_open(ts->port, copts);
}

/* --- worker threads ------------------------------------------------------ */

struct workers {
    struct box *b;
    pthread_t threads[WORKERS_MAX];
    unsigned n;
    unsigned work_ms;            /* each job's "work" */
    int await_retransmission;    /* the first job also waits, bounded, until
                                    the server has counted a retransmission
                                    of a deferred request */
    unsigned skip_every;         /* nonzero: index % skip_every ==
                                    skip_every - 1 is never answered */
    int reply_rc[BOX_MAX];       /* per index, under b->lock */
    unsigned answered;           /* under b->lock */
};

static void *worker_main(void *arg)
{
    struct workers *w = arg;
    struct box *b = w->b;
    for (;;) {
        pthread_mutex_lock(&b->lock);
        while (!b->quit && b->taken == b->count)
            pthread_cond_wait(&b->cond, &b->lock);
        if (b->taken == b->count) {
            pthread_mutex_unlock(&b->lock);
            return NULL;
        }
        unsigned job = b->taken++;
        struct deferral d = b->d[job];
        pthread_mutex_unlock(&b->lock);

        if (w->skip_every != 0 &&
            d.index % w->skip_every == w->skip_every - 1)
            continue;
        sleep_ms(w->work_ms);
        if (job == 0 && w->await_retransmission) {
            for (unsigned i = 0; i < WAIT_MS; i++) {
                struct udprr_server_stats st = {.size = sizeof st};
                if (udprr_server_stats(b->s, &st) != UDPRR_OK ||
                    st.deferred_retransmissions > 0)
                    break;
                sleep_ms(1);
            }
        }
        int rc = answer(b->s, &d);
        pthread_mutex_lock(&b->lock);
        w->reply_rc[d.index] = rc;
        w->answered++;
        pthread_mutex_unlock(&b->lock);
    }
}

static void workers_start(struct workers *w, struct box *b, unsigned n,
                          unsigned work_ms)
{
    ck_assert_uint_le(n, WORKERS_MAX);
    w->b = b;
    w->n = n;
    w->work_ms = work_ms;
    for (unsigned i = 0; i < BOX_MAX; i++)
        w->reply_rc[i] = 12345; /* never answered */
    for (unsigned i = 0; i < n; i++)
        ck_assert_int_eq(pthread_create(&w->threads[i], NULL, worker_main, w),
                         0);
}

/* Lets the workers finish what is in the box, and joins them. */
static void workers_stop(struct workers *w)
{
    pthread_mutex_lock(&w->b->lock);
    w->b->quit = 1;
    pthread_cond_broadcast(&w->b->cond);
    pthread_mutex_unlock(&w->b->lock);
    for (unsigned i = 0; i < w->n; i++)
        ck_assert_int_eq(pthread_join(w->threads[i], NULL), 0);
}

/* --- answers from workers, through loss, duplication, reordering -------- */

enum { RELAY_N = 24 };

/* Whether the relay seeded with `seed` drops, duplicates and holds back at
 * least one of the first n datagrams each way. Each direction sees at
 * least RELAY_N datagrams (every request's first transmission; every
 * request's first answer), and datagram i's fate depends on the seed and
 * i alone (impair.h), so with such a seed the impairments happen whatever
 * the timing. */
static int seed_impairs_both_ways(uint64_t seed,
                                  const struct impair_config *cfg, unsigned n)
{
    uint64_t seeds[2] = {seed, ~seed}; /* to_server, to_client (relay.h) */
    for (unsigned way = 0; way < 2; way++) {
        struct impair imp;
        impair_init(&imp, cfg, seeds[way]);
        for (unsigned i = 0; i < n; i++)
            impair_decide(&imp, 64);
        if (imp.counters.dropped == 0 || imp.counters.duplicated == 0 ||
            imp.counters.reordered == 0)
            return 0;
    }
    return 1;
}

static uint64_t pick_seed(uint64_t base, const struct impair_config *cfg,
                          unsigned n)
{
    for (uint64_t seed = base; seed < base + 1000; seed++)
        if (seed_impairs_both_ways(seed, cfg, n))
            return seed;
    ck_abort_msg("no seed from %llu impairs both ways",
                 (unsigned long long)base);
    return 0;
}

static struct workers relay_workers;
static struct outcome relay_o[RELAY_N];
static unsigned char relay_req[RELAY_N][REQ_MAX];
static unsigned char relay_ans[RELAY_N][REQ_MAX + 4];

/* The client's RTO (5 ms, fixed) is a tenth of each answer's 50 ms of
 * work: every request is retransmitted while the server works on it, and
 * none of those retransmissions may run the handler again. */
START_TEST(test_worker_answers_after_many_rtos_through_impaired_relay)
{
    done_calls = 0;
    memset(&relay_workers, 0, sizeof relay_workers);
    memset(relay_o, 0, sizeof relay_o);
    static struct box b;
    struct fixture_server ts;
    start_box_server(&ts, &b, NULL);
    relay_workers.await_retransmission = 1;
    workers_start(&relay_workers, &b, 3, 50);

    struct impair_config impair = {
        .drop_permille = 100, .dup_permille = 100, .reorder_permille = 100,
        .reorder_delay_us = 5000};
    uint64_t seed = pick_seed(20260410, &impair, RELAY_N);
    char port[16];
    struct relay *relay = test_relay_in_front(&ts, &impair, &impair, seed,
                                              port);

    udprr_client_opts opts = eager_opts();
    udprr_client *c = test_client_open(port, &opts);
    send_numbered_all(c, relay_req, relay_ans, relay_o, RELAY_N);
    await_answered(c, relay_o, RELAY_N);
    struct udprr_client_stats cs = test_client_stats(c);
    ck_assert_uint_eq(cs.requests, RELAY_N);
    ck_assert_uint_eq(cs.completed, RELAY_N);
    ck_assert_uint_gt(cs.retransmissions, 0);
    udprr_client_close(c);
    ck_assert_uint_eq(done_calls, RELAY_N);

    workers_stop(&relay_workers);
    for (unsigned i = 0; i < RELAY_N; i++)
        ck_assert_msg(relay_workers.reply_rc[i] == UDPRR_OK,
                      "request %u: udprr_server_reply gave %s", i,
                      udprr_status_name(relay_workers.reply_rc[i]));
    test_relay_stop_impaired(relay);
    struct udprr_server_stats ss;
    test_server_stop(&ts, &ss);

    /* Once per request, whatever the network and the retransmissions did. */
    ck_assert_uint_eq(b.bad, 0);
    ck_assert_uint_eq(b.zero_tokens, 0);
    ck_assert_uint_eq(b.handler_calls, RELAY_N);
    for (unsigned i = 0; i < RELAY_N; i++)
        ck_assert_msg(b.calls[i] == 1, "request %u ran the handler %u times",
                      i, b.calls[i]);
    assert_deferred_end(&ss, RELAY_N, RELAY_N, RELAY_N);
    ck_assert_uint_eq(ss.deferred_expired, 0);
    ck_assert_uint_eq(ss.deferred_refused, 0);
    ck_assert_uint_gt(ss.deferred_retransmissions, 0);
    /* An answer the relay dropped reached the client from the cache. */
    ck_assert_uint_gt(ss.cache_hits, 0);
    box_destroy(&b);
}
END_TEST

/* --- answers from the server's own thread ------------------------------- */

enum { LATER_N = 4 };

/* Defers the first LATER_N - 1 requests; the last handler call answers
 * them all, its own included, from inside itself: answers given on the
 * server's thread, for requests whose handler calls returned long ago. */
struct later {
    udprr_server *s;
    unsigned calls;
    uint64_t token[LATER_N];
    unsigned char data[LATER_N][REQ_MAX];
    size_t len[LATER_N];
    int rc[LATER_N];
    int again_rc, decline_again_rc;
};

static int later_handler(void *user, const udprr_request *req, void *reply,
                         size_t cap, size_t *reply_len)
{
    (void)reply;
    (void)cap;
    (void)reply_len;
    struct later *l = user;
    unsigned k = l->calls++;
    if (k >= LATER_N || req->len > REQ_MAX)
        return UDPRR_DECLINE;
    l->token[k] = req->token;
    memcpy(l->data[k], req->data, req->len);
    l->len[k] = req->len;
    if (k < LATER_N - 1)
        return UDPRR_DEFER;
    for (unsigned i = 0; i < LATER_N; i++) {
        unsigned char ans[REQ_MAX + 4];
        size_t n = make_answer(ans, sizeof ans, l->data[i], l->len[i]);
        l->rc[i] = udprr_server_reply(l->s, l->token[i], ans, n);
    }
    l->again_rc = udprr_server_reply(l->s, l->token[LATER_N - 1], "x", 1);
    l->decline_again_rc = udprr_server_decline(l->s, l->token[0]);
    return UDPRR_DEFER;
}

START_TEST(test_answers_from_a_later_handler_call_and_from_inside)
{
    done_calls = 0;
    struct later l;
    memset(&l, 0, sizeof l);
    struct outcome o[LATER_N];
    unsigned char req[LATER_N][REQ_MAX], ans[LATER_N][REQ_MAX + 4];
    memset(o, 0, sizeof o);
    l.s = open_server(NULL);
    struct fixture_server ts;
    test_server_serve(&ts, l.s, later_handler, &l);
    udprr_client *c = test_client_open(ts.port, NULL);
    /* The window starts at 4: all four are sent at once. */
    send_numbered_all(c, req, ans, o, LATER_N);
    await_answered(c, o, LATER_N);
    udprr_client_close(c);
    struct udprr_server_stats ss;
    test_server_stop(&ts, &ss); /* joins the thread: l is ours again */

    ck_assert_uint_eq(l.calls, LATER_N);
    for (unsigned i = 0; i < LATER_N; i++) {
        ck_assert_uint_ne(l.token[i], 0);
        for (unsigned j = 0; j < i; j++)
            ck_assert_uint_ne(l.token[i], l.token[j]);
        ck_assert_int_eq(l.rc[i], UDPRR_OK);
    }
    /* Once per token. */
    ck_assert_int_eq(l.again_rc, UDPRR_ENOTPENDING);
    ck_assert_int_eq(l.decline_again_rc, UDPRR_ENOTPENDING);
    assert_deferred_end(&ss, LATER_N, LATER_N, LATER_N);
}
END_TEST

/* Answered, and declined, from inside the handler call that deferred. */
START_TEST(test_reply_and_decline_from_inside_the_deferring_call)
{
    done_calls = 0;
    static struct box b;
    struct fixture_server ts;
    udprr_client *c = start_box_test(&ts, &b, NULL, NULL);
    unsigned char req[2][REQ_MAX], ans[REQ_MAX + 4];
    struct outcome o[2];
    memset(o, 0, sizeof o);
    send_numbered(c, "inreply", 0, req[0], ans, &o[0]);
    send_numbered(c, "indecline", 1, req[1], NULL, &o[1]);
    await_done(c, 2);
    assert_answered(&o[0], 0);
    assert_declined(&o[1], 1);
    udprr_client_close(c);
    struct udprr_server_stats ss;
    test_server_stop(&ts, &ss);

    ck_assert_uint_eq(b.bad, 0);
    ck_assert_uint_eq(b.count, 2);
    for (unsigned i = 0; i < 2; i++) {
        struct deferral d = deferral_of(&b, i);
        ck_assert_uint_ne(d.token, 0);
        ck_assert_int_eq(d.inside_rc, UDPRR_OK);
        ck_assert_int_eq(d.inside_again_rc, UDPRR_ENOTPENDING);
        ck_assert_uint_eq(b.calls[i], 1);
    }
    assert_deferred_end(&ss, 2, 2, 2);
    box_destroy(&b);
}
END_TEST

/* --- declines, the maximum, unknown tokens ------------------------------ */

START_TEST(test_decline_through_the_token)
{
    done_calls = 0;
    static struct box b;
    struct fixture_server ts;
    udprr_client_opts opts = patient_opts();
    udprr_client *c = start_box_test(&ts, &b, NULL, &opts);
    unsigned char req[REQ_MAX];
    struct outcome o;
    memset(&o, 0, sizeof o);
    send_numbered(c, "req", 0, req, NULL, &o);
    await_deferrals(c, &b, 1);
    struct deferral d = deferral_of(&b, 0);
    ck_assert_uint_ne(d.token, 0);
    ck_assert_uint_eq(o.calls, 0); /* deferred: no answer yet */

    /* The handler has run, so run is running: the event loop's step is
     * refused while it does. */
    ck_assert_int_eq(udprr_server_process(b.s, box_handler, &b),
                     UDPRR_EINVAL);

    ck_assert_int_eq(udprr_server_decline(b.s, d.token), UDPRR_OK);
    ck_assert(pump_until(c, has_run, &o, WAIT_MS));
    assert_declined(&o, 0);
    ck_assert_int_eq(udprr_server_decline(b.s, d.token), UDPRR_ENOTPENDING);
    ck_assert_int_eq(udprr_server_reply(b.s, d.token, "x", 1),
                     UDPRR_ENOTPENDING);
    struct udprr_client_stats cs = test_client_stats(c);
    ck_assert_uint_eq(cs.declined, 1);
    ck_assert_uint_eq(cs.completed, 0);
    udprr_client_close(c);
    struct udprr_server_stats ss;
    test_server_stop(&ts, &ss);
    ck_assert_uint_eq(b.handler_calls, 1);
    assert_deferred_end(&ss, 1, 1, 1);
    ck_assert_uint_eq(ss.deferred_expired, 0);
    box_destroy(&b);
}
END_TEST

/* max_deferred 2, three requests deferred at once: the third handler call
 * gets token 0, and its UDPRR_DEFER declines it. Once the two are
 * answered, a fourth gets a token again. */
START_TEST(test_max_deferred_declines_the_one_beyond)
{
    enum { N = 3 };
    done_calls = 0;
    static struct box b;
    udprr_server_opts so;
    udprr_server_opts_init(&so);
    so.max_deferred = 2;
    struct fixture_server ts;
    udprr_client_opts opts = patient_opts();
    udprr_client *c = start_box_test(&ts, &b, &so, &opts);
    unsigned char req[N + 1][REQ_MAX], ans[N + 1][REQ_MAX + 4];
    struct outcome o[N + 1];
    memset(o, 0, sizeof o);
    send_numbered_all(c, req, ans, o, N);
    await_deferrals(c, &b, N);

    /* Which one was third depends on the order they arrived: find it. */
    unsigned refused = N;
    for (unsigned k = 0; k < N; k++) {
        pthread_mutex_lock(&b.lock);
        struct deferral d = b.d[k];
        pthread_mutex_unlock(&b.lock);
        if (k < 2)
            ck_assert_uint_ne(d.token, 0);
        else
            ck_assert_uint_eq(d.token, 0);
        if (d.token == 0)
            refused = d.index;
    }
    ck_assert_uint_lt(refused, N);
    ck_assert(pump_until(c, has_run, &o[refused], WAIT_MS));
    assert_declined(&o[refused], refused);
    for (unsigned i = 0; i < N; i++)
        if (i != refused)
            ck_assert_uint_eq(o[i].calls, 0);

    for (unsigned i = 0; i < N; i++) {
        if (i == refused)
            continue;
        struct deferral d = deferral_of(&b, i);
        ck_assert_int_eq(answer(b.s, &d), UDPRR_OK);
    }
    await_done(c, N);
    for (unsigned i = 0; i < N; i++)
        if (i != refused)
            assert_answered(&o[i], i);

    /* The two have left the table: a new request gets a token. */
    send_numbered(c, "req", N, req[N], ans[N], &o[N]);
    await_deferrals(c, &b, N + 1);
    struct deferral d = deferral_of(&b, N);
    ck_assert_uint_ne(d.token, 0);
    ck_assert_int_eq(answer(b.s, &d), UDPRR_OK);
    ck_assert(pump_until(c, has_run, &o[N], WAIT_MS));
    assert_answered(&o[N], N);
    udprr_client_close(c);

    struct udprr_server_stats ss;
    test_server_stop(&ts, &ss);
    ck_assert_uint_eq(b.bad, 0);
    ck_assert_uint_eq(b.handler_calls, N + 1);
    ck_assert_uint_eq(b.zero_tokens, 1);
    assert_deferred_end(&ss, N + 1, N, N);
    ck_assert_uint_eq(ss.deferred_refused, 1);
    box_destroy(&b);
}
END_TEST

/* Tokens that name nothing pending: 0, one never given, one answered, one
 * declined. An answer too big leaves the token as it was; the largest
 * answer the framing carries goes through. */
static unsigned char big_answer[UDPRR_MAX_PAYLOAD + 1];

START_TEST(test_unknown_spent_and_too_big)
{
    done_calls = 0;
    static struct box b;
    struct fixture_server ts;
    /* No retransmission within the test: the server's counts are exact. */
    udprr_client_opts opts = quiet_opts();
    udprr_client *c = start_box_test(&ts, &b, NULL, &opts);

    /* Nothing deferred yet: no token is pending. */
    ck_assert_int_eq(udprr_server_reply(b.s, 0, "x", 1), UDPRR_ENOTPENDING);
    ck_assert_int_eq(udprr_server_decline(b.s, 0), UDPRR_ENOTPENDING);
    ck_assert_int_eq(udprr_server_reply(b.s, 1, "x", 1), UDPRR_ENOTPENDING);
    ck_assert_int_eq(udprr_server_reply(NULL, 1, "x", 1), UDPRR_EINVAL);
    ck_assert_int_eq(udprr_server_decline(NULL, 1), UDPRR_EINVAL);

    unsigned char req[3][REQ_MAX];
    struct outcome o[3];
    memset(o, 0, sizeof o);
    send_numbered_all(c, req, NULL, o, 3);
    await_deferrals(c, &b, 3);
    struct deferral d[3];
    for (unsigned i = 0; i < 3; i++) {
        d[i] = deferral_of(&b, i);
        ck_assert_uint_ne(d[i].token, 0);
    }
    ck_assert_uint_ne(d[0].token, d[1].token);
    ck_assert_uint_ne(d[0].token, d[2].token);
    ck_assert_uint_ne(d[1].token, d[2].token);

    /* Three tokens given; any other number was never given. */
    uint64_t never = d[0].token ^ 0x8000000000000001ull;
    while (never == 0 || never == d[1].token || never == d[2].token ||
           never == d[0].token)
        never += 0x9e3779b97f4a7c15ull;
    ck_assert_int_eq(udprr_server_reply(b.s, never, "x", 1),
                     UDPRR_ENOTPENDING);
    ck_assert_int_eq(udprr_server_decline(b.s, never), UDPRR_ENOTPENDING);
    ck_assert_int_eq(udprr_server_reply(b.s, 0, "x", 1), UDPRR_ENOTPENDING);
    ck_assert_int_eq(udprr_server_decline(b.s, 0), UDPRR_ENOTPENDING);

    /* Request 0: refused answers, then the largest one. */
    memset(big_answer, 'B', sizeof big_answer);
    ck_assert_int_eq(udprr_server_reply(b.s, d[0].token, big_answer,
                                        UDPRR_MAX_PAYLOAD + 1),
                     UDPRR_ETOOBIG);
    ck_assert_int_eq(udprr_server_reply(b.s, d[0].token, NULL, 5),
                     UDPRR_EINVAL);
    ck_assert_uint_eq(o[0].calls, 0);
    o[0].expect = big_answer;
    o[0].expect_len = UDPRR_MAX_PAYLOAD;
    ck_assert_int_eq(udprr_server_reply(b.s, d[0].token, big_answer,
                                        UDPRR_MAX_PAYLOAD),
                     UDPRR_OK);
    /* Request 1: an empty answer (NULL with length 0 is one). */
    o[1].expect = "";
    o[1].expect_len = 0;
    ck_assert_int_eq(udprr_server_reply(b.s, d[1].token, NULL, 0), UDPRR_OK);
    /* Request 2: declined. */
    ck_assert_int_eq(udprr_server_decline(b.s, d[2].token), UDPRR_OK);
    await_done(c, 3);
    assert_answered(&o[0], 0);
    ck_assert_uint_eq(o[0].reply_len, UDPRR_MAX_PAYLOAD);
    assert_answered(&o[1], 1);
    assert_declined(&o[2], 2);

    /* Spent: answered, answered empty, declined. Nothing more is sent. */
    for (unsigned i = 0; i < 3; i++) {
        ck_assert_int_eq(udprr_server_reply(b.s, d[i].token, "x", 1),
                         UDPRR_ENOTPENDING);
        ck_assert_int_eq(udprr_server_decline(b.s, d[i].token),
                         UDPRR_ENOTPENDING);
    }
    /* A request after them all is answered, so the server has had its turn
     * with whatever those calls might have queued. */
    unsigned char last[REQ_MAX], last_ans[REQ_MAX + 4];
    struct outcome lo;
    memset(&lo, 0, sizeof lo);
    send_numbered(c, "req", 3, last, last_ans, &lo);
    await_deferrals(c, &b, 4);
    struct deferral d3 = deferral_of(&b, 3);
    ck_assert_int_eq(answer(b.s, &d3), UDPRR_OK);
    ck_assert(pump_until(c, has_run, &lo, WAIT_MS));
    assert_answered(&lo, 3);
    struct udprr_client_stats cs = test_client_stats(c);
    /* The one large answer (d[1]'s, of the largest size) was held back by
     * the amplification guard until the request came again with the
     * server's cookie, at once: the only retransmission. */
    ck_assert_uint_eq(cs.echoes, 1);
    ck_assert_uint_eq(cs.retransmissions, cs.echoes);
    ck_assert_uint_eq(cs.dropped_stale + cs.dropped_duplicate +
                          cs.dropped_unexpected + cs.dropped_malformed,
                      0);
    udprr_client_close(c);

    struct udprr_server_stats ss;
    test_server_stop(&ts, &ss);
    assert_deferred_end(&ss, 4, 4, 4);
    /* One answer per request, and the echo that held the large one back
     * (then the retransmission was answered from the cache). */
    ck_assert_uint_eq(ss.amplification_echoes, 1);
    ck_assert_uint_eq(ss.answered, 4 + ss.amplification_echoes);
    ck_assert_uint_eq(ss.cache_hits, 1);
    box_destroy(&b);
}
END_TEST

/* --- the server in the program's own loop -------------------------------- */

/* One thread, one poll(2) over the server's and the client's descriptors
 * (and a second client's, when there is one), timed by all the handles'
 * timeouts; after each turn, `turn` may answer deferred requests (from the
 * server's thread, after process returned: they go out on the next
 * turn). */
struct loop {
    udprr_server *s;
    udprr_handler h;
    void *user;
    udprr_client *c;
    udprr_client *c2; /* NULL, or a second client */
    void (*turn)(struct loop *l);
    int answers_queued; /* the next poll must not wait */
};

/* Opens the loop's server (NULL sopts: the defaults) and a client of it
 * (NULL copts: the defaults). */
static void loop_open(struct loop *l, const udprr_server_opts *sopts,
                      const udprr_client_opts *copts)
{
    l->s = open_server(sopts);
    char port[16];
    server_port(l->s, port);
    l->c = test_client_open(port, copts);
}

static int loop_until(struct loop *l, until_fn until, void *arg,
                      unsigned timeout_ms)
{
    udprr_client *c[2] = {l->c, l->c2};
    unsigned nc = l->c2 != NULL ? 2 : 1;
    uint64_t end = test_now_us() + timeout_ms * MS;
    while (!until(arg)) {
        uint64_t now = test_now_us();
        if (now >= end)
            return 0;
        int wait = (int)((end - now + MS - 1) / MS);
        if (l->answers_queued)
            wait = 0;
        int t = udprr_server_timeout_ms(l->s);
        if (t >= 0 && t < wait)
            wait = t;
        struct pollfd p[3] = {{udprr_server_fd(l->s), POLLIN, 0}};
        for (unsigned i = 0; i < nc; i++) {
            t = udprr_client_timeout_ms(c[i]);
            if (t >= 0 && t < wait)
                wait = t;
            p[1 + i] = (struct pollfd){udprr_client_fd(c[i]), POLLIN, 0};
        }
        ck_assert_int_ge(poll(p, 1 + nc, wait), 0);
        l->answers_queued = 0;
        ck_assert_int_eq(udprr_server_process(l->s, l->h, l->user), UDPRR_OK);
        for (unsigned i = 0; i < nc; i++)
            ck_assert_int_eq(udprr_client_process(c[i]), UDPRR_OK);
        if (l->turn != NULL)
            l->turn(l);
    }
    return 1;
}

/* Turns the loop until o[0..n) have ended; each got its answer. */
static void loop_await_answered(struct loop *l, const struct outcome *o,
                                unsigned n)
{
    ck_assert_msg(loop_until(l, done_reached, &n, WAIT_MS),
                  "only %u of %u requests ended", done_calls, n);
    assert_all_answered(o, n);
}

/* Turns both handles until neither descriptor has anything left (a
 * retransmission that crossed its answer, a cached answer to it), at most
 * 100 turns. Returns 1 when both went quiet. */
static int loop_settle(struct loop *l)
{
    for (unsigned i = 0; i < 100; i++) {
        struct pollfd p[2] = {{udprr_server_fd(l->s), POLLIN, 0},
                              {udprr_client_fd(l->c), POLLIN, 0}};
        int n = poll(p, 2, 0);
        ck_assert_int_ge(n, 0);
        if (n == 0)
            return 1;
        ck_assert_int_eq(udprr_server_process(l->s, l->h, l->user), UDPRR_OK);
        ck_assert_int_eq(udprr_client_process(l->c), UDPRR_OK);
    }
    return 0;
}

enum { LOOP_N = 20 };

struct loop_server {
    struct loop *l;
    unsigned calls;
    int inner_process_rc;
    unsigned char data[LOOP_N][REQ_MAX];
    size_t len[LOOP_N];
    uint64_t token[LOOP_N];
    unsigned deferred;      /* handler calls so far */
    unsigned answered;      /* of them, answered by the loop */
    int timeout_while_waiting_checked;
};

/* Runs on the test's thread (inside udprr_server_process), so it asserts. */
static int loop_handler(void *user, const udprr_request *req, void *reply,
                        size_t cap, size_t *reply_len)
{
    (void)reply;
    (void)cap;
    (void)reply_len;
    struct loop_server *ls = user;
    if (ls->calls++ == 0)
        ls->inner_process_rc =
            udprr_server_process(ls->l->s, loop_handler, user);
    ck_assert_uint_lt(ls->deferred, LOOP_N);
    ck_assert_uint_le(req->len, REQ_MAX);
    ck_assert_uint_ne(req->token, 0);
    unsigned k = ls->deferred++;
    memcpy(ls->data[k], req->data, req->len);
    ls->len[k] = req->len;
    ls->token[k] = req->token;
    return UDPRR_DEFER;
}

/* After each turn: requests deferred and not answered are waiting, which
 * the timeout says; then the loop answers them all. */
static void loop_answer_turn(struct loop *l)
{
    struct loop_server *ls = l->user;
    if (ls->answered == ls->deferred)
        return;
    int t = udprr_server_timeout_ms(l->s);
    ck_assert_int_ge(t, 0);
    ck_assert_int_le(t, 10000); /* the default deferred_lifetime_ms */
    ls->timeout_while_waiting_checked = 1;
    for (; ls->answered < ls->deferred; ls->answered++) {
        unsigned k = ls->answered;
        unsigned char ans[REQ_MAX + 4];
        size_t n = make_answer(ans, sizeof ans, ls->data[k], ls->len[k]);
        ck_assert_int_eq(udprr_server_reply(l->s, ls->token[k], ans, n),
                         UDPRR_OK);
    }
    l->answers_queued = 1;
}

START_TEST(test_one_poll_loop_drives_server_and_client)
{
    done_calls = 0;
    static struct loop_server ls;
    memset(&ls, 0, sizeof ls);
    ls.inner_process_rc = 12345;
    struct loop l = {.h = loop_handler, .user = &ls,
                     .turn = loop_answer_turn};
    ls.l = &l;
    udprr_client_opts opts = patient_opts();
    loop_open(&l, NULL, &opts);

    int fd = udprr_server_fd(l.s);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(udprr_server_fd(NULL), -1);
    ck_assert_int_eq(udprr_server_timeout_ms(l.s), -1);
    ck_assert_int_eq(udprr_server_process(NULL, loop_handler, &ls),
                     UDPRR_EINVAL);
    ck_assert_int_eq(udprr_server_process(l.s, NULL, &ls), UDPRR_EINVAL);
    /* Nothing to do: harmless, and nothing waits. */
    ck_assert_int_eq(udprr_server_process(l.s, loop_handler, &ls), UDPRR_OK);
    ck_assert_int_eq(udprr_server_timeout_ms(l.s), -1);
    ck_assert_uint_eq(ls.calls, 0);

    static struct outcome o[LOOP_N];
    static unsigned char req[LOOP_N][REQ_MAX], ans[LOOP_N][REQ_MAX + 4];
    memset(o, 0, sizeof o);
    send_numbered_all(l.c, req, ans, o, LOOP_N);
    loop_await_answered(&l, o, LOOP_N);
    ck_assert_int_eq(ls.inner_process_rc, UDPRR_EINVAL);
    ck_assert(ls.timeout_while_waiting_checked);
    ck_assert_uint_eq(ls.calls, LOOP_N);

    /* Everything answered: the descriptor goes quiet (level-triggered, so
     * a wake that was never drained would keep it readable) and no
     * deferred request waits. */
    ck_assert_msg(loop_settle(&l), "the descriptors never went quiet");
    ck_assert_int_eq(udprr_server_timeout_ms(l.s), -1);
    ck_assert_int_eq(udprr_server_fd(l.s), fd);
    struct udprr_server_stats ss = server_stats(l.s);
    assert_deferred_end(&ss, LOOP_N, LOOP_N, LOOP_N);
    ck_assert_uint_eq(ss.deferred_expired, 0);
    udprr_client_close(l.c);
    udprr_server_close(l.s);
    ck_assert_uint_eq(done_calls, LOOP_N);
}
END_TEST

/* --- token expiry -------------------------------------------------------- */

struct keeper {
    unsigned calls;
    uint64_t token;
};

/* Defers and never answers. */
static int keep_handler(void *user, const udprr_request *req, void *reply,
                        size_t cap, size_t *reply_len)
{
    (void)reply;
    (void)cap;
    (void)reply_len;
    struct keeper *k = user;
    k->calls++;
    k->token = req->token;
    return UDPRR_DEFER;
}

static int keeper_called(void *arg)
{
    return ((const struct keeper *)arg)->calls > 0;
}

enum { LIFETIME_MS = 100 };

START_TEST(test_token_expires_declined_and_forgotten)
{
    done_calls = 0;
    struct keeper k = {0, 0};
    struct loop l = {.h = keep_handler, .user = &k};
    udprr_server_opts so;
    udprr_server_opts_init(&so);
    so.deferred_lifetime_ms = LIFETIME_MS;
    udprr_client_opts opts = patient_opts();
    opts.initial_rto_ms = 20; /* retransmits while the token waits */
    loop_open(&l, &so, &opts);

    unsigned char req[REQ_MAX];
    struct outcome o;
    memset(&o, 0, sizeof o);
    uint64_t sent_us = test_now_us();
    send_numbered(l.c, "req", 0, req, NULL, &o);
    ck_assert(loop_until(&l, keeper_called, &k, WAIT_MS));
    ck_assert_uint_ne(k.token, 0);
    /* A token waits: the loop must come back by the end of its lifetime. */
    int t = udprr_server_timeout_ms(l.s);
    ck_assert_int_ge(t, 0);
    ck_assert_int_le(t, LIFETIME_MS);
    struct udprr_server_stats ss = server_stats(l.s);
    ck_assert_uint_eq(ss.deferred, 1);
    ck_assert_uint_eq(ss.deferred_pending, 1);

    ck_assert(loop_until(&l, has_run, &o, WAIT_MS));
    assert_declined(&o, 0);
    ck_assert_uint_ge(test_now_us() - sent_us, LIFETIME_MS * MS);
    ck_assert_uint_eq(k.calls, 1); /* retransmissions never ran it */
    ck_assert_int_eq(udprr_server_timeout_ms(l.s), -1);
    ck_assert_msg(loop_settle(&l), "the descriptors never went quiet");
    ss = server_stats(l.s);
    assert_deferred_end(&ss, 1, 1, 0);
    ck_assert_uint_eq(ss.deferred_expired, 1);
    struct udprr_client_stats cs = test_client_stats(l.c);

    /* The late answer: refused, and nothing goes out. */
    ck_assert_int_eq(udprr_server_reply(l.s, k.token, "late", 4),
                     UDPRR_ENOTPENDING);
    ck_assert_int_eq(udprr_server_decline(l.s, k.token), UDPRR_ENOTPENDING);
    ck_assert_int_eq(udprr_server_process(l.s, keep_handler, &k), UDPRR_OK);
    struct pollfd p = {udprr_client_fd(l.c), POLLIN, 0};
    ck_assert_int_eq(poll(&p, 1, 0), 0); /* loopback delivers at once */
    ck_assert_int_eq(udprr_client_process(l.c), UDPRR_OK);
    struct udprr_server_stats after = server_stats(l.s);
    ck_assert_uint_eq(after.answered, ss.answered);
    ck_assert_uint_eq(after.deferred_answered, 0);
    struct udprr_client_stats cafter = test_client_stats(l.c);
    ck_assert_uint_eq(cafter.dropped_duplicate, cs.dropped_duplicate);
    ck_assert_uint_eq(cafter.dropped_stale, cs.dropped_stale);
    ck_assert_uint_eq(cafter.dropped_unexpected, cs.dropped_unexpected);
    ck_assert_uint_eq(cafter.declined, 1);
    ck_assert_int_eq(udprr_server_timeout_ms(l.s), -1);
    udprr_client_close(l.c);
    udprr_server_close(l.s);
}
END_TEST

/* --- the wake: an answer from another thread ---------------------------- */

struct replier {
    udprr_server *s;
    uint64_t token;
    int rc;
};

static void *replier_main(void *arg)
{
    struct replier *r = arg;
    r->rc = udprr_server_reply(r->s, r->token, "woken", 5);
    return NULL;
}

/* Answers "woken" to token from a thread of its own, and waits for it:
 * returns what udprr_server_reply returned there. */
static int reply_from_another_thread(udprr_server *s, uint64_t token)
{
    struct replier r = {s, token, 12345};
    pthread_t thread;
    ck_assert_int_eq(pthread_create(&thread, NULL, replier_main, &r), 0);
    ck_assert_int_eq(pthread_join(thread, NULL), 0);
    return r.rc;
}

/* The descriptor is quiet while a request is deferred, becomes readable
 * when another thread gives the answer, and quiet again once process has
 * sent it. The client's RTO is longer than the test, so no retransmission
 * can make the descriptor readable instead. */
START_TEST(test_answer_from_another_thread_wakes_the_fd)
{
    done_calls = 0;
    struct keeper k = {0, 0};
    struct loop l = {.h = keep_handler, .user = &k};
    udprr_client_opts opts = quiet_opts();
    loop_open(&l, NULL, &opts);
    unsigned char req[REQ_MAX];
    struct outcome o;
    memset(&o, 0, sizeof o);
    o.expect = "woken";
    o.expect_len = 5;
    send_numbered(l.c, "req", 0, req, NULL, &o);
    ck_assert(loop_until(&l, keeper_called, &k, WAIT_MS));
    struct pollfd p = {udprr_server_fd(l.s), POLLIN, 0};
    ck_assert_int_eq(poll(&p, 1, 0), 0);

    ck_assert_int_eq(reply_from_another_thread(l.s, k.token), UDPRR_OK);
    ck_assert_int_eq(poll(&p, 1, 0), 1);
    ck_assert(p.revents & POLLIN);
    ck_assert_uint_eq(o.calls, 0); /* given, not yet sent */

    ck_assert_int_eq(udprr_server_process(l.s, keep_handler, &k), UDPRR_OK);
    ck_assert_int_eq(poll(&p, 1, 0), 0);
    ck_assert(loop_until(&l, has_run, &o, WAIT_MS));
    assert_answered(&o, 0);
    ck_assert_uint_eq(k.calls, 1);
    ck_assert_uint_eq(test_client_stats(l.c).retransmissions, 0);
    udprr_client_close(l.c);
    udprr_server_close(l.s);
}
END_TEST

/* --- a deferred request in a full reply cache ---------------------------- */

enum { FLOOD_N = 24, FLOOD_CACHE = 8 };

/* Defers "slow" requests (the test answers them); answers every other
 * request at once. Runs on the test's thread (inside process). */
struct flood {
    unsigned slow_calls;
    unsigned quick_calls;
    uint64_t token;
    unsigned char data[REQ_MAX];
    size_t len;
};

static int flood_handler(void *user, const udprr_request *req, void *reply,
                         size_t cap, size_t *reply_len)
{
    struct flood *f = user;
    char kind[16];
    unsigned index;
    ck_assert(parse_request(req->data, req->len, kind, &index));
    if (strcmp(kind, "slow") == 0) {
        f->slow_calls++;
        f->token = req->token;
        memcpy(f->data, req->data, req->len);
        f->len = req->len;
        return UDPRR_DEFER;
    }
    f->quick_calls++;
    *reply_len = make_answer(reply, cap, req->data, req->len);
    ck_assert_uint_ne(*reply_len, 0);
    return UDPRR_REPLY;
}

static int slow_called(void *arg)
{
    return ((const struct flood *)arg)->slow_calls > 0;
}

/* Until the server has counted more deferred retransmissions than
 * `above`, or the slow request's handler has run again (the failure). */
struct retrans_wait {
    struct loop *l;
    struct flood *f;
    uint64_t above;
};

static int retransmission_dropped(void *arg)
{
    struct retrans_wait *w = arg;
    return w->f->slow_calls > 1 ||
           server_stats(w->l->s).deferred_retransmissions > w->above;
}

/* A reply cache of 8 answers: one request deferred, retransmitted every
 * 5 ms by its client, then 24 requests from a second client answered at
 * once, which evict every answer cached before them. The deferred
 * request's "in progress" entry must outlive them all: a retransmission
 * that arrives after the flood is dropped (deferred_retransmissions), not
 * handed to the handler a second time; the answer, given later, reaches
 * the client. */
START_TEST(test_deferred_request_survives_a_full_reply_cache)
{
    done_calls = 0;
    static struct flood f;
    memset(&f, 0, sizeof f);
    udprr_server_opts so;
    udprr_server_opts_init(&so);
    so.cache_entries = FLOOD_CACHE;
    /* One server driven by process, two clients, one loop over the
     * three. */
    struct loop l = {.h = flood_handler, .user = &f};
    l.s = open_server(&so);
    char port[16];
    server_port(l.s, port);
    udprr_client_opts slow_opts = eager_opts();
    l.c = test_client_open(port, &slow_opts);
    /* The flood's client never retransmits within the test. */
    udprr_client_opts quick_opts = quiet_opts();
    l.c2 = test_client_open(port, &quick_opts);

    unsigned char slow_req[REQ_MAX], slow_ans[REQ_MAX + 4];
    struct outcome slow;
    memset(&slow, 0, sizeof slow);
    send_numbered(l.c, "slow", 0, slow_req, slow_ans, &slow);
    ck_assert(loop_until(&l, slow_called, &f, WAIT_MS));
    ck_assert_uint_ne(f.token, 0);
    /* Retransmissions dropped while the cache still has room. */
    struct retrans_wait rw = {&l, &f, 0};
    ck_assert(loop_until(&l, retransmission_dropped, &rw, WAIT_MS));
    ck_assert_uint_eq(f.slow_calls, 1);

    static struct outcome o[FLOOD_N];
    static unsigned char req[FLOOD_N][REQ_MAX], ans[FLOOD_N][REQ_MAX + 4];
    memset(o, 0, sizeof o);
    send_numbered_all(l.c2, req, ans, o, FLOOD_N);
    loop_await_answered(&l, o, FLOOD_N);
    ck_assert_uint_eq(slow.calls, 0);
    struct udprr_server_stats ss = server_stats(l.s);
    /* Full, and every answer older than the last 8 evicted. */
    ck_assert_uint_eq(ss.cache_entries, FLOOD_CACHE);
    ck_assert_uint_ge(ss.cache_evicted, FLOOD_N - FLOOD_CACHE);

    /* A retransmission of the deferred request after the flood. */
    rw.above = ss.deferred_retransmissions;
    ck_assert(loop_until(&l, retransmission_dropped, &rw, WAIT_MS));
    ck_assert_msg(f.slow_calls == 1,
                  "the deferred request ran the handler %u times",
                  f.slow_calls);
    ck_assert_uint_gt(server_stats(l.s).deferred_retransmissions, rw.above);

    ck_assert_int_eq(udprr_server_reply(l.s, f.token, slow_ans,
                                        slow.expect_len),
                     UDPRR_OK);
    ck_assert(loop_until(&l, has_run, &slow, WAIT_MS));
    assert_answered(&slow, 0);
    ck_assert_uint_gt(test_client_stats(l.c).retransmissions, 0);
    ck_assert_uint_eq(test_client_stats(l.c2).retransmissions, 0);
    udprr_client_close(l.c);
    udprr_client_close(l.c2);

    ss = server_stats(l.s);
    ck_assert_uint_eq(f.slow_calls, 1);
    ck_assert_uint_eq(f.quick_calls, FLOOD_N);
    assert_deferred_end(&ss, FLOOD_N + 1, 1, 1);
    ck_assert_uint_eq(ss.deferred_expired, 0);
    ck_assert_uint_gt(ss.deferred_retransmissions, 0);
    ck_assert_uint_le(ss.cache_entries, FLOOD_CACHE);
    udprr_server_close(l.s);
    ck_assert_uint_eq(done_calls, FLOOD_N + 1);
}
END_TEST

/* --- a stopped server's descriptor --------------------------------------- */

/* A datagram waits on the socket of a stopped server, which takes none:
 * once a step has seen the stop, the descriptor no longer reports it, so
 * a loop that goes on waiting on the descriptor (for the answers still to
 * come) does not spin. An answer from another thread still wakes it, and
 * the next process sends it. The client's RTO is longer than the test:
 * nothing is retransmitted. */
START_TEST(test_stopped_server_fd_stops_reporting_the_socket)
{
    enum { QUIET_MS = 200 };
    done_calls = 0;
    struct keeper k = {0, 0};
    struct loop l = {.h = keep_handler, .user = &k};
    udprr_client_opts opts = quiet_opts();
    loop_open(&l, NULL, &opts);
    unsigned char req[3][REQ_MAX];
    struct outcome o[3];
    memset(o, 0, sizeof o);
    o[0].expect = "woken";
    o[0].expect_len = 5;
    send_numbered(l.c, "req", 0, req[0], NULL, &o[0]);
    ck_assert(loop_until(&l, keeper_called, &k, WAIT_MS));
    ck_assert_uint_ne(k.token, 0);
    struct pollfd p = {udprr_server_fd(l.s), POLLIN, 0};
    ck_assert_int_eq(poll(&p, 1, 0), 0);

    /* Request 1 reaches the socket: the descriptor says so. */
    send_numbered(l.c, "req", 1, req[1], NULL, &o[1]);
    ck_assert_int_eq(poll(&p, 1, WAIT_MS), 1);
    udprr_server_stop(l.s);
    /* Request 2 reaches the stopped server's socket. */
    send_numbered(l.c, "req", 2, req[2], NULL, &o[2]);
    ck_assert_int_eq(poll(&p, 1, 0), 1); /* the stop's wake, the datagrams */

    /* One step sees the stop; from then on the two datagrams waiting on
     * the socket leave the descriptor quiet, step after step. */
    for (unsigned i = 0; i < 3; i++) {
        ck_assert_int_eq(udprr_server_process(l.s, keep_handler, &k),
                         UDPRR_OK);
        ck_assert_msg(poll(&p, 1, QUIET_MS) == 0,
                      "step %u: the stopped server's descriptor is "
                      "readable", i);
    }
    struct udprr_server_stats ss = server_stats(l.s);
    ck_assert_uint_eq(ss.received, 1);
    ck_assert_uint_eq(ss.deferred_pending, 1);
    ck_assert_uint_eq(k.calls, 1);

    /* The answer from another thread wakes it; process sends it. */
    ck_assert_int_eq(reply_from_another_thread(l.s, k.token), UDPRR_OK);
    ck_assert_int_eq(poll(&p, 1, WAIT_MS), 1);
    ck_assert(p.revents & POLLIN);
    ck_assert_int_eq(udprr_server_process(l.s, keep_handler, &k), UDPRR_OK);
    ck_assert_int_eq(poll(&p, 1, QUIET_MS), 0);
    ck_assert(pump_until(l.c, has_run, &o[0], WAIT_MS));
    assert_answered(&o[0], 0);
    ck_assert_int_eq(udprr_server_timeout_ms(l.s), -1);
    ss = server_stats(l.s);
    ck_assert_uint_eq(ss.received, 1);
    ck_assert_uint_eq(ss.handled, 1);
    ck_assert_uint_eq(ss.deferred_answered, 1);
    ck_assert_uint_eq(ss.deferred_pending, 0);
    ck_assert_uint_eq(k.calls, 1);
    ck_assert_uint_eq(o[1].calls, 0);
    ck_assert_uint_eq(o[2].calls, 0);
    udprr_client_close(l.c);
    ck_assert_int_eq(o[1].status, UDPRR_ECANCELED);
    ck_assert_int_eq(o[2].status, UDPRR_ECANCELED);
    udprr_server_close(l.s);
}
END_TEST

/* --- stop from a signal handler ------------------------------------------ */

static udprr_server *volatile signal_target;

static void stop_on_signal(int sig)
{
    (void)sig;
    udprr_server_stop(signal_target);
}

static int join_within(pthread_t thread, unsigned ms)
{
    struct timespec at;
    clock_gettime(CLOCK_REALTIME, &at);
    at.tv_sec += (time_t)(ms / 1000);
    at.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (at.tv_nsec >= 1000000000L) {
        at.tv_sec++;
        at.tv_nsec -= 1000000000L;
    }
    return pthread_timedjoin_np(thread, NULL, &at);
}

/* Three requests deferred when a signal handler on the server's thread
 * stops it: run returns UDPRR_OK with them still deferred. One is then
 * answered and sent by process on the stopped server (which takes no new
 * request); close declines the other two. */
START_TEST(test_stop_from_a_signal_handler_while_deferred)
{
    enum { N = 3 };
    done_calls = 0;
    static struct box b;
    struct fixture_server ts;
    udprr_client_opts opts = patient_opts();
    udprr_client *c = start_box_test(&ts, &b, NULL, &opts);
    unsigned char req[N + 1][REQ_MAX], ans[REQ_MAX + 4];
    struct outcome o[N + 1];
    memset(o, 0, sizeof o);
    send_numbered_all(c, req, NULL, o, N);
    await_deferrals(c, &b, N);

    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = stop_on_signal;
    sigemptyset(&sa.sa_mask);
    signal_target = ts.server;
    ck_assert_int_eq(sigaction(SIGUSR1, &sa, &old), 0);
    ck_assert_int_eq(pthread_kill(ts.thread, SIGUSR1), 0);
    ck_assert_msg(join_within(ts.thread, WAIT_MS) == 0,
                  "run did not return after the stop");
    ck_assert_int_eq(ts.run_status, UDPRR_OK);
    /* The handler is reset before the server may be closed. */
    ck_assert_int_eq(sigaction(SIGUSR1, &old, NULL), 0);
    signal_target = NULL;

    struct udprr_server_stats ss = server_stats(b.s);
    ck_assert_uint_eq(ss.deferred, N);
    ck_assert_uint_eq(ss.deferred_pending, N);
    ck_assert_uint_eq(ss.deferred_answered, 0);
    for (unsigned i = 0; i < N; i++)
        ck_assert_uint_eq(o[i].calls, 0);

    /* A request to the stopped server: it reaches the socket at once
     * (loopback), and process must not hand it to the handler. */
    send_numbered(c, "req", N, req[N], NULL, &o[N]);
    struct deferral d0 = deferral_of(&b, 0);
    o[0].expect = ans;
    o[0].expect_len = make_answer(ans, sizeof ans, d0.data, d0.len);
    ck_assert_int_eq(answer(b.s, &d0), UDPRR_OK);
    ck_assert_int_eq(udprr_server_process(b.s, box_handler, &b), UDPRR_OK);
    ck_assert(pump_until(c, has_run, &o[0], WAIT_MS));
    assert_answered(&o[0], 0);
    ck_assert_uint_eq(b.handler_calls, N);
    ss = server_stats(b.s);
    ck_assert_uint_eq(ss.deferred_pending, N - 1);
    ck_assert_uint_eq(ss.deferred_answered, 1);

    udprr_server_close(b.s);
    await_done(c, N); /* requests 0..N-1 */
    for (unsigned i = 1; i < N; i++)
        assert_declined(&o[i], i);
    ck_assert_uint_eq(o[N].calls, 0); /* never taken: still waiting */
    udprr_client_close(c);
    ck_assert_uint_eq(o[N].calls, 1);
    ck_assert_int_eq(o[N].status, UDPRR_ECANCELED);
    ck_assert_uint_eq(b.handler_calls, N);
    box_destroy(&b);
}
END_TEST

/* --- the counters, read while the server runs --------------------------- */

#define COUNTER(f) {#f, offsetof(struct udprr_server_stats, f)}
static const struct {
    const char *name;
    size_t offset;
} monotonic[] = {
    COUNTER(received),          COUNTER(handled),
    COUNTER(answered),          COUNTER(cache_hits),
    COUNTER(declined),          COUNTER(not_answered),
    COUNTER(dropped_malformed), COUNTER(dropped_unexpected),
    COUNTER(send_errors),       COUNTER(uncached),
    COUNTER(cache_evicted),     COUNTER(cache_expired),
    COUNTER(deferred),          COUNTER(deferred_answered),
    COUNTER(deferred_expired),  COUNTER(deferred_refused),
    COUNTER(deferred_retransmissions),
};
#undef COUNTER

static uint64_t counter(const struct udprr_server_stats *st, size_t offset)
{
    uint64_t v;
    memcpy(&v, (const char *)st + offset, sizeof v);
    return v;
}

enum { STATS_N = 40, READS_MAX = 50000 };

struct reader {
    const udprr_server *s;
    atomic_int stop;
    unsigned reads;
    unsigned failures;      /* calls that did not return UDPRR_OK */
    const char *decreased;  /* the first counter seen going down */
    uint64_t from, to;
    unsigned out_of_range;  /* gauges above what the test can make */
    struct udprr_server_stats last;
};

static void *reader_main(void *arg)
{
    struct reader *r = arg;
    struct udprr_server_stats prev = {.size = sizeof prev};
    while (!atomic_load(&r->stop) && r->reads < READS_MAX) {
        struct udprr_server_stats st = {.size = sizeof st};
        if (udprr_server_stats(r->s, &st) != UDPRR_OK) {
            r->failures++;
            break;
        }
        for (size_t i = 0; i < sizeof monotonic / sizeof monotonic[0]; i++) {
            uint64_t a = counter(&prev, monotonic[i].offset);
            uint64_t b = counter(&st, monotonic[i].offset);
            if (b < a && r->decreased == NULL) {
                r->decreased = monotonic[i].name;
                r->from = a;
                r->to = b;
            }
        }
        if (st.deferred_pending > STATS_N || st.cache_entries > STATS_N)
            r->out_of_range++;
        prev = st;
        r->reads++;
        /* Paces the reads, so the reader does not take a core from the
         * threads it watches; nothing waits on it. */
        struct timespec pause = {0, 200000};
        nanosleep(&pause, NULL);
    }
    r->last = prev;
    return NULL;
}

/* Workers answer three requests in four after a moment; the fourth is
 * never answered and expires. A reader thread watches the counters all
 * along. */
START_TEST(test_stats_read_from_another_thread_while_running)
{
    done_calls = 0;
    static struct box b;
    static struct workers w;
    memset(&w, 0, sizeof w);
    w.skip_every = 4;
    udprr_server_opts so;
    udprr_server_opts_init(&so);
    so.deferred_lifetime_ms = 200;
    struct fixture_server ts;
    start_box_server(&ts, &b, &so);
    static struct reader r;
    memset(&r, 0, sizeof r);
    r.s = b.s;
    atomic_init(&r.stop, 0);
    pthread_t reader;
    ck_assert_int_eq(pthread_create(&reader, NULL, reader_main, &r), 0);
    workers_start(&w, &b, 2, 5);

    udprr_client_opts opts = patient_opts();
    opts.initial_rto_ms = 50;
    udprr_client *c = test_client_open(ts.port, &opts);
    static struct outcome o[STATS_N];
    static unsigned char req[STATS_N][REQ_MAX], ans[STATS_N][REQ_MAX + 4];
    memset(o, 0, sizeof o);
    send_numbered_all(c, req, ans, o, STATS_N);
    await_done(c, STATS_N);
    for (unsigned i = 0; i < STATS_N; i++) {
        if (i % 4 == 3)
            assert_declined(&o[i], i);
        else
            assert_answered(&o[i], i);
    }
    udprr_client_close(c);
    atomic_store(&r.stop, 1);
    ck_assert_int_eq(pthread_join(reader, NULL), 0);
    workers_stop(&w);
    struct udprr_server_stats ss;
    test_server_stop(&ts, &ss);

    ck_assert_uint_gt(r.reads, 0);
    ck_assert_uint_eq(r.failures, 0);
    ck_assert_msg(r.decreased == NULL, "%s went down from %llu to %llu",
                  r.decreased ? r.decreased : "",
                  (unsigned long long)r.from, (unsigned long long)r.to);
    ck_assert_uint_eq(r.out_of_range, 0);
    /* The reader's last values are no later than the final ones. */
    for (size_t i = 0; i < sizeof monotonic / sizeof monotonic[0]; i++)
        ck_assert_msg(counter(&r.last, monotonic[i].offset) <=
                          counter(&ss, monotonic[i].offset),
                      "%s: read %llu while running, %llu at the end",
                      monotonic[i].name,
                      (unsigned long long)counter(&r.last,
                                                  monotonic[i].offset),
                      (unsigned long long)counter(&ss, monotonic[i].offset));

    ck_assert_uint_eq(b.handler_calls, STATS_N);
    assert_deferred_end(&ss, STATS_N, STATS_N, STATS_N - STATS_N / 4);
    ck_assert_uint_eq(ss.deferred_expired, STATS_N / 4);
    ck_assert_uint_eq(ss.deferred, ss.deferred_pending +
                                       ss.deferred_answered +
                                       ss.deferred_expired);
    for (unsigned i = 0; i < STATS_N; i++)
        if (i % 4 != 3)
            ck_assert_int_eq(w.reply_rc[i], UDPRR_OK);
    box_destroy(&b);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("net_deferred");
    TCase *relay = tcase_create("relay");
    tcase_set_timeout(relay, 120);
    tcase_add_test(relay,
                   test_worker_answers_after_many_rtos_through_impaired_relay);
    suite_add_tcase(s, relay);

    TCase *own = tcase_create("server_thread");
    tcase_set_timeout(own, 60);
    tcase_add_test(own, test_answers_from_a_later_handler_call_and_from_inside);
    tcase_add_test(own, test_reply_and_decline_from_inside_the_deferring_call);
    tcase_add_test(own, test_one_poll_loop_drives_server_and_client);
    tcase_add_test(own, test_answer_from_another_thread_wakes_the_fd);
    tcase_add_test(own, test_deferred_request_survives_a_full_reply_cache);
    suite_add_tcase(s, own);

    TCase *tokens = tcase_create("tokens");
    tcase_set_timeout(tokens, 60);
    tcase_add_test(tokens, test_decline_through_the_token);
    tcase_add_test(tokens, test_token_expires_declined_and_forgotten);
    tcase_add_test(tokens, test_max_deferred_declines_the_one_beyond);
    tcase_add_test(tokens, test_unknown_spent_and_too_big);
    suite_add_tcase(s, tokens);

    TCase *stop = tcase_create("stop_and_stats");
    tcase_set_timeout(stop, 60);
    tcase_add_test(stop, test_stop_from_a_signal_handler_while_deferred);
    tcase_add_test(stop, test_stopped_server_fd_stops_reporting_the_socket);
    tcase_add_test(stop, test_stats_read_from_another_thread_while_running);
    suite_add_tcase(s, stop);
    return udprr_test_run(s);
}
