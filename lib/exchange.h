/* SPDX-License-Identifier: MIT */
/*
 * exchange.h - the client's engine: the table of outstanding requests and
 * their timers. One engine serves the blocking and the asynchronous client.
 *
 * A pure module: time comes in as a value, randomness and the one output
 * (sending a datagram) go through the injected udprr__exchange_io, and
 * completions are reported through each request's callback. It never reads
 * a clock and never touches a socket, so tests drive it with a scripted
 * clock and a fake "send" and check every schedule exactly.
 *
 * Steps:
 *   submit    a new request: copied, then sent at once (a fresh ID, attempt
 *             1, a timer) when the window has room and nothing waits
 *             before it, else queued in order
 *   datagram  a datagram arrived from an endpoint: may complete a request
 *   timers    time passed: resends what is due, times out what is over
 *   refused   endpoints say nothing listens: their requests move to other
 *             endpoints, or end when none is left
 *   cancel    one request ends (given up by the application)
 *   fail_all  every request ends
 * Each step but submit ends by sending what the queue may now send.
 *
 * Endpoints: the engine sends to one of n servers (1..UDPRR__XCHG_MAX_
 * ENDPOINTS), each with its own RTT estimate, congestion window and
 * counters; udprr.h ("Several servers") states the rules for choosing one
 * and failing over, which choose() and the steps below implement. With one
 * endpoint every schedule is that of a single server.
 *
 * A request is queued (accepted, not sent: no ID yet, its timer is its
 * deadline) or in flight (sent: an ID, its timer the next retransmission).
 * It is sent when the congestion window (window.h) has room, in raw
 * framing when no other is in flight, and with short IDs when a free ID
 * exists (no two in flight ever share one).
 *
 * An in-flight request's timer fires at min(sent + wait(n), deadline),
 * where n counts the transmissions to its current endpoint (its attempt
 * number, unless it failed over); the wait comes from that endpoint's
 * rtt core. When it fires, the request
 * ends with UDPRR_ETIMEDOUT if the deadline has come or the last attempt
 * was sent, and is resent with the next attempt number otherwise; a
 * timer that ran out its whole wait (not cut short by the deadline) is a
 * loss for the window. A queued request whose deadline comes ends with
 * UDPRR_ETIMEDOUT unsent.
 *
 * Every pending request is in a min-heap on its timer and a hash on its
 * ticket; in-flight ones also in a hash on their ID: O(log n) per timer
 * operation, O(1) to match a reply, whatever the number pending.
 *
 * Reentrancy: a done callback may submit and cancel, and may shut the
 * engine down (udprr__exchange_shutdown); it must not destroy it (free
 * its memory): the step that called it is still running.
 */
#ifndef UDPRR_EXCHANGE_H
#define UDPRR_EXCHANGE_H

#include <stddef.h>
#include <stdint.h>

#include "framing.h"
#include "list.h"
#include "rtt.h"
#include "window.h"

/* How many recent transmission times each request keeps, for RTT samples
 * from replies that echo an older attempt. */
#define UDPRR__XCHG_SENT_HISTORY 16
/* How many finished IDs are remembered to tell a duplicate reply from a
 * stale one (stats only: both are dropped). */
#define UDPRR__XCHG_RECENT_IDS 64
/* The most endpoints (UDPRR_MAX_ENDPOINTS in udprr.h). */
#define UDPRR__XCHG_MAX_ENDPOINTS 16
/* A failed endpoint's back-off, after its first failure in a row, when
 * the limits name none; each further failure doubles it, up to
 * 2^UDPRR__XCHG_RETRY_DOUBLINGS times. */
#define UDPRR__XCHG_RETRY_DEFAULT_US 1000000u
#define UDPRR__XCHG_RETRY_DOUBLINGS 6

typedef void (*udprr__xdone_fn)(void *user, int status, const void *reply,
                                size_t reply_len);

struct udprr__exchange_io {
    void *ctx;
    /* Sends one datagram to endpoint (0 .. endpoints - 1). UDPRR_OK;
     * UDPRR_EREFUSED when the kernel reports that nothing listens there
     * (its requests move, or end); UDPRR_ETOOBIG when the path cannot
     * carry it (that request ends); anything else counts as a lost
     * transmission (the timer still runs). clock_ms is what clock_ms
     * below said when the request was first sent, the same for every
     * transmission of it (the sealed mode's replay window ages a
     * request, not a transmission: udprr.h); 0 without clock_ms. */
    int (*send)(void *ctx, unsigned endpoint, const void *buf, size_t len,
                uint64_t clock_ms);
    /* A uniform 64-bit random number into *out, for request IDs and
     * jitter: UDPRR_OK, or a failure status (then no request is started;
     * a retransmission goes unjittered). */
    int (*random64)(void *ctx, uint64_t *out);
    /* Optional: told of every transmission, after it was sent. */
    void (*on_attempt)(void *ctx, uint64_t id, unsigned attempt,
                       uint64_t wait_us, uint64_t rto_us, size_t len);
    /* Optional: the wall clock in milliseconds, read once per request,
     * at its first transmission, and given to every send of it. */
    uint64_t (*clock_ms)(void *ctx);
};

