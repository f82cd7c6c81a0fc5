/* SPDX-License-Identifier: MIT */
/*
 * window.h - the congestion window of one destination: how many requests
 * may be in flight to it at once. RFC 8085, section 3.1, asks any UDP
 * sender with many messages in flight for congestion control; this is
 * TCP's (RFC 5681) counted in requests instead of bytes.
 *
 * A pure module: events in, a window size out. docs/async.md gives the
 * reasons for each rule and constant.
 *
 *   start        W = min(UDPRR__WINDOW_INITIAL, max); ssthresh = max.
 *   reply        (a reply or a decline: the path delivered both ways)
 *                that arrives while the window was full grows it: by one
 *                while W < ssthresh (slow start: W doubles each round
 *                trip), else by one per W such replies (congestion
 *                avoidance: one per round trip). Replies that arrive
 *                while the window was not full say nothing about a larger
 *                one and leave it (RFC 7661).
 *   loss         (a request's retransmission timer ran out) halves it:
 *                ssthresh = max(W / 2, 1), W = ssthresh, once per window:
 *                a loss of a request first sent before the last halving
 *                belongs to the same episode and does not halve again
 *                (NewReno's recovery point, RFC 6582).
 *
 * W stays within [1, max].
 */
#ifndef UDPRR_WINDOW_H
#define UDPRR_WINDOW_H

#include <stdint.h>

/* The window a destination starts with (RFC 3390's initial window of four
 * segments, in requests). */
#define UDPRR__WINDOW_INITIAL 4
/* The largest max_window. */
#define UDPRR__WINDOW_MAX 65535

struct udprr__window {
    unsigned size;      /* W: 1..max */
    unsigned max;
    unsigned ssthresh;
    unsigned acked;     /* replies toward the next +1 in avoidance */
    uint64_t recover;   /* losses of requests sent at or before this
                           sequence number do not halve again */
    uint64_t reductions; /* halvings so far */
};

/* initial 0: UDPRR__WINDOW_INITIAL; both are clipped into [1, max], and
 * max into [1, UDPRR__WINDOW_MAX]. */
void udprr__window_init(struct udprr__window *w, unsigned initial,
                        unsigned max);

/* A reply arrived for a request; in_flight is how many were in flight
 * just before it (the one answered included). */
void udprr__window_reply(struct udprr__window *w, uint64_t in_flight);

/* A request first sent as sequence number seq timed out; last_seq is the
 * sequence number of the latest request sent so far. Returns 1 when it
 * halved the window. */
int udprr__window_loss(struct udprr__window *w, uint64_t seq,
                       uint64_t last_seq);

#endif /* UDPRR_WINDOW_H */
