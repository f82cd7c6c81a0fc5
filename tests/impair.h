/*
 * impair.h - what an impaired network does to each datagram, decided
 * without a network.
 *
 * A pure core for the test relay (relay.h): it is given one datagram's
 * length and returns what to do with it. It never touches a socket or a
 * clock, so every decision for a seed can be replayed and asserted exactly.
 * One struct udprr_test_impair serves one direction of traffic.
 *
 * Randomness: each impairment draws from its own stream of udprr_test_rand,
 * derived from the direction's seed and the impairment's fixed stream
 * number, and draws exactly once per datagram whatever its setting. So
 * datagram i's drop decision depends only on the seed, i and drop_permille:
 * changing dup_permille, or adding a new impairment later, never moves
 * which datagrams a seed drops, and raising drop_permille only adds drops.
 *
 * Probabilities are in permille: a draw r (32 bits) triggers an impairment
 * of p permille when floor(r * 1000 / 2^32) < p, so 0 never triggers and
 * 1000 always does.
 */
#ifndef UDPRR_TEST_IMPAIR_H
#define UDPRR_TEST_IMPAIR_H

#include <stddef.h>
#include <stdint.h>

#define UDPRR_TEST_PERMILLE_MAX 1000u

/* All zero is a perfect network. Fields to come (reorder, delay and jitter,
 * corruption, truncation, blackhole periods) are appended here, each zero
 * when off, so a zeroed or partly filled config keeps meaning the same. */
struct udprr_test_impair_config {
    unsigned drop_permille; /* chance a datagram is lost */
    unsigned dup_permille;  /* chance a datagram not lost is sent twice */
};

/* Stream numbers are fixed forever, so a seed keeps giving the same
 * decisions; a new impairment takes the next number. */
enum udprr_test_impair_stream {
    UDPRR_TEST_IMPAIR_STREAM_DROP = 0,
    UDPRR_TEST_IMPAIR_STREAM_DUP = 1,
    UDPRR_TEST_IMPAIR_STREAMS
};

/* Always: forwarded == seen - dropped + duplicated. */
struct udprr_test_impair_counters {
    uint64_t seen;       /* datagrams decided */
    uint64_t dropped;    /* decided with 0 copies */
    uint64_t duplicated; /* decided with 2 copies */
    uint64_t forwarded;  /* copies to send, over all datagrams */
};

struct udprr_test_impair {
    struct udprr_test_impair_config config;
    uint64_t rand_state[UDPRR_TEST_IMPAIR_STREAMS];
    struct udprr_test_impair_counters counters;
};

/* What to do with one datagram. Fields to come (per-copy delay, bytes to
 * flip, length to cut to) are appended; copies stays first. */
struct udprr_test_impair_decision {
    unsigned copies; /* 0: dropped, 1: forwarded, 2: duplicated */
};

/* NULL when the config is usable; otherwise a fixed message naming the
 * first field out of range (both permilles must be 0..1000). */
const char *udprr_test_impair_config_problem(
    const struct udprr_test_impair_config *config);

/* The starting state of stream `stream` for a direction seeded with
 * `seed`: distinct, well-mixed states even for adjacent seeds. */
uint64_t udprr_test_impair_stream_seed(uint64_t seed, unsigned stream);

/* Starts one direction with zero counters. The config must have passed
 * udprr_test_impair_config_problem; it is copied. */
void udprr_test_impair_init(struct udprr_test_impair *imp,
                            const struct udprr_test_impair_config *config,
                            uint64_t seed);

/* Decides the fate of the next datagram, of len_bytes bytes, and counts it. */
struct udprr_test_impair_decision
udprr_test_impair_decide(struct udprr_test_impair *imp, size_t len_bytes);

#endif /* UDPRR_TEST_IMPAIR_H */
