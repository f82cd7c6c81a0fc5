/* SPDX-License-Identifier: MIT */
/*
 * net_async.c - the asynchronous client (udprr_client_send, _cancel,
 * _timeout_ms, _process) over real sockets on loopback:
 *
 *   - pipelined requests through the seeded impairment relay: every done
 *     callback runs once, with its own reply, and the counters add up;
 *   - done callbacks that send, cancel and close the handle (ASan and
 *     valgrind watch for use after free);
 *   - close with 1,000 pending, cancel before and after completion, a
 *     deadline per request, the event loop's timeout, re-entry refused;
 *   - a blocking request on a handle with asynchronous ones pending;
 *   - raw framing's one-at-a-time queue, and the ways a send is refused.
 *
 * Every wait is bounded (WAIT_MS, far above what any test needs, reached
 * only if the library hangs). Timing assertions are lower bounds the
 * library guarantees, and upper bounds far above any real delay.
 */
#include <stdlib.h>

#include "netutil.h"
#include "relay.h"
#include "testutil.h"
#include "wire.h"

#define MS 1000ull

/* The bound on every wait for a condition. */
#define WAIT_MS 60000

/* --- recording done callbacks -------------------------------------------- */

/* What one request's done callback saw. */
struct outcome {
    unsigned index;   /* the request's number in its test */
    void *ctx;        /* the test's own state, for callbacks that act */
    unsigned calls;   /* how often done ran: must end as exactly 1 */
    int status;
    size_t reply_len;
    unsigned char reply[128];
    unsigned seq;     /* 1 for the first done callback of the test */
    uint64_t at_us;   /* when it ran */
};

/* Suite-wide state, reset by every test (under valgrind, CK_FORK=no runs
 * every test in one process). */
static int in_send;           /* a test's udprr_client_send* is running */
static int in_blocking;       /* a test's udprr_client_request is running */
static unsigned done_seq;     /* done callbacks run so far */
static unsigned done_in_blocking; /* ...of them from inside the request */

static void reset_globals(void)
{
    in_send = 0;
    in_blocking = 0;
    done_seq = 0;
    done_in_blocking = 0;
}

static void record(struct outcome *o, int status, const void *reply,
                   size_t len)
{
    ck_assert_msg(!in_send, "a done callback ran from inside the send");
    o->calls++;
    o->status = status;
    o->seq = ++done_seq;
    o->at_us = test_now_us();
    if (in_blocking)
        done_in_blocking++;
    if (status == UDPRR_OK) {
        ck_assert_uint_le(len, sizeof o->reply);
        if (len > 0) {
            ck_assert_ptr_nonnull(reply);
            memcpy(o->reply, reply, len);
        }
        o->reply_len = len;
    } else {
        ck_assert_ptr_null(reply);
        ck_assert_uint_eq(len, 0);
        o->reply_len = 0;
    }
}

static void on_done(void *user, int status, const void *reply, size_t len)
{
    record(user, status, reply, len);
}

/* Sends through the library with in_send set, so record() can tell a done
 * callback run from inside a send (which the API forbids). */
static int send_ex(udprr_client *c, const void *req, size_t len,
                   const udprr_send_opts *opts, udprr_done_fn done,
                   void *user, uint64_t *ticket)
{
    int was = in_send;
    in_send = 1;
    int rc = udprr_client_send_ex(c, req, len, opts, done, user, ticket);
    in_send = was;
    return rc;
}

static int send_plain(udprr_client *c, const void *req, size_t len,
                      udprr_done_fn done, void *user)
{
    int was = in_send;
    in_send = 1;
    int rc = udprr_client_send(c, req, len, done, user);
    in_send = was;
    return rc;
}

static int send_text(udprr_client *c, const char *text, udprr_done_fn done,
                     void *user, uint64_t *ticket)
{
    return send_ex(c, text, strlen(text), NULL, done, user, ticket);
}

/* A per-request deadline. */
static udprr_send_opts deadline_opts(unsigned deadline_ms)
{
    udprr_send_opts so;
    udprr_send_opts_init(&so);
    so.deadline_ms = deadline_ms;
    return so;
}

/* --- driving the handle -------------------------------------------------- */

typedef int (*until_fn)(void *arg);

/* test_pump_until (netutil.h). */
static int pump_until(udprr_client *c, until_fn until, void *arg,
                      unsigned timeout_ms)
{
    return test_pump_until(c, until, arg, timeout_ms, -1);
}

static int has_run(void *arg)
{
    return ((const struct outcome *)arg)->calls > 0;
}

static int seq_reached(void *arg)
{
    return done_seq >= *(const unsigned *)arg;
}

static int flag_set(void *arg)
{
    return *(const int *)arg != 0;
}

/* --- fixtures ------------------------------------------------------------ */

/* A client of a plain socket that reads nothing and never answers (its
 * descriptor in *fd, for the test to close): every request stays pending
 * until its deadline, a cancel or the close. */
static udprr_client *open_silent(int *fd, const udprr_client_opts *opts)
{
    char port[16];
    *fd = test_plain_socket("127.0.0.1", port);
    return test_client_open(port, opts);
}

/* The defaults, but for one window ceiling (0: the default). */
static udprr_client_opts opts_with_window(unsigned max_window)
{
    udprr_client_opts opts;
    udprr_client_opts_init(&opts);
    opts.max_window = max_window;
    return opts;
}

/* Every request is queued, or was sent (one attempt, and its
 * retransmissions), or ended unsent; and every request that ended is in
 * exactly one outcome counter, as udprr.h says. */
static void assert_ended_add_up(const struct udprr_client_stats *st)
{
    ck_assert_uint_eq(st->attempts + st->unsent + st->queued,
                      st->requests + st->retransmissions);
    ck_assert_uint_eq(st->requests,
                      st->in_flight + st->queued + st->completed +
                          st->timeouts + st->refused + st->declined +
                          st->canceled + st->failed);
}

/* Requests that start with "hold" are never answered (as if lost, every
 * time); the rest are echoed. */
static int hold_or_echo(void *user, const udprr_request *req, void *reply,
                        size_t cap, size_t *reply_len)
{
    if (req->len >= 4 && memcmp(req->data, "hold", 4) == 0)
        return UDPRR_NO_REPLY;
    return test_echo_handler(user, req, reply, cap, reply_len);
}

static void assert_reply_is(const struct outcome *o, const void *want,
                            size_t len)
{
    ck_assert_int_eq(o->status, UDPRR_OK);
    ck_assert_uint_eq(o->reply_len, len);
    ck_assert_mem_eq(o->reply, want, len);
}

/* --- pipelined through loss, duplication and reordering ----------------- */

enum { PIPE_N = 300, PIPE_MAX_WINDOW = 32 };

static struct pipelined {
    udprr_client *c;
    struct outcome o[PIPE_N];
    unsigned char req[PIPE_N][96];
    size_t len[PIPE_N];
    uint64_t max_in_flight; /* seen from the done callbacks */
} pipe_state;

