/* SPDX-License-Identifier: MIT */
/*
 * net_sealed.c - the sealed mode (udprr.h, "Sealed mode"; issue 15) over
 * real sockets on loopback:
 *
 *   - round trips with the right key, every size up to
 *     UDPRR_MAX_SEALED_PAYLOAD, byte-exact; one byte more is refused
 *     before anything is sent;
 *   - another secret under the same key ID, a key ID the server does not
 *     hold, a plain client at a sealed server: every datagram dropped and
 *     counted (dropped_auth), the handler never called, nothing answered;
 *     a sealed client at a plain server: the server takes the sealed
 *     datagram for a malformed one (version 2 is not version 1);
 *   - tampering, through a tap (a small forwarder between client and
 *     server that flips a bit or cuts a datagram): a tampered request is
 *     dropped and counted by the server, a tampered answer by the client,
 *     whose request still completes from the retransmission;
 *   - replays: a captured request sent again from another address is
 *     answered from the reply cache without the handler while its clock
 *     is within the window, and dropped (dropped_clock) outside it either
 *     way (the server's clock shifted by udprr__server_set_clock_skew);
 *     with two workers, the handler runs at most once more per worker;
 *   - what opens is checked like a plain datagram (a sealed reply, a
 *     damaged inner datagram, a client clock far off); each answer goes
 *     under its request's key, and a sealed client takes only what opens
 *     with its own;
 *   - key rotation while the server runs (udprr_server_set_keys), on
 *     every worker, a deferred answer whose key went away (not sent), and
 *     the options and set_keys calls that must fail; sealed size limits
 *     for the handler, deferred answers, sends and gathers;
 *   - through the seeded impairment relay (loss and duplication both
 *     ways): every request completes with its own reply, the handler once;
 *   - the asynchronous client, a gather, and the amplification echo, all
 *     sealed.
 *
 * In a build without libsodium (make SODIUM=no) only the test that
 * asserts UDPRR_ENOTSUP runs.
 */
#include <errno.h>
#include <sched.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>

#include "impair.h"
#include "netutil.h"
#include "relay.h"
#include "seal.h"
#include "server_hooks.h"
#include "testutil.h"
#include "wire.h"

#define HDR UDPRR__WIRE_HEADER_BYTES
#define QUIET_MS 200 /* how long a test listens for what must not come */

static int under_valgrind(void)
{
    return getenv("UDPRR_TEST_VALGRIND") != NULL;
}

/* Bounds on what must happen: longer under valgrind. */
static unsigned wait_ms(void)
{
    return under_valgrind() ? 30000 : 5000;
}

static udprr_key make_key(uint32_t id, uint8_t seed)
{
    udprr_key k;
    k.id = id;
    for (size_t i = 0; i < UDPRR_KEY_BYTES; i++)
        k.secret[i] = (uint8_t)(seed + 37 * i);
    return k;
}

static uint64_t realtime_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint32_t get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
           p[3];
}

static uint64_t get_be64(const uint8_t *p)
{
    return (uint64_t)get_be32(p) << 32 | get_be32(p + 4);
}

/* --- the handler: counts its calls, echoes the request --------------- */

struct counter {
    atomic_uint calls;
};

static unsigned handler_calls(struct counter *c)
{
    return atomic_load(&c->calls);
}

static int counting_echo(void *user, const udprr_request *req, void *reply,
                         size_t cap, size_t *reply_len)
{
    struct counter *c = user;
    atomic_fetch_add(&c->calls, 1);
    if (req->len > cap)
        return UDPRR_DECLINE;
    if (req->len > 0)
        memcpy(reply, req->data, req->len);
    *reply_len = req->len;
    return UDPRR_REPLY;
}

/* --- servers and clients ----------------------------------------------- */

static udprr_server_opts sealed_server_opts(const udprr_key *keys, size_t n)
{
    udprr_server_opts o;
    udprr_server_opts_init(&o);
    o.keys = keys;
    o.n_keys = n;
    return o;
}

static struct udprr_server_stats server_stats(const udprr_server *s)
{
    struct udprr_server_stats st = {.size = sizeof st};
    ck_assert_int_eq(udprr_server_stats(s, &st), UDPRR_OK);
    return st;
}

/* Waits until a counter of a running server reaches want, then asserts it
 * is exactly want. */
#define AWAIT_SERVER(s, field, want)                                           \
    await_server_field((s), offsetof(struct udprr_server_stats, field),      \
                       (want), #field, 1)
/* The same, for a counter that may go on growing: at least want. */
#define AWAIT_SERVER_AT_LEAST(s, field, want)                                  \
    await_server_field((s), offsetof(struct udprr_server_stats, field),      \
                       (want), #field, 0)

static void await_server_field(const udprr_server *s, size_t offset,
                               uint64_t want, const char *name, int exact)
{
    uint64_t end = test_now_us() + (uint64_t)wait_ms() * 1000;
    for (;;) {
        struct udprr_server_stats st = server_stats(s);
        uint64_t v;
        memcpy(&v, (const char *)&st + offset, sizeof v);
        if (v >= want) {
            ck_assert_msg(!exact || v == want, "server %s is %llu, expected %llu", name,
                          (unsigned long long)v, (unsigned long long)want);
            return;
        }
        if (test_now_us() >= end)
            ck_abort_msg("server %s stayed at %llu, expected %llu", name,
                         (unsigned long long)v, (unsigned long long)want);
        poll(NULL, 0, 2);
    }
}

/* A client that gets its answers: a deadline, a short first RTO. */
static udprr_client_opts sealed_client_opts(const udprr_key *key)
{
    udprr_client_opts o;
    udprr_client_opts_init(&o);
    o.key = key;
    o.deadline_ms = wait_ms();
    o.initial_rto_ms = 100;
    return o;
}

/* A client whose request is to fail: exactly 3 transmissions, 50 ms
 * apart, then UDPRR_ETIMEDOUT. */
#define FAIL_ATTEMPTS 3
static udprr_client_opts failing_client_opts(const udprr_key *key)
{
    udprr_client_opts o;
    udprr_client_opts_init(&o);
    o.key = key;
    o.deadline_ms = 0;
    o.max_attempts = FAIL_ATTEMPTS;
    o.initial_rto_ms = 50;
    o.max_rto_ms = 50;
    o.fixed_rto = 1;
    o.backoff_pct = 100;
    o.jitter_pct = 0;
    return o;
}

/* One request that must time out after FAIL_ATTEMPTS transmissions and
 * be answered by nothing at all. */
static void request_times_out(const char *port, const udprr_key *key)
{
    udprr_client_opts o = failing_client_opts(key);
    udprr_client *c = test_client_open(port, &o);
    char reply[64];
    size_t len = 0;
    ck_assert_int_eq(udprr_client_request(c, "let me in", 9, reply,
                                          sizeof reply, &len),
                     UDPRR_ETIMEDOUT);
    struct udprr_client_stats cs = test_client_stats(c);
    ck_assert_uint_eq(cs.attempts, FAIL_ATTEMPTS);
    ck_assert_uint_eq(cs.timeouts, 1);
    /* Nothing came back to open, nor anything else. */
    ck_assert_uint_eq(cs.dropped_auth, 0);
    ck_assert_uint_eq(cs.dropped_malformed, 0);
    ck_assert_uint_eq(cs.dropped_unexpected, 0);
    ck_assert_uint_eq(cs.dropped_stale, 0);
    udprr_client_close(c);
}

/* --- the tap: a forwarder between a client and a server ----------------- */

enum { TO_SERVER, TO_CLIENT };

enum tap_action { TAP_PASS, TAP_FLIP, TAP_TRUNCATE, TAP_DROP };

/* What the tap does to the next `count` datagrams of one direction. */
struct tap_rule {
    enum tap_action action;
    size_t offset; /* TAP_FLIP: the byte whose bit 0x10 is flipped */
    size_t keep;   /* TAP_TRUNCATE: the bytes left */
    unsigned count;
};

struct tap {
    int front;   /* clients send here */
    int back;    /* connected to the server */
    int wake[2]; /* a byte on it stops the thread */
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    char port[16]; /* front's port */
    struct sockaddr_storage client;
    socklen_t client_len;
    /* under lock */
    struct tap_rule rule[2];
    unsigned seen[2], tampered[2], forwarded[2];
    unsigned out_of_range; /* rules whose offset was past the datagram */
    uint8_t first[2][UDPRR_MAX_DATAGRAM]; /* each way's first datagram, */
    size_t first_len[2];                  /* as it arrived */
    uint8_t last[2][UDPRR_MAX_DATAGRAM];  /* and its latest */
    size_t last_len[2];
    uint8_t buf[UDPRR_MAX_DATAGRAM + 1];
};

/* Applies the direction's rule to buf[0..*len); 0: drop it. */
static int tap_apply(struct tap *t, int dir, size_t *len)
{
    t->seen[dir]++;
    if (t->seen[dir] == 1) {
        memcpy(t->first[dir], t->buf, *len);
        t->first_len[dir] = *len;
    }
    memcpy(t->last[dir], t->buf, *len);
    t->last_len[dir] = *len;
    struct tap_rule *r = &t->rule[dir];
    if (r->count == 0 || r->action == TAP_PASS)
        return 1;
    r->count--;
    t->tampered[dir]++;
    switch (r->action) {
    case TAP_FLIP:
        if (r->offset < *len)
            t->buf[r->offset] ^= 0x10;
        else
            t->out_of_range++;
        return 1;
    case TAP_TRUNCATE:
        if (r->keep < *len)
            *len = r->keep;
        else
            t->out_of_range++;
        return 1;
    case TAP_DROP:
        return 0;
    case TAP_PASS:
        break;
    }
    return 1;
}

static void *tap_main(void *arg)
{
    struct tap *t = arg;
    for (;;) {
        struct pollfd p[3] = {{t->front, POLLIN, 0},
                              {t->back, POLLIN, 0},
                              {t->wake[0], POLLIN, 0}};
        int n = poll(p, 3, 1000);
        if (n < 0 && errno != EINTR)
            break;
        if (p[2].revents != 0)
            break;
        if (p[0].revents & POLLIN) {
            struct sockaddr_storage from;
            socklen_t from_len = sizeof from;
            pthread_mutex_lock(&t->lock);
            ssize_t got = recvfrom(t->front, t->buf, sizeof t->buf,
                                   MSG_DONTWAIT, (struct sockaddr *)&from,
                                   &from_len);
            if (got >= 0) {
                memcpy(&t->client, &from, from_len);
                t->client_len = from_len;
                size_t len = (size_t)got;
                if (tap_apply(t, TO_SERVER, &len)) {
                    (void)send(t->back, t->buf, len, 0);
                    t->forwarded[TO_SERVER]++;
                }
                pthread_cond_broadcast(&t->cond);
            }
            pthread_mutex_unlock(&t->lock);
        }
        if (p[1].revents & (POLLIN | POLLERR)) {
            pthread_mutex_lock(&t->lock);
            ssize_t got = recv(t->back, t->buf, sizeof t->buf, MSG_DONTWAIT);
            if (got >= 0 && t->client_len > 0) {
                size_t len = (size_t)got;
                if (tap_apply(t, TO_CLIENT, &len)) {
                    (void)sendto(t->front, t->buf, len, 0,
                                 (struct sockaddr *)&t->client,
                                 t->client_len);
                    t->forwarded[TO_CLIENT]++;
                }
                pthread_cond_broadcast(&t->cond);
            }
            pthread_mutex_unlock(&t->lock);
        }
    }
    return NULL;
}

/* A tap in front of the server at 127.0.0.1 port server_port; clients
 * open tap->port. */
static struct tap *tap_start(const char *server_port)
{
    struct tap *t = calloc(1, sizeof *t);
    ck_assert_ptr_nonnull(t);
    t->front = test_plain_socket("127.0.0.1", t->port);
    char back_port[16];
    t->back = test_plain_socket("127.0.0.1", back_port);
    struct sockaddr_in to = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)atoi(server_port))};
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(connect(t->back, (struct sockaddr *)&to, sizeof to), 0);
    ck_assert_int_eq(pipe(t->wake), 0);
    ck_assert_int_eq(pthread_mutex_init(&t->lock, NULL), 0);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    ck_assert_int_eq(pthread_cond_init(&t->cond, &ca), 0);
    pthread_condattr_destroy(&ca);
    ck_assert_int_eq(pthread_create(&t->thread, NULL, tap_main, t), 0);
    return t;
}

