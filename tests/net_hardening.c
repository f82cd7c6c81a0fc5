/* SPDX-License-Identifier: MIT */
/*
 * net_hardening.c - the server against clients that misbehave or outrun
 * it, over real sockets on loopback:
 *
 *   - the reply cache answers only the request it saw: a retransmission
 *     (the same bytes) gets the cached answer without the handler, the
 *     same ID with other bytes is a new request (handled, and counted in
 *     reused_ids), in native and in id-at-offset (DNS-like) framing;
 *   - overload is visible: a server that does not read while a burst
 *     arrives at a small receive buffer counts what the kernel dropped
 *     (kernel_drops), and received + kernel_drops is every datagram sent;
 *   - the amplification guard: an answer over 3 times its request goes
 *     to a libudprr client after one echo and its cookie (the handler run
 *     once), never to a sender that cannot show the cookie (as a forged
 *     source cannot): it gets 36 bytes; a cookie is good for its own peer
 *     only, and for 30 to 60 s; the allowance is the server's to raise.
 *
 * The server is driven with udprr_server_process from the test's thread,
 * so what it has read, and when, is the test's choice.
 */
#include <errno.h>

#include "netutil.h"
#include "server_hooks.h"
#include "testutil.h"
#include "wire.h"

#define WAIT_MS 5000

/* Answers "<n>:<request>" where n counts the handler's calls. */
struct counting {
    int calls;
};

static int numbered_echo(void *user, const udprr_request *req, void *reply,
                         size_t cap, size_t *reply_len)
{
    struct counting *c = user;
    c->calls++;
    int n = snprintf(reply, cap, "%d:%.*s", c->calls, (int)req->len,
                     (const char *)req->data);
    *reply_len = (size_t)n;
    return UDPRR_REPLY;
}

static udprr_server *open_server(int framing, char port[16])
{
    udprr_server_opts o;
    udprr_server_opts_init(&o);
    o.framing = framing;
    o.id_offset = 0;
    o.id_len = 2;
    udprr_server *s = NULL;
    ck_assert_int_eq(udprr_server_open(&s, "127.0.0.1", "0", &o), UDPRR_OK);
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    ck_assert_int_eq(udprr_server_sockname(s, (struct sockaddr *)&a, &len),
                     UDPRR_OK);
    snprintf(port, 16, "%u", (unsigned)ntohs(a.sin_port));
    return s;
}

/* A plain socket of 127.0.0.1 connected to port. */
static int plain_to(const char *port)
{
    char mine[16];
    int fd = test_plain_socket("127.0.0.1", mine);
    struct sockaddr_in to = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)atoi(port))};
    inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&to, sizeof to), 0);
    return fd;
}

/* Sends datagram[0..len), lets the server process it, and returns the
 * answer's length (into answer), or -1 when none came within WAIT_MS. */
static ssize_t exchange(udprr_server *s, struct counting *c, int fd,
                        const void *datagram, size_t len, uint8_t *answer,
                        size_t cap)
{
    ck_assert_int_eq(send(fd, datagram, len, 0), (ssize_t)len);
    struct pollfd p = {udprr_server_fd(s), POLLIN, 0};
    ck_assert_int_eq(poll(&p, 1, WAIT_MS), 1);
    ck_assert_int_eq(udprr_server_process(s, numbered_echo, c), UDPRR_OK);
    struct sockaddr_storage from;
    socklen_t from_len = sizeof from;
    return test_recv_within(fd, answer, cap, WAIT_MS, &from, &from_len);
}

/* A native request: ID, attempt, body. */
static size_t native_request(uint64_t id, unsigned attempt, const char *body,
                             uint8_t *out)
{
    struct udprr__wire_header h = {UDPRR__KIND_REQUEST, (uint16_t)attempt,
                                   id};
    size_t n = strlen(body);
    memcpy(out + UDPRR__WIRE_HEADER_BYTES, body, n);
    ck_assert_int_eq(
        udprr__wire_encode(&h, out + UDPRR__WIRE_HEADER_BYTES, n, out),
        UDPRR_OK);
    return UDPRR__WIRE_HEADER_BYTES + n;
}