static void pipelined_done(void *user, int status, const void *reply,
                           size_t len)
{
    struct outcome *o = user;
    record(o, status, reply, len);
    ck_assert_msg(status == UDPRR_OK, "request %u ended with %s", o->index,
                  udprr_status_name(status));
    ck_assert_uint_eq(len, pipe_state.len[o->index]);
    ck_assert_msg(memcmp(reply, pipe_state.req[o->index], len) == 0,
                  "request %u got another request's reply", o->index);
    struct udprr_client_stats st = test_client_stats(pipe_state.c);
    assert_ended_add_up(&st);
    ck_assert_uint_ge(st.window, 1);
    ck_assert_uint_le(st.window, PIPE_MAX_WINDOW);
    ck_assert_uint_le(st.in_flight, PIPE_MAX_WINDOW);
    if (st.in_flight > pipe_state.max_in_flight)
        pipe_state.max_in_flight = st.in_flight;
}

START_TEST(test_pipelined_through_impaired_relay)
{
    reset_globals();
    memset(&pipe_state, 0, sizeof pipe_state);
    struct fixture_server ts;
    test_server_start(&ts, "127.0.0.1", NULL, test_echo_handler, NULL);
    struct impair_config impair = {
        .drop_permille = 100, .dup_permille = 50, .reorder_permille = 50,
        .reorder_delay_us = 5000};
    char port[16];
    struct relay *relay =
        test_relay_in_front(&ts, &impair, &impair, 20260409, port);

    udprr_client_opts opts;
    udprr_client_opts_init(&opts);
    opts.initial_rto_ms = 20;
    opts.min_rto_ms = 2;  /* loopback answers in microseconds */
    opts.max_rto_ms = 80; /* caps the tail of repeated losses */
    opts.deadline_ms = 0; /* retry until answered: WAIT_MS bounds it */
    opts.max_window = PIPE_MAX_WINDOW;
    udprr_client *c = test_client_open(port, &opts);
    pipe_state.c = c;

    /* Lengths differ from one request to the next, so a reply delivered
     * to the wrong request shows in its length as well as its bytes. */
    for (unsigned i = 0; i < PIPE_N; i++) {
        unsigned char *r = pipe_state.req[i];
        int n = snprintf((char *)r, sizeof pipe_state.req[i], "req:%u:", i);
        size_t len = (size_t)n + (i * 7) % 61;
        for (size_t j = (size_t)n; j < len; j++)
            r[j] = (unsigned char)('a' + (i + j) % 26);
        pipe_state.len[i] = len;
        pipe_state.o[i].index = i;
        ck_assert_int_eq(send_plain(c, r, len, pipelined_done,
                                    &pipe_state.o[i]),
                         UDPRR_OK);
    }
    /* Nothing has ended (done never runs from inside a send); the window
     * starts at 4 and the rest wait in the queue. */
    struct udprr_client_stats st = test_client_stats(c);
    ck_assert_uint_eq(done_seq, 0);
    ck_assert_uint_eq(st.requests, PIPE_N);
    ck_assert_uint_eq(st.window, 4);
    ck_assert_uint_eq(st.in_flight, 4);
    ck_assert_uint_eq(st.queued, PIPE_N - 4);

    unsigned all = PIPE_N;
    ck_assert_msg(pump_until(c, seq_reached, &all, WAIT_MS),
                  "only %u of %u requests ended", done_seq, PIPE_N);
    for (unsigned i = 0; i < PIPE_N; i++) {
        ck_assert_msg(pipe_state.o[i].calls == 1,
                      "request %u: done ran %u times", i,
                      pipe_state.o[i].calls);
        assert_reply_is(&pipe_state.o[i], pipe_state.req[i],
                        pipe_state.len[i]);
    }
    st = test_client_stats(c);
    ck_assert_uint_eq(st.requests, PIPE_N);
    ck_assert_uint_eq(st.completed, PIPE_N);
    ck_assert_uint_eq(st.timeouts + st.refused + st.declined + st.canceled +
                          st.failed,
                      0);
    ck_assert_uint_eq(st.in_flight, 0);
    ck_assert_uint_eq(st.queued, 0);
    ck_assert_uint_eq(st.unsent, 0);
    assert_ended_add_up(&st);
    ck_assert_uint_ge(st.window, 1);
    ck_assert_uint_le(st.window, PIPE_MAX_WINDOW);
    /* Requests were in flight together, and losses shrank the window. */
    ck_assert_uint_gt(pipe_state.max_in_flight, 1);
    ck_assert_uint_gt(st.retransmissions, 0);
    ck_assert_uint_gt(st.window_reductions, 0);
    ck_assert_int_eq(udprr_client_timeout_ms(c), -1);
    udprr_client_close(c);

    /* The impairments happened both ways... */
    test_relay_stop_impaired(relay);
    struct udprr_server_stats ss;
    test_server_stop(&ts, &ss);
    /* ...and each request ran the handler once. */
    ck_assert_uint_eq(ss.handled, PIPE_N);
    /* No done ran twice: exactly PIPE_N calls in all. */
    ck_assert_uint_eq(done_seq, PIPE_N);
}
END_TEST

/* --- done callbacks that send, cancel and close ------------------------- */

enum { CHAIN_N = 50 };

struct chain {
    udprr_client *c;
    struct outcome o[CHAIN_N];
    char req[CHAIN_N][32];
    int send_rc[CHAIN_N];
};

static void chain_done(void *user, int status, const void *reply, size_t len)
{
    struct outcome *o = user;
    struct chain *ch = o->ctx;
    record(o, status, reply, len);
    unsigned next = o->index + 1;
    if (next == CHAIN_N)
        return;
    ck_assert_uint_eq(ch->o[next].calls, 0);
    snprintf(ch->req[next], sizeof ch->req[next], "link:%u", next);
    ch->o[next].index = next;
    ch->o[next].ctx = ch;
    ch->send_rc[next] = send_text(ch->c, ch->req[next], chain_done,
                                  &ch->o[next], NULL);
}

START_TEST(test_done_that_sends_the_next_request)
{
    reset_globals();
    static struct chain ch;
    memset(&ch, 0, sizeof ch);
    struct fixture_server ts;
    test_server_start(&ts, "127.0.0.1", NULL, test_echo_handler, NULL);
    ch.c = test_client_open(ts.port, NULL);
    snprintf(ch.req[0], sizeof ch.req[0], "link:0");
    ch.o[0].ctx = &ch;
    ck_assert_int_eq(send_text(ch.c, ch.req[0], chain_done, &ch.o[0], NULL),
                     UDPRR_OK);
    ck_assert(pump_until(ch.c, has_run, &ch.o[CHAIN_N - 1], WAIT_MS));
    for (unsigned i = 0; i < CHAIN_N; i++) {
        if (i > 0)
            ck_assert_int_eq(ch.send_rc[i], UDPRR_OK);
        ck_assert_uint_eq(ch.o[i].calls, 1);
        ck_assert_uint_eq(ch.o[i].seq, i + 1); /* one after the other */
        assert_reply_is(&ch.o[i], ch.req[i], strlen(ch.req[i]));
    }
    struct udprr_client_stats st = test_client_stats(ch.c);
    ck_assert_uint_eq(st.requests, CHAIN_N);
    ck_assert_uint_eq(st.completed, CHAIN_N);
    assert_ended_add_up(&st);
    ck_assert_int_eq(udprr_client_timeout_ms(ch.c), -1);
    udprr_client_close(ch.c);
    ck_assert_uint_eq(done_seq, CHAIN_N); /* close had nothing to cancel */
    test_server_stop(&ts, NULL);
}
END_TEST

