/* SPDX-License-Identifier: MIT */
/*
 * seeded_rand.h - a small seeded generator (xorshift64*) for the tests:
 * the same seed gives the same sequence on every machine, so any failing
 * case can be replayed exactly. (The relay in tools/relay/ has its own.)
 */
#ifndef UDPRR_SEEDED_RAND_H
#define UDPRR_SEEDED_RAND_H

#include <stdint.h>

static inline uint32_t udprr_test_rand(uint64_t *state)
{
    uint64_t x = *state ? *state : 0x9E3779B97F4A7C15ull;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return (uint32_t)((x * 0x2545F4914F6CDD1Dull) >> 32);
}

#endif /* UDPRR_SEEDED_RAND_H */
