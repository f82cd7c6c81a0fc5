/* SPDX-License-Identifier: MIT */
/*
 * netutil.h - fixtures for the socket suites: a libudprr server running on
 * its own thread and a relay in front of it (fixture.h, asserted with
 * Check), plain sockets, bounded waits, and a monotonic stopwatch.
 */
#ifndef UDPRR_NETUTIL_H
#define UDPRR_NETUTIL_H

#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fixture.h"
#include "relay.h"
#include "udprr.h"

/* The fixture (fixture.h) with Check's assertions: a failure to set it up
 * fails the test. */

/* Opens a server on host port 0 and runs it on a thread. */
static inline void test_server_start(struct fixture_server *ts,
                                     const char *host,
                                     const udprr_server_opts *opts,
                                     udprr_handler h, void *user)
{
    ck_assert_int_eq(fixture_server_start(ts, host, opts, h, user), UDPRR_OK);
}

/* Runs an already open server on a thread; ts owns it from here on. */
static inline void test_server_serve(struct fixture_server *ts,
                                     udprr_server *server, udprr_handler h,
                                     void *user)
{
    ck_assert_int_eq(fixture_server_serve(ts, server, h, user), UDPRR_OK);
}

/* Stops the server, waits for its thread, and frees it. */
static inline void test_server_stop(struct fixture_server *ts,
                                    struct udprr_server_stats *stats)
{
    ck_assert_int_eq(fixture_server_stop(ts, stats), UDPRR_OK);
}

static inline uint64_t test_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* A plain UDP socket bound to host port 0 (no libudprr): a peer that never
 * answers, or that answers what and how a test chooses. Returns the fd and
 * writes the port. */
static inline int test_plain_socket(const char *host, char port[16])
{
    int family = strchr(host, ':') ? AF_INET6 : AF_INET;
    int fd = socket(family, SOCK_DGRAM, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    socklen_t len;
    if (family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        ck_assert_int_eq(inet_pton(AF_INET6, host, &a->sin6_addr), 1);
        len = sizeof *a;
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        ck_assert_int_eq(inet_pton(AF_INET, host, &a->sin_addr), 1);
        len = sizeof *a;
    }
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&ss, len), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&ss, &len), 0);
    unsigned p = family == AF_INET6
                     ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                     : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    snprintf(port, 16, "%u", p);
    return fd;
}

/* Receives one datagram within timeout_ms; returns its length or -1. */
static inline ssize_t test_recv_within(int fd, void *buf, size_t cap,
                                       int timeout_ms,
                                       struct sockaddr_storage *from,
                                       socklen_t *from_len)
{
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, timeout_ms) != 1)
        return -1;
    return recvfrom(fd, buf, cap, MSG_DONTWAIT, (struct sockaddr *)from,
                    from_len);
}

/* Starts an impairment relay in front of a test server (NULL config: that
 * direction unimpaired) and writes the port clients send to. A relay
 * answers the client that spoke last: one per client. */
static inline struct relay *
test_relay_in_front(const struct fixture_server *ts,
                    const struct impair_config *to_server,
                    const struct impair_config *to_client, uint64_t seed,
                    char port[16])
{
    struct relay *relay =
        fixture_relay_in_front(ts, to_server, to_client, seed, port);
    ck_assert_ptr_nonnull(relay);
    return relay;
}

/* Stops a relay that impaired both directions (test_relay_in_front with
 * drops, duplicates and reordering each way) and asserts that it dropped,
 * duplicated and held back datagrams in each. */
static inline void test_relay_stop_impaired(struct relay *relay)
{
    struct relay_stats rs;
    relay_stop(relay, &rs);
    ck_assert_uint_gt(rs.to_server.impair.dropped, 0);
    ck_assert_uint_gt(rs.to_server.impair.duplicated, 0);
    ck_assert_uint_gt(rs.to_server.impair.reordered, 0);
    ck_assert_uint_gt(rs.to_client.impair.dropped, 0);
    ck_assert_uint_gt(rs.to_client.impair.duplicated, 0);
    ck_assert_uint_gt(rs.to_client.impair.reordered, 0);
}

/* A client handle of 127.0.0.1 port `port` (NULL opts: the defaults). */
static inline udprr_client *test_client_open(const char *port,
                                             const udprr_client_opts *opts)
{
    udprr_client *c = NULL;
    ck_assert_int_eq(udprr_client_open(&c, "127.0.0.1", port, opts),
                     UDPRR_OK);
    ck_assert_ptr_nonnull(c);
    return c;
}

static inline struct udprr_client_stats
test_client_stats(const udprr_client *c)
{
    struct udprr_client_stats st = {.size = sizeof st};
    ck_assert_int_eq(udprr_client_stats(c, &st), UDPRR_OK);
    return st;
}

/* A handler that answers each request with its own bytes. */
static inline int test_echo_handler(void *user, const udprr_request *req,
                                    void *reply, size_t cap, size_t *reply_len)
{
    ck_assert_uint_le(req->len, cap);
    return fixture_echo_handler(user, req, reply, cap, reply_len);
}

/* --- driving a client handle ------------------------------------------- */

typedef int (*test_until_fn)(void *arg);

/* The loop an application writes around an asynchronous client: poll the
 * handle's socket for as long as udprr_client_timeout_ms says (at most
 * what is left of timeout_ms, and at most max_poll_ms when that is not
 * negative, so that a condition set by another thread is seen soon), then
 * process, until `until` holds. Returns 1 when it held, 0 on timeout.
 * `until` is checked before the handle is touched again, so a callback
 * that closes the handle can make it hold. */
static inline int test_pump_until(udprr_client *c, test_until_fn until,
                                  void *arg, unsigned timeout_ms,
                                  int max_poll_ms)
{
    uint64_t end = test_now_us() + (uint64_t)timeout_ms * 1000;
    while (!until(arg)) {
        uint64_t now = test_now_us();
        if (now >= end)
            return 0;
        int wait = (int)((end - now + 999) / 1000);
        if (max_poll_ms >= 0 && wait > max_poll_ms)
            wait = max_poll_ms;
        int t = udprr_client_timeout_ms(c);
        if (t >= 0 && t < wait)
            wait = t;
        struct pollfd p = {udprr_client_fd(c), POLLIN, 0};
        ck_assert_int_ge(poll(&p, 1, wait), 0);
        ck_assert_int_eq(udprr_client_process(c), UDPRR_OK);
    }
    return 1;
}

#endif /* UDPRR_NETUTIL_H */