struct udprr__exchange_limits {
    unsigned max_attempts; /* transmissions per request; 0: no limit */
    uint64_t deadline_us;  /* from submit to the end; 0: no deadline */
    size_t max_pending;       /* accepted, not ended; 0: no limit */
    size_t max_pending_bytes; /* their bytes + UDPRR_PENDING_OVERHEAD
                                 each; 0: no limit */
    unsigned initial_window;  /* 0: UDPRR__WINDOW_INITIAL */
    unsigned max_window;      /* 0: UDPRR__WINDOW_MAX */
    unsigned endpoints;       /* 1..UDPRR__XCHG_MAX_ENDPOINTS; 0: 1 */
    int refused_only;         /* fail over on refusals only (udprr.h's
                                 UDPRR_FAILOVER_REFUSED) */
    uint64_t endpoint_retry_us; /* a failed endpoint's first back-off;
                                   0: UDPRR__XCHG_RETRY_DEFAULT_US */
};

/* The engine's counters, each named as the field of struct
 * udprr_client_stats (udprr.h) that reports it; the engine is their only
 * owner. The RTT samples are counted by the estimator (rtt.samples). */
struct udprr__exchange_counters {
    uint64_t requests;        /* accepted */
    uint64_t completed;       /* ended with UDPRR_OK */
    uint64_t attempts;        /* transmissions, first ones included */
    uint64_t retransmissions; /* transmissions after the first */
    uint64_t timeouts;        /* ended with UDPRR_ETIMEDOUT */
    uint64_t refused;         /* ended with UDPRR_EREFUSED */
    uint64_t declined;        /* ended with UDPRR_EREMOTE */
    uint64_t canceled;        /* ended with UDPRR_ECANCELED */
    uint64_t failed;          /* ended with any other error */
    uint64_t send_errors;     /* transmissions the send step failed */
    uint64_t dropped_stale;     /* replies to no request we remember */
    uint64_t dropped_duplicate; /* replies to a request already finished */
    uint64_t dropped_malformed; /* failed to decode */
    uint64_t dropped_unexpected; /* well formed, but not a reply we sent for */
    uint64_t spurious_retransmissions; /* sent after the one answered */
    uint64_t unsent;          /* ended without being sent */
    uint64_t echoes;          /* echoes answered with the cookie */
};

/* What one endpoint saw, each named as the field of struct
 * udprr_endpoint_stats (udprr.h) that reports it. */
struct udprr__endpoint_counters {
    uint64_t attempts, answers, timeouts, refusals, failovers;
};

struct udprr__xendpoint {
    struct udprr__rtt rtt;
    struct udprr__window window;
    size_t in_flight;       /* requests whose last transmission went here */
    uint64_t last_seq;      /* requests sent here so far (the window's
                               once-per-window halving counts them) */
    unsigned failures;      /* in a row; an answer clears them */
    int refused_last;       /* its last failure was a refusal */
    int has_cookie;         /* native framing: a cookie from its echo, */
    /* sent with every request to it from then on (udprr.h,
     * "Amplification") */
    uint8_t cookie[UDPRR__WIRE_COOKIE_BYTES];
    uint64_t retry_at_us;   /* failed: left alone until then */
    struct udprr__endpoint_counters stats;
};

struct udprr__xreq;

/* A hash of requests on one of their keys (exchange.c). */
struct udprr__xhash {
    struct udprr__xreq **buckets;
    size_t nbuckets; /* a power of two */
    size_t count;
};

struct udprr__exchange {
    struct udprr__framing framing;
    struct udprr__exchange_limits limits;
    struct udprr__exchange_io io;
    struct udprr__exchange_counters stats;

    struct udprr__xendpoint ep[UDPRR__XCHG_MAX_ENDPOINTS];
    unsigned n_ep;
    uint32_t refused_pending; /* endpoints found refusing whose requests
                                 are still to move (bit i: endpoint i) */

    struct udprr__xhash by_id;     /* in flight, by ID (not raw) */
    struct udprr__xhash by_ticket; /* every pending request */
    struct udprr__xreq **heap;     /* min-heap on each request's timer */
    size_t pending;                /* accepted, not ended: heap entries */
    size_t heap_cap;
    size_t pending_bytes;          /* as limits.max_pending_bytes counts */
    size_t in_flight;
    size_t queued;
    struct udprr__list queue;      /* waiting, in order */
    struct udprr__xreq *lone;      /* raw framing: the one in flight */
    uint64_t last_ticket;

