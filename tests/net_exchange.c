/* SPDX-License-Identifier: MIT */
/*
 * net_exchange.c - the blocking client and the server loop over real
 * sockets on loopback: byte-exact replies, fast failure when nothing
 * listens, deadlines, forged replies, at-most-once execution behind a lossy
 * relay, cache bounds, IPv6, and the error paths.
 *
 * Every wait is bounded. Timing assertions only use lower bounds that the
 * library guarantees, and upper bounds far above any real delay.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>

#include "netutil.h"
#include "relay.h"
#include "testutil.h"
#include "wire.h"

#define MS 1000ull

/* --- handlers ------------------------------------------------------------ */

/* Replies with each request byte XOR 0x5a, so a reply is never the
 * request bounced back unchanged. A request starting with "decline" is
 * declined; "big:N" gets an N-byte reply. */
static int transform_handler(void *user, const udprr_request *req,
                             void *reply, size_t cap, size_t *reply_len)
{
    (void)user;
    const uint8_t *in = req->data;
    uint8_t *out = reply;
    if (req->len >= 7 && memcmp(in, "decline", 7) == 0)
        return -1;
    if (req->len > 4 && memcmp(in, "big:", 4) == 0) {
        /* The request's bytes end at req->len, with no NUL after them. */
        char digits[32] = {0};
        size_t ndigits = req->len - 4 < sizeof digits - 1 ? req->len - 4
                                                          : sizeof digits - 1;
        memcpy(digits, in + 4, ndigits);
        size_t n = (size_t)strtoul(digits, NULL, 10);
        ck_assert_uint_le(n, cap);
        memset(out, 'B', n);
        *reply_len = n;
        return 0;
    }
    ck_assert_uint_le(req->len, cap);
    for (size_t i = 0; i < req->len; i++)
        out[i] = in[i] ^ 0x5a;
    *reply_len = req->len;
    return 0;
}

/* Counts calls per request; each request names its index, "req:%u". */
struct counting {
    pthread_mutex_t lock;
    unsigned calls[4096];
    unsigned total;
    size_t reply_bytes; /* size of every reply */
};

static int counting_handler(void *user, const udprr_request *req, void *reply,
                            size_t cap, size_t *reply_len)
{
    struct counting *c = user;
    char text[32];
    size_t n = req->len < sizeof text - 1 ? req->len : sizeof text - 1;
    memcpy(text, req->data, n);
    text[n] = '\0';
    unsigned index = 0;
    ck_assert_int_eq(sscanf(text, "req:%u", &index), 1);
    ck_assert_uint_lt(index, 4096);
    pthread_mutex_lock(&c->lock);
    c->calls[index]++;
    c->total++;
    pthread_mutex_unlock(&c->lock);
    size_t len = c->reply_bytes ? c->reply_bytes : n;
    ck_assert_uint_le(len, cap);
    memset(reply, 'r', len);
    memcpy(reply, text, n < len ? n : len);
    *reply_len = len;
    return 0;
}

static udprr_client *open_client(const char *host, const char *port,
                                 const udprr_client_opts *opts)
{
    udprr_client *c = NULL;
    ck_assert_int_eq(udprr_client_open(&c, host, port, opts), UDPRR_OK);
    ck_assert_ptr_nonnull(c);
    return c;
}

static struct udprr_client_stats client_stats(udprr_client *c)
{
    struct udprr_client_stats st = {.size = sizeof st};
    ck_assert_int_eq(udprr_client_stats(c, &st), UDPRR_OK);
    return st;
}

/* --- round trips --------------------------------------------------------- */

