/* SPDX-License-Identifier: MIT */
/*
 * rtt.h - the RTT estimator and the retry schedule.
 *
 * A pure module: it is given samples, attempt numbers and random numbers as
 * values and returns durations. It never reads a clock, never draws a random
 * number itself, and never touches a socket, so every schedule it produces
 * can be tested to the microsecond.
 *
 * All durations are in microseconds, in unsigned 64-bit integers, and every
 * division truncates. The estimator is RFC 6298's (section 2):
 *
 *   first sample R:  SRTT = R, RTTVAR = R/2
 *   later sample R:  RTTVAR = (3*RTTVAR + |SRTT - R|) / 4
 *                    SRTT   = (7*SRTT + R) / 8
 *   RTO = SRTT + max(G, 4*RTTVAR), clamped to [min_rto, max_rto]
 *
 * The retry schedule of one request: transmission n (1-based) waits
 *
 *   base(1) = RTO
 *   base(n) = min(max_rto, base(n-1) * backoff_pct / 100)   (n >= 2)
 *   wait(n) = base(n) - floor(base(n) * jitter_pct / 100 * r / 2^32)
 *
 * where r is a uniform 32-bit random number supplied by the caller and the
 * jitter applies from n = 2 on. The first wait is exactly the RTO, so jitter
 * never turns a timely reply into a spurious retransmission; the jitter is
 * subtracted so that max_rto stays a true cap, and so that clients which
 * lost packets together spread their retries over [base*(1-j), base].
 */
#ifndef UDPRR_RTT_H
#define UDPRR_RTT_H

#include <stdint.h>

/* Bounds the policy is checked against; they keep every product in the
 * arithmetic above well inside 64 bits. */
#define UDPRR__RTT_LIMIT_US (3600ull * 1000 * 1000) /* one hour */
#define UDPRR__RTT_MAX_BACKOFF_PCT 1000u
/* G, the least margin the RTO keeps above SRTT: RFC 9002's kGranularity.
 * Not an option: clients set the floor (min_rto) instead. */
#define UDPRR__RTT_GRANULARITY_US 1000u

struct udprr__rtt_policy {
    uint64_t initial_rto_us; /* RTO before the first sample */
    uint64_t min_rto_us;     /* floor of the computed RTO */
    uint64_t max_rto_us;     /* cap of the RTO and of every backed-off wait */
    uint64_t granularity_us; /* G: the least margin above SRTT */
    unsigned backoff_pct;    /* growth per timeout: 200 doubles; >= 100 */
    unsigned jitter_pct;     /* 0..100, see the schedule above */
    int adaptive;            /* 0: samples never move the RTO (fixed policy) */
};

struct udprr__rtt {
    struct udprr__rtt_policy policy;
    uint64_t srtt_us;   /* 0 until the first sample */
    uint64_t rttvar_us; /* 0 until the first sample */
    uint64_t rto_us;
    uint64_t samples; /* how many samples were taken */
};

/* Fills *policy with the library's defaults (see docs/retry.md): the one
 * place they are written; the client's option defaults are made from it. */
void udprr__rtt_policy_default(struct udprr__rtt_policy *policy);

/* UDPRR_OK when the policy is usable, UDPRR_EINVAL when not: a zero or
 * out-of-order bound (need 1 <= min_rto <= initial_rto <= max_rto <= one
 * hour), granularity above max_rto, backoff_pct outside 100..1000, or
 * jitter_pct above 100. */
int udprr__rtt_policy_check(const struct udprr__rtt_policy *policy);

/* Starts an estimator with no samples; the policy must have passed
 * udprr__rtt_policy_check. */
void udprr__rtt_init(struct udprr__rtt *rtt,
                     const struct udprr__rtt_policy *policy);

/* Feeds one unambiguous round-trip sample. Samples above one hour are taken
 * as one hour. Under a fixed policy SRTT and RTTVAR are still tracked (they
 * are reported in stats) but the RTO stays at initial_rto. */
void udprr__rtt_sample(struct udprr__rtt *rtt, uint64_t sample_us);

/* Whether a reply yields an unambiguous sample (Karn's rule). echoed is the
 * attempt number the reply says it answers, or 0 when the framing carries
 * none; transmissions is how many times the request was sent. A reply that
 * names its attempt is always unambiguous; one that does not is only when
 * the request was sent once. */
int udprr__rtt_unambiguous(unsigned echoed, unsigned transmissions);

/* How long to wait for a reply after transmission number attempt (1-based)
 * of a request, before resending or giving up. random is a uniform 32-bit
 * value used for the jitter (ignored for attempt 1). Always >= 1. */
uint64_t udprr__rtt_wait_us(const struct udprr__rtt *rtt, unsigned attempt,
                            uint32_t random);

#endif /* UDPRR_RTT_H */