struct canceller {
    udprr_client *c;
    uint64_t held_ticket, own_ticket;
    struct outcome held, go;
    int cancel_rc, cancel_again_rc, cancel_own_rc;
    unsigned held_calls_after_cancel;
    int held_status_after_cancel;
};

static void cancel_other_done(void *user, int status, const void *reply,
                              size_t len)
{
    struct outcome *o = user;
    struct canceller *k = o->ctx;
    record(o, status, reply, len);
    k->cancel_rc = udprr_client_cancel(k->c, k->held_ticket);
    /* The canceled request's done ran before cancel returned. */
    k->held_calls_after_cancel = k->held.calls;
    k->held_status_after_cancel = k->held.status;
    k->cancel_again_rc = udprr_client_cancel(k->c, k->held_ticket);
    /* This request has ended too: its done is running. */
    k->cancel_own_rc = udprr_client_cancel(k->c, k->own_ticket);
}

START_TEST(test_done_that_cancels_another_request)
{
    reset_globals();
    struct canceller k;
    memset(&k, 0, sizeof k);
    struct fixture_server ts;
    test_server_start(&ts, "127.0.0.1", NULL, hold_or_echo, NULL);
    k.c = test_client_open(ts.port, NULL);
    k.held.ctx = &k;
    k.go.ctx = &k;
    ck_assert_int_eq(send_text(k.c, "hold", on_done, &k.held, &k.held_ticket),
                     UDPRR_OK);
    ck_assert_int_eq(send_text(k.c, "go", cancel_other_done, &k.go,
                               &k.own_ticket),
                     UDPRR_OK);
    ck_assert_uint_ne(k.held_ticket, k.own_ticket);
    ck_assert(pump_until(k.c, has_run, &k.go, WAIT_MS));

    assert_reply_is(&k.go, "go", 2);
    ck_assert_int_eq(k.cancel_rc, UDPRR_OK);
    ck_assert_uint_eq(k.held_calls_after_cancel, 1);
    ck_assert_int_eq(k.held_status_after_cancel, UDPRR_ECANCELED);
    ck_assert_int_eq(k.cancel_again_rc, UDPRR_ENOTPENDING);
    ck_assert_int_eq(k.cancel_own_rc, UDPRR_ENOTPENDING);
    ck_assert_uint_eq(k.go.calls, 1);
    ck_assert_uint_eq(k.held.calls, 1);

    struct udprr_client_stats st = test_client_stats(k.c);
    ck_assert_uint_eq(st.completed, 1);
    ck_assert_uint_eq(st.canceled, 1);
    ck_assert_uint_eq(st.in_flight + st.queued, 0);
    assert_ended_add_up(&st);
    ck_assert_int_eq(udprr_client_timeout_ms(k.c), -1);
    udprr_client_close(k.c);
    ck_assert_uint_eq(done_seq, 2);
    test_server_stop(&ts, NULL);
}
END_TEST

enum { CLOSER_HELD = 10 };

struct closer {
    udprr_client *c;
    int closed;
    struct outcome go, held[CLOSER_HELD], spare;
    unsigned held_done_at_close; /* held dones run when close returned */
    int send_rc[CLOSER_HELD];    /* sends tried from the held dones */
    uint64_t tickets[CLOSER_HELD];
};

/* A held request's done, run by close: a send from it is refused. */
static void held_done_sends(void *user, int status, const void *reply,
                            size_t len)
{
    struct outcome *o = user;
    struct closer *k = o->ctx;
    record(o, status, reply, len);
    k->send_rc[o->index] = send_text(k->c, "late", on_done, &k->spare, NULL);
}

static void close_on_done(void *user, int status, const void *reply,
                          size_t len)
{
    struct outcome *o = user;
    struct closer *k = o->ctx;
    record(o, status, reply, len);
    udprr_client_close(k->c);
    k->closed = 1;
    unsigned n = 0;
    for (unsigned i = 0; i < CLOSER_HELD; i++)
        n += k->held[i].calls;
    k->held_done_at_close = n;
}

static void assert_held_canceled_once(const struct closer *k)
{
    for (unsigned i = 0; i < CLOSER_HELD; i++) {
        ck_assert_uint_eq(k->held[i].calls, 1);
        ck_assert_int_eq(k->held[i].status, UDPRR_ECANCELED);
        ck_assert_int_eq(k->send_rc[i], UDPRR_EINVAL);
    }
    ck_assert_uint_eq(k->held_done_at_close, CLOSER_HELD);
    ck_assert_uint_eq(k->spare.calls, 0);
}

/* Sends "go" (whose done closes the handle) and the held requests. */
static void closer_send_all(struct closer *k, uint64_t *go_ticket)
{
    k->go.ctx = k;
    ck_assert_int_eq(send_text(k->c, "go", close_on_done, &k->go, go_ticket),
                     UDPRR_OK);
    for (unsigned i = 0; i < CLOSER_HELD; i++) {
        k->held[i].index = i;
        k->held[i].ctx = k;
        ck_assert_int_eq(send_text(k->c, "hold", held_done_sends,
                                   &k->held[i], NULL),
                         UDPRR_OK);
    }
}

/* A server that answers "go" and holds the rest, and a client that has
 * sent them all. */
static void closer_start(struct closer *k, struct fixture_server *ts)
{
    reset_globals();
    memset(k, 0, sizeof *k);
    test_server_start(ts, "127.0.0.1", NULL, hold_or_echo, NULL);
    k->c = test_client_open(ts->port, NULL);
    closer_send_all(k, NULL);
}

/* A done run by udprr_client_process closes the handle: the others (some
 * in flight, some queued behind the window of 4) end with UDPRR_ECANCELED,
 * once each, from inside close; process then returns without touching
 * freed memory. */
START_TEST(test_done_that_closes_the_handle)
{
    static struct closer k;
    struct fixture_server ts;
    closer_start(&k, &ts);
    ck_assert_uint_gt(test_client_stats(k.c).queued, 0);
    ck_assert(pump_until(k.c, flag_set, &k.closed, WAIT_MS));
    assert_reply_is(&k.go, "go", 2);
    ck_assert_uint_eq(k.go.calls, 1);
    assert_held_canceled_once(&k);
    ck_assert_uint_eq(done_seq, 1 + CLOSER_HELD);
    test_server_stop(&ts, NULL);
}
END_TEST

