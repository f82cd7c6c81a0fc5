/* SPDX-License-Identifier: MIT */
/*
 * net_batch.c - the server takes datagrams and sends answers in batches
 * (one recvmmsg, one sendmmsg per step): a burst of requests larger than a
 * batch, sent from a plain socket while the server is held in a handler,
 * is answered request by request, each exactly once with its own reply,
 * and the counters add up; a cached answer sent in the same batch as the
 * datagrams that evict it from the cache still goes out intact; and the
 * batched send reports each datagram the kernel refuses while sending
 * the rest.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>

#include "netutil.h"
#include "sock.h"
#include "testutil.h"
#include "wire.h"

/* More than two receive batches (64 each). */
#define BURST 150
/* Sent while the server is held: more than a batch waits in its socket. */
#define HELD 100

/* The first request holds the server's thread until the test has queued
 * HELD datagrams behind it. */
struct gate {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    int entered, released;
    atomic_uint calls;
    atomic_uint wrong_bodies; /* requests whose bytes were not their ID */
};

/* Each ID's reply: its length and bytes depend on the ID, so that an
 * answer sent from the wrong place (another request's, or memory the
 * cache reused) shows. */
static size_t reply_for(uint64_t id, uint8_t *out)
{
    size_t len = 1 + (size_t)(id * 37 % 200);
    for (size_t i = 0; i < len; i++)
        out[i] = (uint8_t)(id * 7 + i);
    return len;
}

static int gate_handler(void *user, const udprr_request *req, void *reply,
                        size_t cap, size_t *reply_len)
{
    struct gate *g = user;
    uint64_t in;
    if (req->len != sizeof in ||
        (memcpy(&in, req->data, sizeof in), in != req->id))
        atomic_fetch_add(&g->wrong_bodies, 1);
    if (atomic_fetch_add(&g->calls, 1) == 0) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 10; /* bounded: the test fails on its counts */
        pthread_mutex_lock(&g->lock);
        g->entered = 1;
        pthread_cond_broadcast(&g->changed);
        while (!g->released &&
               pthread_cond_timedwait(&g->changed, &g->lock, &until) == 0)
            ;
        pthread_mutex_unlock(&g->lock);
    }
    ck_assert_uint_ge(cap, 200);
    *reply_len = reply_for(req->id, reply);
    return UDPRR_REPLY;
}

static void gate_init(struct gate *g)
{
    memset(g, 0, sizeof *g);
    pthread_mutex_init(&g->lock, NULL);
    pthread_cond_init(&g->changed, NULL);
}

static void gate_destroy(struct gate *g)
{
    pthread_cond_destroy(&g->changed);
    pthread_mutex_destroy(&g->lock);
}

/* Waits (bounded) until the handler holds the server's thread. */
static void gate_wait_entered(struct gate *g)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 10;
    pthread_mutex_lock(&g->lock);
    while (!g->entered &&
           pthread_cond_timedwait(&g->changed, &g->lock, &until) == 0)
        ;
    int entered = g->entered;
    pthread_mutex_unlock(&g->lock);
    ck_assert_msg(entered, "the handler never ran");
}

static void gate_release(struct gate *g)
{
    pthread_mutex_lock(&g->lock);
    g->released = 1;
    pthread_cond_broadcast(&g->changed);
    pthread_mutex_unlock(&g->lock);
}

/* A plain socket connected to the server, with room for every reply. */
static int burst_socket(const struct fixture_server *ts)
{
    char port[16];
    int fd = test_plain_socket("127.0.0.1", port);
    int room = 1 << 20;
    ck_assert_int_eq(
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &room, sizeof room), 0);
    ck_assert_int_eq(
        connect(fd, (const struct sockaddr *)&ts->addr, ts->addr_len), 0);
    return fd;
}

static void send_request(int fd, uint64_t id)
{
    uint8_t dgram[UDPRR__WIRE_HEADER_BYTES + sizeof id];
    struct udprr__wire_header h = {UDPRR__KIND_REQUEST, 1, id};
    memcpy(dgram + UDPRR__WIRE_HEADER_BYTES, &id, sizeof id);
    ck_assert_int_eq(udprr__wire_encode(&h, dgram + UDPRR__WIRE_HEADER_BYTES,
                                        sizeof id, dgram),
                     UDPRR_OK);
    ck_assert_int_eq(send(fd, dgram, sizeof dgram, 0), (ssize_t)sizeof dgram);
}