static struct udprr_server_stats server_stats(const udprr_server *s)
{
    struct udprr_server_stats st = {.size = sizeof st};
    ck_assert_int_eq(udprr_server_stats(s, &st), UDPRR_OK);
    return st;
}

START_TEST(native_cache_answers_only_the_same_bytes)
{
    char port[16];
    udprr_server *s = open_server(UDPRR_FRAMING_NATIVE, port);
    struct counting c = {0};
    int fd = plain_to(port);
    uint8_t req[128], ans[128];
    size_t n = native_request(0x1234, 1, "apples", req);
    ck_assert_int_eq(exchange(s, &c, fd, req, n, ans, sizeof ans),
                     UDPRR__WIRE_HEADER_BYTES + 8);
    ck_assert_mem_eq(ans + UDPRR__WIRE_HEADER_BYTES, "1:apples", 8);
    /* The same ID, other bytes (a buggy client): a new request. */
    n = native_request(0x1234, 2, "pears", req);
    ck_assert_int_eq(exchange(s, &c, fd, req, n, ans, sizeof ans),
                     UDPRR__WIRE_HEADER_BYTES + 7);
    ck_assert_mem_eq(ans + UDPRR__WIRE_HEADER_BYTES, "2:pears", 7);
    /* A retransmission of the first (same bytes, next attempt): its own
     * cached answer, the handler not run. */
    n = native_request(0x1234, 3, "apples", req);
    ck_assert_int_eq(exchange(s, &c, fd, req, n, ans, sizeof ans),
                     UDPRR__WIRE_HEADER_BYTES + 8);
    ck_assert_mem_eq(ans + UDPRR__WIRE_HEADER_BYTES, "1:apples", 8);
    ck_assert_int_eq(c.calls, 2);
    struct udprr_server_stats st = server_stats(s);
    ck_assert_uint_eq(st.handled, 2);
    ck_assert_uint_eq(st.cache_hits, 1);
    ck_assert_uint_eq(st.reused_ids, 1);
    close(fd);
    udprr_server_close(s);
}
END_TEST

START_TEST(dns_like_ids_reused_for_another_question)
{
    /* Two-byte IDs at offset 0, as DNS: a client reusing an ID within the
     * cache's lifetime for another question gets its own answer. */
    char port[16];
    udprr_server *s = open_server(UDPRR_FRAMING_ID_AT_OFFSET, port);
    struct counting c = {0};
    int fd = plain_to(port);
    /* The handler answers "<n>:<question>"; the server writes the ID over
     * the answer's first two bytes, so "<n>:" becomes the ID and the
     * question's own bytes follow, its own or another's. */
    uint8_t a1[128], a2[128], again[128];
    const uint8_t q1[] = {0xab, 0xcd, 'a', '?'}, q2[] = {0xab, 0xcd, 'b', '?'};
    ck_assert_int_eq(exchange(s, &c, fd, q1, sizeof q1, a1, sizeof a1), 6);
    ck_assert_mem_eq(a1, "\xab\xcd\xab\xcd" "a?", 6);
    ck_assert_int_eq(exchange(s, &c, fd, q2, sizeof q2, a2, sizeof a2), 6);
    ck_assert_mem_eq(a2, "\xab\xcd\xab\xcd" "b?", 6);
    ck_assert_int_eq(c.calls, 2);
    /* q1 again: the very same bytes, answered from the cache. */
    ck_assert_int_eq(exchange(s, &c, fd, q1, sizeof q1, again, sizeof again),
                     6);
    ck_assert_mem_eq(again, a1, 6);
    ck_assert_int_eq(c.calls, 2);
    struct udprr_server_stats st = server_stats(s);
    ck_assert_uint_eq(st.cache_hits, 1);
    ck_assert_uint_eq(st.reused_ids, 1);
    close(fd);
    udprr_server_close(s);
}
END_TEST

