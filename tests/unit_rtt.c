/* SPDX-License-Identifier: MIT */
/*
 * unit_rtt.c - the RFC 6298 estimator and the retry schedule, to the
 * microsecond: every expected value below is worked out by hand from the
 * formulas in lib/rtt.h.
 */
#include <limits.h>

#include "rtt.h"
#include "testutil.h"
#include "udprr.h"

#define MS 1000ull
#define SEC 1000000ull

static struct udprr__rtt fresh(void)
{
    struct udprr__rtt_policy p;
    struct udprr__rtt rtt;
    udprr__rtt_policy_default(&p);
    ck_assert_int_eq(udprr__rtt_policy_check(&p), UDPRR_OK);
    udprr__rtt_init(&rtt, &p);
    return rtt;
}

/* The schedule without jitter, for exact backoff values. */
static struct udprr__rtt fresh_no_jitter(uint64_t rto_us)
{
    struct udprr__rtt rtt = fresh();
    rtt.policy.jitter_pct = 0;
    rtt.rto_us = rto_us;
    return rtt;
}

START_TEST(test_defaults)
{
    struct udprr__rtt rtt = fresh();
    ck_assert_uint_eq(rtt.rto_us, 1 * SEC);
    ck_assert_uint_eq(rtt.policy.min_rto_us, 1 * MS);
    ck_assert_uint_eq(rtt.policy.max_rto_us, 10 * SEC);
    ck_assert_uint_eq(rtt.policy.granularity_us, 1 * MS);
    ck_assert_uint_eq(rtt.policy.backoff_pct, 200);
    ck_assert_uint_eq(rtt.policy.jitter_pct, 20);
    ck_assert_uint_eq(rtt.samples, 0);
    /* Before any sample the first wait is the initial RTO, exactly. */
    ck_assert_uint_eq(udprr__rtt_wait_us(&rtt, 1, 0xffffffffu), 1 * SEC);
}
END_TEST

START_TEST(test_first_sample)
{
    struct udprr__rtt rtt = fresh();
    udprr__rtt_sample(&rtt, 100 * MS);
    ck_assert_uint_eq(rtt.srtt_us, 100000);
    ck_assert_uint_eq(rtt.rttvar_us, 50000);
    ck_assert_uint_eq(rtt.rto_us, 300000); /* 100000 + 4 * 50000 */
    ck_assert_uint_eq(rtt.samples, 1);
}
END_TEST

START_TEST(test_sample_sequence_exact)
{
    struct udprr__rtt rtt = fresh();
    udprr__rtt_sample(&rtt, 100000);
    udprr__rtt_sample(&rtt, 120000);
    /* RTTVAR = (3*50000 + 20000)/4, SRTT = (7*100000 + 120000)/8 */
    ck_assert_uint_eq(rtt.rttvar_us, 42500);
    ck_assert_uint_eq(rtt.srtt_us, 102500);
    ck_assert_uint_eq(rtt.rto_us, 272500);
    udprr__rtt_sample(&rtt, 80000);
    /* RTTVAR = (3*42500 + 22500)/4, SRTT = (7*102500 + 80000)/8 truncated */
    ck_assert_uint_eq(rtt.rttvar_us, 37500);
    ck_assert_uint_eq(rtt.srtt_us, 99687);
    ck_assert_uint_eq(rtt.rto_us, 249687);
}
END_TEST

START_TEST(test_steady_path_converges)
{
    /* A 200 ms path with no variance: SRTT -> 200 ms, RTTVAR decays to 0,
     * and the RTO settles at SRTT + G instead of resending every request. */
    struct udprr__rtt rtt = fresh();
    for (int i = 0; i < 200; i++)
        udprr__rtt_sample(&rtt, 200 * MS);
    ck_assert_uint_eq(rtt.srtt_us, 200000);
    ck_assert_uint_eq(rtt.rttvar_us, 0);
    ck_assert_uint_eq(rtt.rto_us, 201000);
}
END_TEST

