/*
 * unit_relay.c - the impairment relay used by the integration tests: its
 * pure decision core, then the relay itself between a client socket and an
 * echo server on 127.0.0.1 and ::1.
 *
 * Nothing here depends on luck. Decisions come from fixed seeds, so counts
 * are asserted exactly; the relay's own counters say when it has handled a
 * datagram, so a test waits for that (bounded) instead of sleeping, and a
 * "nothing arrives" check only starts once the relay has decided to send
 * nothing.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "impair.h"
#include "relay.h"
#include "testutil.h"

/* Waits for something that is on its way: long enough for valgrind. */
#define ARRIVES_MS 5000
/* Waits for something that must not come, once the relay has decided. */
#define NOTHING_MS 200

/* ---- the pure core ------------------------------------------------------- */

static struct udprr_test_impair impair_with(unsigned drop_permille,
                                            unsigned dup_permille,
                                            uint64_t seed)
{
    struct udprr_test_impair_config config = {
        .drop_permille = drop_permille,
        .dup_permille = dup_permille,
    };
    ck_assert_ptr_null(udprr_test_impair_config_problem(&config));
    struct udprr_test_impair imp;
    udprr_test_impair_init(&imp, &config, seed);
    return imp;
}

static void assert_counters_add_up(const struct udprr_test_impair_counters *c)
{
    ck_assert_uint_eq(c->forwarded, c->seen - c->dropped + c->duplicated);
}

START_TEST(test_config_problem)
{
    struct udprr_test_impair_config config = {0};
    ck_assert_ptr_null(udprr_test_impair_config_problem(&config));
    config.drop_permille = config.dup_permille = 1000;
    ck_assert_ptr_null(udprr_test_impair_config_problem(&config));
    config.drop_permille = 1001;
    ck_assert_ptr_nonnull(udprr_test_impair_config_problem(&config));
    config.drop_permille = 0;
    config.dup_permille = 1001;
    ck_assert_ptr_nonnull(udprr_test_impair_config_problem(&config));
    ck_assert_ptr_nonnull(udprr_test_impair_config_problem(NULL));
}
END_TEST

START_TEST(test_same_seed_same_decisions)
{
    struct udprr_test_impair a = impair_with(300, 200, 77);
    struct udprr_test_impair b = impair_with(300, 200, 77);
    struct udprr_test_impair other = impair_with(300, 200, 78);
    int differs = 0;
    for (size_t i = 0; i < 1000; i++) {
        unsigned copies = udprr_test_impair_decide(&a, i).copies;
        ck_assert_uint_eq(udprr_test_impair_decide(&b, i).copies, copies);
        differs |= udprr_test_impair_decide(&other, i).copies != copies;
    }
    ck_assert(differs); /* and the seed does matter */
    ck_assert_mem_eq(&a.counters, &b.counters, sizeof a.counters);
}
END_TEST

START_TEST(test_drop_none_forwards_all)
{
    struct udprr_test_impair imp = impair_with(0, 0, 1);
    for (size_t i = 0; i < 10000; i++)
        ck_assert_uint_eq(udprr_test_impair_decide(&imp, i % 1500).copies, 1);
    ck_assert_uint_eq(imp.counters.seen, 10000);
    ck_assert_uint_eq(imp.counters.dropped, 0);
    ck_assert_uint_eq(imp.counters.duplicated, 0);
    ck_assert_uint_eq(imp.counters.forwarded, 10000);
}
END_TEST

START_TEST(test_drop_all_drops_all)
{
    struct udprr_test_impair imp = impair_with(1000, 0, 1);
    for (size_t i = 0; i < 10000; i++)
        ck_assert_uint_eq(udprr_test_impair_decide(&imp, i % 1500).copies, 0);
    ck_assert_uint_eq(imp.counters.seen, 10000);
    ck_assert_uint_eq(imp.counters.dropped, 10000);
    ck_assert_uint_eq(imp.counters.forwarded, 0);
}
END_TEST

START_TEST(test_half_drop_exact_for_seed)
{
    struct udprr_test_impair imp = impair_with(500, 0, 42);
    for (size_t i = 0; i < 10000; i++)
        udprr_test_impair_decide(&imp, 100);
    /* Near half, as it must be; and exactly this many, because the seed
     * fixes every draw: a change here means decisions for old seeds moved. */
    ck_assert_uint_ge(imp.counters.dropped, 4700);
    ck_assert_uint_le(imp.counters.dropped, 5300);
    ck_assert_uint_eq(imp.counters.dropped, 4970);
    ck_assert_uint_eq(imp.counters.forwarded, 5030);
    assert_counters_add_up(&imp.counters);
}
END_TEST

