/*
 * demo_schedule.c - what `make demo` shows until the exchange lands: the
 * retry schedule the rtt core computes for 20 requests over a simulated
 * lossy path (30% of datagrams lost each way, 20-40 ms round trip), with a
 * simulated clock and a seeded random source, so every run prints the same.
 */
#include <stdio.h>

#include "rtt.h"
#include "seeded_rand.h"

int main(void)
{
    struct udprr__rtt_policy policy;
    struct udprr__rtt rtt;
    uint64_t path_seed = 1060, jitter_seed = 2026;

    udprr__rtt_policy_default(&policy);
    udprr__rtt_init(&rtt, &policy);
    printf("Simulated path: 30%% loss each way, RTT 20-40 ms; policy: initial "
           "RTO %llu ms, min %llu ms, max %llu ms, backoff x%u.%02u, jitter "
           "%u%%\n\n",
           (unsigned long long)policy.initial_rto_us / 1000,
           (unsigned long long)policy.min_rto_us / 1000,
           (unsigned long long)policy.max_rto_us / 1000,
           policy.backoff_pct / 100, policy.backoff_pct % 100,
           policy.jitter_pct);

    for (int request = 1; request <= 20; request++) {
        uint64_t elapsed_us = 0;
        printf("request %2d (RTO %6.1f ms):", request, rtt.rto_us / 1000.0);
        for (unsigned attempt = 1;; attempt++) {
            uint64_t wait = udprr__rtt_wait_us(&rtt, attempt,
                                               udprr_test_rand(&jitter_seed));
            int lost = udprr_test_rand(&path_seed) % 100 < 30 ||
                       udprr_test_rand(&path_seed) % 100 < 30;
            uint64_t rtt_us = 20000 + udprr_test_rand(&path_seed) % 20000;
            if (!lost && rtt_us <= wait) {
                printf(" attempt %u answered after %.1f ms", attempt,
                       rtt_us / 1000.0);
                udprr__rtt_sample(&rtt, rtt_us);
                elapsed_us += rtt_us;
                break;
            }
            printf(" wait %.1f ms, lost;", wait / 1000.0);
            elapsed_us += wait;
        }
        printf(" (%.1f ms in all)\n", elapsed_us / 1000.0);
    }
    printf("\nSRTT %.1f ms, RTTVAR %.1f ms, RTO %.1f ms after %llu samples\n",
           rtt.srtt_us / 1000.0, rtt.rttvar_us / 1000.0, rtt.rto_us / 1000.0,
           (unsigned long long)rtt.samples);
    return 0;
}