static void tap_stop(struct tap *t)
{
    ck_assert_int_eq(write(t->wake[1], "x", 1), 1);
    ck_assert_int_eq(pthread_join(t->thread, NULL), 0);
    close(t->front);
    close(t->back);
    close(t->wake[0]);
    close(t->wake[1]);
    pthread_cond_destroy(&t->cond);
    pthread_mutex_destroy(&t->lock);
    free(t);
}

static void tap_set(struct tap *t, int dir, struct tap_rule rule)
{
    pthread_mutex_lock(&t->lock);
    t->rule[dir] = rule;
    pthread_mutex_unlock(&t->lock);
}

/* Forgets what the tap saw (counts and captures). */
static void tap_reset(struct tap *t)
{
    pthread_mutex_lock(&t->lock);
    for (int d = 0; d < 2; d++) {
        t->seen[d] = t->tampered[d] = t->forwarded[d] = 0;
        t->first_len[d] = t->last_len[d] = 0;
        t->rule[d] = (struct tap_rule){TAP_PASS, 0, 0, 0};
    }
    t->out_of_range = 0;
    pthread_mutex_unlock(&t->lock);
}

static unsigned tap_count(struct tap *t, const unsigned *field)
{
    pthread_mutex_lock(&t->lock);
    unsigned v = *field;
    pthread_mutex_unlock(&t->lock);
    return v;
}

/* The first datagram the tap saw going `dir`, as it arrived (before any
 * tampering): copied into out, its length returned. */
static size_t tap_first(struct tap *t, int dir, uint8_t *out, size_t cap)
{
    pthread_mutex_lock(&t->lock);
    size_t n = t->first_len[dir];
    ck_assert_uint_le(n, cap);
    memcpy(out, t->first[dir], n);
    pthread_mutex_unlock(&t->lock);
    return n;
}

/* The latest datagram the tap saw going `dir`, as it arrived. */
static size_t tap_last(struct tap *t, int dir, uint8_t *out, size_t cap)
{
    pthread_mutex_lock(&t->lock);
    size_t n = t->last_len[dir];
    ck_assert_uint_le(n, cap);
    memcpy(out, t->last[dir], n);
    pthread_mutex_unlock(&t->lock);
    return n;
}

/* --- opening sealed datagrams in the test -------------------------------- */

/* Opens a copy of sealed[0..len) with key and decodes the inner datagram;
 * the inner datagram goes to inner (its length returned). */
static size_t open_sealed(const udprr_key *key, const uint8_t *sealed,
                          size_t len, uint8_t *inner, size_t cap,
                          struct udprr__wire_header *h)
{
    static uint8_t copy[UDPRR_MAX_DATAGRAM];
    ck_assert_uint_le(len, sizeof copy);
    memcpy(copy, sealed, len);
    struct udprr__keyring ring;
    ck_assert_int_eq(udprr__keyring_set(&ring, key, 1), UDPRR_OK);
    uint32_t key_id = 0;
    uint64_t time_ms = 0;
    size_t inner_len = 0;
    ck_assert_int_eq(
        udprr__seal_open(&ring, copy, len, &key_id, &time_ms, &inner_len),
        UDPRR__SEAL_OPENED);
    ck_assert_uint_eq(key_id, key->id);
    ck_assert_uint_le(inner_len, cap);
    memcpy(inner, copy + UDPRR__SEAL_HEAD_BYTES, inner_len);
    ck_assert_int_eq(udprr__wire_decode(inner, inner_len, h, NULL, NULL),
                     UDPRR__WIRE_VALID);
    udprr__keyring_wipe(&ring);
    return inner_len;
}

/* ======================================================================= */

START_TEST(sealed_round_trips_every_size)
{
    static uint8_t req[UDPRR_MAX_SEALED_PAYLOAD + 1];
    static uint8_t reply[UDPRR_MAX_SEALED_PAYLOAD + 16];
    for (size_t i = 0; i < sizeof req; i++)
        req[i] = (uint8_t)(i * 131 + 7);
    udprr_key key = make_key(0x5ea1ed01, 1);
    udprr_server_opts so = sealed_server_opts(&key, 1);
    struct counter count = {0};
    struct fixture_server ts;
    test_server_start(&ts, "127.0.0.1", &so, counting_echo, &count);
    udprr_client_opts co = sealed_client_opts(&key);
    udprr_client *c = test_client_open(ts.port, &co);

    const size_t sizes[] = {0,    1,    100,  1400,
                            9000, 65000, UDPRR_MAX_SEALED_PAYLOAD};
    const size_t n = sizeof sizes / sizeof sizes[0];
    for (size_t i = 0; i < n; i++) {
        size_t len = (size_t)-1;
        int rc = udprr_client_request(c, req, sizes[i], reply, sizeof reply,
                                      &len);
        ck_assert_msg(rc == UDPRR_OK, "%zu bytes: %s", sizes[i],
                      udprr_status_name(rc));
        ck_assert_uint_eq(len, sizes[i]);
        ck_assert_msg(memcmp(reply, req, len) == 0,
                      "%zu bytes: the reply differs", sizes[i]);
    }
    /* One byte more than a sealed datagram carries: refused before
     * anything is sent. */
    struct udprr_client_stats before = test_client_stats(c);
    size_t len = 0;
    ck_assert_int_eq(udprr_client_request(c, req, UDPRR_MAX_SEALED_PAYLOAD + 1,
                                          reply, sizeof reply, &len),
                     UDPRR_ETOOBIG);
    struct udprr_client_stats cs = test_client_stats(c);
    ck_assert_uint_eq(cs.attempts, before.attempts);
    ck_assert_uint_eq(cs.completed, n);
    ck_assert_uint_eq(cs.dropped_auth, 0);
    udprr_client_close(c);

    struct udprr_server_stats ss;
    test_server_stop(&ts, &ss);
    ck_assert_uint_eq(handler_calls(&count), n);
    ck_assert_uint_eq(ss.handled, n);
    ck_assert_uint_eq(ss.received, cs.attempts);
    ck_assert_uint_eq(ss.dropped_auth, 0);
    ck_assert_uint_eq(ss.dropped_clock, 0);
    ck_assert_uint_eq(ss.dropped_malformed, 0);
}
END_TEST

START_TEST(sealed_datagram_on_the_wire)
{
    /* What a sealed request looks like between the two ends: the layout
     * of lib/seal.h, and the request's bytes nowhere in the clear. */
    udprr_key key = make_key(0xa1b2c3d4, 2);
    udprr_server_opts so = sealed_server_opts(&key, 1);
    struct counter count = {0};
    struct fixture_server ts;
    test_server_start(&ts, "127.0.0.1", &so, counting_echo, &count);
    struct tap *tap = tap_start(ts.port);
    udprr_client_opts co = sealed_client_opts(&key);
    udprr_client *c = test_client_open(tap->port, &co);
    const char secret_text[] = "attack at dawn, bring the cake";
    const size_t n = sizeof secret_text - 1;
    char reply[64];
    size_t len = 0;
    uint64_t before_ms = realtime_ms();
    ck_assert_int_eq(udprr_client_request(c, secret_text, n, reply,
                                          sizeof reply, &len),
                     UDPRR_OK);
    uint64_t after_ms = realtime_ms();
    ck_assert_uint_eq(len, n);
    ck_assert_mem_eq(reply, secret_text, n);

    static uint8_t dgram[UDPRR_MAX_DATAGRAM], inner[UDPRR_MAX_DATAGRAM];
    for (int dir = TO_SERVER; dir <= TO_CLIENT; dir++) {
        size_t dlen = tap_first(tap, dir, dgram, sizeof dgram);
        ck_assert_uint_eq(dlen, HDR + n + UDPRR_SEAL_OVERHEAD);
        ck_assert_mem_eq(dgram, "UR\x02\x00", 4);
        ck_assert_uint_eq(get_be32(dgram + 4), key.id);
        uint64_t clock_ms = get_be64(dgram + 8);
        ck_assert_uint_ge(clock_ms + 1000, before_ms);
        ck_assert_uint_le(clock_ms, after_ms + 1000);
        ck_assert_ptr_null(memmem(dgram, dlen, secret_text, 6));
        struct udprr__wire_header h;
        size_t ilen = open_sealed(&key, dgram, dlen, inner, sizeof inner, &h);
        ck_assert_uint_eq(ilen, HDR + n);
        ck_assert_int_eq(h.kind, dir == TO_SERVER ? UDPRR__KIND_REQUEST
                                                  : UDPRR__KIND_REPLY);
        ck_assert_mem_eq(inner + HDR, secret_text, n);
    }
    /* Every datagram draws its own nonce: a second request's differs. */
    uint8_t first_nonce[UDPRR__SEAL_NONCE_BYTES];
    tap_first(tap, TO_SERVER, dgram, sizeof dgram);
    memcpy(first_nonce, dgram + 16, sizeof first_nonce);
    tap_reset(tap);
    ck_assert_int_eq(udprr_client_request(c, secret_text, n, reply,
                                          sizeof reply, &len),
                     UDPRR_OK);
    tap_first(tap, TO_SERVER, dgram, sizeof dgram);
    ck_assert_int_ne(memcmp(first_nonce, dgram + 16, sizeof first_nonce), 0);
    udprr_client_close(c);
    tap_stop(tap);
    test_server_stop(&ts, NULL);
}
END_TEST

START_TEST(wrong_key_wrong_id_and_plain_client_are_dropped)
{
    udprr_key key = make_key(7, 3);
    udprr_server_opts so = sealed_server_opts(&key, 1);
    struct counter count = {0};
    struct fixture_server ts;
    test_server_start(&ts, "127.0.0.1", &so, counting_echo, &count);

    udprr_key other_secret = make_key(7, 4); /* the same ID */
    udprr_key other_id = key;
    other_id.id = 8; /* the right secret, an ID the server lacks */
    const udprr_key *clients[] = {&other_secret, &other_id, NULL};
    for (size_t i = 0; i < 3; i++) {
        request_times_out(ts.port, clients[i]);
        AWAIT_SERVER(ts.server, dropped_auth, FAIL_ATTEMPTS * (i + 1));
    }
    struct udprr_server_stats ss;
    test_server_stop(&ts, &ss);
    ck_assert_uint_eq(handler_calls(&count), 0);
    ck_assert_uint_eq(ss.received, 3 * FAIL_ATTEMPTS);
    ck_assert_uint_eq(ss.dropped_auth, 3 * FAIL_ATTEMPTS);
    ck_assert_uint_eq(ss.handled, 0);
    ck_assert_uint_eq(ss.answered, 0);
    ck_assert_uint_eq(ss.dropped_malformed, 0);
    ck_assert_uint_eq(ss.dropped_unexpected, 0);
    ck_assert_uint_eq(ss.dropped_clock, 0);
    ck_assert_uint_eq(ss.cache_entries, 0);
}
END_TEST