START_TEST(test_more_drop_only_adds_drops)
{
    /* One draw per datagram, compared with the setting: what 300 permille
     * drops, 600 permille drops too. */
    struct udprr_test_impair light = impair_with(300, 0, 9);
    struct udprr_test_impair heavy = impair_with(600, 0, 9);
    for (size_t i = 0; i < 10000; i++) {
        unsigned light_copies = udprr_test_impair_decide(&light, 64).copies;
        unsigned heavy_copies = udprr_test_impair_decide(&heavy, 64).copies;
        if (light_copies == 0)
            ck_assert_uint_eq(heavy_copies, 0);
    }
    ck_assert_uint_gt(heavy.counters.dropped, light.counters.dropped);
}
END_TEST

START_TEST(test_dup_setting_keeps_drop_decisions)
{
    /* Drop and dup draw from separate streams: turning duplication on must
     * not move which datagrams a seed drops. */
    struct udprr_test_impair plain = impair_with(500, 0, 5);
    struct udprr_test_impair doubled = impair_with(500, 700, 5);
    for (size_t i = 0; i < 10000; i++) {
        int plain_lost = udprr_test_impair_decide(&plain, 64).copies == 0;
        int doubled_lost = udprr_test_impair_decide(&doubled, 64).copies == 0;
        ck_assert_int_eq(plain_lost, doubled_lost);
    }
    ck_assert_uint_eq(plain.counters.dropped, doubled.counters.dropped);
    ck_assert_uint_gt(doubled.counters.duplicated, 0);
}
END_TEST

START_TEST(test_dup_all_sends_two)
{
    struct udprr_test_impair imp = impair_with(0, 1000, 3);
    for (size_t i = 0; i < 1000; i++)
        ck_assert_uint_eq(udprr_test_impair_decide(&imp, 0).copies, 2);
    ck_assert_uint_eq(imp.counters.seen, 1000);
    ck_assert_uint_eq(imp.counters.duplicated, 1000);
    ck_assert_uint_eq(imp.counters.forwarded, 2000);
}
END_TEST

START_TEST(test_dup_exact_for_seed)
{
    struct udprr_test_impair imp = impair_with(200, 100, 42);
    for (size_t i = 0; i < 10000; i++)
        udprr_test_impair_decide(&imp, 512);
    /* dup applies to the ~8000 kept: ~800 */
    ck_assert_uint_ge(imp.counters.duplicated, 700);
    ck_assert_uint_le(imp.counters.duplicated, 900);
    ck_assert_uint_eq(imp.counters.dropped, 1986);
    ck_assert_uint_eq(imp.counters.duplicated, 791);
    ck_assert_uint_eq(imp.counters.forwarded, 8805);
    assert_counters_add_up(&imp.counters);
}
END_TEST

START_TEST(test_lost_is_never_duplicated)
{
    struct udprr_test_impair imp = impair_with(1000, 1000, 3);
    for (size_t i = 0; i < 1000; i++)
        ck_assert_uint_eq(udprr_test_impair_decide(&imp, 10).copies, 0);
    ck_assert_uint_eq(imp.counters.duplicated, 0);
    assert_counters_add_up(&imp.counters);
}
END_TEST

START_TEST(test_stream_seeds_are_distinct)
{
    /* Adjacent seeds and the two streams of one seed all start apart, and
     * seed 0 is as good as any. */
    uint64_t seen[8];
    size_t n = 0;
    for (uint64_t seed = 0; seed < 4; seed++)
        for (unsigned s = 0; s < UDPRR_TEST_IMPAIR_STREAMS; s++)
            seen[n++] = udprr_test_impair_stream_seed(seed, s);
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++)
            ck_assert_uint_ne(seen[i], seen[j]);
    struct udprr_test_impair imp = impair_with(500, 0, 0);
    for (size_t i = 0; i < 1000; i++)
        udprr_test_impair_decide(&imp, 1);
    ck_assert_uint_gt(imp.counters.dropped, 400);
    ck_assert_uint_lt(imp.counters.dropped, 600);
}
END_TEST