START_TEST(test_loopback_clamps_to_min)
{
    /* With the default 1 ms floor, G decides on loopback... */
    struct udprr__rtt rtt = fresh();
    udprr__rtt_sample(&rtt, 50);
    ck_assert_uint_eq(rtt.rto_us, 1050); /* 50 + max(1000, 100) */
    /* ...and a higher floor, when set, wins over both. */
    rtt.policy.min_rto_us = 10 * MS;
    udprr__rtt_sample(&rtt, 50);
    ck_assert_uint_eq(rtt.rto_us, 10 * MS);
    for (int i = 0; i < 50; i++)
        udprr__rtt_sample(&rtt, 50);
    ck_assert_uint_eq(rtt.rto_us, 10 * MS);
}
END_TEST

START_TEST(test_granularity_is_the_least_margin)
{
    struct udprr__rtt rtt = fresh();
    rtt.policy.min_rto_us = 1;
    udprr__rtt_sample(&rtt, 50);
    ck_assert_uint_eq(rtt.rto_us, 1050); /* G beats 4 * RTTVAR = 100 */
    rtt.policy.granularity_us = 0;
    udprr__rtt_sample(&rtt, 50);
    /* RTTVAR = (3*25 + 0)/4 = 18; 50 + 72 */
    ck_assert_uint_eq(rtt.rto_us, 122);
}
END_TEST

START_TEST(test_slow_path_clamps_to_max)
{
    struct udprr__rtt rtt = fresh();
    udprr__rtt_sample(&rtt, 20 * SEC);
    ck_assert_uint_eq(rtt.srtt_us, 20 * SEC);
    ck_assert_uint_eq(rtt.rto_us, 10 * SEC);
}
END_TEST

START_TEST(test_huge_sample_cannot_overflow)
{
    struct udprr__rtt rtt = fresh();
    udprr__rtt_sample(&rtt, UINT64_MAX);
    ck_assert_uint_eq(rtt.srtt_us, UDPRR__RTT_LIMIT_US);
    udprr__rtt_sample(&rtt, UINT64_MAX);
    ck_assert_uint_eq(rtt.srtt_us, UDPRR__RTT_LIMIT_US);
    ck_assert_uint_eq(rtt.rto_us, 10 * SEC);
    udprr__rtt_sample(&rtt, 0);
    ck_assert_uint_eq(rtt.srtt_us, UDPRR__RTT_LIMIT_US / 8 * 7);
}
END_TEST

START_TEST(test_fixed_policy_never_adapts)
{
    struct udprr__rtt rtt = fresh();
    rtt.policy.adaptive = 0;
    rtt.rto_us = rtt.policy.initial_rto_us = 100 * MS;
    udprr__rtt_sample(&rtt, 3 * SEC);
    udprr__rtt_sample(&rtt, 1 * MS);
    ck_assert_uint_eq(rtt.rto_us, 100 * MS);
    ck_assert_uint_eq(rtt.samples, 2); /* still measured, for stats */
    ck_assert_uint_ne(rtt.srtt_us, 0);
}
END_TEST

START_TEST(test_textbook_schedule)
{
    /* The textbook client: first wait 0.1 s, doubling; giving up "past 2 s"
     * means five transmissions, because the sixth wait would be 3.2 s. */
    struct udprr__rtt rtt = fresh_no_jitter(100 * MS);
    rtt.policy.adaptive = 0;
    const uint64_t want[] = {100000, 200000, 400000, 800000, 1600000, 3200000};
    for (unsigned n = 1; n <= 6; n++)
        ck_assert_uint_eq(udprr__rtt_wait_us(&rtt, n, 12345), want[n - 1]);
}
END_TEST

START_TEST(test_doubling_then_cap)
{
    struct udprr__rtt rtt = fresh_no_jitter(300 * MS);
    const uint64_t want[] = {300000,  600000,   1200000,  2400000,
                             4800000, 9600000, 10000000, 10000000};
    for (unsigned n = 1; n <= 8; n++)
        ck_assert_uint_eq(udprr__rtt_wait_us(&rtt, n, 0), want[n - 1]);
}
END_TEST