START_TEST(sealed_client_at_plain_server_is_malformed_there)
{
    struct counter count = {0};
    struct fixture_server ts;
    test_server_start(&ts, "127.0.0.1", NULL, counting_echo, &count);
    udprr_key key = make_key(9, 5);
    request_times_out(ts.port, &key);
    /* Version 2 is not a version the plain server reads. */
    AWAIT_SERVER(ts.server, dropped_malformed, FAIL_ATTEMPTS);
    struct udprr_server_stats ss;
    test_server_stop(&ts, &ss);
    ck_assert_uint_eq(handler_calls(&count), 0);
    ck_assert_uint_eq(ss.received, FAIL_ATTEMPTS);
    ck_assert_uint_eq(ss.dropped_auth, 0);
    ck_assert_uint_eq(ss.handled, 0);
    ck_assert_uint_eq(ss.answered, 0);
}
END_TEST

/* Tampering with requests: each row's change makes the datagram fail to
 * open. The request is "tamper with me!!" (16 bytes): a 92-byte sealed
 * datagram, head 0..39, ciphertext 40..75, tag 76..91. */
struct tamper_row {
    const char *name;
    enum tap_action action;
    size_t at; /* offset flipped, or bytes kept */
};

static const struct tamper_row request_rows[] = {
    {"magic", TAP_FLIP, 0},
    {"version", TAP_FLIP, 2},
    {"reserved", TAP_FLIP, 3},
    {"key ID", TAP_FLIP, 7},
    {"clock", TAP_FLIP, 15},
    {"nonce", TAP_FLIP, 16},
    {"nonce end", TAP_FLIP, 39},
    {"inner header", TAP_FLIP, 43},
    {"inner body", TAP_FLIP, 70},
    {"tag", TAP_FLIP, 80},
    {"last byte", TAP_FLIP, 91},
    {"cut by one", TAP_TRUNCATE, 91},
    {"cut to the least sealed size", TAP_TRUNCATE, 76},
    {"cut to the head", TAP_TRUNCATE, 40},
    {"cut to 3 bytes", TAP_TRUNCATE, 3},
    {"cut to nothing", TAP_TRUNCATE, 0},
};

START_TEST(tampered_requests_are_dropped)
{
    udprr_key key = make_key(0x10, 6);
    udprr_server_opts so = sealed_server_opts(&key, 1);
    struct counter count = {0};
    struct fixture_server ts;
    test_server_start(&ts, "127.0.0.1", &so, counting_echo, &count);
    struct tap *tap = tap_start(ts.port);
    const size_t rows = sizeof request_rows / sizeof request_rows[0];
    for (size_t i = 0; i < rows; i++) {
        const struct tamper_row *r = &request_rows[i];
        tap_reset(tap);
        tap_set(tap, TO_SERVER,
                (struct tap_rule){r->action, r->at, r->at, 1000});
        udprr_client_opts o = failing_client_opts(&key);
        udprr_client *c = test_client_open(tap->port, &o);
        char reply[64];
        size_t len = 0;
        int rc = udprr_client_request(c, "tamper with me!!", 16, reply,
                                      sizeof reply, &len);
        ck_assert_msg(rc == UDPRR_ETIMEDOUT, "%s: %s", r->name,
                      udprr_status_name(rc));
        udprr_client_close(c);
        ck_assert_uint_eq(tap_count(tap, &tap->tampered[TO_SERVER]),
                          FAIL_ATTEMPTS);
        ck_assert_uint_eq(tap_count(tap, &tap->out_of_range), 0);
        ck_assert_uint_eq(tap_count(tap, &tap->seen[TO_CLIENT]), 0);
        AWAIT_SERVER(ts.server, dropped_auth, FAIL_ATTEMPTS * (i + 1));
        ck_assert_msg(handler_calls(&count) == 0,
                      "%s: the handler ran", r->name);
    }
    tap_stop(tap);
    struct udprr_server_stats ss;
    test_server_stop(&ts, &ss);
    ck_assert_uint_eq(ss.received, FAIL_ATTEMPTS * rows);
    ck_assert_uint_eq(ss.handled, 0);
    ck_assert_uint_eq(ss.answered, 0);
    ck_assert_uint_eq(ss.dropped_malformed, 0);
    ck_assert_uint_eq(ss.dropped_clock, 0);
}
END_TEST

/* Tampering with the first answer only: the client drops it, its
 * retransmission is answered from the server's cache, and that answer,
 * untouched, completes the request. The answer to "tamper with me!!" is
 * 92 bytes too. */
static const struct tamper_row answer_rows[] = {
    {"magic", TAP_FLIP, 1},
    {"key ID", TAP_FLIP, 4},
    {"clock", TAP_FLIP, 9},
    {"nonce", TAP_FLIP, 30},
    {"inner header", TAP_FLIP, 48},
    {"inner body", TAP_FLIP, 66},
    {"tag", TAP_FLIP, 90},
    {"cut by one", TAP_TRUNCATE, 91},
    {"cut to the head", TAP_TRUNCATE, 40},
};

START_TEST(tampered_answers_are_dropped_by_the_client)
{
    udprr_key key = make_key(0x11, 7);
    udprr_server_opts so = sealed_server_opts(&key, 1);
    struct counter count = {0};
    struct fixture_server ts;
    test_server_start(&ts, "127.0.0.1", &so, counting_echo, &count);
    struct tap *tap = tap_start(ts.port);
    const size_t rows = sizeof answer_rows / sizeof answer_rows[0];
    for (size_t i = 0; i < rows; i++) {
        const struct tamper_row *r = &answer_rows[i];
        tap_reset(tap);
        tap_set(tap, TO_CLIENT, (struct tap_rule){r->action, r->at, r->at, 1});
        udprr_client_opts o = sealed_client_opts(&key);
        o.initial_rto_ms = 50;
        o.fixed_rto = 1;
        udprr_client *c = test_client_open(tap->port, &o);
        char reply[64];
        size_t len = 0;
        int rc = udprr_client_request(c, "tamper with me!!", 16, reply,
                                      sizeof reply, &len);
        ck_assert_msg(rc == UDPRR_OK, "%s: %s", r->name,
                      udprr_status_name(rc));
        ck_assert_uint_eq(len, 16);
        ck_assert_mem_eq(reply, "tamper with me!!", 16);
        struct udprr_client_stats cs = test_client_stats(c);
        ck_assert_msg(cs.dropped_auth == 1, "%s: client dropped_auth %llu",
                      r->name, (unsigned long long)cs.dropped_auth);
        ck_assert_uint_ge(cs.retransmissions, 1);
        ck_assert_uint_eq(cs.dropped_malformed, 0);
        udprr_client_close(c);
        ck_assert_uint_eq(tap_count(tap, &tap->tampered[TO_CLIENT]), 1);
        ck_assert_uint_eq(tap_count(tap, &tap->out_of_range), 0);
        /* The retransmission carries its first transmission's clock,
         * under a nonce of its own. */
        uint8_t first_req[128], last_req[128];
        ck_assert_uint_ge(tap_count(tap, &tap->seen[TO_SERVER]), 2);
        ck_assert_uint_eq(tap_first(tap, TO_SERVER, first_req,
                                    sizeof first_req),
                          92);
        ck_assert_uint_eq(tap_last(tap, TO_SERVER, last_req, sizeof last_req),
                          92);
        ck_assert_mem_eq(first_req + 8, last_req + 8, 8);
        ck_assert_int_ne(memcmp(first_req + 16, last_req + 16,
                                UDPRR__SEAL_NONCE_BYTES),
                         0);
        ck_assert_msg(handler_calls(&count) == i + 1,
                      "%s: the handler ran %u times for %zu requests",
                      r->name, handler_calls(&count), i + 1);
    }
    tap_stop(tap);
    struct udprr_server_stats ss;
    test_server_stop(&ts, &ss);
    ck_assert_uint_eq(ss.handled, rows);
    ck_assert_uint_ge(ss.cache_hits, rows);
    ck_assert_uint_eq(ss.dropped_auth, 0);
}
END_TEST

/* --- replays ------------------------------------------------------------- */

struct done {
    int called;
    int status;
    uint8_t reply[64];
    size_t len;
};

static void on_done(void *user, int status, const void *reply, size_t len)
{
    struct done *d = user;
    d->called++;
    d->status = status;
    d->len = len;
    if (reply != NULL && len <= sizeof d->reply)
        memcpy(d->reply, reply, len);
}

/* Drives an asynchronous client and a server on this thread until the
 * request is done. */
static void pump_both(udprr_client *c, udprr_server *s, struct counter *count,
                      struct done *d)
{
    uint64_t end = test_now_us() + (uint64_t)wait_ms() * 1000;
    while (d->called == 0) {
        ck_assert_msg(test_now_us() < end, "the request did not end");
        int wait = udprr_client_timeout_ms(c);
        if (wait < 0 || wait > 20)
            wait = 20;
        struct pollfd p[2] = {{udprr_client_fd(c), POLLIN, 0},
                              {udprr_server_fd(s), POLLIN, 0}};
        ck_assert_int_ge(poll(p, 2, wait), 0);
        ck_assert_int_eq(udprr_server_process(s, counting_echo, count),
                         UDPRR_OK);
        ck_assert_int_eq(udprr_client_process(c), UDPRR_OK);
    }
}

/* Sends datagram[0..len) to the server from fd (unconnected), lets the
 * server process it, and returns the answer's length, or -1 when none
 * came within timeout_ms. */
static ssize_t replay(udprr_server *s, struct counter *count, int fd,
                      const char *port, const uint8_t *datagram, size_t len,
                      uint8_t *answer, size_t cap, int timeout_ms)
{
    struct sockaddr_in to = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)atoi(port))};
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(sendto(fd, datagram, len, 0, (struct sockaddr *)&to,
                            sizeof to),
                     (ssize_t)len);
    struct pollfd p = {udprr_server_fd(s), POLLIN, 0};
    ck_assert_int_eq(poll(&p, 1, (int)wait_ms()), 1);
    ck_assert_int_eq(udprr_server_process(s, counting_echo, count), UDPRR_OK);
    struct sockaddr_storage from;
    socklen_t from_len = sizeof from;
    return test_recv_within(fd, answer, cap, timeout_ms, &from, &from_len);
}