/* ---- sockets ------------------------------------------------------------- */

static const int families[] = {AF_INET, AF_INET6};

static socklen_t loopback(int family, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof *ss);
    if (family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)ss;
        in->sin_family = AF_INET;
        in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        return sizeof *in;
    }
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
    in6->sin6_family = AF_INET6;
    in6->sin6_addr = in6addr_loopback;
    return sizeof *in6;
}

/* Receives one datagram if it comes within timeout_ms: its length (0 is a
 * datagram too), or -1 when none came. */
static ssize_t recv_within(int fd, void *buf, size_t cap, int timeout_ms)
{
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    int ready;
    do
        ready = poll(&pfd, 1, timeout_ms);
    while (ready < 0 && errno == EINTR);
    ck_assert_int_ge(ready, 0);
    if (ready == 0)
        return -1;
    ssize_t n = recv(fd, buf, cap, 0);
    ck_assert_int_ge(n, 0);
    return n;
}

/* A plain UDP echo server on loopback port 0, in its own thread. */
struct echo_server {
    int fd;
    int wake[2];
    struct sockaddr_storage addr;
    socklen_t addr_len;
    pthread_t thread;
    uint64_t echoed; /* read after the join */
    unsigned char datagram[65536];
};

static void *echo_thread(void *arg)
{
    struct echo_server *e = arg;
    struct pollfd fds[2] = {{.fd = e->wake[0], .events = POLLIN},
                            {.fd = e->fd, .events = POLLIN}};
    for (;;) {
        if (poll(fds, 2, 1000) < 0) {
            if (errno == EINTR)
                continue;
            return NULL;
        }
        if (fds[0].revents)
            return NULL;
        if (!fds[1].revents)
            continue;
        struct sockaddr_storage from;
        socklen_t from_len = sizeof from;
        ssize_t n = recvfrom(e->fd, e->datagram, sizeof e->datagram,
                             MSG_DONTWAIT, (struct sockaddr *)&from,
                             &from_len);
        if (n >= 0 && sendto(e->fd, e->datagram, (size_t)n, 0,
                             (struct sockaddr *)&from, from_len) == n)
            e->echoed++;
    }
}

static struct echo_server *echo_start(int family)
{
    struct echo_server *e = calloc(1, sizeof *e);
    ck_assert_ptr_nonnull(e);
    e->addr_len = loopback(family, &e->addr);
    e->fd = socket(family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(e->fd, 0);
    ck_assert_int_eq(bind(e->fd, (struct sockaddr *)&e->addr, e->addr_len),
                     0);
    ck_assert_int_eq(
        getsockname(e->fd, (struct sockaddr *)&e->addr, &e->addr_len), 0);
    ck_assert_int_eq(pipe2(e->wake, O_CLOEXEC), 0);
    ck_assert_int_eq(pthread_create(&e->thread, NULL, echo_thread, e), 0);
    return e;
}

static uint64_t echo_stop(struct echo_server *e)
{
    ck_assert_int_eq(write(e->wake[1], "", 1), 1);
    ck_assert_int_eq(pthread_join(e->thread, NULL), 0);
    uint64_t echoed = e->echoed;
    close(e->fd);
    close(e->wake[0]);
    close(e->wake[1]);
    free(e);
    return echoed;
}

static udprr_test_relay *
relay_to(const struct echo_server *e,
         const struct udprr_test_impair_config *to_server,
         const struct udprr_test_impair_config *to_client, uint64_t seed)
{
    udprr_test_relay *r =
        udprr_test_relay_start((const struct sockaddr *)&e->addr, e->addr_len,
                               to_server, to_client, seed);
    ck_assert_ptr_nonnull(r);
    return r;
}

/* A client socket connect()ed to the relay, so it hears only the relay. */
static int client_of(const udprr_test_relay *r)
{
    struct sockaddr_storage addr;
    socklen_t len;
    udprr_test_relay_addr(r, &addr, &len);
    int fd = socket(addr.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&addr, len), 0);
    return fd;
}

static void send_all(int fd, const void *bytes, size_t len)
{
    ck_assert_int_eq(send(fd, bytes, len, 0), (ssize_t)len);
}

struct seen_at_least {
    int to_client; /* 0: count to_server */
    uint64_t datagrams;
};