START_TEST(test_thousand_requests_byte_exact)
{
    static const size_t sizes[] = {0, 1, 1000, UDPRR_MAX_PAYLOAD};
    static uint8_t req[UDPRR_MAX_PAYLOAD], reply[UDPRR_MAX_PAYLOAD];
    struct fixture_server ts;
    test_server_start(&ts, "127.0.0.1", NULL, transform_handler, NULL);
    udprr_client *c = open_client("127.0.0.1", ts.port, NULL);
    uint64_t seed = 1000;

    for (int i = 0; i < 1000; i++) {
        size_t len = sizes[i % 4];
        for (size_t j = 0; j < len; j++)
            req[j] = (uint8_t)seeded_rand(&seed);
        if (len >= 4)
            req[0] = 'x'; /* never "big:" or "decline" */
        size_t got = 12345;
        ck_assert_int_eq(udprr_client_request(c, req, len, reply,
                                              sizeof reply, &got),
                         UDPRR_OK);
        ck_assert_uint_eq(got, len);
        for (size_t j = 0; j < len; j++)
            if (reply[j] != (req[j] ^ 0x5a))
                ck_abort_msg("request %d: byte %zu differs", i, j);
    }
    struct udprr_client_stats st = client_stats(c);
    ck_assert_uint_eq(st.requests, 1000);
    ck_assert_uint_eq(st.completed, 1000);
    ck_assert_uint_eq(st.attempts, st.requests + st.retransmissions);
    /* The RTO adapted to loopback: from 1 s down to about a millisecond
     * (a loaded machine or valgrind can lift the last samples a little),
     * and it is what the estimator's own formula gives (G = floor = 1 ms). */
    ck_assert_uint_ge(st.rto_us, 1 * MS);
    ck_assert_uint_lt(st.rto_us, 100 * MS);
    uint64_t margin = 4 * st.rttvar_us > 1 * MS ? 4 * st.rttvar_us : 1 * MS;
    ck_assert_uint_eq(st.rto_us, st.srtt_us + margin);
    ck_assert_uint_gt(st.rtt_samples, 0);
    udprr_client_close(c);

    struct udprr_server_stats ss;
    test_server_stop(&ts, &ss);
    ck_assert_uint_eq(ss.handled, 1000);
    ck_assert_uint_eq(ss.dropped_malformed, 0);
}
END_TEST

START_TEST(test_decline_gives_eremote)
{
    struct fixture_server ts;
    test_server_start(&ts, "127.0.0.1", NULL, transform_handler, NULL);
    udprr_client *c = open_client("127.0.0.1", ts.port, NULL);
    char buf[16];
    size_t got = 0;
    ck_assert_int_eq(udprr_client_request(c, "decline", 7, buf, sizeof buf,
                                          &got),
                     UDPRR_EREMOTE);
    ck_assert_uint_eq(client_stats(c).declined, 1);
    udprr_client_close(c);
    struct udprr_server_stats ss;
    test_server_stop(&ts, &ss);
    ck_assert_uint_eq(ss.declined, 1);
}
END_TEST

START_TEST(test_reply_larger_than_buffer_is_etrunc)
{
    struct fixture_server ts;
    test_server_start(&ts, "127.0.0.1", NULL, transform_handler, NULL);
    udprr_client *c = open_client("127.0.0.1", ts.port, NULL);
    char buf[10];
    memset(buf, 0, sizeof buf);
    size_t got = 0;
    ck_assert_int_eq(udprr_client_request(c, "big:3000", 8, buf, sizeof buf,
                                          &got),
                     UDPRR_ETRUNC);
    ck_assert_uint_eq(got, 3000);         /* the real size */
    ck_assert_mem_eq(buf, "BBBBBBBBBB", 10); /* what fitted */
    udprr_client_close(c);
    test_server_stop(&ts, NULL);
}
END_TEST

START_TEST(test_too_big_request_is_refused_before_sending)
{
    static uint8_t req[UDPRR_MAX_PAYLOAD + 1];
    struct fixture_server ts;
    test_server_start(&ts, "127.0.0.1", NULL, transform_handler, NULL);
    udprr_client *c = open_client("127.0.0.1", ts.port, NULL);
    size_t got;
    ck_assert_int_eq(udprr_client_request(c, req, sizeof req, NULL, 0, &got),
                     UDPRR_ETOOBIG);
    ck_assert_uint_eq(client_stats(c).attempts, 0);
    udprr_client_close(c);
    struct udprr_server_stats ss;
    test_server_stop(&ts, &ss);
    ck_assert_uint_eq(ss.received, 0);
}
END_TEST