START_TEST(replay_answered_from_cache_inside_window_dropped_outside)
{
    udprr_key key = make_key(0x0102a0b0, 8);
    udprr_server_opts so = sealed_server_opts(&key, 1);
    udprr_server *s = NULL;
    ck_assert_int_eq(udprr_server_open(&s, "127.0.0.1", "0", &so), UDPRR_OK);
    const int64_t window_ms = (int64_t)so.cache_lifetime_ms / 2;
    struct sockaddr_in a;
    socklen_t alen = sizeof a;
    ck_assert_int_eq(udprr_server_sockname(s, (struct sockaddr *)&a, &alen),
                     UDPRR_OK);
    char port[16];
    snprintf(port, sizeof port, "%u", (unsigned)ntohs(a.sin_port));
    struct tap *tap = tap_start(port);
    struct counter count = {0};

    /* A real request, through the tap, which keeps a copy. */
    udprr_client_opts co = sealed_client_opts(&key);
    udprr_client *c = test_client_open(tap->port, &co);
    struct done d = {0};
    ck_assert_int_eq(udprr_client_send(c, "pay 5 coins", 11, on_done, &d),
                     UDPRR_OK);
    pump_both(c, s, &count, &d);
    ck_assert_int_eq(d.status, UDPRR_OK);
    ck_assert_uint_eq(d.len, 11);
    ck_assert_mem_eq(d.reply, "pay 5 coins", 11);
    ck_assert_uint_eq(handler_calls(&count), 1);
    udprr_client_close(c);

    static uint8_t req[UDPRR_MAX_DATAGRAM], first[UDPRR_MAX_DATAGRAM];
    static uint8_t again[UDPRR_MAX_DATAGRAM];
    static uint8_t inner1[UDPRR_MAX_DATAGRAM], inner2[UDPRR_MAX_DATAGRAM];
    size_t req_len = tap_first(tap, TO_SERVER, req, sizeof req);
    size_t first_len = tap_first(tap, TO_CLIENT, first, sizeof first);
    tap_stop(tap);
    ck_assert_uint_eq(req_len, HDR + 11 + UDPRR_SEAL_OVERHEAD);
    ck_assert_uint_gt(first_len, 0);
    const int64_t req_clock_ms = (int64_t)get_be64(req + 8);
    struct udprr__wire_header hreq, h1, h2;
    open_sealed(&key, req, req_len, inner1, sizeof inner1, &hreq);
    ck_assert_int_eq(hreq.kind, UDPRR__KIND_REQUEST);

    /* The captured bytes again, from another address, in the window:
     * answered from the cache, sealed with the key, the handler not run. */
    char rport[16];
    int fd = test_plain_socket("127.0.0.1", rport);
    struct udprr_server_stats st0 = server_stats(s);
    ssize_t got = replay(s, &count, fd, port, req, req_len, again,
                         sizeof again, (int)wait_ms());
    ck_assert_int_eq(got, (ssize_t)first_len);
    size_t l1 = open_sealed(&key, first, first_len, inner1, sizeof inner1, &h1);
    size_t l2 = open_sealed(&key, again, (size_t)got, inner2, sizeof inner2,
                            &h2);
    ck_assert_int_eq(h2.kind, UDPRR__KIND_REPLY);
    ck_assert_uint_eq(h2.id, hreq.id);
    ck_assert_uint_eq(l1, l2);
    ck_assert_mem_eq(inner1, inner2, l1); /* the same answer inside */
    ck_assert_mem_eq(inner2 + HDR, "pay 5 coins", 11);
    struct udprr_server_stats st1 = server_stats(s);
    ck_assert_uint_eq(handler_calls(&count), 1);
    ck_assert_uint_eq(st1.handled, 1);
    ck_assert_uint_eq(st1.cache_hits, st0.cache_hits + 1);
    ck_assert_uint_eq(st1.answered, st0.answered + 1);
    ck_assert_uint_eq(st1.dropped_clock, 0);

    /* The server's clock moved so that the request is 5 s outside the
     * window, one way then the other (a client clock behind: an old
     * replay; ahead), then 5 s inside it each way. The skew is taken
     * from the request's own clock, so the time this test has taken
     * does not move the edge; the 5 s cover the time from here to the
     * server's check, however slow (valgrind, a loaded machine). */
    struct {
        int64_t offset_ms; /* server clock - request clock */
        int answered;
    } steps[] = {
        {window_ms + 5000, 0},
        {-(window_ms + 5000), 0},
        {window_ms - 5000, 1},
        {-(window_ms - 5000), 1},
    };
    uint64_t dropped = 0, hits = st1.cache_hits;
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        int64_t skew = req_clock_ms + steps[i].offset_ms -
                       (int64_t)realtime_ms();
        udprr__server_set_clock_skew(s, skew);
        got = replay(s, &count, fd, port, req, req_len, again, sizeof again,
                     steps[i].answered ? (int)wait_ms() : QUIET_MS);
        struct udprr_server_stats st = server_stats(s);
        if (steps[i].answered) {
            ck_assert_msg(got == (ssize_t)first_len,
                          "offset %lld ms: no answer",
                          (long long)steps[i].offset_ms);
            hits++;
        } else {
            ck_assert_msg(got == -1, "offset %lld ms: answered",
                          (long long)steps[i].offset_ms);
            dropped++;
        }
        ck_assert_uint_eq(st.dropped_clock, dropped);
        ck_assert_uint_eq(st.cache_hits, hits);
        ck_assert_uint_eq(st.handled, 1);
        ck_assert_uint_eq(st.dropped_auth, 0);
    }
    udprr__server_set_clock_skew(s, 0);
    ck_assert_uint_eq(handler_calls(&count), 1);
    close(fd);
    udprr_server_close(s);
}
END_TEST

/* --- keys ------------------------------------------------------------ */

static void request_succeeds(const char *port, const udprr_key *key,
                             const char *text)
{
    udprr_client_opts o = sealed_client_opts(key);
    udprr_client *c = test_client_open(port, &o);
    char reply[64];
    size_t len = 0, n = strlen(text);
    int rc = udprr_client_request(c, text, n, reply, sizeof reply, &len);
    ck_assert_msg(rc == UDPRR_OK, "key %u: %s", (unsigned)key->id,
                  udprr_status_name(rc));
    ck_assert_uint_eq(len, n);
    ck_assert_mem_eq(reply, text, n);
    ck_assert_uint_eq(test_client_stats(c).dropped_auth, 0);
    udprr_client_close(c);
}

START_TEST(rotation_with_two_keys_live)
{
    udprr_key k[3] = {make_key(1, 11), make_key(2, 12), make_key(3, 13)};
    udprr_server_opts so = sealed_server_opts(k, 2);
    struct counter count = {0};
    struct fixture_server ts;
    test_server_start(&ts, "127.0.0.1", &so, counting_echo, &count);
    request_succeeds(ts.port, &k[0], "old key");
    request_succeeds(ts.port, &k[1], "new key");

    /* From this thread while the server's runs: the old key goes. */
    ck_assert_int_eq(udprr_server_set_keys(ts.server, &k[1], 1), UDPRR_OK);
    request_times_out(ts.port, &k[0]);
    AWAIT_SERVER(ts.server, dropped_auth, FAIL_ATTEMPTS);
    request_succeeds(ts.port, &k[1], "new key still");

    /* Calls that must fail leave the keys as they were. */
    udprr_key many[UDPRR_MAX_KEYS + 1];
    for (size_t i = 0; i < UDPRR_MAX_KEYS + 1; i++)
        many[i] = make_key((uint32_t)(100 + i), (uint8_t)i);
    udprr_key dup[2] = {make_key(5, 1), make_key(5, 2)};
    ck_assert_int_eq(udprr_server_set_keys(ts.server, many, 0), UDPRR_EINVAL);
    ck_assert_int_eq(udprr_server_set_keys(ts.server, many,
                                           UDPRR_MAX_KEYS + 1),
                     UDPRR_EINVAL);
    ck_assert_int_eq(udprr_server_set_keys(ts.server, dup, 2), UDPRR_EINVAL);
    ck_assert_int_eq(udprr_server_set_keys(ts.server, NULL, 1), UDPRR_EINVAL);
    ck_assert_int_eq(udprr_server_set_keys(NULL, k, 1), UDPRR_EINVAL);
    request_succeeds(ts.port, &k[1], "after the failures");

    /* A full set is fine; then {2, 3}: a new key joins live. */
    ck_assert_int_eq(udprr_server_set_keys(ts.server, many, UDPRR_MAX_KEYS),
                     UDPRR_OK);
    request_times_out(ts.port, &k[1]);
    AWAIT_SERVER(ts.server, dropped_auth, 2 * FAIL_ATTEMPTS);
    request_succeeds(ts.port, &many[UDPRR_MAX_KEYS - 1], "the sixteenth");
    ck_assert_int_eq(udprr_server_set_keys(ts.server, &k[1], 2), UDPRR_OK);
    request_succeeds(ts.port, &k[1], "two");
    request_succeeds(ts.port, &k[2], "three");

    struct udprr_server_stats ss;
    test_server_stop(&ts, &ss);
    ck_assert_uint_eq(ss.handled, 7);
    ck_assert_uint_eq(handler_calls(&count), 7);
    ck_assert_uint_eq(ss.dropped_auth, 2 * FAIL_ATTEMPTS);

    /* A plain server stays plain. */
    udprr_server *plain = NULL;
    ck_assert_int_eq(udprr_server_open(&plain, "127.0.0.1", "0", NULL),
                     UDPRR_OK);
    ck_assert_int_eq(udprr_server_set_keys(plain, k, 1), UDPRR_EINVAL);
    udprr_server_close(plain);
}
END_TEST

/* A thread that swaps the server's second key back and forth while a
 * client of the first makes requests: key 1 is in every set, so every
 * request completes, whatever moment each swap lands at. */
struct rotator {
    udprr_server *s;
    atomic_int stop;
    unsigned swaps;
    int failed_rc;
};

static void *rotate_keys(void *arg)
{
    struct rotator *r = arg;
    udprr_key sets[2][2] = {{make_key(1, 101), make_key(2, 102)},
                            {make_key(3, 103), make_key(1, 101)}};
    /* Bounded: at most 20000 swaps, whatever the other thread does. */
    while (!atomic_load(&r->stop) && r->swaps < 20000) {
        int rc = udprr_server_set_keys(r->s, sets[r->swaps % 2], 2);
        if (rc != UDPRR_OK)
            r->failed_rc = rc;
        r->swaps++;
        if (r->swaps % 8 == 0)
            sched_yield();
    }
    return NULL;
}

START_TEST(rotation_under_load_keeps_the_common_key)
{
    enum { N = 40 };
    udprr_key k1 = make_key(1, 101);
    udprr_key start[2] = {k1, make_key(2, 102)};
    udprr_server_opts so = sealed_server_opts(start, 2);
    struct counter count = {0};
    struct fixture_server ts;
    test_server_start(&ts, "127.0.0.1", &so, counting_echo, &count);
    static struct rotator r;
    memset(&r, 0, sizeof r);
    r.s = ts.server;
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, rotate_keys, &r), 0);
    udprr_client_opts co = sealed_client_opts(&k1);
    udprr_client *c = test_client_open(ts.port, &co);
    for (unsigned i = 0; i < N; i++) {
        char req[32], reply[32];
        int n = snprintf(req, sizeof req, "steady %u", i);
        size_t len = 0;
        int rc = udprr_client_request(c, req, (size_t)n, reply, sizeof reply,
                                      &len);
        ck_assert_msg(rc == UDPRR_OK, "request %u: %s", i,
                      udprr_status_name(rc));
        ck_assert_uint_eq(len, (size_t)n);
        ck_assert_mem_eq(reply, req, len);
    }
    atomic_store(&r.stop, 1);
    ck_assert_int_eq(pthread_join(t, NULL), 0);
    ck_assert_int_eq(r.failed_rc, 0);
    ck_assert_uint_gt(r.swaps, 0);
    struct udprr_client_stats cs = test_client_stats(c);
    udprr_client_close(c);
    struct udprr_server_stats ss;
    test_server_stop(&ts, &ss);
    ck_assert_uint_eq(cs.completed, N);
    ck_assert_uint_eq(cs.dropped_auth, 0);
    ck_assert_uint_eq(ss.dropped_auth, 0);
    ck_assert_uint_eq(ss.handled, N);
}
END_TEST