/* Receives `expected` replies within a bounded time, each checked against
 * its ID's reply, and counts them per ID (IDs 1..BURST). */
static void receive_replies(int fd, unsigned expected,
                            unsigned seen[BURST + 1])
{
    uint8_t buf[UDPRR_MAX_DATAGRAM];
    uint8_t want[256];
    for (unsigned n = 0; n < expected; n++) {
        ssize_t got = test_recv_within(fd, buf, sizeof buf, 5000, NULL, NULL);
        ck_assert_msg(got >= 0, "reply %u of %u never came", n, expected);
        struct udprr__wire_header h;
        const uint8_t *body;
        size_t body_len;
        ck_assert_int_eq(
            udprr__wire_decode(buf, (size_t)got, &h, &body, &body_len),
            UDPRR__WIRE_VALID);
        ck_assert_int_eq(h.kind, UDPRR__KIND_REPLY);
        ck_assert_uint_ge(h.id, 1);
        ck_assert_uint_le(h.id, BURST);
        size_t want_len = reply_for(h.id, want);
        ck_assert_uint_eq(body_len, want_len);
        ck_assert_mem_eq(body, want, want_len);
        seen[h.id]++;
    }
}

/* Nothing more is waiting: called after the server closed, when every
 * datagram it sent is already queued (loopback delivers in the send). */
static void assert_nothing_more(int fd)
{
    uint8_t buf[64];
    ck_assert_int_lt(recv(fd, buf, sizeof buf, MSG_DONTWAIT), 0);
    ck_assert_int_eq(errno, EAGAIN);
}

/* Every datagram received is accounted for by exactly one outcome. */
static void assert_stats_add_up(const struct udprr_server_stats *ss)
{
    ck_assert_uint_eq(ss->received,
                      ss->handled + ss->cache_hits + ss->dropped_malformed +
                          ss->dropped_unexpected +
                          ss->deferred_retransmissions);
    ck_assert_uint_eq(ss->handled, ss->answered - ss->cache_hits +
                                       ss->not_answered + ss->deferred +
                                       ss->send_errors);
    ck_assert_uint_eq(ss->send_errors, 0);
    ck_assert_uint_eq(ss->dropped_malformed, 0);
    ck_assert_uint_eq(ss->dropped_unexpected, 0);
}

START_TEST(test_burst_answered_once_each_with_its_own_reply)
{
    struct gate g;
    gate_init(&g);
    /* Answers up to 200 bytes to 28-byte requests from a plain socket,
     * which cannot answer the amplification guard's echo: no guard. */
    udprr_server_opts o;
    udprr_server_opts_init(&o);
    o.amplification_factor = UDPRR_AMPLIFICATION_OFF;
    struct fixture_server ts;
    test_server_start(&ts, "127.0.0.1", &o, gate_handler, &g);
    int fd = burst_socket(&ts);

    send_request(fd, 1);
    gate_wait_entered(&g);
    for (uint64_t id = 2; id <= HELD; id++)
        send_request(fd, id);
    gate_release(&g);
    for (uint64_t id = HELD + 1; id <= BURST; id++)
        send_request(fd, id);

    unsigned seen[BURST + 1] = {0};
    receive_replies(fd, BURST, seen);
    struct udprr_server_stats ss;
    test_server_stop(&ts, &ss);
    assert_nothing_more(fd);
    close(fd);

    for (unsigned id = 1; id <= BURST; id++)
        ck_assert_msg(seen[id] == 1, "ID %u answered %u times", id, seen[id]);
    ck_assert_uint_eq(atomic_load(&g.calls), BURST);
    ck_assert_uint_eq(atomic_load(&g.wrong_bodies), 0);
    ck_assert_uint_eq(ss.received, BURST);
    ck_assert_uint_eq(ss.handled, BURST);
    ck_assert_uint_eq(ss.answered, BURST);
    ck_assert_uint_eq(ss.cache_hits, 0);
    ck_assert_uint_eq(ss.declined, 0);
    assert_stats_add_up(&ss);
    gate_destroy(&g);
}
END_TEST

/* Every request twice in a row, with a cache of 4 entries: the second copy
 * is answered from the cache, and later requests of the same batch evict
 * that entry (freeing its bytes) before the batch is sent. */
#define PAIRS (BURST / 2)
#define SMALL_CACHE 4

