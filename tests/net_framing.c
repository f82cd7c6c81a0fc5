/* SPDX-License-Identifier: MIT */
/*
 * net_framing.c - raw and id-at-offset framing over real loopback sockets:
 * libudprr on both sides, libudprr against hand-written plain peers, and
 * at-most-once on a foreign protocol's own IDs behind a lossy relay.
 */
#include <stdatomic.h>
#include <stdlib.h>

#include "netutil.h"
#include "relay.h"
#include "testutil.h"

static udprr_client *open_framed(const char *port, int framing,
                                 size_t id_offset, unsigned id_len)
{
    udprr_client_opts o;
    udprr_client_opts_init(&o);
    o.framing = framing;
    o.id_offset = id_offset;
    o.id_len = id_len;
    o.initial_rto_ms = 20;
    o.min_rto_ms = 2;
    o.max_rto_ms = 80;
    o.deadline_ms = 0; /* retry until answered: Check's timeout bounds it */
    udprr_client *c = NULL;
    ck_assert_int_eq(udprr_client_open(&c, "127.0.0.1", port, &o), UDPRR_OK);
    return c;
}

static void framed_server(struct fixture_server *ts, int framing,
                          size_t id_offset, unsigned id_len, udprr_handler h,
                          void *user)
{
    udprr_server_opts so;
    udprr_server_opts_init(&so);
    so.framing = framing;
    so.id_offset = id_offset;
    so.id_len = id_len;
    test_server_start(ts, "127.0.0.1", &so, h, user);
}

/* The textbook server's answer. */
static int your_data_was(void *user, const udprr_request *req, void *reply,
                         size_t cap, size_t *reply_len)
{
    unsigned *calls = user;
    if (calls != NULL)
        (*calls)++;
    ck_assert(req->id == 0 && req->attempt == 0); /* raw: no identity */
    *reply_len = (size_t)snprintf(reply, cap, "Your data was %zu bytes long",
                                  req->len);
    return 0;
}

START_TEST(test_raw_client_and_server)
{
    unsigned calls = 0;
    struct fixture_server ts;
    framed_server(&ts, UDPRR_FRAMING_RAW, 0, 0, your_data_was, &calls);
    udprr_client *c = open_framed(ts.port, UDPRR_FRAMING_RAW, 0, 0);
    char reply[64];
    size_t got;
    for (int i = 0; i < 100; i++) {
        ck_assert_int_eq(udprr_client_request(c, "This is my message", 18,
                                              reply, sizeof reply, &got),
                         UDPRR_OK);
        ck_assert_uint_eq(got, 27);
        ck_assert_mem_eq(reply, "Your data was 18 bytes long", 27);
    }
    udprr_client_close(c);
    struct udprr_server_stats ss;
    test_server_stop(&ts, &ss);
    ck_assert_uint_eq(calls, ss.received); /* no cache in raw framing */
    ck_assert_uint_eq(ss.cache_entries, 0);
}
END_TEST

static int raw_decline(void *user, const udprr_request *req, void *reply,
                       size_t cap, size_t *reply_len)
{
    (void)user, (void)req, (void)reply, (void)cap, (void)reply_len;
    return -1;
}

START_TEST(test_raw_decline_sends_nothing)
{
    struct fixture_server ts;
    framed_server(&ts, UDPRR_FRAMING_RAW, 0, 0, raw_decline, NULL);
    udprr_client_opts o;
    udprr_client_opts_init(&o);
    o.framing = UDPRR_FRAMING_RAW;
    o.initial_rto_ms = 20;
    o.max_attempts = 2;
    udprr_client *c = NULL;
    ck_assert_int_eq(udprr_client_open(&c, "127.0.0.1", ts.port, &o),
                     UDPRR_OK);
    size_t got;
    ck_assert_int_eq(udprr_client_request(c, "x", 1, NULL, 0, &got),
                     UDPRR_ETIMEDOUT);
    udprr_client_close(c);
    struct udprr_server_stats ss;
    test_server_stop(&ts, &ss);
    ck_assert_uint_eq(ss.declined, 2);
    ck_assert_uint_eq(ss.answered, 0);
}
END_TEST

/* A plain UDP server thread (no libudprr): answers every datagram with the
 * textbook's sentence until told to stop. (Not a fixed count: a client on
 * a loaded machine may retransmit early, and each retransmission is one
 * more datagram to answer.) */
struct plain_server {
    int fd;
    atomic_int stop;
};

static void *plain_server_main(void *arg)
{
    struct plain_server *p = arg;
    while (!atomic_load(&p->stop)) {
        uint8_t buf[2048];
        struct sockaddr_storage from;
        socklen_t from_len = sizeof from;
        ssize_t n = test_recv_within(p->fd, buf, sizeof buf, 50, &from,
                                     &from_len);
        if (n < 0)
            continue; /* nothing within 50 ms: look at the stop flag */
        char reply[64];
        int len = snprintf(reply, sizeof reply, "Your data was %zd bytes long",
                           n);
        sendto(p->fd, reply, (size_t)len, 0, (struct sockaddr *)&from,
               from_len);
    }
    return NULL;
}