START_TEST(test_bad_arguments_are_einval)
{
    udprr_client *c = NULL;
    udprr_client_opts o;
    size_t got;
    ck_assert_int_eq(udprr_client_open(NULL, "127.0.0.1", "9", NULL),
                     UDPRR_EINVAL);
    ck_assert_int_eq(udprr_client_open(&c, NULL, "9", NULL), UDPRR_EINVAL);
    ck_assert_int_eq(udprr_client_open(&c, "127.0.0.1", NULL, NULL),
                     UDPRR_EINVAL);
    udprr_client_opts_init(&o);
    o.min_rto_ms = 0;
    ck_assert_int_eq(udprr_client_open(&c, "127.0.0.1", "9", &o),
                     UDPRR_EINVAL);
    udprr_client_opts_init(&o);
    o.backoff_pct = 50;
    ck_assert_int_eq(udprr_client_open(&c, "127.0.0.1", "9", &o),
                     UDPRR_EINVAL);
    udprr_client_opts_init(&o);
    o.size = 0; /* never initialized */
    ck_assert_int_eq(udprr_client_open(&c, "127.0.0.1", "9", &o),
                     UDPRR_EINVAL);
    ck_assert_ptr_null(c);

    c = open_client("127.0.0.1", "9", NULL);
    ck_assert_int_eq(udprr_client_request(NULL, "x", 1, NULL, 0, &got),
                     UDPRR_EINVAL);
    ck_assert_int_eq(udprr_client_request(c, NULL, 1, NULL, 0, &got),
                     UDPRR_EINVAL);
    ck_assert_int_eq(udprr_client_request(c, "x", 1, NULL, 5, &got),
                     UDPRR_EINVAL);
    ck_assert_int_eq(udprr_client_request(c, "x", 1, NULL, 0, NULL),
                     UDPRR_EINVAL);
    struct udprr_client_stats st = {.size = 0};
    ck_assert_int_eq(udprr_client_stats(c, &st), UDPRR_EINVAL);
    ck_assert_int_eq(udprr_client_stats(c, NULL), UDPRR_EINVAL);
    udprr_client_close(c);
    udprr_client_close(NULL);

    udprr_server *s = NULL;
    ck_assert_int_eq(udprr_server_open(NULL, NULL, "0", NULL), UDPRR_EINVAL);
    ck_assert_int_eq(udprr_server_open(&s, NULL, NULL, NULL), UDPRR_EINVAL);
    ck_assert_int_eq(udprr_server_run(NULL, transform_handler, NULL),
                     UDPRR_EINVAL);
    udprr_server_stop(NULL);
    udprr_server_close(NULL);
}
END_TEST

/* The handle's socket is the one connected to the server, the same for the
 * handle's life; NULL has none. */
START_TEST(test_client_fd_is_the_socket_connected_to_the_server)
{
    struct fixture_server ts;
    test_server_start(&ts, "127.0.0.1", NULL, transform_handler, NULL);
    udprr_client *c = open_client("127.0.0.1", ts.port, NULL);
    int fd = udprr_client_fd(c);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_in peer;
    socklen_t len = sizeof peer;
    ck_assert_int_eq(getpeername(fd, (struct sockaddr *)&peer, &len), 0);
    ck_assert_int_eq(peer.sin_family, AF_INET);
    ck_assert_uint_eq(ntohs(peer.sin_port), (unsigned)atoi(ts.port));
    char reply[8];
    size_t got;
    ck_assert_int_eq(udprr_client_request(c, "x", 1, reply, sizeof reply,
                                          &got),
                     UDPRR_OK);
    ck_assert_int_eq(udprr_client_fd(c), fd);
    ck_assert_int_eq(udprr_client_fd(NULL), -1);
    udprr_client_close(c);
    test_server_stop(&ts, NULL);
}
END_TEST

START_TEST(test_names_and_service_names_resolve)
{
    udprr_client *c = NULL;
    /* "domain" is a service name (port 53); opening sends nothing. */
    ck_assert_int_eq(udprr_client_open(&c, "localhost", "domain", NULL),
                     UDPRR_OK);
    udprr_client_close(c);
    c = NULL;
    ck_assert_int_eq(udprr_client_open(&c, "127.0.0.1",
                                       "no-such-service-udprr", NULL),
                     UDPRR_ERESOLVE);
    ck_assert_ptr_null(c);
}
END_TEST

/* --- failure modes ------------------------------------------------------- */

START_TEST(test_closed_port_is_refused_fast)
{
    char port[16];
    int fd = test_plain_socket("127.0.0.1", port);
    close(fd); /* nothing listens there now */
    udprr_client *c = open_client("127.0.0.1", port, NULL);
    char buf[8];
    size_t got;
    uint64_t start = test_now_us();
    ck_assert_int_eq(udprr_client_request(c, "hello", 5, buf, sizeof buf,
                                          &got),
                     UDPRR_EREFUSED);
    uint64_t elapsed = test_now_us() - start;
    /* The first RTO is 1 s; ICMP on loopback comes back at once. */
    ck_assert_uint_lt(elapsed, 500 * MS);
    struct udprr_client_stats st = client_stats(c);
    ck_assert_uint_eq(st.attempts, 1);
    ck_assert_uint_eq(st.refused, 1);
    udprr_client_close(c);
}
END_TEST