static int has_seen(const struct udprr_test_relay_stats *st, void *arg)
{
    const struct seen_at_least *want = arg;
    const struct udprr_test_relay_direction_stats *dir =
        want->to_client ? &st->to_client : &st->to_server;
    return dir->impair.seen >= want->datagrams;
}

static int has_refused(const struct udprr_test_relay_stats *st, void *arg)
{
    (void)arg;
    return st->to_server.refused >= 1;
}

static uint64_t elapsed_ms(const struct timespec *since)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    int64_t ns = (int64_t)(now.tv_sec - since->tv_sec) * 1000000000 +
                 (now.tv_nsec - since->tv_nsec);
    return (uint64_t)(ns / 1000000);
}

START_TEST(test_refuses_what_is_not_loopback)
{
    struct sockaddr_in in = {.sin_family = AF_INET, .sin_port = htons(9)};
    inet_pton(AF_INET, "192.0.2.1", &in.sin_addr);
    ck_assert_ptr_null(udprr_test_relay_start((struct sockaddr *)&in,
                                              sizeof in, NULL, NULL, 1));
    struct sockaddr_in6 in6 = {.sin6_family = AF_INET6,
                               .sin6_port = htons(9)};
    inet_pton(AF_INET6, "2001:db8::1", &in6.sin6_addr);
    ck_assert_ptr_null(udprr_test_relay_start((struct sockaddr *)&in6,
                                              sizeof in6, NULL, NULL, 1));
    /* the unspecified address would reach every interface */
    in6.sin6_addr = in6addr_any;
    ck_assert_ptr_null(udprr_test_relay_start((struct sockaddr *)&in6,
                                              sizeof in6, NULL, NULL, 1));
    /* loopback, but nowhere to send */
    inet_pton(AF_INET, "127.0.0.1", &in.sin_addr);
    in.sin_port = 0;
    ck_assert_ptr_null(udprr_test_relay_start((struct sockaddr *)&in,
                                              sizeof in, NULL, NULL, 1));
    in.sin_port = htons(9);
    ck_assert_ptr_null(udprr_test_relay_start((struct sockaddr *)&in,
                                              sizeof in - 1, NULL, NULL, 1));
    struct udprr_test_impair_config bad = {.drop_permille = 1001};
    ck_assert_ptr_null(udprr_test_relay_start((struct sockaddr *)&in,
                                              sizeof in, NULL, &bad, 1));
    ck_assert_ptr_null(
        udprr_test_relay_start(NULL, sizeof in, NULL, NULL, 1));
}
END_TEST

START_TEST(test_stop_null_is_a_no_op)
{
    struct udprr_test_relay_stats st;
    memset(&st, 0xff, sizeof st);
    udprr_test_relay_stop(NULL, &st);
    ck_assert_uint_eq(st.to_server.impair.seen, 0);
    ck_assert_uint_eq(st.to_client.sent, 0);
    udprr_test_relay_stop(NULL, NULL);
}
END_TEST

START_TEST(test_client_address_is_loopback)
{
    struct echo_server *e = echo_start(families[_i]);
    udprr_test_relay *r = relay_to(e, NULL, NULL, 1);
    struct sockaddr_storage addr, want;
    socklen_t len;
    udprr_test_relay_addr(r, &addr, &len);
    ck_assert_uint_eq(len, loopback(families[_i], &want));
    ck_assert_int_eq(addr.ss_family, families[_i]);
    if (families[_i] == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)&addr;
        ck_assert_uint_eq(ntohl(in->sin_addr.s_addr), INADDR_LOOPBACK);
        ck_assert_uint_ne(in->sin_port, 0);
    } else {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&addr;
        ck_assert(IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr));
        ck_assert_uint_ne(in6->sin6_port, 0);
    }
    udprr_test_relay_stop(r, NULL);
    echo_stop(e);
}
END_TEST