START_TEST(test_raw_client_talks_to_a_plain_server)
{
    struct plain_server p;
    char port[16];
    pthread_t t;
    p.fd = test_plain_socket("127.0.0.1", port);
    atomic_init(&p.stop, 0);
    ck_assert_int_eq(pthread_create(&t, NULL, plain_server_main, &p), 0);
    udprr_client *c = open_framed(port, UDPRR_FRAMING_RAW, 0, 0);
    for (int i = 0; i < 10; i++) {
        char reply[64];
        size_t got;
        ck_assert_int_eq(udprr_client_request(c, "hello", 5, reply,
                                              sizeof reply, &got),
                         UDPRR_OK);
        ck_assert_mem_eq(reply, "Your data was 5 bytes long", 26);
    }
    udprr_client_close(c);
    atomic_store(&p.stop, 1);
    ck_assert_int_eq(pthread_join(t, NULL), 0);
    close(p.fd);
}
END_TEST

START_TEST(test_raw_server_talks_to_a_plain_client)
{
    struct fixture_server ts;
    framed_server(&ts, UDPRR_FRAMING_RAW, 0, 0, your_data_was, NULL);
    char unused[16];
    int fd = test_plain_socket("127.0.0.1", unused);
    struct sockaddr_in to = {.sin_family = AF_INET};
    inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
    to.sin_port = htons((uint16_t)atoi(ts.port));
    ck_assert_int_eq(sendto(fd, "plain bytes", 11, 0, (struct sockaddr *)&to,
                            sizeof to),
                     11);
    char reply[64];
    struct sockaddr_storage from;
    socklen_t from_len = sizeof from;
    ssize_t n = test_recv_within(fd, reply, sizeof reply, 5000, &from,
                                 &from_len);
    ck_assert_int_eq(n, 27);
    ck_assert_mem_eq(reply, "Your data was 11 bytes long", 27);
    close(fd);
    test_server_stop(&ts, NULL);
}
END_TEST

/* --- id at offset -------------------------------------------------------- */

/* A toy protocol with a 2-byte ID at offset 2 (as CoAP's message ID):
 * the reply is the request with its payload upper-cased. Counts calls per
 * request, which names its index in byte 4. */
struct idoff_count {
    pthread_mutex_t lock;
    unsigned calls[256];
};

static int upper_case(void *user, const udprr_request *req, void *reply,
                      size_t cap, size_t *reply_len)
{
    struct idoff_count *c = user;
    const uint8_t *in = req->data;
    uint8_t *out = reply;
    ck_assert_uint_ge(req->len, 5);
    ck_assert_uint_le(req->len, cap);
    ck_assert(req->id == ((uint64_t)in[2] << 8 | in[3]));
    pthread_mutex_lock(&c->lock);
    c->calls[in[4]]++;
    pthread_mutex_unlock(&c->lock);
    for (size_t i = 0; i < req->len; i++)
        out[i] = (i >= 5 && in[i] >= 'a' && in[i] <= 'z') ? in[i] - 32 : in[i];
    out[2] = out[3] = 0; /* the library puts the ID back */
    *reply_len = req->len;
    return 0;
}

START_TEST(test_id_at_offset_runs_once_per_request_behind_lossy_relay)
{
    static struct idoff_count count;
    memset(&count, 0, sizeof count);
    pthread_mutex_init(&count.lock, NULL);
    struct fixture_server ts;
    framed_server(&ts, UDPRR_FRAMING_ID_AT_OFFSET, 2, 2, upper_case, &count);

    struct impair_config lossy = {.drop_permille = 500};
    char port[16];
    struct relay *relay = test_relay_in_front(&ts, NULL, &lossy, 4242, port);

    udprr_client *c = open_framed(port, UDPRR_FRAMING_ID_AT_OFFSET, 2, 2);
    for (unsigned i = 0; i < 200; i++) {
        uint8_t req[8] = {0x40, 0x01, 0xff, 0xff, (uint8_t)i, 'a', 'b', 'c'};
        uint8_t reply[16];
        size_t got;
        ck_assert_int_eq(udprr_client_request(c, req, sizeof req, reply,
                                              sizeof reply, &got),
                         UDPRR_OK);
        ck_assert_uint_eq(got, 8);
        ck_assert_uint_eq(reply[4], (uint8_t)i);
        ck_assert_mem_eq(reply + 5, "ABC", 3);
        ck_assert_uint_eq(req[2], 0xff); /* the caller's bytes untouched */
    }
    struct udprr_client_stats st = {.size = sizeof st};
    udprr_client_stats(c, &st);
    udprr_client_close(c);
    relay_stop(relay, NULL);
    struct udprr_server_stats ss;
    test_server_stop(&ts, &ss);
    for (unsigned i = 0; i < 200; i++)
        ck_assert_uint_eq(count.calls[i], 1);
    ck_assert_uint_gt(st.retransmissions, 0);
    ck_assert_uint_gt(ss.cache_hits, 0);
    ck_assert_uint_eq(ss.handled, 200);
    pthread_mutex_destroy(&count.lock);
}
END_TEST