/* The same when the done that closes runs from inside udprr_client_cancel:
 * cancel returns UDPRR_OK, and the handle is gone after it. */
START_TEST(test_done_run_by_cancel_closes_the_handle)
{
    reset_globals();
    static struct closer k;
    memset(&k, 0, sizeof k);
    int fd;
    k.c = open_silent(&fd, NULL);
    uint64_t ticket = 0;
    closer_send_all(&k, &ticket);
    ck_assert_int_eq(udprr_client_cancel(k.c, ticket), UDPRR_OK);
    ck_assert(k.closed);
    ck_assert_uint_eq(k.go.calls, 1);
    ck_assert_int_eq(k.go.status, UDPRR_ECANCELED);
    assert_held_canceled_once(&k);
    ck_assert_uint_eq(done_seq, 1 + CLOSER_HELD);
    close(fd);
}
END_TEST

/* The same when the done that closes runs from inside a blocking
 * udprr_client_request (queued behind the others): the blocking request
 * ends with UDPRR_ECANCELED like every other, and the handle is gone when
 * it returns. */
START_TEST(test_done_run_by_blocking_request_closes_the_handle)
{
    static struct closer k;
    struct fixture_server ts;
    closer_start(&k, &ts);
    char reply[16];
    size_t got = 0;
    in_blocking = 1;
    int rc = udprr_client_request(k.c, "hold-blocking", 13, reply,
                                  sizeof reply, &got);
    in_blocking = 0;
    ck_assert_int_eq(rc, UDPRR_ECANCELED);
    ck_assert(k.closed);
    assert_reply_is(&k.go, "go", 2);
    ck_assert_uint_eq(k.go.calls, 1);
    assert_held_canceled_once(&k);
    ck_assert_uint_eq(done_in_blocking, 1 + CLOSER_HELD);
    ck_assert_uint_eq(done_seq, 1 + CLOSER_HELD);
    test_server_stop(&ts, NULL);
}
END_TEST

/* --- close and cancel ---------------------------------------------------- */

START_TEST(test_close_with_a_thousand_pending)
{
    enum { N = 1000 };
    reset_globals();
    static struct outcome o[N];
    memset(o, 0, sizeof o);
    int fd;
    udprr_client *c = open_silent(&fd, NULL);
    for (unsigned i = 0; i < N; i++) {
        char req[32];
        snprintf(req, sizeof req, "pending:%u", i);
        ck_assert_int_eq(send_text(c, req, on_done, &o[i], NULL), UDPRR_OK);
    }
    struct udprr_client_stats st = test_client_stats(c);
    ck_assert_uint_eq(st.requests, N);
    ck_assert_uint_eq(st.in_flight + st.queued, N);
    ck_assert_uint_ge(st.in_flight, 1);
    ck_assert_uint_le(st.in_flight, 64);
    ck_assert_uint_eq(done_seq, 0);
    udprr_client_close(c);
    for (unsigned i = 0; i < N; i++) {
        ck_assert_msg(o[i].calls == 1, "request %u: done ran %u times", i,
                      o[i].calls);
        ck_assert_int_eq(o[i].status, UDPRR_ECANCELED);
    }
    ck_assert_uint_eq(done_seq, N);
    close(fd);
}
END_TEST

/* The handle has dropped a reply: as stale or as a duplicate. */
static int reply_dropped(void *arg)
{
    struct udprr_client_stats st = test_client_stats(arg);
    return st.dropped_stale + st.dropped_duplicate > 0;
}

enum { TALLY_N = 10 };

struct tally {
    udprr_client *c;
    struct outcome o[TALLY_N];
    struct udprr_client_stats seen[TALLY_N]; /* read by each done */
};

static void tally_done(void *user, int status, const void *reply, size_t len)
{
    struct outcome *o = user;
    struct tally *t = o->ctx;
    record(o, status, reply, len);
    t->seen[o->index] = test_client_stats(t->c);
}

/* The counters add up whenever they are read, also from the done
 * callbacks that close runs: each request still pending is in in_flight
 * or queued, each that ended in one outcome counter. */
START_TEST(test_stats_add_up_inside_close_callbacks)
{
    reset_globals();
    static struct tally t;
    memset(&t, 0, sizeof t);
    int fd;
    t.c = open_silent(&fd, NULL);
    for (unsigned i = 0; i < TALLY_N; i++) {
        t.o[i].index = i;
        t.o[i].ctx = &t;
        ck_assert_int_eq(send_text(t.c, "pending", tally_done, &t.o[i], NULL),
                         UDPRR_OK);
    }
    struct udprr_client_stats st = test_client_stats(t.c);
    ck_assert_uint_gt(st.in_flight, 0);
    ck_assert_uint_gt(st.queued, 0); /* both kinds are pending */
    assert_ended_add_up(&st);
    udprr_client_close(t.c);
    for (unsigned i = 0; i < TALLY_N; i++) {
        ck_assert_uint_eq(t.o[i].calls, 1);
        const struct udprr_client_stats *s = &t.seen[i];
        ck_assert_msg(s->attempts + s->unsent + s->queued ==
                              s->requests + s->retransmissions &&
                          s->requests == s->in_flight + s->queued +
                                             s->completed + s->timeouts +
                                             s->refused + s->declined +
                                             s->canceled + s->failed,
                      "done %u of %u (run by close) read counters that do "
                      "not add up: requests %llu, in_flight %llu, queued "
                      "%llu, canceled %llu, attempts %llu, unsent %llu, "
                      "retransmissions %llu",
                      t.o[i].seq, TALLY_N, (unsigned long long)s->requests,
                      (unsigned long long)s->in_flight,
                      (unsigned long long)s->queued,
                      (unsigned long long)s->canceled,
                      (unsigned long long)s->attempts,
                      (unsigned long long)s->unsent,
                      (unsigned long long)s->retransmissions);
    }
    close(fd);
}
END_TEST

/* Cancel a request in flight, then let its reply arrive: the reply is
 * dropped and counted, never delivered. The peer is a plain socket, so the
 * reply is sent exactly when the test chooses. */