/* Counts what a silent socket received, checking the attempt numbers. */
static unsigned drain_attempts(int fd)
{
    uint8_t buf[256];
    unsigned n = 0;
    for (;;) {
        ssize_t len = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (len < 0)
            return n;
        struct udprr__wire_header h;
        ck_assert_int_eq(udprr__wire_decode(buf, (size_t)len, &h, NULL, NULL),
                         UDPRR__WIRE_VALID);
        ck_assert_uint_eq(h.attempt, n + 1);
        n++;
    }
}

/* Sends one request to a socket that never answers, with a jitter-free
 * schedule, and checks it ends with UDPRR_ETIMEDOUT after `attempts`
 * transmissions, no sooner than end_ms and well before end_ms + 400. */
static void expect_silent_timeout(unsigned initial_rto_ms,
                                  unsigned deadline_ms, unsigned max_attempts,
                                  unsigned attempts, unsigned end_ms)
{
    char port[16];
    int fd = test_plain_socket("127.0.0.1", port);
    udprr_client_opts o;
    udprr_client_opts_init(&o);
    o.initial_rto_ms = initial_rto_ms;
    o.jitter_pct = 0;
    o.deadline_ms = deadline_ms;
    o.max_attempts = max_attempts;
    udprr_client *c = open_client("127.0.0.1", port, &o);
    size_t got;
    uint64_t start = test_now_us();
    ck_assert_int_eq(udprr_client_request(c, "anyone?", 7, NULL, 0, &got),
                     UDPRR_ETIMEDOUT);
    uint64_t elapsed = test_now_us() - start;
    ck_assert_uint_ge(elapsed, end_ms * MS);
    ck_assert_uint_lt(elapsed, (end_ms + 400) * MS);
    struct udprr_client_stats st = client_stats(c);
    ck_assert_uint_eq(st.attempts, attempts);
    ck_assert_uint_eq(st.timeouts, 1);
    ck_assert_uint_eq(drain_attempts(fd), attempts);
    udprr_client_close(c);
    close(fd);
}

START_TEST(test_silent_server_times_out_at_deadline)
{
    /* RTO 100 ms, doubling, deadline 1 s: transmissions at 0, 0.1, 0.3 and
     * 0.7 s; the 0.8 s wait after the fourth is clipped, so the request
     * ends at 1 s, not at 1.5 s. */
    expect_silent_timeout(100, 1000, 0, 4, 1000);
}
END_TEST

START_TEST(test_max_attempts_end_after_last_wait)
{
    /* 3 attempts, 50 ms doubling, no deadline: ends at 50+100+200 ms. */
    expect_silent_timeout(50, 0, 3, 3, 350);
}
END_TEST

/* A hand-written peer that answers the first request it sees with forged
 * datagrams first and, if told to, the genuine reply last. */
struct forger {
    int fd;
    int send_genuine;
};

static void *forger_main(void *arg)
{
    struct forger *f = arg;
    uint8_t buf[256];
    struct sockaddr_storage from;
    socklen_t from_len = sizeof from;
    ssize_t n = test_recv_within(f->fd, buf, sizeof buf, 5000, &from,
                                 &from_len);
    if (n < UDPRR__WIRE_HEADER_BYTES)
        return NULL;
    struct udprr__wire_header h;
    udprr__wire_decode(buf, (size_t)n, &h, NULL, NULL);

    uint8_t out[64];
    struct udprr__wire_header reply = {UDPRR__KIND_REPLY, h.attempt, h.id + 1};
    /* 1: right port, wrong ID */
    memcpy(out + UDPRR__WIRE_HEADER_BYTES, "FORGED1", 7);
    udprr__wire_encode(&reply, out + UDPRR__WIRE_HEADER_BYTES, 7, out);
    sendto(f->fd, out, UDPRR__WIRE_HEADER_BYTES + 7, 0, (struct sockaddr *)&from, from_len);
    /* 2: right ID, from another port (the connected client never sees it) */
    char other_port[16];
    int other = test_plain_socket("127.0.0.1", other_port);
    reply.id = h.id;
    memcpy(out + UDPRR__WIRE_HEADER_BYTES, "FORGED2", 7);
    udprr__wire_encode(&reply, out + UDPRR__WIRE_HEADER_BYTES, 7, out);
    sendto(other, out, UDPRR__WIRE_HEADER_BYTES + 7, 0, (struct sockaddr *)&from, from_len);
    close(other);
    /* 3: right ID, right port, an attempt never sent */
    reply.attempt = (uint16_t)(h.attempt + 5);
    memcpy(out + UDPRR__WIRE_HEADER_BYTES, "FORGED3", 7);
    udprr__wire_encode(&reply, out + UDPRR__WIRE_HEADER_BYTES, 7, out);
    sendto(f->fd, out, UDPRR__WIRE_HEADER_BYTES + 7, 0, (struct sockaddr *)&from, from_len);
    if (f->send_genuine) {
        reply.attempt = h.attempt;
        memcpy(out + UDPRR__WIRE_HEADER_BYTES, "GENUINE", 7);
        udprr__wire_encode(&reply, out + UDPRR__WIRE_HEADER_BYTES, 7, out);
        sendto(f->fd, out, UDPRR__WIRE_HEADER_BYTES + 7, 0, (struct sockaddr *)&from, from_len);
    }
    return NULL;
}