/* A plain peer for the ID test: answers the first request twice, first
 * with the wrong ID, then with the right one. */
static void *wrong_then_right(void *arg)
{
    int fd = *(int *)arg;
    uint8_t buf[64];
    struct sockaddr_storage from;
    socklen_t from_len = sizeof from;
    ssize_t n = test_recv_within(fd, buf, sizeof buf, 5000, &from, &from_len);
    if (n < 2)
        return NULL;
    uint8_t reply[5] = {(uint8_t)(buf[0] ^ 0x80), buf[1], 'b', 'a', 'd'};
    sendto(fd, reply, 5, 0, (struct sockaddr *)&from, from_len);
    reply[0] = buf[0];
    memcpy(reply + 2, "yes", 3);
    sendto(fd, reply, 5, 0, (struct sockaddr *)&from, from_len);
    return NULL;
}

START_TEST(test_id_at_offset_ignores_other_ids)
{
    char port[16];
    int fd = test_plain_socket("127.0.0.1", port);
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, wrong_then_right, &fd), 0);
    udprr_client *c = open_framed(port, UDPRR_FRAMING_ID_AT_OFFSET, 0, 2);
    uint8_t reply[8];
    size_t got;
    ck_assert_int_eq(udprr_client_request(c, "\0\0q", 3, reply, sizeof reply,
                                          &got),
                     UDPRR_OK);
    ck_assert_uint_eq(got, 5);
    ck_assert_mem_eq(reply + 2, "yes", 3);
    struct udprr_client_stats st = {.size = sizeof st};
    udprr_client_stats(c, &st);
    ck_assert_uint_eq(st.dropped_stale, 1);
    ck_assert_int_eq(udprr_client_request(c, "q", 1, reply, sizeof reply,
                                          &got),
                     UDPRR_EINVAL); /* too short to hold the ID */
    udprr_client_close(c);
    ck_assert_int_eq(pthread_join(t, NULL), 0);
    close(fd);
}
END_TEST

START_TEST(test_framing_options_are_checked)
{
    udprr_client_opts o;
    udprr_client *c = NULL;
    udprr_client_opts_init(&o);
    o.framing = 7;
    ck_assert_int_eq(udprr_client_open(&c, "127.0.0.1", "9", &o),
                     UDPRR_EINVAL);
    o.framing = UDPRR_FRAMING_ID_AT_OFFSET;
    o.id_len = 0;
    ck_assert_int_eq(udprr_client_open(&c, "127.0.0.1", "9", &o),
                     UDPRR_EINVAL);
    o.id_len = 9;
    ck_assert_int_eq(udprr_client_open(&c, "127.0.0.1", "9", &o),
                     UDPRR_EINVAL);
    ck_assert_ptr_null(c);
    udprr_server_opts so;
    udprr_server *s = NULL;
    udprr_server_opts_init(&so);
    so.framing = UDPRR_FRAMING_ID_AT_OFFSET;
    so.id_len = 0;
    ck_assert_int_eq(udprr_server_open(&s, "127.0.0.1", "0", &so),
                     UDPRR_EINVAL);
    ck_assert_ptr_null(s);
}
END_TEST

START_TEST(test_raw_carries_the_largest_datagram)
{
    static uint8_t big[UDPRR_MAX_DATAGRAM + 1];
    struct fixture_server ts;
    framed_server(&ts, UDPRR_FRAMING_RAW, 0, 0, your_data_was, NULL);
    udprr_client *c = open_framed(ts.port, UDPRR_FRAMING_RAW, 0, 0);
    char reply[64];
    size_t got;
    ck_assert_int_eq(udprr_client_request(c, big, UDPRR_MAX_DATAGRAM, reply,
                                          sizeof reply, &got),
                     UDPRR_OK);
    ck_assert_mem_eq(reply, "Your data was 65507 bytes long", 30);
    ck_assert_int_eq(udprr_client_request(c, big, sizeof big, reply,
                                          sizeof reply, &got),
                     UDPRR_ETOOBIG);
    udprr_client_close(c);
    test_server_stop(&ts, NULL);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("net_framing");
    TCase *raw = tcase_create("raw");
    tcase_set_timeout(raw, 60);
    tcase_add_test(raw, test_raw_client_and_server);
    tcase_add_test(raw, test_raw_decline_sends_nothing);
    tcase_add_test(raw, test_raw_client_talks_to_a_plain_server);
    tcase_add_test(raw, test_raw_server_talks_to_a_plain_client);
    tcase_add_test(raw, test_raw_carries_the_largest_datagram);
    suite_add_tcase(s, raw);
    TCase *idoff = tcase_create("id_at_offset");
    tcase_set_timeout(idoff, 60);
    tcase_add_test(idoff, test_id_at_offset_runs_once_per_request_behind_lossy_relay);
    tcase_add_test(idoff, test_id_at_offset_ignores_other_ids);
    tcase_add_test(idoff, test_framing_options_are_checked);
    suite_add_tcase(s, idoff);
    return udprr_test_run(s);
}