START_TEST(test_cancel_before_completion_drops_the_late_reply)
{
    reset_globals();
    struct outcome o;
    memset(&o, 0, sizeof o);
    char port[16];
    int fd = test_plain_socket("127.0.0.1", port);
    udprr_client *c = test_client_open(port, NULL);
    uint64_t ticket = 0;
    ck_assert_int_eq(send_text(c, "late", on_done, &o, &ticket), UDPRR_OK);
    ck_assert_uint_eq(ticket, 1); /* tickets count up from 1 */

    uint8_t buf[256];
    struct sockaddr_storage from;
    socklen_t from_len = sizeof from;
    ssize_t n = test_recv_within(fd, buf, sizeof buf, WAIT_MS, &from,
                                 &from_len);
    ck_assert_int_gt(n, 0);
    struct udprr__wire_header h;
    const uint8_t *body;
    size_t body_len;
    ck_assert_int_eq(udprr__wire_decode(buf, (size_t)n, &h, &body, &body_len),
                     UDPRR__WIRE_VALID);
    ck_assert_int_eq(h.kind, UDPRR__KIND_REQUEST);
    ck_assert_uint_eq(body_len, 4);

    ck_assert_uint_eq(o.calls, 0);
    ck_assert_int_eq(udprr_client_cancel(c, ticket), UDPRR_OK);
    ck_assert_uint_eq(o.calls, 1); /* before cancel returned */
    ck_assert_int_eq(o.status, UDPRR_ECANCELED);
    struct udprr_client_stats st = test_client_stats(c);
    ck_assert_uint_eq(st.canceled, 1);
    ck_assert_uint_eq(st.unsent, 0); /* it had been sent */
    ck_assert_uint_eq(st.in_flight + st.queued, 0);
    assert_ended_add_up(&st);
    ck_assert_int_eq(udprr_client_timeout_ms(c), -1);

    /* The genuine reply, too late. */
    uint8_t out[UDPRR__WIRE_HEADER_BYTES + 4];
    struct udprr__wire_header reply = {UDPRR__KIND_REPLY, h.attempt, h.id};
    memcpy(out + UDPRR__WIRE_HEADER_BYTES, "late", 4);
    ck_assert_int_eq(udprr__wire_encode(&reply, out + UDPRR__WIRE_HEADER_BYTES,
                                        4, out),
                     UDPRR_OK);
    ck_assert_int_eq(sendto(fd, out, sizeof out, 0, (struct sockaddr *)&from,
                            from_len),
                     (ssize_t)sizeof out);
    ck_assert(pump_until(c, reply_dropped, c, WAIT_MS));
    st = test_client_stats(c);
    ck_assert_uint_eq(st.dropped_duplicate, 1);
    ck_assert_uint_eq(st.dropped_stale, 0);
    ck_assert_uint_eq(st.completed, 0);
    ck_assert_uint_eq(o.calls, 1);

    /* Cancelling it again is a no-op that says so. */
    ck_assert_int_eq(udprr_client_cancel(c, ticket), UDPRR_ENOTPENDING);
    ck_assert_uint_eq(o.calls, 1);
    udprr_client_close(c);
    ck_assert_uint_eq(done_seq, 1);
    close(fd);
}
END_TEST

/* A queued request, canceled, ends without ever being sent. */
START_TEST(test_cancel_of_a_queued_request_sends_nothing)
{
    reset_globals();
    struct outcome first, queued;
    memset(&first, 0, sizeof first);
    memset(&queued, 0, sizeof queued);
    udprr_client_opts opts = opts_with_window(1);
    int fd;
    udprr_client *c = open_silent(&fd, &opts);
    uint64_t t1 = 0, t2 = 0;
    ck_assert_int_eq(send_text(c, "first", on_done, &first, &t1), UDPRR_OK);
    ck_assert_int_eq(send_text(c, "queued", on_done, &queued, &t2), UDPRR_OK);
    ck_assert_uint_gt(t2, t1);
    struct udprr_client_stats st = test_client_stats(c);
    ck_assert_uint_eq(st.in_flight, 1);
    ck_assert_uint_eq(st.queued, 1);

    ck_assert_int_eq(udprr_client_cancel(c, t2), UDPRR_OK);
    ck_assert_uint_eq(queued.calls, 1);
    ck_assert_int_eq(queued.status, UDPRR_ECANCELED);
    ck_assert_uint_eq(first.calls, 0);
    st = test_client_stats(c);
    ck_assert_uint_eq(st.in_flight, 1);
    ck_assert_uint_eq(st.queued, 0);
    ck_assert_uint_eq(st.canceled, 1);
    ck_assert_uint_eq(st.unsent, 1);
    assert_ended_add_up(&st);
    udprr_client_close(c);
    ck_assert_uint_eq(first.calls, 1);
    ck_assert_int_eq(first.status, UDPRR_ECANCELED);
    ck_assert_uint_eq(queued.calls, 1);

    /* Loopback delivers at once: whatever the handle sent is in the
     * socket by now, and all of it is the first request. */
    uint8_t buf[256];
    unsigned datagrams = 0;
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n < 0)
            break;
        struct udprr__wire_header h;
        const uint8_t *body;
        size_t body_len;
        ck_assert_int_eq(udprr__wire_decode(buf, (size_t)n, &h, &body,
                                            &body_len),
                         UDPRR__WIRE_VALID);
        ck_assert_uint_eq(body_len, 5);
        ck_assert_mem_eq(body, "first", 5);
        datagrams++;
    }
    ck_assert_uint_ge(datagrams, 1);
    close(fd);
}
END_TEST

START_TEST(test_cancel_after_completion_is_enotpending)
{
    reset_globals();
    struct outcome o;
    memset(&o, 0, sizeof o);
    struct fixture_server ts;
    test_server_start(&ts, "127.0.0.1", NULL, test_echo_handler, NULL);
    udprr_client *c = test_client_open(ts.port, NULL);
    uint64_t ticket = 0;
    ck_assert_int_eq(send_text(c, "done", on_done, &o, &ticket), UDPRR_OK);
    ck_assert_uint_eq(ticket, 1);
    ck_assert(pump_until(c, has_run, &o, WAIT_MS));
    assert_reply_is(&o, "done", 4);

    ck_assert_int_eq(udprr_client_cancel(c, ticket), UDPRR_ENOTPENDING);
    ck_assert_uint_eq(o.calls, 1);
    ck_assert_int_eq(o.status, UDPRR_OK);
    /* Tickets never issued name nothing. */
    ck_assert_int_eq(udprr_client_cancel(c, 0), UDPRR_ENOTPENDING);
    ck_assert_int_eq(udprr_client_cancel(c, ticket + 1000),
                     UDPRR_ENOTPENDING);
    ck_assert_int_eq(udprr_client_cancel(NULL, ticket), UDPRR_EINVAL);
    struct udprr_client_stats st = test_client_stats(c);
    ck_assert_uint_eq(st.completed, 1);
    ck_assert_uint_eq(st.canceled, 0);
    assert_ended_add_up(&st);

    /* The next ticket is a new one, never the old one again. */
    struct outcome o2;
    memset(&o2, 0, sizeof o2);
    uint64_t ticket2 = 0;
    ck_assert_int_eq(send_text(c, "again", on_done, &o2, &ticket2), UDPRR_OK);
    ck_assert_uint_gt(ticket2, ticket);
    ck_assert_int_eq(udprr_client_cancel(c, ticket), UDPRR_ENOTPENDING);
    ck_assert_uint_eq(o2.calls, 0); /* the stale ticket did not name it */
    ck_assert(pump_until(c, has_run, &o2, WAIT_MS));
    assert_reply_is(&o2, "again", 5);
    udprr_client_close(c);
    ck_assert_uint_eq(o.calls, 1);
    ck_assert_uint_eq(o2.calls, 1);
    test_server_stop(&ts, NULL);
}
END_TEST