static void run_forger(int send_genuine)
{
    struct forger f;
    char port[16];
    pthread_t t;
    f.fd = test_plain_socket("127.0.0.1", port);
    f.send_genuine = send_genuine;
    ck_assert_int_eq(pthread_create(&t, NULL, forger_main, &f), 0);
    udprr_client_opts o;
    udprr_client_opts_init(&o);
    o.deadline_ms = 1500; /* one transmission: the first RTO is 1 s */
    o.max_attempts = 1;
    udprr_client *c = open_client("127.0.0.1", port, &o);
    char buf[32];
    size_t got = 0;
    int rc = udprr_client_request(c, "q", 1, buf, sizeof buf, &got);
    ck_assert_int_eq(pthread_join(t, NULL), 0);
    struct udprr_client_stats st = client_stats(c);
    if (send_genuine) {
        ck_assert_int_eq(rc, UDPRR_OK);
        ck_assert_uint_eq(got, 7);
        ck_assert_mem_eq(buf, "GENUINE", 7);
    } else {
        ck_assert_int_eq(rc, UDPRR_ETIMEDOUT);
    }
    ck_assert_uint_eq(st.dropped_stale, 1);      /* forged 1 */
    ck_assert_uint_eq(st.dropped_unexpected, 1); /* forged 3 */
    udprr_client_close(c);
    close(f.fd);
}

START_TEST(test_forged_replies_never_complete)
{
    run_forger(0);
}
END_TEST

START_TEST(test_forged_replies_do_not_hide_the_genuine_one)
{
    run_forger(1);
}
END_TEST

/* --- at most once, behind a lossy relay ---------------------------------- */

/* A relay that drops the given share of replies (seeded). */
static struct relay *lossy_reply_relay(const struct fixture_server *ts,
                                       unsigned drop_permille,
                                       uint64_t seed, char port[16])
{
    struct impair_config lossy = {.drop_permille = drop_permille};
    return test_relay_in_front(ts, NULL, &lossy, seed, port);
}


START_TEST(test_handler_runs_once_per_request_behind_lossy_relay)
{
    enum { N = 300 };
    static struct counting count;
    memset(&count, 0, sizeof count);
    pthread_mutex_init(&count.lock, NULL);
    struct fixture_server ts;
    test_server_start(&ts, "127.0.0.1", NULL, counting_handler, &count);

    char relay_port[16];
    struct relay *relay = lossy_reply_relay(&ts, 500, 20261122, relay_port);

    udprr_client_opts o;
    udprr_client_opts_init(&o);
    o.initial_rto_ms = 20;
    o.min_rto_ms = 2;  /* loopback answers in microseconds */
    o.max_rto_ms = 80; /* at 50% loss, doubling has a heavy tail: cap it */
    o.deadline_ms = 0;
    o.max_attempts = 0; /* retry until it works: the test is bounded by
                           Check's timeout, never by luck */
    udprr_client *c = open_client("127.0.0.1", relay_port, &o);
    for (unsigned i = 0; i < N; i++) {
        char req[32], reply[64];
        int len = snprintf(req, sizeof req, "req:%u", i);
        size_t got = 0;
        ck_assert_int_eq(udprr_client_request(c, req, (size_t)len, reply,
                                              sizeof reply, &got),
                         UDPRR_OK);
        ck_assert_uint_eq(got, (size_t)len);
        ck_assert_mem_eq(reply, req, (size_t)len);
    }
    struct udprr_client_stats st = client_stats(c);
    udprr_client_close(c);
    struct relay_stats rs;
    relay_stop(relay, &rs);
    struct udprr_server_stats ss;
    test_server_stop(&ts, &ss);

    for (unsigned i = 0; i < N; i++)
        ck_assert_uint_eq(count.calls[i], 1);
    ck_assert_uint_eq(count.total, N);
    ck_assert_uint_eq(st.completed, N);
    ck_assert_uint_gt(st.attempts, N); /* half the replies were lost */
    ck_assert_uint_eq(st.completed + st.timeouts + st.refused + st.declined +
                          st.canceled + st.failed,
                      st.requests);
    ck_assert_uint_eq(st.attempts, st.requests + st.retransmissions);
    ck_assert_uint_gt(rs.to_client.impair.dropped, 0);
    /* The handler ran once per request; every other datagram the server
     * saw, each a retransmission, was answered from its cache. */
    ck_assert_uint_eq(ss.handled, N);
    ck_assert_uint_eq(ss.cache_hits, ss.received - N);
    ck_assert_uint_gt(ss.cache_hits, 0);
    pthread_mutex_destroy(&count.lock);
}
END_TEST

