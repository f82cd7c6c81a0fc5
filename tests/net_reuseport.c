/* SPDX-License-Identifier: MIT */
/*
 * net_reuseport.c - the claim docs/scaling.md makes for a server with
 * several workers (SO_REUSEPORT sockets, a reply cache each): the kernel
 * hands every datagram of one client address and port to one socket, so a
 * client's retransmission reaches the worker whose cache holds its answer.
 *
 * Many plain sockets (each its own source port, so each a client of its
 * own to the kernel's hash) send one native request each, built here with
 * the library's wire encoder, and then a retransmission of it: the same ID
 * and body, the next attempt number. Had a retransmission reached another
 * worker, that worker's cache would not know the ID and the handler would
 * run again. The handler records its thread, so the test also shows that
 * the requests were spread over more than one worker (with one worker the
 * test would show nothing).
 */
#include <pthread.h>

#include "netutil.h"
#include "testutil.h"
#include "wire.h"

enum { WORKERS = 4, CLIENTS = 64, RECV_WAIT_MS = 5000 };

/* What the handler saw, under the lock (it runs on every worker's
 * thread at once). */
struct seen {
    pthread_mutex_t lock;
    unsigned calls[CLIENTS];      /* handler calls per request */
    pthread_t thread[WORKERS + 1]; /* the distinct threads that ran it */
    unsigned threads;
    unsigned bad; /* requests not of this test, or too many threads */
};

/* Request i's ID and body: the ID is not i alone, so that a reply to some
 * other request cannot pass for its answer. */
static uint64_t request_id(unsigned i)
{
    return 0x5ca1ab1e00000000u | (uint64_t)(i * 2654435761u);
}

/* Request i's reply: its length and bytes depend on i. */
static size_t reply_for(unsigned i, uint8_t *out)
{
    size_t len = 8 + (size_t)(i * 37 % 120);
    for (size_t k = 0; k < len; k++)
        out[k] = (uint8_t)(i * 11 + k * 3);
    return len;
}

static int recording_handler(void *user, const udprr_request *req,
                             void *reply, size_t cap, size_t *reply_len)
{
    struct seen *s = user;
    uint32_t i = UINT32_MAX;
    if (req->len == sizeof i)
        memcpy(&i, req->data, sizeof i);
    pthread_t self = pthread_self();
    pthread_mutex_lock(&s->lock);
    if (i >= CLIENTS || req->id != request_id(i) || cap < 128) {
        s->bad++;
        pthread_mutex_unlock(&s->lock);
        return UDPRR_DECLINE;
    }
    s->calls[i]++;
    unsigned t = 0;
    while (t < s->threads && !pthread_equal(s->thread[t], self))
        t++;
    if (t == s->threads) {
        if (s->threads < WORKERS)
            s->thread[s->threads++] = self;
        else
            s->bad++; /* more threads than workers */
    }
    pthread_mutex_unlock(&s->lock);
    *reply_len = reply_for(i, reply);
    return UDPRR_REPLY;
}

static void send_attempt(int fd, unsigned i, uint16_t attempt)
{
    uint32_t body = i;
    uint8_t dgram[UDPRR__WIRE_HEADER_BYTES + sizeof body];
    struct udprr__wire_header h = {UDPRR__KIND_REQUEST, attempt,
                                   request_id(i)};
    memcpy(dgram + UDPRR__WIRE_HEADER_BYTES, &body, sizeof body);
    ck_assert_int_eq(udprr__wire_encode(&h, dgram + UDPRR__WIRE_HEADER_BYTES,
                                        sizeof body, dgram),
                     UDPRR_OK);
    ck_assert_int_eq(send(fd, dgram, sizeof dgram, 0), (ssize_t)sizeof dgram);
}

/* Receives request i's answer to `attempt` on fd, within a bounded wait,
 * checks its header and copies its body to body (*body_len bytes). */