/* --- deadlines and the event loop's timeout ----------------------------- */

/* Two requests to a server that never answers, under the handle's long
 * deadline: the first with it, the second with a short deadline of its
 * own (deadline_ms). The second ends with UDPRR_ETIMEDOUT at its own
 * deadline, never before, while the first stays pending: in flight beside
 * it (window 0: the default), or (window 1) in flight while the second
 * waits queued behind it, its deadline counting from its send all the
 * same, so that it ends unsent. */
static void check_own_deadline(unsigned window, unsigned deadline_ms)
{
    reset_globals();
    struct outcome first, second;
    memset(&first, 0, sizeof first);
    memset(&second, 0, sizeof second);
    udprr_client_opts opts = opts_with_window(window);
    opts.deadline_ms = 30000;
    int fd;
    udprr_client *c = open_silent(&fd, &opts);
    udprr_send_opts so = deadline_opts(deadline_ms);
    uint64_t start = test_now_us();
    ck_assert_int_eq(send_ex(c, "first", 5, NULL, on_done, &first, NULL),
                     UDPRR_OK);
    ck_assert_int_eq(send_ex(c, "second", 6, &so, on_done, &second, NULL),
                     UDPRR_OK);
    ck_assert_uint_eq(test_client_stats(c).queued, window == 1);
    /* The next timer is at most the short deadline away. */
    int wait = udprr_client_timeout_ms(c);
    ck_assert_int_ge(wait, 0);
    ck_assert_int_le(wait, (int)deadline_ms);

    ck_assert(pump_until(c, has_run, &second, WAIT_MS));
    ck_assert_int_eq(second.status, UDPRR_ETIMEDOUT);
    ck_assert_uint_ge(second.at_us - start, deadline_ms * MS);
    ck_assert_uint_lt(second.at_us - start, 15000 * MS);
    ck_assert_uint_eq(first.calls, 0);
    struct udprr_client_stats st = test_client_stats(c);
    ck_assert_uint_eq(st.timeouts, 1);
    ck_assert_uint_eq(st.unsent, window == 1);
    ck_assert_uint_eq(st.queued, 0);
    ck_assert_uint_eq(st.in_flight, 1);
    assert_ended_add_up(&st);
    ck_assert_int_ge(udprr_client_timeout_ms(c), 0);

    udprr_client_close(c);
    ck_assert_uint_eq(first.calls, 1);
    ck_assert_int_eq(first.status, UDPRR_ECANCELED);
    ck_assert_uint_eq(second.calls, 1);
    close(fd);
}

START_TEST(test_per_request_deadline_shorter_than_the_handle)
{
    check_own_deadline(0, 300);
}
END_TEST

START_TEST(test_per_request_deadline_runs_while_queued)
{
    check_own_deadline(1, 200);
}
END_TEST

START_TEST(test_timeout_ms_says_whether_anything_is_pending)
{
    reset_globals();
    struct outcome o;
    memset(&o, 0, sizeof o);
    udprr_client_opts opts;
    udprr_client_opts_init(&opts);
    opts.initial_rto_ms = 1000;
    int fd;
    udprr_client *c = open_silent(&fd, &opts);
    ck_assert_int_eq(udprr_client_timeout_ms(c), -1);
    ck_assert_int_eq(udprr_client_process(c), UDPRR_OK); /* harmless */
    ck_assert_int_eq(udprr_client_timeout_ms(c), -1);

    uint64_t ticket = 0;
    ck_assert_int_eq(send_text(c, "wait", on_done, &o, &ticket), UDPRR_OK);
    /* The first retransmission is at most one initial RTO away. */
    int wait = udprr_client_timeout_ms(c);
    ck_assert_int_ge(wait, 0);
    ck_assert_int_le(wait, 1000);
    ck_assert_int_eq(udprr_client_cancel(c, ticket), UDPRR_OK);
    ck_assert_int_eq(udprr_client_timeout_ms(c), -1);
    ck_assert_uint_eq(o.calls, 1);
    udprr_client_close(c);
    ck_assert_uint_eq(o.calls, 1);
    close(fd);
}
END_TEST

/* --- re-entry ------------------------------------------------------------ */

struct reentry {
    udprr_client *c;
    struct outcome o;
    int process_rc, request_rc;
};

static void reenter_done(void *user, int status, const void *reply,
                         size_t len)
{
    struct outcome *o = user;
    struct reentry *r = o->ctx;
    record(o, status, reply, len);
    r->process_rc = udprr_client_process(r->c);
    char buf[16];
    size_t got = 0;
    r->request_rc = udprr_client_request(r->c, "inner", 5, buf, sizeof buf,
                                         &got);
}

START_TEST(test_process_and_request_from_done_are_einval)
{
    reset_globals();
    struct reentry r;
    memset(&r, 0, sizeof r);
    r.process_rc = r.request_rc = 12345;
    struct fixture_server ts;
    test_server_start(&ts, "127.0.0.1", NULL, test_echo_handler, NULL);
    r.c = test_client_open(ts.port, NULL);
    r.o.ctx = &r;
    ck_assert_int_eq(send_text(r.c, "outer", reenter_done, &r.o, NULL),
                     UDPRR_OK);
    ck_assert(pump_until(r.c, has_run, &r.o, WAIT_MS));
    assert_reply_is(&r.o, "outer", 5);
    ck_assert_int_eq(r.process_rc, UDPRR_EINVAL);
    ck_assert_int_eq(r.request_rc, UDPRR_EINVAL);
    ck_assert_int_eq(udprr_client_process(NULL), UDPRR_EINVAL);

    /* The refused calls left the handle as it was. */
    struct udprr_client_stats st = test_client_stats(r.c);
    ck_assert_uint_eq(st.requests, 1);
    ck_assert_uint_eq(st.completed, 1);
    ck_assert_uint_eq(st.in_flight + st.queued, 0);
    char buf[16];
    size_t got = 0;
    ck_assert_int_eq(udprr_client_request(r.c, "after", 5, buf, sizeof buf,
                                          &got),
                     UDPRR_OK);
    ck_assert_uint_eq(got, 5);
    ck_assert_mem_eq(buf, "after", 5);
    udprr_client_close(r.c);
    ck_assert_uint_eq(r.o.calls, 1);
    test_server_stop(&ts, NULL);
}
END_TEST

/* A blocking request behind 20 asynchronous ones and a window of 4 waits
 * its turn: at least 16 of them end (from inside the blocking call)
 * before it is even sent, and it still gets its own reply. */