    uint64_t recent_ids[UDPRR__XCHG_RECENT_IDS];
    size_t recent_next;
    size_t recent_count;

    /* Short IDs (id-at-offset under 8 bytes) come from a keyed permutation
     * of a counter: see next_id in exchange.c. */
    uint64_t id_key[4];
    uint64_t id_counter;

    int shut; /* shut down: every request ended, no submit succeeds */
    int settling; /* settle_refusals is on the stack (exchange.c) */
};

/* Prepares an engine; the policy must pass udprr__rtt_policy_check and
 * the framing udprr__framing_check (NULL framing: native).
 * UDPRR_OK, UDPRR_EINVAL, UDPRR_ENOMEM, or the random source's status
 * (short IDs draw their key here). */
int udprr__exchange_init(struct udprr__exchange *x,
                         const struct udprr__framing *framing,
                         const struct udprr__rtt_policy *policy,
                         const struct udprr__exchange_limits *limits,
                         const struct udprr__exchange_io *io);

/* Ends every pending request with UDPRR_ECANCELED; from then on submits
 * fail with UDPRR_EINVAL and the engine holds nothing. Safe from a done
 * callback, and more than once. */
void udprr__exchange_shutdown(struct udprr__exchange *x);

/* Shuts the engine down (if it was not) and frees its memory. Not from a
 * done callback. */
void udprr__exchange_destroy(struct udprr__exchange *x);

/* Accepts a request: copies body, then sends attempt 1 and arms its timer
 * at once if it may be sent now (see above), else queues it. deadline_us
 * counts from now_us; 0: the limits' deadline_us. On success done is
 * called exactly once, later (never from inside this call); on failure it
 * is never called and nothing is counted. *ticket_out (if not NULL) gets
 * the request's ticket: 1, 2, 3 ... per engine, never reused.
 * UDPRR_OK; UDPRR_ETOOBIG (body over what the framing carries, or sent at
 * once and the path refused the size); UDPRR_EREFUSED (sent at once and
 * found nothing listening at any endpoint); UDPRR_EBUSY (max_pending or
 * max_pending_bytes reached); UDPRR_EINVAL (also: an id-at-offset body
 * too short to hold the ID, or the engine shut down); UDPRR_ENOMEM; the
 * random source's failure status. */
int udprr__exchange_submit(struct udprr__exchange *x, const void *body,
                           size_t body_len, uint64_t now_us,
                           uint64_t deadline_us, udprr__xdone_fn done,
                           void *user, uint64_t *ticket_out);

/* Feeds one datagram received from endpoint at now_us. */
void udprr__exchange_datagram(struct udprr__exchange *x, unsigned endpoint,
                              const void *buf, size_t len, uint64_t now_us);

/* The endpoints of the mask (bit i: endpoint i) refuse (the socket said
 * ECONNREFUSED): each counts a failure, and each request in flight to one
 * of them moves at once to the best endpoint that has not refused it,
 * or ends with UDPRR_EREFUSED when none is left. */
void udprr__exchange_refused(struct udprr__exchange *x, uint32_t endpoints,
                             uint64_t now_us);

/* The endpoint the next request would go to at now_us. */
unsigned udprr__exchange_best(const struct udprr__exchange *x,
                              uint64_t now_us);

/* Fires every timer due at now_us: resends or times out. */
void udprr__exchange_timers(struct udprr__exchange *x, uint64_t now_us);

/* Ends every request pending when it is called with status, queued ones
 * included; now_us is when. Requests that done callbacks submit meanwhile
 * stay pending. */
void udprr__exchange_fail_all(struct udprr__exchange *x, int status,
                              uint64_t now_us);

/* Ends the pending request with that ticket with status, a failure, which
 * also says which counter takes it: UDPRR_ECANCELED for a request given
 * up, UDPRR_ESYS when waiting for its reply failed (counted in failed),
 * and so on; then sends what the queue may now send. UDPRR_OK;
 * UDPRR_ENOTPENDING when no request with that ticket is pending;
 * UDPRR_EINVAL for UDPRR_OK as status (only a reply completes a
 * request). */
int udprr__exchange_cancel(struct udprr__exchange *x, uint64_t ticket,
                           int status, uint64_t now_us);

/* When the earliest timer fires: returns 1 and sets *when_us (UINT64_MAX
 * for a queued request without a deadline), or 0 when nothing is
 * pending. */
int udprr__exchange_next_timer(const struct udprr__exchange *x,
                               uint64_t *when_us);

#endif /* UDPRR_EXCHANGE_H */
