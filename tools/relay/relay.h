/* SPDX-License-Identifier: MIT */
/*
 * relay.h - a UDP relay on loopback that impairs the traffic it forwards,
 * for tests, benchmarks and any UDP program (build/udprr-relay,
 * docs/relay.md): clients send to the relay instead of the server, and
 * each datagram in each direction goes through that direction's impairment
 * decision (impair.h) before it is passed on, at once or when its send time
 * comes.
 *
 *     client <-> [relay: client socket | thread | server socket] <-> server
 *
 * The client socket is bound to the loopback address of the server's
 * family (the port of the caller's choice, or any free one); the server
 * socket is bound there too and connect()ed to the server, so the kernel
 * drops datagrams from anyone else and reports a closed server port as
 * ECONNREFUSED. Replies go to the client that had sent most recently when
 * the reply reached the relay. Only loopback servers are accepted, so
 * nothing here can send traffic off the machine.
 *
 * One thread per relay does all the forwarding and owns both sockets; the
 * functions below may be called from any other thread. It never sleeps to
 * delay a datagram: copies with a send time wait in a bounded queue ordered
 * by send time (copies due at the same microsecond leave in the order they
 * were decided), and the thread's poll wakes for the first one due.
 *
 * Time: the relay's timeline starts (0 us) when relay_start* reads
 * CLOCK_MONOTONIC, before it returns; blackhole windows are on it.
 * Arrival times are rounded up to the microsecond and a copy leaves only
 * once the clock has reached its send time, so no copy ever leaves sooner
 * than its delay after the relay received it.
 *
 * Seeds: to_server decisions are impair_init(.., seed), to_client ones
 * impair_init(.., ~seed), so a test can replay a relay's decisions
 * through impair.h and know in advance which datagrams it drops,
 * damages or holds back (time-based ones need the arrival times too).
 *
 * A tool of its own (tools/relay/), not part of libudprr: it uses neither
 * the library nor Check, and its names (relay_*, impair_*, RELAY_*,
 * IMPAIR_*) are its own, so nothing of it can be mistaken for udprr_ API.
 */
#ifndef RELAY_H
#define RELAY_H

#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

#include "impair.h"

/* Longest a wait inside the relay lasts when nothing happens. Stop does not
 * wait for it (it wakes the thread); it bounds every wait regardless. */
#define RELAY_IDLE_MS 2000

/* The queue of copies waiting for their send time holds at most this many
 * (unless the options say otherwise) and this many bytes; a copy beyond
 * either is dropped and counted as overflowed. */
#define RELAY_QUEUE_DATAGRAMS 4096u
#define RELAY_QUEUE_BYTES (32u << 20)

struct relay_direction_stats {
    struct impair_counters impair; /* what was decided */
    uint64_t sent;        /* copies the kernel accepted */
    uint64_t send_failed; /* copies it did not take, refusals aside */
    uint64_t refused;     /* ECONNREFUSED reports: the destination port was
                             closed. In practice to_server only: the kernel
                             reports refusals to connected sockets alone */
    uint64_t recv_failed; /* receive errors other than refusals */
    uint64_t unroutable;  /* to_client only: replies before any client had
                             sent, so nowhere to go; never decided */
    uint64_t overflowed;  /* copies dropped: the queue was full */
    uint64_t pending;     /* copies in the queue now; after stop, the ones
                             discarded. Always: impair.forwarded == sent +
                             send_failed + overflowed + pending */
};

struct relay_stats {
    struct relay_direction_stats to_server;
    struct relay_direction_stats to_client;
};

/* How to start a relay. Zero is the default for every field but server,
 * so designated initializers name only what differs. Fields are appended. */
struct relay_options {
    const struct sockaddr *server; /* 127.0.0.0/8 or ::1, port not 0 */
    socklen_t server_len;
    struct impair_config to_server; /* zero: perfect */
    struct impair_config to_client;
    uint64_t seed;
    uint16_t listen_port; /* the client socket's port (host order); 0: any */
    unsigned queue_max;   /* queued copies at most; 0: the default */
    /* One line per datagram decided, and one per copy that could not be
     * queued or sent (format in docs/relay.md), flushed as written. NULL:
     * none. The caller keeps it open until relay_stop returns. */
    FILE *log;
};

/* Starts a relay as `opts` say; it is copied. Returns NULL, after printing
 * the reason to stderr, when the address is not loopback, a config is out
 * of range, or a system call fails (a listen port in use, say). */
struct relay *relay_start_with(const struct relay_options *opts);

/* relay_start_with with these fields and every other zero. A NULL config
 * means no impairment in that direction. */
struct relay *relay_start(const struct sockaddr *server, socklen_t server_len,
                          const struct impair_config *to_server,
                          const struct impair_config *to_client,
                          uint64_t seed);

/* The address clients send to. */
void relay_addr(const struct relay *r, struct sockaddr_storage *addr,
                socklen_t *len);

/* The counters so far, consistent with each other (taken under one lock). */
void relay_stats(struct relay *r, struct relay_stats *out);

/* A condition on the counters; nonzero when it holds. */
typedef int (*relay_until)(const struct relay_stats *st, void *arg);

/* Blocks until `until` holds, checking it now and after every datagram the
 * relay handles, for at most timeout_ms. Returns 1 when it held, 0 on
 * timeout. This is how a test knows the relay has handled a datagram it
 * dropped, without sleeping and without hoping. */
int relay_wait(struct relay *r, relay_until until, void *arg,
               int timeout_ms);

/* Stops the thread promptly, waits for it, fills *out (when not NULL) with
 * the final counters and frees everything. Copies still queued are not
 * sent; they stay counted as pending. A NULL relay is a no-op (and fills
 * *out with zeros). */
void relay_stop(struct relay *r, struct relay_stats *out);

#endif /* RELAY_H */