START_TEST(test_blocking_request_with_async_pending)
{
    enum { N = 20, WINDOW = 4 };
    reset_globals();
    struct outcome o[N];
    char req[N][32];
    memset(o, 0, sizeof o);
    struct fixture_server ts;
    test_server_start(&ts, "127.0.0.1", NULL, test_echo_handler, NULL);
    udprr_client_opts opts;
    udprr_client_opts_init(&opts);
    opts.max_window = WINDOW;
    udprr_client *c = test_client_open(ts.port, &opts);
    for (unsigned i = 0; i < N; i++) {
        snprintf(req[i], sizeof req[i], "async:%u", i);
        ck_assert_int_eq(send_text(c, req[i], on_done, &o[i], NULL),
                         UDPRR_OK);
    }
    char reply[32];
    size_t got = 0;
    in_blocking = 1;
    int rc = udprr_client_request(c, "blocking", 8, reply, sizeof reply,
                                  &got);
    in_blocking = 0;
    ck_assert_int_eq(rc, UDPRR_OK);
    ck_assert_uint_eq(got, 8);
    ck_assert_mem_eq(reply, "blocking", 8);
    ck_assert_uint_ge(done_in_blocking, N - WINDOW);

    unsigned all = N;
    ck_assert(pump_until(c, seq_reached, &all, WAIT_MS));
    for (unsigned i = 0; i < N; i++) {
        ck_assert_uint_eq(o[i].calls, 1);
        assert_reply_is(&o[i], req[i], strlen(req[i]));
    }
    struct udprr_client_stats st = test_client_stats(c);
    ck_assert_uint_eq(st.requests, N + 1);
    ck_assert_uint_eq(st.completed, N + 1);
    ck_assert_uint_eq(st.in_flight + st.queued, 0);
    assert_ended_add_up(&st);
    udprr_client_close(c);
    ck_assert_uint_eq(done_seq, N);
    test_server_stop(&ts, NULL);
}
END_TEST

/* --- raw framing --------------------------------------------------------- */

enum { RAW_N = 10 };

static struct raw_state {
    udprr_client *c;
    struct outcome o[RAW_N];
    char req[RAW_N][32];
    uint64_t max_in_flight;
} raw_state;

static void raw_done(void *user, int status, const void *reply, size_t len)
{
    struct outcome *o = user;
    record(o, status, reply, len);
    ck_assert_uint_eq(o->seq, o->index + 1); /* in the order sent */
    struct udprr_client_stats st = test_client_stats(raw_state.c);
    if (st.in_flight > raw_state.max_in_flight)
        raw_state.max_in_flight = st.in_flight;
}

/* Raw framing cannot tell replies apart: the sends queue, go out one at a
 * time, and complete in order, each with its own reply. */
START_TEST(test_raw_framing_one_in_flight_in_order)
{
    reset_globals();
    memset(&raw_state, 0, sizeof raw_state);
    udprr_server_opts so;
    udprr_server_opts_init(&so);
    so.framing = UDPRR_FRAMING_RAW;
    struct fixture_server ts;
    test_server_start(&ts, "127.0.0.1", &so, test_echo_handler, NULL);
    udprr_client_opts opts;
    udprr_client_opts_init(&opts);
    opts.framing = UDPRR_FRAMING_RAW;
    /* No retransmission unless a reply takes a second: in raw framing a
     * late answer to one could pass for the next request's reply. */
    opts.initial_rto_ms = 1000;
    opts.min_rto_ms = 1000;
    opts.deadline_ms = 0;
    raw_state.c = test_client_open(ts.port, &opts);
    for (unsigned i = 0; i < RAW_N; i++) {
        /* distinct lengths: "r0", "r1x", "r2xx", ... */
        int n = snprintf(raw_state.req[i], sizeof raw_state.req[i], "r%u", i);
        memset(raw_state.req[i] + n, 'x', i);
        raw_state.req[i][(size_t)n + i] = '\0';
        raw_state.o[i].index = i;
        ck_assert_int_eq(send_text(raw_state.c, raw_state.req[i], raw_done,
                                   &raw_state.o[i], NULL),
                         UDPRR_OK);
    }
    struct udprr_client_stats st = test_client_stats(raw_state.c);
    ck_assert_uint_eq(st.in_flight, 1);
    ck_assert_uint_eq(st.queued, RAW_N - 1);

    unsigned all = RAW_N;
    ck_assert(pump_until(raw_state.c, seq_reached, &all, WAIT_MS));
    for (unsigned i = 0; i < RAW_N; i++) {
        ck_assert_uint_eq(raw_state.o[i].calls, 1);
        assert_reply_is(&raw_state.o[i], raw_state.req[i],
                        strlen(raw_state.req[i]));
    }
    ck_assert_uint_le(raw_state.max_in_flight, 1);
    st = test_client_stats(raw_state.c);
    ck_assert_uint_eq(st.completed, RAW_N);
    ck_assert_uint_eq(st.in_flight + st.queued, 0);
    assert_ended_add_up(&st);
    udprr_client_close(raw_state.c);
    ck_assert_uint_eq(done_seq, RAW_N);
    test_server_stop(&ts, NULL);
}
END_TEST

/* --- refused sends ------------------------------------------------------- */

START_TEST(test_send_errors_never_call_done)
{
    static uint8_t big[UDPRR_MAX_PAYLOAD + 1];
    reset_globals();
    struct outcome refused;
    memset(&refused, 0, sizeof refused);
    int fd;
    udprr_client *c = open_silent(&fd, NULL);
    uint64_t ticket = 777;
    ck_assert_int_eq(send_ex(c, "x", 1, NULL, NULL, &refused, &ticket),
                     UDPRR_EINVAL);
    ck_assert_int_eq(send_plain(c, "x", 1, NULL, &refused), UDPRR_EINVAL);
    ck_assert_int_eq(send_plain(NULL, "x", 1, on_done, &refused),
                     UDPRR_EINVAL);
    ck_assert_int_eq(send_plain(c, NULL, 1, on_done, &refused), UDPRR_EINVAL);
    ck_assert_int_eq(send_plain(c, big, sizeof big, on_done, &refused),
                     UDPRR_ETOOBIG);
    ck_assert_int_eq(send_ex(c, big, sizeof big, NULL, on_done, &refused,
                             &ticket),
                     UDPRR_ETOOBIG);
    struct udprr_client_stats st = test_client_stats(c);
    ck_assert_uint_eq(st.requests, 0);
    ck_assert_uint_eq(st.attempts, 0);
    ck_assert_int_eq(udprr_client_timeout_ms(c), -1);
    udprr_client_close(c);
    ck_assert_uint_eq(refused.calls, 0);
    ck_assert_uint_eq(done_seq, 0);
    close(fd);
}
END_TEST