START_TEST(kernel_drops_are_counted)
{
    udprr_server_opts o;
    udprr_server_opts_init(&o);
    o.rcvbuf_bytes = 4096; /* the kernel's least, doubled: a few KiB */
    udprr_server *s = NULL;
    ck_assert_int_eq(udprr_server_open(&s, "127.0.0.1", "0", &o), UDPRR_OK);
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    ck_assert_int_eq(udprr_server_sockname(s, (struct sockaddr *)&a, &len),
                     UDPRR_OK);
    char port[16];
    snprintf(port, sizeof port, "%u", (unsigned)ntohs(a.sin_port));
    int fd = plain_to(port);
    /* Nothing reads while 200 requests of 1 KiB arrive: most are dropped
     * by the kernel (loopback delivers at once, so none is in flight). */
    enum { BURST = 200 };
    uint8_t req[1100];
    char body[1001];
    memset(body, 'x', 1000);
    body[1000] = '\0';
    for (unsigned i = 0; i < BURST; i++) {
        size_t n = native_request(1000 + i, 1, body, req);
        ck_assert_int_eq(send(fd, req, n, 0), (ssize_t)n);
    }
    /* Read what was kept, then one more, sent after the burst, which
     * carries the kernel's whole count. */
    struct counting c = {0};
    for (;;) {
        struct pollfd p = {udprr_server_fd(s), POLLIN, 0};
        if (poll(&p, 1, 0) != 1)
            break;
        ck_assert_int_eq(udprr_server_process(s, numbered_echo, &c), UDPRR_OK);
    }
    size_t n = native_request(1, 1, "last", req);
    uint8_t ans[1200];
    ck_assert_int_gt(exchange(s, &c, fd, req, n, ans, sizeof ans), 0);
    struct udprr_server_stats st = server_stats(s);
    ck_assert_uint_gt(st.kernel_drops, 0);
    ck_assert_uint_eq(st.received + st.kernel_drops, BURST + 1);
    ck_assert_uint_eq(st.handled, st.received);
    close(fd);
    udprr_server_close(s);
}
END_TEST

START_TEST(rcvbuf_is_checked)
{
    udprr_server_opts o;
    udprr_server_opts_init(&o);
    o.rcvbuf_bytes = ((size_t)1 << 30) + 1;
    udprr_server *s = NULL;
    ck_assert_int_eq(udprr_server_open(&s, "127.0.0.1", "0", &o),
                     UDPRR_EINVAL);
    ck_assert_ptr_null(s);
}
END_TEST

/* Answers every request with 10000 bytes. */
static int big_answer(void *user, const udprr_request *req, void *reply,
                      size_t cap, size_t *reply_len)
{
    struct counting *c = user;
    (void)req;
    c->calls++;
    ck_assert_uint_ge(cap, 10000);
    memset(reply, 'B', 10000);
    *reply_len = 10000;
    return UDPRR_REPLY;
}

static void *serve_big(void *arg)
{
    udprr_server *s = arg;
    static struct counting c;
    udprr_server_run(s, big_answer, &c);
    return NULL;
}

START_TEST(amplification_libudprr_client_gets_the_large_answer)
{
    char port[16];
    udprr_server *s = open_server(UDPRR_FRAMING_NATIVE, port);
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, serve_big, s), 0);
    udprr_client_opts o;
    udprr_client_opts_init(&o);
    o.deadline_ms = WAIT_MS;
    udprr_client *c = test_client_open(port, &o);
    static char reply[20000];
    size_t len = 0;
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(udprr_client_request(c, "small", 5, reply,
                                              sizeof reply, &len),
                         UDPRR_OK);
        ck_assert_uint_eq(len, 10000);
        ck_assert_int_eq(reply[9999], 'B');
    }
    /* One echo, for the first request; the cookie served the others. */
    struct udprr_client_stats cs = test_client_stats(c);
    ck_assert_uint_eq(cs.echoes, 1);
    ck_assert_uint_eq(cs.retransmissions, 1);
    udprr_client_close(c);
    udprr_server_stop(s);
    pthread_join(t, NULL);
    struct udprr_server_stats st = server_stats(s);
    ck_assert_uint_eq(st.amplification_echoes, 1);
    ck_assert_uint_eq(st.handled, 3); /* the echoed one ran once */
    ck_assert_uint_eq(st.cache_hits, 1);
    udprr_server_close(s);
}
END_TEST

