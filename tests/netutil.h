/* SPDX-License-Identifier: MIT */
/*
 * netutil.h - fixtures for the socket suites: a libudprr server running on
 * its own thread, bounded waits, and a monotonic stopwatch.
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

#include "relay.h"
#include "udprr.h"

struct test_server {
    udprr_server *server;
    pthread_t thread;
    udprr_handler handler;
    void *user;
    int run_status;
    char port[16];
};

static void *test_server_main(void *arg)
{
    struct test_server *ts = arg;
    ts->run_status = udprr_server_run(ts->server, ts->handler, ts->user);
    return NULL;
}

/* Opens a server on host port 0 and runs it on a thread. */
static inline void test_server_start(struct test_server *ts, const char *host,
                                     const udprr_server_opts *opts,
                                     udprr_handler h, void *user)
{
    memset(ts, 0, sizeof *ts);
    ts->handler = h;
    ts->user = user;
    ck_assert_int_eq(udprr_server_open(&ts->server, host, "0", opts),
                     UDPRR_OK);
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    ck_assert_int_eq(udprr_server_sockname(ts->server, (struct sockaddr *)&ss,
                                           &len),
                     UDPRR_OK);
    unsigned port = ss.ss_family == AF_INET6
                        ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                        : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    snprintf(ts->port, sizeof ts->port, "%u", port);
    ck_assert_int_eq(pthread_create(&ts->thread, NULL, test_server_main, ts),
                     0);
}

/* Stops the server, waits for its thread, and frees it. */
static inline void test_server_stop(struct test_server *ts,
                                    struct udprr_server_stats *stats)
{
    udprr_server_stop(ts->server);
    ck_assert_int_eq(pthread_join(ts->thread, NULL), 0);
    ck_assert_int_eq(ts->run_status, UDPRR_OK);
    if (stats != NULL) {
        stats->size = sizeof *stats;
        ck_assert_int_eq(udprr_server_stats(ts->server, stats), UDPRR_OK);
    }
    udprr_server_close(ts->server);
    ts->server = NULL;
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

/* Starts an impairment relay in front of a test server on 127.0.0.1
 * (NULL config: that direction unimpaired) and writes the port clients
 * send to. A relay answers the client that spoke last: one per client. */
static inline struct relay *
test_relay_in_front(const struct test_server *ts,
                    const struct impair_config *to_server,
                    const struct impair_config *to_client,
                    uint64_t seed, char port[16])
{
    struct sockaddr_in server = {.sin_family = AF_INET};
    inet_pton(AF_INET, "127.0.0.1", &server.sin_addr);
    server.sin_port = htons((uint16_t)atoi(ts->port));
    struct relay *relay = relay_start(
        (struct sockaddr *)&server, sizeof server, to_server, to_client, seed);
    ck_assert_ptr_nonnull(relay);
    struct sockaddr_storage ra;
    socklen_t ra_len = sizeof ra;
    relay_addr(relay, &ra, &ra_len);
    snprintf(port, 16, "%u", ntohs(((struct sockaddr_in *)&ra)->sin_port));
    return relay;
}

/* A handler that answers each request with its own bytes. */
static inline int test_echo_handler(void *user, const udprr_request *req,
                                    void *reply, size_t cap, size_t *reply_len)
{
    (void)user;
    ck_assert_uint_le(req->len, cap);
    memcpy(reply, req->data, req->len);
    *reply_len = req->len;
    return 0;
}

#endif /* UDPRR_NETUTIL_H */