START_TEST(test_other_backoff_factor)
{
    struct udprr__rtt rtt = fresh_no_jitter(100 * MS);
    rtt.policy.backoff_pct = 150;
    ck_assert_uint_eq(udprr__rtt_wait_us(&rtt, 2, 0), 150000);
    ck_assert_uint_eq(udprr__rtt_wait_us(&rtt, 3, 0), 225000);
    ck_assert_uint_eq(udprr__rtt_wait_us(&rtt, 4, 0), 337500);
    rtt.policy.backoff_pct = 100; /* constant interval */
    ck_assert_uint_eq(udprr__rtt_wait_us(&rtt, 9, 0), 100000);
}
END_TEST

START_TEST(test_tiny_base_still_grows)
{
    struct udprr__rtt rtt = fresh_no_jitter(1);
    rtt.policy.min_rto_us = 1;
    rtt.policy.backoff_pct = 101; /* 1 * 101 / 100 == 1: must still grow */
    ck_assert_uint_eq(udprr__rtt_wait_us(&rtt, 1, 0), 1);
    ck_assert_uint_eq(udprr__rtt_wait_us(&rtt, 2, 0), 2);
    ck_assert_uint_eq(udprr__rtt_wait_us(&rtt, 3, 0), 3);
}
END_TEST

START_TEST(test_jitter_exact_values)
{
    struct udprr__rtt rtt = fresh(); /* jitter 20% */
    rtt.rto_us = 300 * MS;
    /* attempt 2: base 600000, span 120000 */
    ck_assert_uint_eq(udprr__rtt_wait_us(&rtt, 2, 0), 600000);
    ck_assert_uint_eq(udprr__rtt_wait_us(&rtt, 2, 0x80000000u), 540000);
    ck_assert_uint_eq(udprr__rtt_wait_us(&rtt, 2, 0xffffffffu), 480001);
    /* the first wait is never jittered */
    ck_assert_uint_eq(udprr__rtt_wait_us(&rtt, 1, 0xffffffffu), 300000);
}
END_TEST

START_TEST(test_jitter_bounds_over_many_seeds)
{
    struct udprr__rtt rtt = fresh();
    rtt.rto_us = 250 * MS;
    for (uint64_t seed = 1; seed <= 200; seed++) {
        uint64_t state = seed;
        for (unsigned n = 2; n <= 12; n++) {
            uint64_t base = 250000ull << (n - 1);
            if (base > 10 * SEC)
                base = 10 * SEC;
            uint64_t lo = base - base / 5;
            uint64_t seen_lo = UINT64_MAX, seen_hi = 0;
            for (int k = 0; k < 50; k++) {
                uint64_t w = udprr__rtt_wait_us(&rtt, n,
                                                seeded_rand(&state));
                ck_assert_uint_ge(w, lo);
                ck_assert_uint_le(w, base);
                seen_lo = w < seen_lo ? w : seen_lo;
                seen_hi = w > seen_hi ? w : seen_hi;
            }
            /* the jitter really spreads: 50 draws cover most of the range */
            ck_assert_uint_gt(seen_hi - seen_lo, (base - lo) / 2);
        }
    }
}
END_TEST

START_TEST(test_jitter_is_spread_evenly)
{
    /* Mean of 100000 draws of a 20% downward jitter on 1 s: 0.9 s. */
    struct udprr__rtt rtt = fresh_no_jitter(500 * MS);
    rtt.policy.jitter_pct = 20;
    uint64_t state = 7, sum = 0;
    const int draws = 100000;
    for (int k = 0; k < draws; k++)
        sum += udprr__rtt_wait_us(&rtt, 2, seeded_rand(&state));
    uint64_t mean = sum / draws;
    ck_assert_uint_ge(mean, 898000);
    ck_assert_uint_le(mean, 902000);
}
END_TEST

START_TEST(test_unlimited_retry_settles_at_cap)
{
    /* A daemon that never gives up: however many attempts, the wait stays
     * within [0.8 cap, cap], and computing it stays cheap. */
    struct udprr__rtt rtt = fresh();
    udprr__rtt_sample(&rtt, 100 * MS);
    uint64_t state = 99;
    const unsigned attempts[] = {7, 8, 100, 65535, 1000000, UINT_MAX};
    for (size_t i = 0; i < sizeof attempts / sizeof attempts[0]; i++)
        for (int k = 0; k < 100; k++) {
            uint64_t w = udprr__rtt_wait_us(&rtt, attempts[i],
                                            seeded_rand(&state));
            ck_assert_uint_ge(w, 8 * SEC);
            ck_assert_uint_le(w, 10 * SEC);
        }
    rtt.policy.jitter_pct = 0;
    ck_assert_uint_eq(udprr__rtt_wait_us(&rtt, UINT_MAX, 0), 10 * SEC);
}
END_TEST