START_TEST(amplification_forged_source_gets_no_large_answer)
{
    char port[16];
    udprr_server *s = open_server(UDPRR_FRAMING_NATIVE, port);
    struct counting c = {0};
    /* A sender that never sees the echo's cookie (a forged source's
     * victim would be this socket): twice the same request. */
    int fd = plain_to(port);
    uint8_t req[64], ans[20000];
    size_t n = native_request(42, 1, "give me a lot", req);
    size_t got_bytes = 0;
    for (unsigned attempt = 1; attempt <= 2; attempt++) {
        n = native_request(42, attempt, "give me a lot", req);
        ck_assert_int_eq(send(fd, req, n, 0), (ssize_t)n);
        struct pollfd p = {udprr_server_fd(s), POLLIN, 0};
        ck_assert_int_eq(poll(&p, 1, WAIT_MS), 1);
        ck_assert_int_eq(udprr_server_process(s, big_answer, &c), UDPRR_OK);
        struct sockaddr_storage from;
        socklen_t from_len = sizeof from;
        ssize_t got = test_recv_within(fd, ans, sizeof ans, WAIT_MS, &from,
                                       &from_len);
        ck_assert_int_eq(got, UDPRR__WIRE_HEADER_BYTES +
                                  UDPRR__WIRE_COOKIE_BYTES);
        struct udprr__wire_header h;
        ck_assert_int_eq(udprr__wire_decode(ans, (size_t)got, &h, NULL, NULL),
                         UDPRR__WIRE_VALID);
        ck_assert_int_eq(h.kind, UDPRR__KIND_ECHO);
        ck_assert_uint_eq(h.id, 42);
        got_bytes += (size_t)got;
    }
    ck_assert_uint_le(got_bytes, 3 * 2 * n);
    ck_assert_int_eq(c.calls, 1); /* the second came from the cache */
    /* Nothing else arrived: no large answer ever left. */
    struct sockaddr_storage from;
    socklen_t from_len = sizeof from;
    ck_assert_int_eq(test_recv_within(fd, ans, sizeof ans, 100, &from,
                                      &from_len),
                     -1);
    ck_assert_uint_eq(server_stats(s).amplification_echoes, 2);
    close(fd);
    udprr_server_close(s);
}
END_TEST

/* What the hook saw last. */
struct seen_answer {
    int kind;
    size_t len;
    uint8_t cookie[UDPRR__WIRE_COOKIE_BYTES];
};

static void see_answer(void *ctx, const struct sockaddr *peer,
                       socklen_t peer_len, const void *header,
                       size_t header_len, const void *body, size_t body_len)
{
    struct seen_answer *a = ctx;
    (void)peer, (void)peer_len;
    ck_assert_uint_eq(header_len, UDPRR__WIRE_HEADER_BYTES);
    a->kind = ((const uint8_t *)header)[3];
    a->len = body_len;
    if (a->kind == UDPRR__KIND_ECHO)
        memcpy(a->cookie, body, sizeof a->cookie);
}

/* A request with a cookie (or none: NULL), fed to the server at now_us
 * from peer; returns the answer's kind. */
static int feed(udprr_server *s, struct counting *c, struct seen_answer *a,
                const struct sockaddr_in *peer, const uint8_t *cookie,
                uint64_t now_us)
{
    uint8_t dgram[64];
    size_t body_len = 0;
    if (cookie != NULL) {
        memcpy(dgram + UDPRR__WIRE_HEADER_BYTES, cookie,
               UDPRR__WIRE_COOKIE_BYTES);
        body_len = UDPRR__WIRE_COOKIE_BYTES;
    }
    memcpy(dgram + UDPRR__WIRE_HEADER_BYTES + body_len, "q", 1);
    body_len += 1;
    struct udprr__wire_header h = {UDPRR__KIND_REQUEST, 1, 7};
    ck_assert_int_eq(udprr__wire_encode_flags(&h,
                                              cookie ? UDPRR__WIRE_FLAG_COOKIE
                                                     : 0,
                                              dgram + UDPRR__WIRE_HEADER_BYTES,
                                              body_len, dgram),
                     UDPRR_OK);
    a->kind = 0;
    udprr__server_feed(s, dgram, UDPRR__WIRE_HEADER_BYTES + body_len,
                       (const struct sockaddr *)peer, sizeof *peer, big_answer,
                       c, now_us);
    return a->kind;
}

