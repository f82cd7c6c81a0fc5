/* SPDX-License-Identifier: MIT */
/*
 * seeded_rand.h - a small seeded generator (xorshift64*): the same seed
 * gives the same sequence on every machine, so a relay session or a
 * failing test can be replayed exactly. The relay's impairments and the
 * test suites share it. Never change it: the seeds written in tests, in
 * docs/relay.md's sessions and in the demo depend on its exact sequence.
 * A zero state would stay zero; it is replaced by a fixed odd constant.
 */
#ifndef SEEDED_RAND_H
#define SEEDED_RAND_H

#include <stdint.h>

static inline uint32_t seeded_rand(uint64_t *state)
{
    uint64_t x = *state ? *state : 0x9E3779B97F4A7C15ull;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return (uint32_t)((x * 0x2545F4914F6CDD1Dull) >> 32);
}

#endif /* SEEDED_RAND_H */
