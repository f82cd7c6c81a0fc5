/* SPDX-License-Identifier: MIT */
/*
 * net_refused.c - what an ICMP port unreachable means to a client, when it
 * comes at an awkward moment:
 *   - behind a reply already queued on the socket: the reply still wins;
 *   - left over from an earlier request's late datagram: it must not fail
 *     the next request, which has nothing to do with it.
 * The ICMP errors are provoked on purpose: a raw socket sends a UDP
 * datagram "from" the client's own address and port to a closed port on
 * 127.0.0.1, and the kernel answers the client's socket with port
 * unreachable. Raw sockets need CAP_NET_RAW (root, as in CI); without it
 * the suite says so and runs no test.
 */
#include <errno.h>
#include <netinet/ip.h>
#include <stdlib.h>

#include "netutil.h"
#include "testutil.h"
#include "wire.h"

/* Sends an empty UDP datagram from 127.0.0.1:from_port to
 * 127.0.0.1:to_port through a raw socket. */
static void raw_udp(unsigned from_port, unsigned to_port)
{
    int raw = socket(AF_INET, SOCK_RAW, IPPROTO_UDP);
    ck_assert_int_ge(raw, 0);
    uint8_t udp[8] = {(uint8_t)(from_port >> 8), (uint8_t)from_port,
                      (uint8_t)(to_port >> 8), (uint8_t)to_port,
                      0, 8, 0, 0}; /* length 8, no checksum (IPv4 allows) */
    struct sockaddr_in to = {.sin_family = AF_INET};
    inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
    ck_assert_int_eq(sendto(raw, udp, sizeof udp, 0, (struct sockaddr *)&to,
                            sizeof to),
                     8);
    close(raw);
}

static unsigned local_port(int fd)
{
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    return ntohs(a.sin_port);
}

/* Waits (at most 2 s) until the kernel has put an error on fd. */
static void wait_for_error(int fd)
{
    struct pollfd p = {fd, 0, 0}; /* POLLERR is always reported */
    ck_assert_int_eq(poll(&p, 1, 2000), 1);
    ck_assert(p.revents & POLLERR);
}

START_TEST(test_stale_icmp_error_does_not_fail_the_next_request)
{
    struct fixture_server ts;
    test_server_start(&ts, "127.0.0.1", NULL, test_echo_handler, NULL);
    udprr_client *c = NULL;
    ck_assert_int_eq(udprr_client_open(&c, "127.0.0.1", ts.port, NULL),
                     UDPRR_OK);
    char reply[8];
    size_t got;
    ck_assert_int_eq(udprr_client_request(c, "A", 1, reply, sizeof reply,
                                          &got),
                     UDPRR_OK);
    /* As if a late retransmission of A had hit the port while no server
     * listened there for a moment: an ICMP error now sits on the socket.
     * (The server is stopped for the injection only, then served again on
     * the same port.) */
    unsigned port = (unsigned)atoi(ts.port);
    test_server_stop(&ts, NULL);
    raw_udp(local_port(udprr_client_fd(c)), port);
    wait_for_error(udprr_client_fd(c));

    udprr_server *again;
    ck_assert_int_eq(udprr_server_open(&again, "127.0.0.1", ts.port, NULL),
                     UDPRR_OK);
    test_server_serve(&ts, again, test_echo_handler, NULL);
    ck_assert_int_eq(udprr_client_request(c, "B", 1, reply, sizeof reply,
                                          &got),
                     UDPRR_OK);
    ck_assert_mem_eq(reply, "B", 1);
    udprr_client_close(c);
    struct udprr_server_stats ss;
    test_server_stop(&ts, &ss);
    ck_assert_uint_eq(ss.handled, 1); /* B reached the server at once */
}
END_TEST

/* The peer for the next test, played from inside the client's per-attempt
 * hook (so before the client reads anything): it answers attempt 1, then
 * goes away, and a datagram "from" the client to its now closed port makes
 * the kernel put an ICMP error on the client's socket, behind the reply. */
struct queued {
    int peer_fd;
    unsigned peer_port;
    int client_fd;
};

