/* SPDX-License-Identifier: MIT */
/*
 * gather.h - one request to many servers (a broadcast address, a multicast
 * group): the retransmission schedule while the window lasts, and which
 * datagrams are a new server's answer.
 *
 * A pure module: time and random numbers come in as values; no clock, no
 * socket (client.c does the I/O of udprr_client_gather around it). The
 * schedule is the retry schedule of rtt.h: transmission n waits
 * udprr__rtt_wait_us(rtt, n, random) before transmission n + 1, every
 * transmission with the same ID, until the window closes or max_attempts
 * transmissions were made. Servers are told apart by their address key
 * (udprr__sock_addr_key): each is reported once, however many answers
 * (to as many retransmissions) it sends. A server that holds its answer
 * back until the client proves its address (an echo: docs/protocol.md,
 * "Amplification") is sent the request again, to its own address, with
 * its cookie: at most UDPRR__GATHER_ECHOES times per server.
 */
#ifndef UDPRR_GATHER_H
#define UDPRR_GATHER_H

#include <stddef.h>
#include <stdint.h>

#include "framing.h"
#include "rtt.h"

/* Echoes a gather answers per server, at most: one that echoes the
 * cookie it gave back again is not answered for ever. */
#define UDPRR__GATHER_ECHOES 2

/* The longest address key (udprr__sock_addr_key). */
#define UDPRR__GATHER_KEY_BYTES 28

struct udprr__gather_key {
    uint8_t len;
    uint8_t addr[UDPRR__GATHER_KEY_BYTES];
};

struct udprr__gather {
    struct udprr__framing framing;
    uint64_t id;           /* the request's (native, id-at-offset) */
    uint64_t end_us;       /* the window closes */
    uint64_t next_us;      /* the next transmission; UINT64_MAX: none */
    unsigned sent;         /* transmissions so far */
    unsigned max_attempts; /* 0: while the window lasts */
    size_t max_replies;    /* 1..UDPRR_GATHER_MAX */
    int stopped;           /* udprr__gather_stop was called */
    struct udprr__gather_key *seen; /* the servers reported, in order */
    size_t replies, seen_cap;
    struct udprr__gather_echoed {
        struct udprr__gather_key key;
        unsigned echoes;
    } *echoed;                     /* the servers whose echoes it answered */
    size_t n_echoed, echoed_cap;
};

/* A gather of window_us (>= 1) from now_us, whose first transmission is
 * due at once. max_replies 1..UDPRR_GATHER_MAX. UDPRR_OK or UDPRR_EINVAL. */
int udprr__gather_init(struct udprr__gather *g,
                       const struct udprr__framing *framing, uint64_t id,
                       uint64_t now_us, uint64_t window_us,
                       size_t max_replies, unsigned max_attempts);

/* Frees what the gather holds. */
void udprr__gather_free(struct udprr__gather *g);

/* The attempt number (1-based) of the transmission due at now_us, after
 * which the next one is scheduled with rtt's wait for that attempt
 * (random: its jitter); 0 when none is due (not yet, or no more: the
 * window closed, max_attempts reached, the gather over). */
unsigned udprr__gather_due(struct udprr__gather *g,
                           const struct udprr__rtt *rtt, uint64_t now_us,
                           uint32_t random);

/* When the caller must come back: the next transmission or the end of
 * the window, whichever is first. */
uint64_t udprr__gather_next_us(const struct udprr__gather *g);

/* Whether the gather is over at now_us: the window closed, max_replies
 * servers answered, or it was stopped. */
int udprr__gather_over(const struct udprr__gather *g, uint64_t now_us);

/* Ends the gather (the application's callback asked to stop). */
void udprr__gather_stop(struct udprr__gather *g);

/* A datagram buf[0..len) from the server whose address key is key: 1 when
 * it is the first answer of that server (a reply, or a decline in native
 * framing) to this gather's request, with *status UDPRR_OK or
 * UDPRR_EREMOTE and the body the application sees in *body and *body_len;
 * UDPRR__GATHER_ECHO when it is an echo to answer (from a server not yet
 * reported, to a transmission made, at most UDPRR__GATHER_ECHOES from
 * that server): *body and *body_len are then its cookie, and *status the
 * attempt number to send the request with, counted as a transmission; 0
 * when it is none of these (malformed, another ID, not an answer, an
 * attempt never made, a server already reported, too many echoes, or the
 * gather is over); UDPRR_ENOMEM when the server could not be remembered
 * (it is not reported, its echo not answered). */
#define UDPRR__GATHER_ECHO 2
int udprr__gather_datagram(struct udprr__gather *g, const uint8_t *buf,
                           size_t len, const struct udprr__gather_key *key,
                           int *status, const uint8_t **body,
                           size_t *body_len);

#endif /* UDPRR_GATHER_H */
