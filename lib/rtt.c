/* SPDX-License-Identifier: MIT */
/*
 * rtt.c - RFC 6298 estimator and the capped, jittered backoff schedule.
 * The formulas are in rtt.h; the reasons for the defaults in docs/retry.md.
 */
#include "rtt.h"

#include <stddef.h>

#include "udprr.h"

#define MS 1000ull
#define SEC (1000ull * 1000)

void udprr__rtt_policy_default(struct udprr__rtt_policy *policy)
{
    policy->initial_rto_us = 1 * SEC; /* RFC 6298 2.1 and RFC 8085 3.1.3 */
    policy->min_rto_us = 1 * MS; /* with G: RFC 9002's kGranularity */
    policy->max_rto_us = 10 * SEC;
    policy->granularity_us = UDPRR__RTT_GRANULARITY_US;
    policy->backoff_pct = 200;
    policy->jitter_pct = 20;
    policy->adaptive = 1;
}

int udprr__rtt_policy_check(const struct udprr__rtt_policy *p)
{
    if (p == NULL)
        return UDPRR_EINVAL;
    if (p->min_rto_us < 1 || p->min_rto_us > p->initial_rto_us ||
        p->initial_rto_us > p->max_rto_us ||
        p->max_rto_us > UDPRR__RTT_LIMIT_US)
        return UDPRR_EINVAL;
    if (p->granularity_us > p->max_rto_us)
        return UDPRR_EINVAL;
    if (p->backoff_pct < 100 || p->backoff_pct > UDPRR__RTT_MAX_BACKOFF_PCT)
        return UDPRR_EINVAL;
    if (p->jitter_pct > 100)
        return UDPRR_EINVAL;
    return UDPRR_OK;
}

void udprr__rtt_init(struct udprr__rtt *rtt,
                     const struct udprr__rtt_policy *policy)
{
    rtt->policy = *policy;
    rtt->srtt_us = 0;
    rtt->rttvar_us = 0;
    rtt->rto_us = policy->initial_rto_us;
    rtt->samples = 0;
}

static uint64_t clamp(uint64_t v, uint64_t lo, uint64_t hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

void udprr__rtt_sample(struct udprr__rtt *rtt, uint64_t sample_us)
{
    const struct udprr__rtt_policy *p = &rtt->policy;
    uint64_t r = sample_us > UDPRR__RTT_LIMIT_US ? UDPRR__RTT_LIMIT_US
                                                 : sample_us;

    if (rtt->samples == 0) {
        rtt->srtt_us = r;
        rtt->rttvar_us = r / 2;
    } else {
        uint64_t delta = rtt->srtt_us > r ? rtt->srtt_us - r
                                          : r - rtt->srtt_us;
        /* RTTVAR first: it uses the SRTT from before this sample. */
        rtt->rttvar_us = (3 * rtt->rttvar_us + delta) / 4;
        rtt->srtt_us = (7 * rtt->srtt_us + r) / 8;
    }
    rtt->samples++;

    if (p->adaptive) {
        uint64_t margin = 4 * rtt->rttvar_us;
        if (margin < p->granularity_us)
            margin = p->granularity_us;
        rtt->rto_us = clamp(rtt->srtt_us + margin, p->min_rto_us,
                            p->max_rto_us);
    }
}

int udprr__rtt_unambiguous(unsigned echoed, unsigned transmissions)
{
    if (transmissions == 0)
        return 0;
    if (echoed == 0)
        return transmissions == 1;
    return echoed <= transmissions;
}

uint64_t udprr__rtt_wait_us(const struct udprr__rtt *rtt, unsigned attempt,
                            uint32_t random)
{
    const struct udprr__rtt_policy *p = &rtt->policy;
    uint64_t base = rtt->rto_us;

    if (base > p->max_rto_us)
        base = p->max_rto_us;
    if (attempt <= 1 || base == 0)
        return base > 0 ? base : 1;

    /* Grow step by step so nothing can overflow; stop at the cap, or at
     * once when the factor is 1. base stays <= max_rto (<= one hour), so
     * base * backoff_pct fits easily in 64 bits. */
    for (unsigned n = 2; n <= attempt && base < p->max_rto_us; n++) {
        uint64_t next;
        if (p->backoff_pct == 100)
            break;
        next = base * p->backoff_pct / 100;
        if (next == base)
            next = base + 1; /* tiny bases: still grow */
        base = next < p->max_rto_us ? next : p->max_rto_us;
    }

    /* span <= one hour in microseconds (< 2^32), so span * random < 2^64. */
    uint64_t span = base * p->jitter_pct / 100;
    uint64_t wait = base - ((span * random) >> 32);
    return wait > 0 ? wait : 1;
}