static void answer_then_vanish(void *user, const udprr_attempt_info *info)
{
    struct queued *q = user;
    uint8_t buf[64];
    struct sockaddr_storage from;
    socklen_t from_len = sizeof from;
    if (info->attempt != 1)
        return;
    ssize_t n = test_recv_within(q->peer_fd, buf, sizeof buf, 2000, &from,
                                 &from_len);
    ck_assert_int_ge(n, UDPRR__WIRE_HEADER_BYTES);
    struct udprr__wire_header h;
    ck_assert_int_eq(udprr__wire_decode(buf, (size_t)n, &h, NULL, NULL),
                     UDPRR__WIRE_VALID);
    h.kind = UDPRR__KIND_REPLY;
    uint8_t reply[UDPRR__WIRE_HEADER_BYTES + 2];
    memcpy(reply + UDPRR__WIRE_HEADER_BYTES, "ok", 2);
    udprr__wire_encode(&h, reply + UDPRR__WIRE_HEADER_BYTES, 2, reply);
    ck_assert_int_eq(sendto(q->peer_fd, reply, sizeof reply, 0,
                            (struct sockaddr *)&from, from_len),
                     (ssize_t)sizeof reply);
    close(q->peer_fd);
    q->peer_fd = -1;
    raw_udp(local_port(q->client_fd), q->peer_port);
    wait_for_error(q->client_fd);
}

START_TEST(test_reply_queued_before_icmp_error_still_completes)
{
    struct queued q;
    char port[16];
    q.peer_fd = test_plain_socket("127.0.0.1", port);
    q.peer_port = (unsigned)atoi(port);
    udprr_client_opts o;
    udprr_client_opts_init(&o);
    o.on_attempt = answer_then_vanish;
    o.on_attempt_user = &q;
    udprr_client *c = NULL;
    ck_assert_int_eq(udprr_client_open(&c, "127.0.0.1", port, &o), UDPRR_OK);
    q.client_fd = udprr_client_fd(c);
    char reply[8];
    size_t got = 0;
    /* The kernel reports the error before the queued reply; the reply
     * answered the request, so the request succeeds. */
    ck_assert_int_eq(udprr_client_request(c, "q", 1, reply, sizeof reply,
                                          &got),
                     UDPRR_OK);
    ck_assert_uint_eq(got, 2);
    ck_assert_mem_eq(reply, "ok", 2);
    ck_assert_int_eq(q.peer_fd, -1); /* the hook really ran */
    udprr_client_close(c);
}
END_TEST

START_TEST(test_refusal_with_nothing_queued_fails_at_once)
{
    /* The same error with no reply queued: the request ends with
     * UDPRR_EREFUSED after one transmission. */
    char port[16];
    int fd = test_plain_socket("127.0.0.1", port);
    close(fd);
    udprr_client *c = NULL;
    ck_assert_int_eq(udprr_client_open(&c, "127.0.0.1", port, NULL),
                     UDPRR_OK);
    size_t got;
    ck_assert_int_eq(udprr_client_request(c, "q", 1, NULL, 0, &got),
                     UDPRR_EREFUSED);
    struct udprr_client_stats st = {.size = sizeof st};
    udprr_client_stats(c, &st);
    ck_assert_uint_eq(st.attempts, 1);
    udprr_client_close(c);
}
END_TEST

int main(void)
{
    int raw = socket(AF_INET, SOCK_RAW, IPPROTO_UDP);
    Suite *s = suite_create("net_refused");
    TCase *tc = tcase_create("icmp");
    tcase_set_timeout(tc, 30);
    if (raw < 0) {
        printf("net_refused: no test run: raw sockets need CAP_NET_RAW "
               "(%s); CI runs as root\n",
               strerror(errno));
    } else {
        close(raw);
        tcase_add_test(tc, test_stale_icmp_error_does_not_fail_the_next_request);
        tcase_add_test(tc, test_reply_queued_before_icmp_error_still_completes);
        tcase_add_test(tc, test_refusal_with_nothing_queued_fails_at_once);
    }
    suite_add_tcase(s, tc);
    return udprr_test_run(s);
}