START_TEST(test_cache_stays_within_its_bounds)
{
    static struct counting count;
    memset(&count, 0, sizeof count);
    pthread_mutex_init(&count.lock, NULL);
    count.reply_bytes = 500;
    udprr_server_opts so;
    udprr_server_opts_init(&so);
    so.cache_entries = 1000;
    so.cache_bytes = 16 * 1024; /* holds far fewer than 1000 replies */
    struct fixture_server ts;
    test_server_start(&ts, "127.0.0.1", &so, counting_handler, &count);
    udprr_client *c = open_client("127.0.0.1", ts.port, NULL);
    for (unsigned i = 0; i < 2000; i++) {
        char req[32], reply[600];
        int len = snprintf(req, sizeof req, "req:%u", i % 4096);
        size_t got;
        ck_assert_int_eq(udprr_client_request(c, req, (size_t)len, reply,
                                              sizeof reply, &got),
                         UDPRR_OK);
        ck_assert_uint_eq(got, 500);
    }
    udprr_client_close(c);
    struct udprr_server_stats ss;
    test_server_stop(&ts, &ss);
    ck_assert_uint_le(ss.cache_bytes, 16 * 1024);
    ck_assert_uint_gt(ss.cache_entries, 0);
    ck_assert_uint_gt(ss.cache_evicted, 1900);
    ck_assert_uint_eq(ss.cache_entries + ss.cache_evicted + ss.cache_expired,
                      2000);
    pthread_mutex_destroy(&count.lock);
}
END_TEST

START_TEST(test_cache_off_runs_every_datagram)
{
    /* With the cache off, a retransmission reaches the handler again:
     * the client's retries are visible as extra handler calls. */
    static struct counting count;
    memset(&count, 0, sizeof count);
    pthread_mutex_init(&count.lock, NULL);
    udprr_server_opts so;
    udprr_server_opts_init(&so);
    so.reply_cache = 0;
    struct fixture_server ts;
    test_server_start(&ts, "127.0.0.1", &so, counting_handler, &count);

    char relay_port[16];
    struct relay *relay = lossy_reply_relay(&ts, 500, 7, relay_port);
    udprr_client_opts o;
    udprr_client_opts_init(&o);
    o.initial_rto_ms = 20;
    o.min_rto_ms = 2;  /* loopback answers in microseconds */
    o.max_rto_ms = 80; /* at 50% loss, doubling has a heavy tail: cap it */
    o.deadline_ms = 0;
    udprr_client *c = open_client("127.0.0.1", relay_port, &o);
    for (unsigned i = 0; i < 50; i++) {
        char req[32], reply[64];
        int len = snprintf(req, sizeof req, "req:%u", i);
        size_t got;
        ck_assert_int_eq(udprr_client_request(c, req, (size_t)len, reply,
                                              sizeof reply, &got),
                         UDPRR_OK);
    }
    struct udprr_client_stats st = client_stats(c);
    udprr_client_close(c);
    relay_stop(relay, NULL);
    struct udprr_server_stats ss;
    test_server_stop(&ts, &ss);
    ck_assert_uint_eq(ss.cache_hits, 0);
    ck_assert_uint_eq(ss.handled, ss.received);
    ck_assert_uint_eq(count.total, ss.received);
    /* Nothing is lost on the way to the server, but the last request's
     * late retransmission may still be in flight when the server stops. */
    ck_assert_uint_le(ss.received, st.attempts);
    ck_assert_uint_ge(ss.received + 1, st.attempts);
    ck_assert_uint_gt(count.total, 50);
    pthread_mutex_destroy(&count.lock);
}
END_TEST