START_TEST(test_round_trip_is_byte_exact)
{
    enum { N = 100 };
    static unsigned char sent[60000], got[65536];
    struct echo_server *e = echo_start(families[_i]);
    udprr_test_relay *r = relay_to(e, NULL, NULL, 1);
    int fd = client_of(r);
    uint64_t state = 2024;
    for (size_t i = 0; i < N; i++) {
        /* empty and largest-we-use among them, the rest of assorted sizes */
        size_t len = i == 0 ? 0 : i == 1 ? sizeof sent : (i * 613) % 9000;
        for (size_t k = 0; k < len; k++)
            sent[k] = (unsigned char)udprr_test_rand(&state);
        send_all(fd, sent, len);
        ssize_t n = recv_within(fd, got, sizeof got, ARRIVES_MS);
        ck_assert_int_eq(n, (ssize_t)len);
        ck_assert_mem_eq(got, sent, len);
    }
    struct udprr_test_relay_stats st;
    udprr_test_relay_stop(r, &st);
    ck_assert_uint_eq(echo_stop(e), N);
    ck_assert_uint_eq(st.to_server.impair.seen, N);
    ck_assert_uint_eq(st.to_server.impair.forwarded, N);
    ck_assert_uint_eq(st.to_server.sent, N);
    ck_assert_uint_eq(st.to_client.impair.seen, N);
    ck_assert_uint_eq(st.to_client.sent, N);
    ck_assert_uint_eq(st.to_server.send_failed + st.to_client.send_failed, 0);
    ck_assert_uint_eq(st.to_server.refused + st.to_client.unroutable, 0);
    close(fd);
}
END_TEST

START_TEST(test_to_client_drop_all_delivers_nothing)
{
    enum { N = 10 };
    struct udprr_test_impair_config drop_all = {.drop_permille = 1000};
    struct echo_server *e = echo_start(families[_i]);
    udprr_test_relay *r = relay_to(e, NULL, &drop_all, 1);
    int fd = client_of(r);
    for (unsigned i = 0; i < N; i++)
        send_all(fd, &i, sizeof i);
    /* Every reply has reached the relay and been decided... */
    struct seen_at_least replies = {.to_client = 1, .datagrams = N};
    ck_assert(udprr_test_relay_wait(r, has_seen, &replies, ARRIVES_MS));
    /* ...so anything that could still come would already be on its way. */
    unsigned char got[64];
    ck_assert_int_eq(recv_within(fd, got, sizeof got, NOTHING_MS), -1);

    struct udprr_test_relay_stats st;
    udprr_test_relay_stop(r, &st);
    ck_assert_uint_eq(echo_stop(e), N);
    ck_assert_uint_eq(st.to_server.impair.forwarded, N);
    ck_assert_uint_eq(st.to_server.sent, N);
    ck_assert_uint_eq(st.to_client.impair.seen, N);
    ck_assert_uint_eq(st.to_client.impair.dropped, N);
    ck_assert_uint_eq(st.to_client.impair.forwarded, 0);
    ck_assert_uint_eq(st.to_client.sent, 0);
    close(fd);
}
END_TEST

START_TEST(test_to_server_drop_follows_the_seed)
{
    /* The relay's to_server decisions are replayed here from the same seed
     * (relay.h), so the test knows which requests will be answered. */
    enum { N = 64 };
    const uint64_t seed = 1234;
    struct udprr_test_impair_config half = {.drop_permille = 500};
    struct udprr_test_impair replay;
    udprr_test_impair_init(&replay, &half, seed);

    struct echo_server *e = echo_start(families[_i]);
    udprr_test_relay *r = relay_to(e, &half, NULL, seed);
    int fd = client_of(r);
    for (uint32_t i = 0; i < N; i++) {
        send_all(fd, &i, sizeof i);
        struct seen_at_least requests = {.datagrams = i + 1};
        ck_assert(udprr_test_relay_wait(r, has_seen, &requests, ARRIVES_MS));
        if (udprr_test_impair_decide(&replay, sizeof i).copies == 0)
            continue;
        uint32_t echoed;
        ck_assert_int_eq(recv_within(fd, &echoed, sizeof echoed, ARRIVES_MS),
                         sizeof echoed);
        ck_assert_uint_eq(echoed, i); /* and no dropped one came first */
    }
    unsigned char got[64];
    ck_assert_int_eq(recv_within(fd, got, sizeof got, NOTHING_MS), -1);

    struct udprr_test_relay_stats st;
    udprr_test_relay_stop(r, &st);
    ck_assert_mem_eq(&st.to_server.impair, &replay.counters,
                     sizeof replay.counters);
    /* the seed gives a real mix, or this test would prove little */
    ck_assert_uint_gt(replay.counters.dropped, N / 4);
    ck_assert_uint_lt(replay.counters.dropped, 3 * N / 4);
    ck_assert_uint_eq(echo_stop(e), replay.counters.forwarded);
    ck_assert_uint_eq(st.to_client.sent, replay.counters.forwarded);
    close(fd);
}
END_TEST