START_TEST(test_cached_answer_survives_its_eviction_in_the_same_batch)
{
    struct gate g;
    gate_init(&g);
    udprr_server_opts o;
    udprr_server_opts_init(&o);
    o.cache_entries = SMALL_CACHE;
    o.amplification_factor = UDPRR_AMPLIFICATION_OFF; /* as above */
    struct fixture_server ts;
    test_server_start(&ts, "127.0.0.1", &o, gate_handler, &g);
    int fd = burst_socket(&ts);

    /* The gate's request is answered once; the pairs behind it wait in
     * the socket, more than a batch of them. */
    send_request(fd, 1);
    gate_wait_entered(&g);
    for (uint64_t id = 2; id <= PAIRS + 1; id++) {
        send_request(fd, id);
        send_request(fd, id);
    }
    gate_release(&g);

    unsigned seen[BURST + 1] = {0};
    receive_replies(fd, 1 + 2 * PAIRS, seen);
    struct udprr_server_stats ss;
    test_server_stop(&ts, &ss);
    assert_nothing_more(fd);
    close(fd);

    ck_assert_uint_eq(seen[1], 1);
    for (unsigned id = 2; id <= PAIRS + 1; id++)
        ck_assert_msg(seen[id] == 2, "ID %u answered %u times", id, seen[id]);
    ck_assert_uint_eq(atomic_load(&g.calls), 1 + PAIRS);
    ck_assert_uint_eq(atomic_load(&g.wrong_bodies), 0);
    ck_assert_uint_eq(ss.received, 1 + 2 * PAIRS);
    ck_assert_uint_eq(ss.handled, 1 + PAIRS);
    ck_assert_uint_eq(ss.cache_hits, PAIRS);
    ck_assert_uint_eq(ss.answered, 1 + 2 * PAIRS);
    ck_assert_uint_eq(ss.cache_evicted, 1 + PAIRS - SMALL_CACHE);
    assert_stats_add_up(&ss);
    gate_destroy(&g);
}
END_TEST

/* udprr__sock_send_many_to: a datagram the kernel refuses (here, an
 * address too short to be one) is reported as failed, and those behind it
 * still go, whether it comes first, in the middle (sendmmsg then ends
 * early and loses the error) or last. */
START_TEST(test_send_many_reports_each_failure_and_sends_the_rest)
{
    char port[16];
    int rx = test_plain_socket("127.0.0.1", port);
    int tx = test_plain_socket("127.0.0.1", port);
    struct sockaddr_storage to;
    socklen_t to_len = sizeof to;
    ck_assert_int_eq(getsockname(rx, (struct sockaddr *)&to, &to_len), 0);
    const int bad[][5] = {{1, 0, 0, 0, 0}, {0, 0, 1, 0, 0}, {0, 1, 1, 0, 1}};
    for (size_t round = 0; round < sizeof bad / sizeof bad[0]; round++) {
        struct udprr__sock_out out[5];
        int status[5];
        uint8_t header = 'h', body[5];
        size_t good = 0;
        for (size_t i = 0; i < 5; i++) {
            body[i] = (uint8_t)('0' + i);
            out[i] = (struct udprr__sock_out){
                (const struct sockaddr *)&to, bad[round][i] ? 3 : to_len, NULL,
                &header, i % 2, &body[i], 1};
            good += !bad[round][i];
        }
        ck_assert_uint_eq(udprr__sock_send_many_to(tx, out, 5, status), good);
        for (size_t i = 0; i < 5; i++) {
            ck_assert_int_eq(status[i], bad[round][i] ? UDPRR_ESYS : UDPRR_OK);
            if (bad[round][i])
                continue;
            uint8_t got[4];
            ssize_t n = test_recv_within(rx, got, sizeof got, 5000, NULL, NULL);
            ck_assert_int_eq(n, (ssize_t)(1 + i % 2));
            ck_assert_int_eq(got[n - 1], '0' + (int)i);
        }
    }
    assert_nothing_more(rx);
    close(tx);
    close(rx);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("net_batch");
    TCase *b = tcase_create("burst");
    tcase_set_timeout(b, 60);
    tcase_add_test(b, test_burst_answered_once_each_with_its_own_reply);
    tcase_add_test(b, test_cached_answer_survives_its_eviction_in_the_same_batch);
    tcase_add_test(b, test_send_many_reports_each_failure_and_sends_the_rest);
    suite_add_tcase(s, b);
    return udprr_test_run(s);
}