START_TEST(test_policy_check)
{
    struct udprr__rtt_policy good, p;
    udprr__rtt_policy_default(&good);
    ck_assert_int_eq(udprr__rtt_policy_check(&good), UDPRR_OK);
    ck_assert_int_eq(udprr__rtt_policy_check(NULL), UDPRR_EINVAL);

#define EXPECT_INVALID(field, value)                                           \
    do {                                                                       \
        p = good;                                                              \
        p.field = (value);                                                     \
        ck_assert_int_eq(udprr__rtt_policy_check(&p), UDPRR_EINVAL);           \
    } while (0)
    EXPECT_INVALID(min_rto_us, 0);
    EXPECT_INVALID(min_rto_us, 2 * SEC);         /* above initial */
    EXPECT_INVALID(initial_rto_us, 11 * SEC);    /* above max */
    EXPECT_INVALID(max_rto_us, 500 * MS);        /* below initial */
    EXPECT_INVALID(granularity_us, 11 * SEC);    /* above max */
    EXPECT_INVALID(backoff_pct, 99);
    EXPECT_INVALID(backoff_pct, 1001);
    EXPECT_INVALID(jitter_pct, 101);
#undef EXPECT_INVALID

    p = good;
    p.max_rto_us = UDPRR__RTT_LIMIT_US + 1;
    ck_assert_int_eq(udprr__rtt_policy_check(&p), UDPRR_EINVAL);
    p.max_rto_us = UDPRR__RTT_LIMIT_US;
    ck_assert_int_eq(udprr__rtt_policy_check(&p), UDPRR_OK);
    p = good;
    p.backoff_pct = 100;
    p.jitter_pct = 100;
    p.min_rto_us = p.initial_rto_us = p.max_rto_us = 1;
    p.granularity_us = 0;
    ck_assert_int_eq(udprr__rtt_policy_check(&p), UDPRR_OK);
}
END_TEST

START_TEST(test_karn_rule)
{
    ck_assert(udprr__rtt_unambiguous(0, 1));  /* raw, sent once */
    ck_assert(!udprr__rtt_unambiguous(0, 2)); /* raw, resent: which one? */
    ck_assert(udprr__rtt_unambiguous(1, 3));  /* echoes the first */
    ck_assert(udprr__rtt_unambiguous(3, 3));
    ck_assert(!udprr__rtt_unambiguous(4, 3)); /* names one never sent */
    ck_assert(!udprr__rtt_unambiguous(0, 0));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("rtt");
    TCase *est = tcase_create("estimator");
    tcase_add_test(est, test_defaults);
    tcase_add_test(est, test_first_sample);
    tcase_add_test(est, test_sample_sequence_exact);
    tcase_add_test(est, test_steady_path_converges);
    tcase_add_test(est, test_loopback_clamps_to_min);
    tcase_add_test(est, test_granularity_is_the_least_margin);
    tcase_add_test(est, test_slow_path_clamps_to_max);
    tcase_add_test(est, test_huge_sample_cannot_overflow);
    tcase_add_test(est, test_fixed_policy_never_adapts);
    tcase_add_test(est, test_policy_check);
    tcase_add_test(est, test_karn_rule);
    suite_add_tcase(s, est);

    TCase *sched = tcase_create("schedule");
    tcase_add_test(sched, test_textbook_schedule);
    tcase_add_test(sched, test_doubling_then_cap);
    tcase_add_test(sched, test_other_backoff_factor);
    tcase_add_test(sched, test_tiny_base_still_grows);
    tcase_add_test(sched, test_jitter_exact_values);
    tcase_add_test(sched, test_jitter_bounds_over_many_seeds);
    tcase_add_test(sched, test_jitter_is_spread_evenly);
    tcase_add_test(sched, test_unlimited_retry_settles_at_cap);
    suite_add_tcase(s, sched);
    return udprr_test_run(s);
}