START_TEST(amplification_cookies_are_per_peer_and_expire)
{
    char port[16];
    udprr_server *s = open_server(UDPRR_FRAMING_NATIVE, port);
    struct counting c = {0};
    struct seen_answer a;
    udprr__server_set_tx_hook(s, see_answer, &a);
    struct sockaddr_in p1 = {.sin_family = AF_INET, .sin_port = htons(4001)},
                       p2 = {.sin_family = AF_INET, .sin_port = htons(4002)};
    p1.sin_addr.s_addr = p2.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const uint64_t t0 = 1000 * 1000000ull; /* 1000 s: epoch 33 */
    ck_assert_int_eq(feed(s, &c, &a, &p1, NULL, t0), UDPRR__KIND_ECHO);
    uint8_t cookie[UDPRR__WIRE_COOKIE_BYTES];
    memcpy(cookie, a.cookie, sizeof cookie);
    /* Another peer showing p1's cookie: not proof of p2's address. */
    ck_assert_int_eq(feed(s, &c, &a, &p2, cookie, t0), UDPRR__KIND_ECHO);
    /* p1 with it, within its time: the answer, from the cache. */
    ck_assert_int_eq(feed(s, &c, &a, &p1, cookie, t0 + 1000), UDPRR__KIND_REPLY);
    ck_assert_uint_eq(a.len, 10000);
    ck_assert_int_eq(c.calls, 2); /* p1's once, p2's once */
    /* Good in the next 30 s step too; not in the one after. */
    ck_assert_int_eq(feed(s, &c, &a, &p1, cookie, t0 + 29 * 1000000ull),
                     UDPRR__KIND_REPLY);
    ck_assert_int_eq(feed(s, &c, &a, &p1, cookie, t0 + 61 * 1000000ull),
                     UDPRR__KIND_ECHO);
    udprr_server_close(s);
}
END_TEST

START_TEST(amplification_allowance_is_the_servers)
{
    unsigned factors[2] = {UDPRR_AMPLIFICATION_OFF, 1000};
    for (int i = 0; i < 2; i++) {
        udprr_server_opts o;
        udprr_server_opts_init(&o);
        ck_assert_uint_eq(o.amplification_factor, 3);
        o.amplification_factor = factors[i];
        udprr_server *s = NULL;
        ck_assert_int_eq(udprr_server_open(&s, "127.0.0.1", "0", &o),
                         UDPRR_OK);
        struct counting c = {0};
        struct seen_answer a;
        udprr__server_set_tx_hook(s, see_answer, &a);
        struct sockaddr_in p = {.sin_family = AF_INET,
                                .sin_port = htons(4001)};
        p.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        ck_assert_int_eq(feed(s, &c, &a, &p, NULL, 1000000),
                         UDPRR__KIND_REPLY);
        ck_assert_uint_eq(a.len, 10000);
        udprr_server_close(s);
    }
    udprr_server_opts o;
    udprr_server_opts_init(&o);
    o.amplification_factor = 1001;
    udprr_server *s = NULL;
    ck_assert_int_eq(udprr_server_open(&s, "127.0.0.1", "0", &o),
                     UDPRR_EINVAL);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("hardening");
    TCase *tc = tcase_create("loopback");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, native_cache_answers_only_the_same_bytes);
    tcase_add_test(tc, dns_like_ids_reused_for_another_question);
    tcase_add_test(tc, kernel_drops_are_counted);
    tcase_add_test(tc, rcvbuf_is_checked);
    tcase_add_test(tc, amplification_libudprr_client_gets_the_large_answer);
    tcase_add_test(tc, amplification_forged_source_gets_no_large_answer);
    tcase_add_test(tc, amplification_cookies_are_per_peer_and_expire);
    tcase_add_test(tc, amplification_allowance_is_the_servers);
    suite_add_tcase(s, tc);
    return udprr_test_run(s);
}