START_TEST(test_max_pending_gives_ebusy)
{
    enum { MAX = 3 };
    reset_globals();
    struct outcome o[MAX + 2];
    uint64_t tickets[MAX + 2];
    memset(o, 0, sizeof o);
    udprr_client_opts opts;
    udprr_client_opts_init(&opts);
    opts.max_pending = MAX;
    int fd;
    udprr_client *c = open_silent(&fd, &opts);
    for (unsigned i = 0; i < MAX; i++)
        ck_assert_int_eq(send_text(c, "p", on_done, &o[i], &tickets[i]),
                         UDPRR_OK);
    ck_assert_int_eq(send_text(c, "p", on_done, &o[MAX], &tickets[MAX]),
                     UDPRR_EBUSY);
    struct udprr_client_stats st = test_client_stats(c);
    ck_assert_uint_eq(st.requests, MAX);
    ck_assert_uint_eq(st.in_flight + st.queued, MAX);

    /* Room again once one has ended. */
    ck_assert_int_eq(udprr_client_cancel(c, tickets[0]), UDPRR_OK);
    ck_assert_int_eq(send_text(c, "p", on_done, &o[MAX + 1],
                               &tickets[MAX + 1]),
                     UDPRR_OK);
    udprr_client_close(c);
    for (unsigned i = 0; i < MAX + 2; i++) {
        if (i == MAX) {
            ck_assert_uint_eq(o[i].calls, 0); /* refused: never called */
            continue;
        }
        ck_assert_uint_eq(o[i].calls, 1);
        ck_assert_int_eq(o[i].status, UDPRR_ECANCELED);
    }
    ck_assert_uint_eq(done_seq, MAX + 1);
    close(fd);
}
END_TEST

/* Each pending request counts its bytes plus UDPRR_PENDING_OVERHEAD: a
 * budget of two largest requests (and less than one small one to spare)
 * takes two, refuses a third. */
START_TEST(test_max_pending_bytes_gives_ebusy)
{
    static uint8_t big[UDPRR_MAX_PAYLOAD];
    reset_globals();
    struct outcome o[4];
    uint64_t tickets[4];
    memset(o, 0, sizeof o);
    memset(big, 'b', sizeof big);
    udprr_client_opts opts;
    udprr_client_opts_init(&opts);
    opts.max_pending_bytes = 2 * (UDPRR_PENDING_OVERHEAD + sizeof big) + 100;
    int fd;
    udprr_client *c = open_silent(&fd, &opts);
    ck_assert_int_eq(send_ex(c, big, sizeof big, NULL, on_done, &o[0],
                             &tickets[0]),
                     UDPRR_OK);
    ck_assert_int_eq(send_ex(c, big, sizeof big, NULL, on_done, &o[1],
                             &tickets[1]),
                     UDPRR_OK);
    ck_assert_int_eq(send_ex(c, "s", 1, NULL, on_done, &o[2], &tickets[2]),
                     UDPRR_EBUSY);
    ck_assert_uint_eq(test_client_stats(c).requests, 2);
    ck_assert_int_eq(udprr_client_cancel(c, tickets[0]), UDPRR_OK);
    ck_assert_int_eq(send_ex(c, "s", 1, NULL, on_done, &o[3], &tickets[3]),
                     UDPRR_OK);
    udprr_client_close(c);
    ck_assert_uint_eq(o[0].calls, 1);
    ck_assert_uint_eq(o[1].calls, 1);
    ck_assert_uint_eq(o[2].calls, 0);
    ck_assert_uint_eq(o[3].calls, 1);
    ck_assert_uint_eq(done_seq, 3);
    close(fd);
}
END_TEST

/* Nothing listens: the request ends with UDPRR_EREFUSED, either from the
 * send itself (then done never runs and nothing is counted) or through
 * done, once. */
START_TEST(test_closed_port_is_refused_once)
{
    reset_globals();
    struct outcome o;
    memset(&o, 0, sizeof o);
    char port[16];
    int fd = test_plain_socket("127.0.0.1", port);
    close(fd); /* nothing listens there now */
    udprr_client *c = test_client_open(port, NULL);
    int rc = send_text(c, "anyone?", on_done, &o, NULL);
    struct udprr_client_stats st;
    if (rc == UDPRR_OK) {
        ck_assert(pump_until(c, has_run, &o, WAIT_MS));
        ck_assert_int_eq(o.status, UDPRR_EREFUSED);
        st = test_client_stats(c);
        ck_assert_uint_eq(st.refused, 1);
        ck_assert_uint_eq(st.requests, 1);
    } else {
        ck_assert_int_eq(rc, UDPRR_EREFUSED);
        st = test_client_stats(c);
        ck_assert_uint_eq(st.requests, 0);
    }
    assert_ended_add_up(&st);
    ck_assert_int_eq(udprr_client_timeout_ms(c), -1);
    udprr_client_close(c);
    ck_assert_uint_eq(o.calls, rc == UDPRR_OK ? 1u : 0u);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("net_async");
    TCase *piped = tcase_create("pipelined");
    tcase_set_timeout(piped, 120);
    tcase_add_test(piped, test_pipelined_through_impaired_relay);
    tcase_add_test(piped, test_blocking_request_with_async_pending);
    tcase_add_test(piped, test_raw_framing_one_in_flight_in_order);
    suite_add_tcase(s, piped);

    TCase *cb = tcase_create("callbacks");
    tcase_set_timeout(cb, 60);
    tcase_add_test(cb, test_done_that_sends_the_next_request);
    tcase_add_test(cb, test_done_that_cancels_another_request);
    tcase_add_test(cb, test_done_that_closes_the_handle);
    tcase_add_test(cb, test_done_run_by_cancel_closes_the_handle);
    tcase_add_test(cb, test_done_run_by_blocking_request_closes_the_handle);
    tcase_add_test(cb, test_process_and_request_from_done_are_einval);
    suite_add_tcase(s, cb);

    TCase *end = tcase_create("cancel_close");
    tcase_set_timeout(end, 60);
    tcase_add_test(end, test_close_with_a_thousand_pending);
    tcase_add_test(end, test_stats_add_up_inside_close_callbacks);
    tcase_add_test(end, test_cancel_before_completion_drops_the_late_reply);
    tcase_add_test(end, test_cancel_of_a_queued_request_sends_nothing);
    tcase_add_test(end, test_cancel_after_completion_is_enotpending);
    suite_add_tcase(s, end);

    TCase *timing = tcase_create("deadlines");
    tcase_set_timeout(timing, 60);
    tcase_add_test(timing, test_per_request_deadline_shorter_than_the_handle);
    tcase_add_test(timing, test_per_request_deadline_runs_while_queued);
    tcase_add_test(timing, test_timeout_ms_says_whether_anything_is_pending);
    suite_add_tcase(s, timing);

    TCase *err = tcase_create("refused_sends");
    tcase_set_timeout(err, 60);
    tcase_add_test(err, test_send_errors_never_call_done);
    tcase_add_test(err, test_max_pending_gives_ebusy);
    tcase_add_test(err, test_max_pending_bytes_gives_ebusy);
    tcase_add_test(err, test_closed_port_is_refused_once);
    suite_add_tcase(s, err);
    return udprr_test_run(s);
}