/* Ignores every first transmission, answers the second. */
static int ignore_first_attempt(void *user, const udprr_request *req,
                                void *reply, size_t cap, size_t *reply_len)
{
    unsigned *calls = user;
    (*calls)++;
    if (req->attempt == 1)
        return UDPRR_NO_REPLY;
    return transform_handler(NULL, req, reply, cap, reply_len);
}

START_TEST(test_no_reply_is_retried_and_not_cached)
{
    unsigned calls = 0;
    struct fixture_server ts;
    test_server_start(&ts, "127.0.0.1", NULL, ignore_first_attempt, &calls);
    udprr_client_opts o;
    udprr_client_opts_init(&o);
    o.initial_rto_ms = 100; /* the wait after attempt 2 is >= 160 ms */
    udprr_client *c = open_client("127.0.0.1", ts.port, &o);
    char reply[8];
    size_t got;
    ck_assert_int_eq(udprr_client_request(c, "ab", 2, reply, sizeof reply,
                                          &got),
                     UDPRR_OK);
    ck_assert_uint_ge(client_stats(c).attempts, 2);
    udprr_client_close(c);
    struct udprr_server_stats ss;
    test_server_stop(&ts, &ss);
    /* Attempt 1 ran the handler and was not remembered, so attempt 2 ran
     * it again; anything later (a stalled machine) came from the cache. */
    ck_assert_uint_eq(calls, 2);
    ck_assert_uint_eq(ss.not_answered, 1);
    ck_assert_uint_eq(ss.answered, 1 + ss.cache_hits);
    ck_assert_uint_eq(ss.cache_entries, 1);
}
END_TEST

/* --- IPv6 ---------------------------------------------------------------- */

START_TEST(test_ipv6_loopback_round_trip)
{
    struct fixture_server ts;
    test_server_start(&ts, "::1", NULL, transform_handler, NULL);
    udprr_client *c = open_client("::1", ts.port, NULL);
    char reply[16];
    size_t got;
    for (int i = 0; i < 100; i++) {
        ck_assert_int_eq(udprr_client_request(c, "six", 3, reply,
                                              sizeof reply, &got),
                         UDPRR_OK);
        ck_assert_uint_eq(got, 3);
        ck_assert(reply[0] == ('s' ^ 0x5a) && reply[2] == ('x' ^ 0x5a));
    }
    udprr_client_close(c);
    test_server_stop(&ts, NULL);
}
END_TEST

START_TEST(test_ipv6_closed_port_is_refused)
{
    char port[16];
    int fd = test_plain_socket("::1", port);
    close(fd);
    udprr_client *c = open_client("::1", port, NULL);
    size_t got;
    ck_assert_int_eq(udprr_client_request(c, "x", 1, NULL, 0, &got),
                     UDPRR_EREFUSED);
    udprr_client_close(c);
}
END_TEST

START_TEST(test_wildcard_server_takes_ipv4_and_ipv6)
{
    struct fixture_server ts;
    test_server_start(&ts, NULL, NULL, transform_handler, NULL);
    const char *hosts[] = {"127.0.0.1", "::1"};
    for (int i = 0; i < 2; i++) {
        udprr_client *c = open_client(hosts[i], ts.port, NULL);
        char reply[8];
        size_t got;
        ck_assert_int_eq(udprr_client_request(c, "ab", 2, reply,
                                              sizeof reply, &got),
                         UDPRR_OK);
        udprr_client_close(c);
    }
    test_server_stop(&ts, NULL);
}
END_TEST

/* --- stopping ------------------------------------------------------------ */

START_TEST(test_stop_before_run_returns_at_once)
{
    udprr_server *s;
    ck_assert_int_eq(udprr_server_open(&s, "127.0.0.1", "0", NULL), UDPRR_OK);
    udprr_server_stop(s);
    ck_assert_int_eq(udprr_server_run(s, transform_handler, NULL), UDPRR_OK);
    udprr_server_close(s);
}
END_TEST

static udprr_server *signal_target;
static void on_alarm(int sig)
{
    (void)sig;
    udprr_server_stop(signal_target);
}

START_TEST(test_stop_from_a_signal_handler)
{
    ck_assert_int_eq(udprr_server_open(&signal_target, "127.0.0.1", "0",
                                       NULL),
                     UDPRR_OK);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    ck_assert_int_eq(sigaction(SIGALRM, &sa, NULL), 0);
    alarm(1);
    uint64_t start = test_now_us();
    ck_assert_int_eq(udprr_server_run(signal_target, transform_handler, NULL),
                     UDPRR_OK);
    ck_assert_uint_lt(test_now_us() - start, 5000 * MS);
    udprr_server_close(signal_target);
}
END_TEST