static void receive_answer(int fd, unsigned i, uint16_t attempt,
                           uint8_t *body, size_t *body_len)
{
    uint8_t buf[UDPRR_MAX_DATAGRAM];
    ssize_t got =
        test_recv_within(fd, buf, sizeof buf, RECV_WAIT_MS, NULL, NULL);
    ck_assert_msg(got > 0, "request %u attempt %u: no answer", i, attempt);
    struct udprr__wire_header h;
    const uint8_t *payload;
    size_t payload_len;
    ck_assert_int_eq(udprr__wire_decode(buf, (size_t)got, &h, &payload,
                                        &payload_len),
                     UDPRR__WIRE_VALID);
    ck_assert_int_eq(h.kind, UDPRR__KIND_REPLY);
    ck_assert_uint_eq(h.id, request_id(i));
    ck_assert_uint_eq(h.attempt, attempt); /* the server echoes it */
    memcpy(body, payload, payload_len);
    *body_len = payload_len;
}

START_TEST(test_each_client_retransmission_reaches_its_worker_cache)
{
    static struct seen seen;
    memset(&seen, 0, sizeof seen);
    pthread_mutex_init(&seen.lock, NULL);
    udprr_server_opts so;
    udprr_server_opts_init(&so);
    so.workers = WORKERS;
    /* Plain sockets cannot answer the amplification guard's echo. */
    so.amplification_factor = UDPRR_AMPLIFICATION_OFF;
    struct fixture_server ts;
    test_server_start(&ts, "127.0.0.1", &so, recording_handler, &seen);

    /* Each socket bound to a port of its own and connected to the server:
     * the kernel sees CLIENTS distinct clients. */
    int fds[CLIENTS];
    for (unsigned i = 0; i < CLIENTS; i++) {
        char port[16];
        fds[i] = test_plain_socket("127.0.0.1", port);
        ck_assert_int_eq(connect(fds[i], (const struct sockaddr *)&ts.addr,
                                 ts.addr_len),
                         0);
    }

    /* Every first transmission at once, so the workers take them
     * concurrently; then every answer. */
    static uint8_t first[CLIENTS][256];
    size_t first_len[CLIENTS];
    for (unsigned i = 0; i < CLIENTS; i++)
        send_attempt(fds[i], i, 1);
    for (unsigned i = 0; i < CLIENTS; i++)
        receive_answer(fds[i], i, 1, first[i], &first_len[i]);

    /* Each answer arrived, so its worker has cached it: now the
     * retransmissions, attempt 2, from the same sockets. */
    for (unsigned i = 0; i < CLIENTS; i++)
        send_attempt(fds[i], i, 2);
    for (unsigned i = 0; i < CLIENTS; i++) {
        uint8_t again[256];
        size_t again_len;
        receive_answer(fds[i], i, 2, again, &again_len);
        uint8_t want[256];
        size_t want_len = reply_for(i, want);
        ck_assert_uint_eq(first_len[i], want_len);
        ck_assert_mem_eq(first[i], want, want_len);
        ck_assert_uint_eq(again_len, first_len[i]);
        ck_assert_mem_eq(again, first[i], first_len[i]);
    }
    for (unsigned i = 0; i < CLIENTS; i++)
        close(fds[i]);
    struct udprr_server_stats ss;
    test_server_stop(&ts, &ss);

    ck_assert_uint_eq(seen.bad, 0);
    for (unsigned i = 0; i < CLIENTS; i++)
        ck_assert_msg(seen.calls[i] == 1, "request %u ran %u times", i,
                      seen.calls[i]);
    /* Spread over workers, or the test would show nothing. */
    ck_assert_msg(seen.threads > 1,
                  "all %u clients landed on one worker", CLIENTS);
    /* Every retransmission answered from a cache: none ran the handler. */
    ck_assert_uint_eq(ss.received, 2 * CLIENTS);
    ck_assert_uint_eq(ss.handled, CLIENTS);
    ck_assert_uint_eq(ss.cache_hits, CLIENTS);
    ck_assert_uint_eq(ss.answered, 2 * CLIENTS);
    pthread_mutex_destroy(&seen.lock);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("net_reuseport");
    TCase *tc = tcase_create("reuseport");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_each_client_retransmission_reaches_its_worker_cache);
    suite_add_tcase(s, tc);
    return udprr_test_run(s);
}