START_TEST(options_that_cannot_be_sealed)
{
    ck_assert_int_eq(udprr_sealed_supported(), 1);
    udprr_key key = make_key(1, 1);
    const int framings[] = {UDPRR_FRAMING_RAW, UDPRR_FRAMING_ID_AT_OFFSET};
    for (size_t i = 0; i < 2; i++) {
        udprr_client_opts co;
        udprr_client_opts_init(&co);
        co.framing = framings[i];
        if (framings[i] == UDPRR_FRAMING_ID_AT_OFFSET) {
            co.id_offset = 0;
            co.id_len = 2;
        }
        /* Fine without the key, refused with it. */
        udprr_client *c = NULL;
        ck_assert_int_eq(udprr_client_open(&c, "127.0.0.1", "9", &co),
                         UDPRR_OK);
        udprr_client_close(c);
        c = NULL;
        co.key = &key;
        ck_assert_int_eq(udprr_client_open(&c, "127.0.0.1", "9", &co),
                         UDPRR_EINVAL);
        ck_assert_ptr_null(c);
        udprr_server_opts so = sealed_server_opts(NULL, 0);
        so.framing = framings[i];
        if (framings[i] == UDPRR_FRAMING_ID_AT_OFFSET) {
            so.id_offset = 0;
            so.id_len = 2;
        }
        udprr_server *s = NULL;
        ck_assert_int_eq(udprr_server_open(&s, "127.0.0.1", "0", &so),
                         UDPRR_OK);
        udprr_server_close(s);
        s = NULL;
        so.keys = &key;
        so.n_keys = 1;
        ck_assert_int_eq(udprr_server_open(&s, "127.0.0.1", "0", &so),
                         UDPRR_EINVAL);
        ck_assert_ptr_null(s);
    }
    udprr_server *s = NULL;
    udprr_server_opts so = sealed_server_opts(NULL, 1);
    ck_assert_int_eq(udprr_server_open(&s, "127.0.0.1", "0", &so),
                     UDPRR_EINVAL);
    udprr_key many[UDPRR_MAX_KEYS + 1];
    for (size_t i = 0; i < UDPRR_MAX_KEYS + 1; i++)
        many[i] = make_key((uint32_t)i, (uint8_t)i);
    so = sealed_server_opts(many, UDPRR_MAX_KEYS + 1);
    ck_assert_int_eq(udprr_server_open(&s, "127.0.0.1", "0", &so),
                     UDPRR_EINVAL);
    udprr_key dup[2] = {make_key(4, 1), make_key(4, 2)};
    so = sealed_server_opts(dup, 2);
    ck_assert_int_eq(udprr_server_open(&s, "127.0.0.1", "0", &so),
                     UDPRR_EINVAL);
    ck_assert_ptr_null(s);
    /* Sixteen keys are fine. */
    so = sealed_server_opts(many, UDPRR_MAX_KEYS);
    ck_assert_int_eq(udprr_server_open(&s, "127.0.0.1", "0", &so), UDPRR_OK);
    udprr_server_close(s);
}
END_TEST

START_TEST(without_sodium_keys_are_not_supported)
{
    ck_assert_int_eq(udprr_sealed_supported(), 0);
    udprr_key key = make_key(1, 1);
    udprr_client_opts co;
    udprr_client_opts_init(&co);
    co.key = &key;
    udprr_client *c = NULL;
    ck_assert_int_eq(udprr_client_open(&c, "127.0.0.1", "9", &co),
                     UDPRR_ENOTSUP);
    ck_assert_ptr_null(c);
    udprr_server_opts so = sealed_server_opts(&key, 1);
    udprr_server *s = NULL;
    ck_assert_int_eq(udprr_server_open(&s, "127.0.0.1", "0", &so),
                     UDPRR_ENOTSUP);
    ck_assert_ptr_null(s);
}
END_TEST

/* --- what a sealed server does with datagrams that open ------------------ */

/* Seals a native datagram of `kind` (ID, attempt 1, body) with key at
 * clock time_ms into out; returns its length. bad_crc spoils the inner
 * checksum before sealing. */
static size_t craft_sealed(const udprr_key *key, uint64_t time_ms,
                           enum udprr__wire_kind kind, uint64_t id,
                           const char *body, int bad_crc, uint8_t *out)
{
    uint8_t inner[256];
    size_t n = strlen(body);
    ck_assert_uint_le(HDR + n, sizeof inner);
    memcpy(inner + HDR, body, n);
    struct udprr__wire_header h = {kind, 1, id};
    ck_assert_int_eq(udprr__wire_encode(&h, inner + HDR, n, inner), UDPRR_OK);
    if (bad_crc)
        inner[19] ^= 1;
    return udprr__seal(key, time_ms, inner, HDR + n, out);
}

START_TEST(opened_datagrams_are_checked_like_plain_ones)
{
    ck_assert_int_eq(udprr__seal_init(), UDPRR_OK);
    udprr_key keys[2] = {make_key(1, 61), make_key(2, 62)};
    udprr_server_opts so = sealed_server_opts(keys, 2);
    udprr_server *s = NULL;
    ck_assert_int_eq(udprr_server_open(&s, "127.0.0.1", "0", &so), UDPRR_OK);
    const uint64_t window_ms = so.cache_lifetime_ms / 2;
    struct sockaddr_in a;
    socklen_t alen = sizeof a;
    ck_assert_int_eq(udprr_server_sockname(s, (struct sockaddr *)&a, &alen),
                     UDPRR_OK);
    char port[16];
    snprintf(port, sizeof port, "%u", (unsigned)ntohs(a.sin_port));
    char mine[16];
    int fd = test_plain_socket("127.0.0.1", mine);
    struct counter count = {0};
    static uint8_t dgram[512], ans[UDPRR_MAX_DATAGRAM], inner[512];
    size_t n;
    ssize_t got;

    /* Opens, but is no request: a reply, then a damaged inner datagram. */
    n = craft_sealed(&keys[0], realtime_ms(), UDPRR__KIND_REPLY, 77, "hi", 0,
                     dgram);
    got = replay(s, &count, fd, port, dgram, n, ans, sizeof ans, QUIET_MS);
    ck_assert_int_eq(got, -1);
    ck_assert_uint_eq(server_stats(s).dropped_unexpected, 1);
    n = craft_sealed(&keys[0], realtime_ms(), UDPRR__KIND_REQUEST, 78, "hi", 1,
                     dgram);
    got = replay(s, &count, fd, port, dgram, n, ans, sizeof ans, QUIET_MS);
    ck_assert_int_eq(got, -1);
    ck_assert_uint_eq(server_stats(s).dropped_malformed, 1);

    /* A request sealed by a client whose clock is far off, either way. */
    n = craft_sealed(&keys[0], realtime_ms() - window_ms - 5000,
                     UDPRR__KIND_REQUEST, 79, "old", 0, dgram);
    got = replay(s, &count, fd, port, dgram, n, ans, sizeof ans, QUIET_MS);
    ck_assert_int_eq(got, -1);
    n = craft_sealed(&keys[0], realtime_ms() + window_ms + 5000,
                     UDPRR__KIND_REQUEST, 80, "new", 0, dgram);
    got = replay(s, &count, fd, port, dgram, n, ans, sizeof ans, QUIET_MS);
    ck_assert_int_eq(got, -1);
    ck_assert_uint_eq(server_stats(s).dropped_clock, 2);
    ck_assert_uint_eq(handler_calls(&count), 0);

    /* A good request under the second key: answered under that key. */
    n = craft_sealed(&keys[1], realtime_ms(), UDPRR__KIND_REQUEST, 81,
                     "second key", 0, dgram);
    got = replay(s, &count, fd, port, dgram, n, ans, sizeof ans,
                 (int)wait_ms());
    ck_assert_int_eq(got, HDR + 10 + UDPRR_SEAL_OVERHEAD);
    ck_assert_uint_eq(get_be32(ans + 4), 2);
    struct udprr__wire_header h;
    open_sealed(&keys[1], ans, (size_t)got, inner, sizeof inner, &h);
    ck_assert_int_eq(h.kind, UDPRR__KIND_REPLY);
    ck_assert_uint_eq(h.id, 81);
    ck_assert_mem_eq(inner + HDR, "second key", 10);
    /* Not under the first key's secret, though the ID were changed. */
    struct udprr__keyring ring;
    udprr_key first_as_2 = keys[0];
    first_as_2.id = 2;
    ck_assert_int_eq(udprr__keyring_set(&ring, &first_as_2, 1), UDPRR_OK);
    uint32_t kid;
    uint64_t clock_ms;
    size_t ilen;
    ck_assert_int_eq(udprr__seal_open(&ring, ans, (size_t)got, &kid,
                                      &clock_ms, &ilen),
                     UDPRR__SEAL_FORGED);
    ck_assert_uint_eq(handler_calls(&count), 1);

    /* The same inner request sealed again (its own nonce, clock): the same
     * request, from the cache. Under the other key it is another
     * request: the cache remembers by key. */
    n = craft_sealed(&keys[1], realtime_ms(), UDPRR__KIND_REQUEST, 81,
                     "second key", 0, dgram);
    got = replay(s, &count, fd, port, dgram, n, ans, sizeof ans,
                 (int)wait_ms());
    ck_assert_int_eq(got, HDR + 10 + UDPRR_SEAL_OVERHEAD);
    ck_assert_uint_eq(handler_calls(&count), 1);
    ck_assert_uint_eq(server_stats(s).cache_hits, 1);
    n = craft_sealed(&keys[0], realtime_ms(), UDPRR__KIND_REQUEST, 81,
                     "second key", 0, dgram);
    got = replay(s, &count, fd, port, dgram, n, ans, sizeof ans,
                 (int)wait_ms());
    ck_assert_int_eq(got, HDR + 10 + UDPRR_SEAL_OVERHEAD);
    ck_assert_uint_eq(get_be32(ans + 4), 1);
    ck_assert_uint_eq(handler_calls(&count), 2);

    struct udprr_server_stats st = server_stats(s);
    ck_assert_uint_eq(st.received, 7);
    ck_assert_uint_eq(st.dropped_auth, 0);
    ck_assert_uint_eq(st.handled, 2);
    ck_assert_uint_eq(st.answered, 3);
    close(fd);
    udprr_server_close(s);
}
END_TEST

/* --- a deferred answer whose key went away -------------------------------- */

struct deferring {
    atomic_uint calls;
    _Atomic uint64_t token;
};

static int defer_handler(void *user, const udprr_request *req, void *reply,
                         size_t cap, size_t *reply_len)
{
    struct deferring *d = user;
    (void)reply, (void)cap, (void)reply_len;
    atomic_fetch_add(&d->calls, 1);
    ck_assert_uint_ne(req->token, 0);
    atomic_store(&d->token, req->token);
    return UDPRR_DEFER;
}

static int token_given(void *arg)
{
    struct deferring *d = arg;
    return atomic_load(&d->token) != 0;
}

static int request_done(void *arg)
{
    return ((struct done *)arg)->called != 0;
}