START_TEST(test_to_client_dup_all_delivers_twice)
{
    enum { N = 5 };
    struct udprr_test_impair_config dup_all = {.dup_permille = 1000};
    struct echo_server *e = echo_start(families[_i]);
    udprr_test_relay *r = relay_to(e, NULL, &dup_all, 1);
    int fd = client_of(r);
    for (uint32_t i = 0; i < N; i++) {
        send_all(fd, &i, sizeof i);
        for (int copy = 0; copy < 2; copy++) {
            uint32_t echoed;
            ck_assert_int_eq(
                recv_within(fd, &echoed, sizeof echoed, ARRIVES_MS),
                sizeof echoed);
            ck_assert_uint_eq(echoed, i);
        }
    }
    unsigned char got[64];
    ck_assert_int_eq(recv_within(fd, got, sizeof got, NOTHING_MS), -1);

    struct udprr_test_relay_stats st;
    udprr_test_relay_stop(r, &st);
    ck_assert_uint_eq(echo_stop(e), N);
    ck_assert_uint_eq(st.to_server.impair.duplicated, 0);
    ck_assert_uint_eq(st.to_client.impair.seen, N);
    ck_assert_uint_eq(st.to_client.impair.duplicated, N);
    ck_assert_uint_eq(st.to_client.impair.forwarded, 2 * N);
    ck_assert_uint_eq(st.to_client.sent, 2 * N);
    close(fd);
}
END_TEST

/* Answers, by hand, one datagram the relay forwards to `server`; *from is
 * where it came from: the relay's server-side socket. */
static void serve_one(int server, const char *want, size_t want_len,
                      struct sockaddr_storage *from, socklen_t *from_len)
{
    char got[16];
    *from_len = sizeof *from;
    struct pollfd pfd = {.fd = server, .events = POLLIN};
    ck_assert_int_eq(poll(&pfd, 1, ARRIVES_MS), 1);
    ssize_t n = recvfrom(server, got, sizeof got, 0, (struct sockaddr *)from,
                         from_len);
    ck_assert_int_eq(n, (ssize_t)want_len);
    ck_assert_mem_eq(got, want, want_len);
    ck_assert_int_eq(
        sendto(server, got, (size_t)n, 0, (struct sockaddr *)from, *from_len),
        n);
}