START_TEST(test_malformed_datagrams_are_counted_and_dropped)
{
    struct fixture_server ts;
    test_server_start(&ts, "127.0.0.1", NULL, transform_handler, NULL);
    char port[16];
    int fd = test_plain_socket("127.0.0.1", port);
    struct sockaddr_in to = {.sin_family = AF_INET};
    inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
    to.sin_port = htons((uint16_t)atoi(ts.port));
    sendto(fd, "garbage", 7, 0, (struct sockaddr *)&to, sizeof to);
    sendto(fd, "", 0, 0, (struct sockaddr *)&to, sizeof to);
    uint8_t reply_kind[UDPRR__WIRE_HEADER_BYTES];
    struct udprr__wire_header h = {UDPRR__KIND_REPLY, 1, 99};
    udprr__wire_encode(&h, NULL, 0, reply_kind);
    sendto(fd, reply_kind, sizeof reply_kind, 0, (struct sockaddr *)&to, sizeof to);
    /* A real client after the junk: the server is still serving. */
    udprr_client *c = open_client("127.0.0.1", ts.port, NULL);
    char reply[8];
    size_t got;
    ck_assert_int_eq(udprr_client_request(c, "ok", 2, reply, sizeof reply,
                                          &got),
                     UDPRR_OK);
    udprr_client_close(c);
    uint8_t buf[64];
    struct sockaddr_storage from;
    socklen_t from_len = sizeof from;
    ck_assert_int_lt(test_recv_within(fd, buf, sizeof buf, 0, &from,
                                      &from_len),
                     0); /* junk is never answered */
    close(fd);
    struct udprr_server_stats ss;
    test_server_stop(&ts, &ss);
    ck_assert_uint_eq(ss.dropped_malformed, 2);
    ck_assert_uint_eq(ss.dropped_unexpected, 1);
    ck_assert_uint_eq(ss.handled, 1);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("net_exchange");
    TCase *rt = tcase_create("round_trips");
    tcase_set_timeout(rt, 120);
    tcase_add_test(rt, test_thousand_requests_byte_exact);
    tcase_add_test(rt, test_decline_gives_eremote);
    tcase_add_test(rt, test_reply_larger_than_buffer_is_etrunc);
    tcase_add_test(rt, test_too_big_request_is_refused_before_sending);
    tcase_add_test(rt, test_bad_arguments_are_einval);
    tcase_add_test(rt, test_names_and_service_names_resolve);
    tcase_add_test(rt, test_client_fd_is_the_socket_connected_to_the_server);
    tcase_add_test(rt, test_malformed_datagrams_are_counted_and_dropped);
    suite_add_tcase(s, rt);

    TCase *fail = tcase_create("failures");
    tcase_set_timeout(fail, 30);
    tcase_add_test(fail, test_closed_port_is_refused_fast);
    tcase_add_test(fail, test_silent_server_times_out_at_deadline);
    tcase_add_test(fail, test_max_attempts_end_after_last_wait);
    tcase_add_test(fail, test_forged_replies_never_complete);
    tcase_add_test(fail, test_forged_replies_do_not_hide_the_genuine_one);
    suite_add_tcase(s, fail);

    TCase *once = tcase_create("at_most_once");
    tcase_set_timeout(once, 120);
    tcase_add_test(once, test_handler_runs_once_per_request_behind_lossy_relay);
    tcase_add_test(once, test_cache_stays_within_its_bounds);
    tcase_add_test(once, test_cache_off_runs_every_datagram);
    tcase_add_test(once, test_no_reply_is_retried_and_not_cached);
    suite_add_tcase(s, once);

    TCase *v6 = tcase_create("ipv6");
    tcase_add_test(v6, test_ipv6_loopback_round_trip);
    tcase_add_test(v6, test_ipv6_closed_port_is_refused);
    tcase_add_test(v6, test_wildcard_server_takes_ipv4_and_ipv6);
    suite_add_tcase(s, v6);

    TCase *stop = tcase_create("stop");
    tcase_add_test(stop, test_stop_before_run_returns_at_once);
    tcase_add_test(stop, test_stop_from_a_signal_handler);
    suite_add_tcase(s, stop);
    return udprr_test_run(s);
}