START_TEST(deferred_answer_not_sent_once_its_key_is_gone)
{
    udprr_key keys[2] = {make_key(1, 71), make_key(2, 72)};
    udprr_server_opts so = sealed_server_opts(keys, 2);
    static struct deferring dfr;
    memset(&dfr, 0, sizeof dfr);
    struct fixture_server ts;
    test_server_start(&ts, "127.0.0.1", &so, defer_handler, &dfr);
    udprr_client_opts co = sealed_client_opts(&keys[0]);
    co.deadline_ms = 600;
    co.initial_rto_ms = 100;
    udprr_client *c = test_client_open(ts.port, &co);
    struct done d = {0};
    ck_assert_int_eq(udprr_client_send(c, "later", 5, on_done, &d), UDPRR_OK);
    ck_assert_int_eq(test_pump_until(c, token_given, &dfr, wait_ms(), 5), 1);
    /* Key 1 goes; then the answer comes: it cannot be sealed. */
    ck_assert_int_eq(udprr_server_set_keys(ts.server, &keys[1], 1), UDPRR_OK);
    ck_assert_int_eq(udprr_server_reply(ts.server, atomic_load(&dfr.token),
                                        "too late", 8),
                     UDPRR_OK);
    AWAIT_SERVER(ts.server, send_errors, 1);
    ck_assert_int_eq(test_pump_until(c, request_done, &d, wait_ms(), -1), 1);
    ck_assert_int_eq(d.status, UDPRR_ETIMEDOUT);
    struct udprr_client_stats cs = test_client_stats(c);
    ck_assert_uint_eq(cs.dropped_auth, 0);
    udprr_client_close(c);
    struct udprr_server_stats ss;
    test_server_stop(&ts, &ss);
    ck_assert_uint_eq(atomic_load(&dfr.calls), 1);
    ck_assert_uint_eq(ss.answered, 0);
    ck_assert_uint_eq(ss.send_errors, 1);
}
END_TEST

/* --- rotation reaches every worker ---------------------------------------- */

START_TEST(rotation_reaches_every_worker)
{
    /* The kernel spreads clients over the workers by their address and
     * port: several clients, each from its own port, reach both. */
    enum { CLIENTS = 8 };
    udprr_key keys[2] = {make_key(1, 81), make_key(2, 82)};
    udprr_server_opts so = sealed_server_opts(keys, 2);
    so.workers = 2;
    struct counter count = {0};
    struct fixture_server ts;
    test_server_start(&ts, "127.0.0.1", &so, counting_echo, &count);
    for (unsigned i = 0; i < CLIENTS; i++)
        request_succeeds(ts.port, &keys[0], "before");
    ck_assert_int_eq(udprr_server_set_keys(ts.server, &keys[1], 1), UDPRR_OK);
    for (unsigned i = 0; i < CLIENTS; i++) {
        request_times_out(ts.port, &keys[0]);
        request_succeeds(ts.port, &keys[1], "after");
    }
    AWAIT_SERVER(ts.server, dropped_auth, CLIENTS * FAIL_ATTEMPTS);
    struct udprr_server_stats ss;
    test_server_stop(&ts, &ss);
    ck_assert_uint_eq(ss.handled, 2 * CLIENTS);
    ck_assert_uint_eq(handler_calls(&count), 2 * CLIENTS);
}
END_TEST

struct gathered {
    int calls;
    int status;
    char reply[64];
    size_t reply_len;
    struct sockaddr_storage from;
    socklen_t from_len;
};

static int on_gathered(void *user, const struct sockaddr *from,
                       socklen_t from_len, int status, const void *reply,
                       size_t reply_len)
{
    struct gathered *g = user;
    g->calls++;
    g->status = status;
    g->reply_len = reply_len;
    if (reply_len > 0)
        memcpy(g->reply, reply,
               reply_len < sizeof g->reply ? reply_len : sizeof g->reply);
    memcpy(&g->from, from, from_len);
    g->from_len = from_len;
    return 0;
}

/* --- limits, declines, a client's own checks ------------------------------ */

/* Fills the whole reply cap the handler is given, and records it; a
 * request "no" is declined. */
struct cap_seen {
    atomic_uint calls;
    _Atomic size_t cap;
};

static int fill_cap(void *user, const udprr_request *req, void *reply,
                    size_t cap, size_t *reply_len)
{
    struct cap_seen *c = user;
    atomic_fetch_add(&c->calls, 1);
    atomic_store(&c->cap, cap);
    if (req->len == 2 && memcmp(req->data, "no", 2) == 0)
        return UDPRR_DECLINE;
    memset(reply, 'F', cap);
    *reply_len = cap;
    return UDPRR_REPLY;
}

START_TEST(handler_cap_and_declines_are_sealed_sized)
{
    static char reply[UDPRR_MAX_PAYLOAD];
    udprr_key key = make_key(0xc0, 91);
    udprr_server_opts so = sealed_server_opts(&key, 1);
    static struct cap_seen cs;
    memset(&cs, 0, sizeof cs);
    struct fixture_server ts;
    test_server_start(&ts, "127.0.0.1", &so, fill_cap, &cs);
    udprr_client_opts co = sealed_client_opts(&key);
    udprr_client *c = test_client_open(ts.port, &co);
    /* The handler may write what one sealed datagram carries, and it
     * arrives whole (after the amplification echo). */
    size_t len = 0;
    ck_assert_int_eq(udprr_client_request(c, "fill", 4, reply, sizeof reply,
                                          &len),
                     UDPRR_OK);
    ck_assert_uint_eq(atomic_load(&cs.cap), UDPRR_MAX_SEALED_PAYLOAD);
    ck_assert_uint_eq(len, UDPRR_MAX_SEALED_PAYLOAD);
    ck_assert_int_eq(reply[0], 'F');
    ck_assert_int_eq(reply[len - 1], 'F');
    ck_assert_uint_eq(test_client_stats(c).echoes, 1);
    /* The client keeps the echo's cookie for later requests; requests
     * with no room left for it in a sealed datagram still go, whole. */
    static uint8_t full[UDPRR_MAX_SEALED_PAYLOAD];
    const size_t no_room[] = {UDPRR_MAX_SEALED_PAYLOAD,
                              UDPRR_MAX_SEALED_PAYLOAD - 8,
                              UDPRR_MAX_SEALED_PAYLOAD - 16};
    for (size_t i = 0; i < 3; i++) {
        memset(full, 'f', no_room[i]);
        ck_assert_int_eq(udprr_client_request(c, full, no_room[i], reply,
                                              sizeof reply, &len),
                         UDPRR_OK);
        ck_assert_uint_eq(len, UDPRR_MAX_SEALED_PAYLOAD);
    }
    /* A decline, the smallest sealed answer (76 bytes). */
    ck_assert_int_eq(udprr_client_request(c, "no", 2, reply, sizeof reply,
                                          &len),
                     UDPRR_EREMOTE);
    /* Too big for an asynchronous send and a gather too. */
    static uint8_t big[UDPRR_MAX_SEALED_PAYLOAD + 1];
    struct done d = {0};
    ck_assert_int_eq(udprr_client_send(c, big, sizeof big, on_done, &d),
                     UDPRR_ETOOBIG);
    struct gathered g = {0};
    ck_assert_int_eq(udprr_client_gather(c, big, sizeof big, 100, 0,
                                         on_gathered, &g),
                     UDPRR_ETOOBIG);
    ck_assert_int_eq(d.called, 0);
    ck_assert_int_eq(g.calls, 0);
    ck_assert_uint_eq(test_client_stats(c).dropped_auth, 0);
    udprr_client_close(c);
    struct udprr_server_stats ss;
    test_server_stop(&ts, &ss);
    ck_assert_uint_eq(atomic_load(&cs.calls), 5);
    ck_assert_uint_eq(ss.handled, 5);
    ck_assert_uint_eq(ss.declined, 1);
    ck_assert_uint_eq(ss.dropped_auth, 0);
    ck_assert_uint_eq(ss.dropped_malformed, 0);
}
END_TEST

/* The deferred answer's limit is the sealed one too. */
START_TEST(deferred_reply_limit_is_sealed_sized)
{
    udprr_key key = make_key(0xc1, 92);
    udprr_server_opts so = sealed_server_opts(&key, 1);
    static struct deferring dfr;
    memset(&dfr, 0, sizeof dfr);
    struct fixture_server ts;
    test_server_start(&ts, "127.0.0.1", &so, defer_handler, &dfr);
    udprr_client_opts co = sealed_client_opts(&key);
    udprr_client *c = test_client_open(ts.port, &co);
    static uint8_t req[UDPRR_MAX_SEALED_PAYLOAD];
    static uint8_t answer[UDPRR_MAX_SEALED_PAYLOAD + 1];
    memset(answer, 'D', sizeof answer);
    struct done d = {0};
    /* A request as large as the answer: no echo needed. */
    ck_assert_int_eq(udprr_client_send(c, req, sizeof req, on_done, &d),
                     UDPRR_OK);
    ck_assert_int_eq(test_pump_until(c, token_given, &dfr, wait_ms(), 5), 1);
    uint64_t token = atomic_load(&dfr.token);
    ck_assert_int_eq(udprr_server_reply(ts.server, token, answer,
                                        UDPRR_MAX_SEALED_PAYLOAD + 1),
                     UDPRR_ETOOBIG);
    ck_assert_int_eq(udprr_server_reply(ts.server, token, answer,
                                        UDPRR_MAX_SEALED_PAYLOAD),
                     UDPRR_OK);
    ck_assert_int_eq(test_pump_until(c, request_done, &d, wait_ms(), -1), 1);
    ck_assert_int_eq(d.status, UDPRR_OK);
    ck_assert_uint_eq(d.len, UDPRR_MAX_SEALED_PAYLOAD);
    udprr_client_close(c);
    test_server_stop(&ts, NULL);
    ck_assert_uint_eq(atomic_load(&dfr.calls), 1);
}
END_TEST

/* A sealed client takes only datagrams that open with its key: a fake
 * server (a plain socket that holds the key) answers a real request
 * first in the clear, then under another key ID, then under another
 * secret, then properly. */