START_TEST(test_refused_is_counted_and_survived)
{
    /* The test is the server here, so that it can go away and come back
     * without giving up its port, which another program could take. */
    struct sockaddr_storage addr, relay_side;
    socklen_t addr_len = loopback(families[_i], &addr), relay_side_len;
    int server = socket(families[_i], SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(server, 0);
    ck_assert_int_eq(bind(server, (struct sockaddr *)&addr, addr_len), 0);
    ck_assert_int_eq(getsockname(server, (struct sockaddr *)&addr, &addr_len),
                     0);
    udprr_test_relay *r = udprr_test_relay_start(
        (struct sockaddr *)&addr, addr_len, NULL, NULL, 1);
    ck_assert_ptr_nonnull(r);
    int fd = client_of(r);
    char got[16];

    send_all(fd, "first", 5);
    serve_one(server, "first", 5, &relay_side, &relay_side_len);
    ck_assert_int_eq(recv_within(fd, got, sizeof got, ARRIVES_MS), 5);

    /* Gone: connected to itself, the socket takes nothing from the relay,
     * and the kernel answers the relay with port unreachable. */
    ck_assert_int_eq(connect(server, (struct sockaddr *)&addr, addr_len), 0);
    send_all(fd, "lost", 4);
    ck_assert(udprr_test_relay_wait(r, has_refused, NULL, ARRIVES_MS));

    /* Back: connected to the relay's side it hears the relay again. (A
     * disconnect would let go of the port: it was bound as port 0.) */
    ck_assert_int_eq(
        connect(server, (struct sockaddr *)&relay_side, relay_side_len), 0);
    send_all(fd, "again", 5);
    serve_one(server, "again", 5, &relay_side, &relay_side_len);
    ck_assert_int_eq(recv_within(fd, got, sizeof got, ARRIVES_MS), 5);
    ck_assert_mem_eq(got, "again", 5);

    struct udprr_test_relay_stats st;
    udprr_test_relay_stop(r, &st);
    ck_assert_uint_eq(st.to_server.impair.seen, 3);
    ck_assert_uint_eq(st.to_server.sent, 3);
    ck_assert_uint_eq(st.to_server.refused, 1);
    ck_assert_uint_eq(st.to_server.send_failed, 0);
    ck_assert_uint_eq(st.to_client.sent, 2);
    close(fd);
    close(server);
}
END_TEST

START_TEST(test_stop_is_prompt)
{
    /* Stop wakes the thread instead of waiting out its idle poll; well
     * under UDPRR_TEST_RELAY_IDLE_MS even under valgrind. */
    const uint64_t prompt_ms = UDPRR_TEST_RELAY_IDLE_MS / 4;
    struct echo_server *e = echo_start(families[_i]);
    struct timespec t0;

    udprr_test_relay *idle = relay_to(e, NULL, NULL, 1);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    udprr_test_relay_stop(idle, NULL);
    ck_assert_uint_lt(elapsed_ms(&t0), prompt_ms);

    udprr_test_relay *r = relay_to(e, NULL, NULL, 1);
    int fd = client_of(r);
    send_all(fd, "x", 1);
    char got[4];
    ck_assert_int_eq(recv_within(fd, got, sizeof got, ARRIVES_MS), 1);
    struct seen_at_least reply = {.to_client = 1, .datagrams = 1};
    ck_assert(udprr_test_relay_wait(r, has_seen, &reply, ARRIVES_MS));
    clock_gettime(CLOCK_MONOTONIC, &t0);
    udprr_test_relay_stop(r, NULL);
    ck_assert_uint_lt(elapsed_ms(&t0), prompt_ms);

    close(fd);
    echo_stop(e);
}
END_TEST

START_TEST(test_wait_times_out)
{
    struct echo_server *e = echo_start(families[_i]);
    udprr_test_relay *r = relay_to(e, NULL, NULL, 1);
    struct seen_at_least never = {.datagrams = 1};
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    ck_assert(!udprr_test_relay_wait(r, has_seen, &never, 50));
    ck_assert_uint_ge(elapsed_ms(&t0), 49);
    udprr_test_relay_stop(r, NULL);
    echo_stop(e);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("relay");
    TCase *core = tcase_create("impair");
    tcase_add_test(core, test_config_problem);
    tcase_add_test(core, test_same_seed_same_decisions);
    tcase_add_test(core, test_drop_none_forwards_all);
    tcase_add_test(core, test_drop_all_drops_all);
    tcase_add_test(core, test_half_drop_exact_for_seed);
    tcase_add_test(core, test_more_drop_only_adds_drops);
    tcase_add_test(core, test_dup_setting_keeps_drop_decisions);
    tcase_add_test(core, test_dup_all_sends_two);
    tcase_add_test(core, test_dup_exact_for_seed);
    tcase_add_test(core, test_lost_is_never_duplicated);
    tcase_add_test(core, test_stream_seeds_are_distinct);
    suite_add_tcase(s, core);

    /* Each relay test runs over 127.0.0.1 (_i == 0) and ::1 (_i == 1). */
    TCase *relay = tcase_create("relay");
    tcase_set_timeout(relay, 30);
    tcase_add_test(relay, test_refuses_what_is_not_loopback);
    tcase_add_test(relay, test_stop_null_is_a_no_op);
    tcase_add_loop_test(relay, test_client_address_is_loopback, 0, 2);
    tcase_add_loop_test(relay, test_round_trip_is_byte_exact, 0, 2);
    tcase_add_loop_test(relay, test_to_client_drop_all_delivers_nothing, 0, 2);
    tcase_add_loop_test(relay, test_to_server_drop_follows_the_seed, 0, 2);
    tcase_add_loop_test(relay, test_to_client_dup_all_delivers_twice, 0, 2);
    tcase_add_loop_test(relay, test_refused_is_counted_and_survived, 0, 2);
    tcase_add_loop_test(relay, test_stop_is_prompt, 0, 2);
    tcase_add_loop_test(relay, test_wait_times_out, 0, 2);
    suite_add_tcase(s, relay);
    return udprr_test_run(s);
}