START_TEST(sealed_client_takes_only_what_opens)
{
    ck_assert_int_eq(udprr__seal_init(), UDPRR_OK);
    udprr_key key = make_key(0xd0, 93);
    char port[16];
    int fd = test_plain_socket("127.0.0.1", port);
    udprr_client_opts co = sealed_client_opts(&key);
    co.initial_rto_ms = 2000; /* the fake answers the first transmission */
    udprr_client *c = test_client_open(port, &co);
    struct done d = {0};
    ck_assert_int_eq(udprr_client_send(c, "real", 4, on_done, &d), UDPRR_OK);
    static uint8_t req[UDPRR_MAX_DATAGRAM], inner[UDPRR_MAX_DATAGRAM];
    struct sockaddr_storage from;
    socklen_t from_len = sizeof from;
    ssize_t got = test_recv_within(fd, req, sizeof req, (int)wait_ms(), &from,
                                   &from_len);
    ck_assert_int_eq(got, HDR + 4 + UDPRR_SEAL_OVERHEAD);
    struct udprr__wire_header h;
    open_sealed(&key, req, (size_t)got, inner, sizeof inner, &h);
    ck_assert_int_eq(h.kind, UDPRR__KIND_REQUEST);

    uint8_t plain[64], sealed[128];
    struct udprr__wire_header rh = {UDPRR__KIND_REPLY, h.attempt, h.id};
    memcpy(plain + HDR, "fake", 4);
    ck_assert_int_eq(udprr__wire_encode(&rh, plain + HDR, 4, plain), UDPRR_OK);
    udprr_key other_id = key, other_secret = make_key(key.id, 94);
    other_id.id = key.id + 1;
    const udprr_key *wrong[] = {&other_id, &other_secret};
    ck_assert_int_eq(sendto(fd, plain, HDR + 4, 0, (struct sockaddr *)&from,
                            from_len),
                     HDR + 4);
    for (int i = 0; i < 2; i++) {
        size_t n = udprr__seal(wrong[i], realtime_ms(), plain, HDR + 4,
                               sealed);
        ck_assert_int_eq(sendto(fd, sealed, n, 0, (struct sockaddr *)&from,
                                from_len),
                         (ssize_t)n);
    }
    memcpy(plain + HDR, "good", 4);
    ck_assert_int_eq(udprr__wire_encode(&rh, plain + HDR, 4, plain), UDPRR_OK);
    size_t n = udprr__seal(&key, realtime_ms(), plain, HDR + 4, sealed);
    ck_assert_int_eq(sendto(fd, sealed, n, 0, (struct sockaddr *)&from,
                            from_len),
                     (ssize_t)n);
    ck_assert_int_eq(test_pump_until(c, request_done, &d, wait_ms(), -1), 1);
    ck_assert_int_eq(d.status, UDPRR_OK);
    ck_assert_uint_eq(d.len, 4);
    ck_assert_mem_eq(d.reply, "good", 4);
    struct udprr_client_stats cs = test_client_stats(c);
    ck_assert_uint_eq(cs.dropped_auth, 3);
    ck_assert_uint_eq(cs.dropped_malformed, 0);
    ck_assert_uint_eq(cs.completed, 1);
    udprr_client_close(c);
    close(fd);
}
END_TEST

/* --- replays to a server with workers ------------------------------------- */

START_TEST(replay_with_workers_runs_the_handler_at_most_once_per_worker)
{
    /* A replay comes from any address, and the kernel hands each source
     * address and port to one worker, whose cache alone it finds (udprr.h,
     * "Sealed mode"): replays from several ports reach both workers; each
     * is answered, and the handler runs at most once more per worker. */
    enum { WORKERS = 2, REPLAYERS = 8 };
    udprr_key key = make_key(0xe0, 95);
    udprr_server_opts so = sealed_server_opts(&key, 1);
    so.workers = WORKERS;
    struct counter count = {0};
    struct fixture_server ts;
    test_server_start(&ts, "127.0.0.1", &so, counting_echo, &count);
    struct tap *tap = tap_start(ts.port);
    request_succeeds(tap->port, &key, "once per worker");
    static uint8_t req[UDPRR_MAX_DATAGRAM], ans[UDPRR_MAX_DATAGRAM];
    static uint8_t inner[UDPRR_MAX_DATAGRAM];
    size_t req_len = tap_first(tap, TO_SERVER, req, sizeof req);
    tap_stop(tap);
    ck_assert_uint_eq(handler_calls(&count), 1);
    struct sockaddr_in to = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)atoi(ts.port))};
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (unsigned i = 0; i < REPLAYERS; i++) {
        char rport[16];
        int fd = test_plain_socket("127.0.0.1", rport);
        ck_assert_int_eq(sendto(fd, req, req_len, 0, (struct sockaddr *)&to,
                                sizeof to),
                         (ssize_t)req_len);
        struct sockaddr_storage from;
        socklen_t from_len = sizeof from;
        ssize_t got = test_recv_within(fd, ans, sizeof ans, (int)wait_ms(),
                                       &from, &from_len);
        ck_assert_msg(got > 0, "replay %u: no answer", i);
        struct udprr__wire_header h;
        open_sealed(&key, ans, (size_t)got, inner, sizeof inner, &h);
        ck_assert_int_eq(h.kind, UDPRR__KIND_REPLY);
        ck_assert_mem_eq(inner + HDR, "once per worker", 15);
        close(fd);
    }
    struct udprr_server_stats ss;
    test_server_stop(&ts, &ss);
    unsigned calls = handler_calls(&count);
    ck_assert_msg(calls <= WORKERS,
                  "%u replays ran the handler %u times with %u workers",
                  REPLAYERS, calls, WORKERS);
    ck_assert_uint_eq(ss.handled, calls);
    ck_assert_uint_eq(ss.cache_hits, REPLAYERS - (calls - 1));
}
END_TEST

/* --- through the impairment relay ---------------------------------------- */

enum { RELAY_N = 40 };

struct ledger {
    atomic_uint calls[RELAY_N];
    atomic_uint strangers; /* requests the test never sent */
};

static int ledger_echo(void *user, const udprr_request *req, void *reply,
                       size_t cap, size_t *reply_len)
{
    struct ledger *l = user;
    char text[32];
    size_t n = req->len < sizeof text - 1 ? req->len : sizeof text - 1;
    memcpy(text, req->data, n);
    text[n] = '\0';
    unsigned i;
    if (sscanf(text, "sealed %u", &i) != 1 || i >= RELAY_N) {
        atomic_fetch_add(&l->strangers, 1);
        return UDPRR_DECLINE;
    }
    atomic_fetch_add(&l->calls[i], 1);
    *reply_len = (size_t)snprintf(reply, cap, "%s/answered", text);
    return UDPRR_REPLY;
}

/* Whether the relay seeded with `seed` drops and duplicates at least one
 * of the first n datagrams each way: each way sees at least n (every
 * request's first transmission, every request's first answer), and
 * datagram i's fate depends on the seed and i alone (impair.h). */
static int seed_impairs_both_ways(uint64_t seed,
                                  const struct impair_config *cfg, unsigned n)
{
    uint64_t seeds[2] = {seed, ~seed}; /* to_server, to_client (relay.h) */
    for (unsigned way = 0; way < 2; way++) {
        struct impair imp;
        impair_init(&imp, cfg, seeds[way]);
        for (unsigned i = 0; i < n; i++)
            impair_decide(&imp, 100);
        if (imp.counters.dropped == 0 || imp.counters.duplicated == 0)
            return 0;
    }
    return 1;
}

START_TEST(through_loss_and_duplication_every_request_once)
{
    static struct ledger l;
    memset(&l, 0, sizeof l);
    udprr_key key = make_key(0xfeed, 21);
    udprr_server_opts so = sealed_server_opts(&key, 1);
    struct fixture_server ts;
    test_server_start(&ts, "127.0.0.1", &so, ledger_echo, &l);
    struct impair_config impair = {.drop_permille = 200,
                                   .dup_permille = 200};
    uint64_t seed = 20261130;
    while (!seed_impairs_both_ways(seed, &impair, RELAY_N))
        ck_assert_uint_lt(++seed, 20261130 + 1000);
    char port[16];
    struct relay *relay = test_relay_in_front(&ts, &impair, &impair, seed,
                                              port);
    udprr_client_opts co = sealed_client_opts(&key);
    co.deadline_ms = 4 * wait_ms();
    co.initial_rto_ms = 50;
    co.min_rto_ms = 2;
    co.max_rto_ms = 200;
    udprr_client *c = test_client_open(port, &co);
    for (unsigned i = 0; i < RELAY_N; i++) {
        char req[32], want[48], reply[64];
        int n = snprintf(req, sizeof req, "sealed %u", i);
        int w = snprintf(want, sizeof want, "%s/answered", req);
        size_t len = 0;
        int rc = udprr_client_request(c, req, (size_t)n, reply, sizeof reply,
                                      &len);
        ck_assert_msg(rc == UDPRR_OK, "request %u: %s", i,
                      udprr_status_name(rc));
        ck_assert_uint_eq(len, (size_t)w);
        ck_assert_mem_eq(reply, want, len);
    }
    struct udprr_client_stats cs = test_client_stats(c);
    udprr_client_close(c);
    struct relay_stats rs;
    relay_stop(relay, &rs);
    struct udprr_server_stats ss;
    test_server_stop(&ts, &ss);

    ck_assert_uint_eq(atomic_load(&l.strangers), 0);
    for (unsigned i = 0; i < RELAY_N; i++)
        ck_assert_msg(atomic_load(&l.calls[i]) == 1,
                      "request %u ran the handler %u times", i,
                      atomic_load(&l.calls[i]));
    ck_assert_uint_eq(ss.handled, RELAY_N);
    ck_assert_uint_eq(cs.completed, RELAY_N);
    /* The impairments happened, and every copy still opened. */
    ck_assert_uint_gt(rs.to_server.impair.dropped, 0);
    ck_assert_uint_gt(rs.to_server.impair.duplicated, 0);
    ck_assert_uint_gt(rs.to_client.impair.dropped, 0);
    ck_assert_uint_gt(rs.to_client.impair.duplicated, 0);
    ck_assert_uint_gt(cs.retransmissions, 0);
    ck_assert_uint_gt(ss.cache_hits, 0);
    ck_assert_uint_eq(ss.dropped_auth, 0);
    ck_assert_uint_eq(ss.dropped_clock, 0);
    ck_assert_uint_eq(cs.dropped_auth, 0);
}
END_TEST

/* --- the asynchronous client, a gather, the amplification echo ---------- */

/* Two clients, under two keys, each with many requests in flight: the
 * server handles and seals their answers in the same batches, each under
 * its own request's key. Requests differ in size, so an answer sealed
 * over another's bytes would show. */
enum { ASYNC_CLIENTS = 2, ASYNC_N = 48, ASYNC_MAX = 1500 };

struct async_slot {
    uint8_t req[ASYNC_MAX];
    size_t req_len;
    int called, status;
    uint8_t reply[ASYNC_MAX];
    size_t reply_len;
};

static struct async_slot slots[ASYNC_CLIENTS][ASYNC_N];

static void on_slot_done(void *user, int status, const void *reply,
                         size_t len)
{
    struct async_slot *slot = user;
    slot->called++;
    slot->status = status;
    slot->reply_len = len;
    if (reply != NULL && len <= sizeof slot->reply)
        memcpy(slot->reply, reply, len);
}

static int all_done(void)
{
    for (unsigned k = 0; k < ASYNC_CLIENTS; k++)
        for (unsigned i = 0; i < ASYNC_N; i++)
            if (slots[k][i].called == 0)
                return 0;
    return 1;
}

START_TEST(async_clients_of_two_keys_all_complete)
{
    udprr_key keys[ASYNC_CLIENTS] = {make_key(0xa5, 31), make_key(0xa6, 32)};
    udprr_server_opts so = sealed_server_opts(keys, ASYNC_CLIENTS);
    struct counter count = {0};
    struct fixture_server ts;
    test_server_start(&ts, "127.0.0.1", &so, counting_echo, &count);
    udprr_client *c[ASYNC_CLIENTS];
    memset(slots, 0, sizeof slots);
    for (unsigned k = 0; k < ASYNC_CLIENTS; k++) {
        udprr_client_opts co = sealed_client_opts(&keys[k]);
        co.max_window = 32;
        c[k] = test_client_open(ts.port, &co);
    }
    for (unsigned i = 0; i < ASYNC_N; i++)
        for (unsigned k = 0; k < ASYNC_CLIENTS; k++) {
            struct async_slot *slot = &slots[k][i];
            slot->req_len = 1 + (i * 97 + k * 13) % ASYNC_MAX;
            for (size_t b = 0; b < slot->req_len; b++)
                slot->req[b] = (uint8_t)(k * 101 + i * 7 + b);
            ck_assert_int_eq(udprr_client_send(c[k], slot->req,
                                               slot->req_len, on_slot_done,
                                               slot),
                             UDPRR_OK);
        }
    /* More than one in flight at once on each. */
    for (unsigned k = 0; k < ASYNC_CLIENTS; k++)
        ck_assert_uint_gt(test_client_stats(c[k]).in_flight, 1);
    uint64_t end = test_now_us() + (uint64_t)wait_ms() * 1000;
    while (!all_done()) {
        ck_assert_msg(test_now_us() < end, "the requests did not all end");
        struct pollfd p[ASYNC_CLIENTS];
        int wait = 20;
        for (unsigned k = 0; k < ASYNC_CLIENTS; k++) {
            p[k] = (struct pollfd){udprr_client_fd(c[k]), POLLIN, 0};
            int t = udprr_client_timeout_ms(c[k]);
            if (t >= 0 && t < wait)
                wait = t;
        }
        ck_assert_int_ge(poll(p, ASYNC_CLIENTS, wait), 0);
        for (unsigned k = 0; k < ASYNC_CLIENTS; k++)
            ck_assert_int_eq(udprr_client_process(c[k]), UDPRR_OK);
    }
    for (unsigned k = 0; k < ASYNC_CLIENTS; k++) {
        for (unsigned i = 0; i < ASYNC_N; i++) {
            struct async_slot *slot = &slots[k][i];
            ck_assert_int_eq(slot->called, 1);
            ck_assert_int_eq(slot->status, UDPRR_OK);
            ck_assert_uint_eq(slot->reply_len, slot->req_len);
            ck_assert_msg(memcmp(slot->reply, slot->req, slot->req_len) == 0,
                          "client %u request %u: another answer", k, i);
        }
        struct udprr_client_stats cs = test_client_stats(c[k]);
        ck_assert_uint_eq(cs.completed, ASYNC_N);
        ck_assert_uint_eq(cs.dropped_auth, 0);
        udprr_client_close(c[k]);
    }
    struct udprr_server_stats ss;
    test_server_stop(&ts, &ss);
    ck_assert_uint_eq(ss.handled, ASYNC_CLIENTS * ASYNC_N);
    ck_assert_uint_eq(handler_calls(&count), ASYNC_CLIENTS * ASYNC_N);
    ck_assert_uint_eq(ss.dropped_auth, 0);
}
END_TEST

START_TEST(gather_from_a_sealed_server)
{
    udprr_key key = make_key(0x6a, 41);
    udprr_server_opts so = sealed_server_opts(&key, 1);
    struct counter count = {0};
    struct fixture_server ts;
    test_server_start(&ts, "127.0.0.1", &so, counting_echo, &count);
    udprr_client_opts co = sealed_client_opts(&key);
    udprr_client *c = test_client_open(ts.port, &co);
    struct gathered g = {0};
    ck_assert_int_eq(udprr_client_gather(c, "who is there", 12, wait_ms(), 1,
                                         on_gathered, &g),
                     UDPRR_OK);
    ck_assert_int_eq(g.calls, 1);
    ck_assert_int_eq(g.status, UDPRR_OK);
    ck_assert_uint_eq(g.reply_len, 12);
    ck_assert_mem_eq(g.reply, "who is there", 12);
    ck_assert_uint_eq(g.from_len, sizeof(struct sockaddr_in));
    const struct sockaddr_in *from = (const struct sockaddr_in *)&g.from;
    const struct sockaddr_in *srv = (const struct sockaddr_in *)&ts.addr;
    ck_assert_uint_eq(from->sin_port, srv->sin_port);
    ck_assert_uint_eq(from->sin_addr.s_addr, htonl(INADDR_LOOPBACK));
    udprr_client_close(c);

    /* With another key: nothing opens either way, fn never called. */
    udprr_key wrong = make_key(0x6a, 42);
    udprr_client_opts wo = sealed_client_opts(&wrong);
    wo.initial_rto_ms = 50;
    c = test_client_open(ts.port, &wo);
    struct gathered none = {0};
    ck_assert_int_eq(udprr_client_gather(c, "who is there", 12, QUIET_MS, 0,
                                         on_gathered, &none),
                     UDPRR_ETIMEDOUT);
    ck_assert_int_eq(none.calls, 0);
    udprr_client_close(c);
    AWAIT_SERVER_AT_LEAST(ts.server, dropped_auth, 1);

    struct udprr_server_stats ss;
    test_server_stop(&ts, &ss);
    ck_assert_uint_eq(handler_calls(&count), 1);
    ck_assert_uint_eq(ss.handled, 1);
    ck_assert_uint_gt(ss.dropped_auth, 0);
    ck_assert_uint_eq(ss.received, ss.handled + ss.cache_hits +
                                       ss.dropped_auth);
}
END_TEST

/* Answers every request with 10000 bytes: over 3 times any small sealed
 * request. */
static int big_answer(void *user, const udprr_request *req, void *reply,
                      size_t cap, size_t *reply_len)
{
    struct counter *c = user;
    (void)req;
    atomic_fetch_add(&c->calls, 1);
    ck_assert_uint_ge(cap, 10000);
    memset(reply, 'B', 10000);
    *reply_len = 10000;
    return UDPRR_REPLY;
}

START_TEST(amplification_echo_inside_the_seal)
{
    udprr_key key = make_key(0xa3, 51);
    udprr_server_opts so = sealed_server_opts(&key, 1);
    ck_assert_uint_eq(so.amplification_factor, 3);
    struct counter count = {0};
    struct fixture_server ts;
    test_server_start(&ts, "127.0.0.1", &so, big_answer, &count);
    struct tap *tap = tap_start(ts.port);
    udprr_client_opts co = sealed_client_opts(&key);
    co.initial_rto_ms = 2000; /* no retransmission but the echo's */
    udprr_client *c = test_client_open(tap->port, &co);
    static char reply[20000];
    size_t len = 0;
    ck_assert_int_eq(udprr_client_request(c, "small", 5, reply, sizeof reply,
                                          &len),
                     UDPRR_OK);
    ck_assert_uint_eq(len, 10000);
    ck_assert_int_eq(reply[0], 'B');
    ck_assert_int_eq(reply[9999], 'B');
    struct udprr_client_stats cs = test_client_stats(c);
    ck_assert_uint_eq(cs.echoes, 1);
    ck_assert_uint_eq(cs.dropped_auth, 0);
    udprr_client_close(c);

    /* The echo went sealed: the first answer is a sealed echo. */
    static uint8_t first[UDPRR_MAX_DATAGRAM], inner[UDPRR_MAX_DATAGRAM];
    static uint8_t plain_req[UDPRR_MAX_DATAGRAM], cookie_req[UDPRR_MAX_DATAGRAM];
    static uint8_t ans[UDPRR_MAX_DATAGRAM];
    size_t first_len = tap_first(tap, TO_CLIENT, first, sizeof first);
    /* The request as first sent, and again with the cookie. */
    size_t plain_len = tap_first(tap, TO_SERVER, plain_req, sizeof plain_req);
    size_t cookie_len = tap_last(tap, TO_SERVER, cookie_req,
                                 sizeof cookie_req);
    ck_assert_uint_ge(tap_count(tap, &tap->seen[TO_SERVER]), 2);
    tap_stop(tap);
    ck_assert_uint_eq(first_len,
                      HDR + UDPRR__WIRE_COOKIE_BYTES + UDPRR_SEAL_OVERHEAD);
    struct udprr__wire_header h;
    open_sealed(&key, first, first_len, inner, sizeof inner, &h);
    ck_assert_int_eq(h.kind, UDPRR__KIND_ECHO);
    ck_assert_uint_eq(cookie_len, plain_len + UDPRR__WIRE_COOKIE_BYTES);

    /* Neither, replayed from another address (as a forger aiming the
     * answer at a victim would), draws the large answer from the cache:
     * the cookie is the tap's address's, not the replayer's. */
    char rport[16];
    int fd = test_plain_socket("127.0.0.1", rport);
    struct sockaddr_in to = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)atoi(ts.port))};
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const uint8_t *replays[2] = {plain_req, cookie_req};
    const size_t replay_len[2] = {plain_len, cookie_len};
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(sendto(fd, replays[i], replay_len[i], 0,
                                (struct sockaddr *)&to, sizeof to),
                         (ssize_t)replay_len[i]);
        struct sockaddr_storage from;
        socklen_t from_len = sizeof from;
        ssize_t got = test_recv_within(fd, ans, sizeof ans, (int)wait_ms(),
                                       &from, &from_len);
        ck_assert_int_eq(got, (ssize_t)first_len);
        open_sealed(&key, ans, (size_t)got, inner, sizeof inner, &h);
        ck_assert_int_eq(h.kind, UDPRR__KIND_ECHO);
    }
    struct sockaddr_storage from;
    socklen_t from_len = sizeof from;
    ck_assert_int_eq(test_recv_within(fd, ans, sizeof ans, QUIET_MS, &from,
                                      &from_len),
                     -1);
    close(fd);

    struct udprr_server_stats ss;
    test_server_stop(&ts, &ss);
    ck_assert_uint_eq(ss.amplification_echoes, 3);
    ck_assert_uint_eq(ss.handled, 1);
    ck_assert_uint_eq(handler_calls(&count), 1);
    ck_assert_uint_eq(ss.dropped_auth, 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("sealed");
    TCase *tc = tcase_create("loopback");
    tcase_set_timeout(tc, 120);
    if (!udprr_sealed_supported()) {
        tcase_add_test(tc, without_sodium_keys_are_not_supported);
    } else {
        tcase_add_test(tc, sealed_round_trips_every_size);
        tcase_add_test(tc, sealed_datagram_on_the_wire);
        tcase_add_test(tc, wrong_key_wrong_id_and_plain_client_are_dropped);
        tcase_add_test(tc, sealed_client_at_plain_server_is_malformed_there);
        tcase_add_test(tc, tampered_requests_are_dropped);
        tcase_add_test(tc, tampered_answers_are_dropped_by_the_client);
        tcase_add_test(tc,
                       replay_answered_from_cache_inside_window_dropped_outside);
        tcase_add_test(tc, rotation_with_two_keys_live);
        tcase_add_test(tc, rotation_under_load_keeps_the_common_key);
        tcase_add_test(tc, options_that_cannot_be_sealed);
        tcase_add_test(tc, opened_datagrams_are_checked_like_plain_ones);
        tcase_add_test(tc, deferred_answer_not_sent_once_its_key_is_gone);
        tcase_add_test(tc, rotation_reaches_every_worker);
        tcase_add_test(tc, handler_cap_and_declines_are_sealed_sized);
        tcase_add_test(tc, deferred_reply_limit_is_sealed_sized);
        tcase_add_test(tc, sealed_client_takes_only_what_opens);
        tcase_add_test(
            tc, replay_with_workers_runs_the_handler_at_most_once_per_worker);
        tcase_add_test(tc, through_loss_and_duplication_every_request_once);
        tcase_add_test(tc, async_clients_of_two_keys_all_complete);
        tcase_add_test(tc, gather_from_a_sealed_server);
        tcase_add_test(tc, amplification_echo_inside_the_seal);
    }
    suite_add_tcase(s, tc);
    return udprr_test_run(s);
}
