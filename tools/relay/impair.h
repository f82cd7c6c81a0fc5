/* SPDX-License-Identifier: MIT */
/*
 * impair.h - what an impaired network does to each datagram, decided
 * without a network.
 *
 * The pure core of the impairment relay (relay.h): it is given one
 * datagram's length and the time it arrived, and returns what to do with
 * it: how many copies to send, when each leaves, which bytes to damage and
 * how many bytes to keep. It never touches a socket or a clock (time comes
 * in as a value), so every decision for a seed can be replayed and asserted
 * exactly. One struct impair serves one direction of traffic.
 *
 * Time: microseconds on the caller's timeline; the relay passes the time
 * since it started, so blackhole windows are relative to its start. Send
 * times come back on the same timeline.
 *
 * Randomness: each impairment draws from its own stream of xorshift64*,
 * derived from the direction's seed and the impairment's fixed stream
 * number, and takes the same number of draws per datagram whatever its
 * setting and whatever happens to the datagram (even when it is dropped or
 * blackholed). So datagram i's drop decision depends only on the seed, i
 * and drop_permille; its corruption only on the seed, i, its length and the
 * corruption settings; and so on. Changing one impairment, or adding a new
 * one later, never moves another's decisions, and raising a permille only
 * adds datagrams to those it hits.
 *
 * Probabilities are in permille: a draw r (32 bits) triggers an impairment
 * of p permille when floor(r * 1000 / 2^32) < p, so 0 never triggers and
 * 1000 always does. "Uniform in 0..n-1" is floor(r * n / 2^32) of one draw.
 *
 * What each impairment does, in the order they apply:
 *
 *   blackhole  every datagram that is inside the relay at any moment of
 *              [blackhole_start_us, blackhole_start_us + blackhole_len_us)
 *              is lost: one that arrives in the window, and one that arrived
 *              before it but would leave in it (it was in flight when the
 *              link went down). Judged over the datagram's whole stay, from
 *              its arrival to the latest send time of its copies. Nothing
 *              random; off when blackhole_len_us is 0.
 *   drop       the datagram is lost.
 *   dup        a datagram not lost is sent twice (two copies).
 *   delay      every copy leaves delay_us after the datagram arrived...
 *   jitter     ...plus its own uniform extra 0..jitter_us (inclusive), drawn
 *              separately for each copy; jitter alone can reorder datagrams
 *              that arrive less than jitter_us apart, as on a real path.
 *   reorder    the datagram is held back: both copies leave reorder_delay_us
 *              later than they otherwise would (default
 *              IMPAIR_REORDER_DELAY_US when 0). Every datagram
 *              that arrives within that time and is not held overtakes it.
 *   truncate   the datagram is cut to a length uniform in 0..len-1 (so
 *              possibly empty). An empty datagram cannot be cut.
 *   corrupt    1..corrupt_max_bytes (default 1 when 0) distinct bytes of
 *              the datagram as it arrived are each XORed with a nonzero
 *              mask, so each of them really changes. Chosen over the whole
 *              datagram, independently of truncation: a cut may remove some
 *              or all damaged bytes. An empty datagram is never corrupted.
 *              Both copies of a duplicated datagram carry the same bytes.
 *
 * A lost datagram (dropped or blackholed) is decided with 0 copies and
 * nothing else; it counts as lost, not as duplicated, reordered, corrupted
 * or truncated.
 */
#ifndef IMPAIR_H
#define IMPAIR_H

#include <stddef.h>
#include <stdint.h>

#define IMPAIR_PERMILLE_MAX 1000u
/* How long a reordered datagram is held when reorder_delay_us is 0. */
#define IMPAIR_REORDER_DELAY_US 10000u
/* The most bytes one datagram can have corrupted (corrupt_max_bytes). */
#define IMPAIR_CORRUPT_BYTES_MAX 16u
/* Copies of one datagram: 1, or 2 when duplicated. */
#define IMPAIR_COPIES_MAX 2u

/* All zero is a perfect network. Fields are only ever appended, each zero
 * when off, so a zeroed or partly filled config keeps meaning the same. A
 * parameter of an impairment (reorder_delay_us, corrupt_max_bytes) matters
 * only when its permille is above 0, and 0 there means its default. */
struct impair_config {
    unsigned drop_permille; /* chance a datagram is lost */
    unsigned dup_permille;  /* chance a datagram not lost is sent twice */
    unsigned reorder_permille; /* chance a datagram is held back... */
    uint32_t reorder_delay_us; /* ...for this long (0: the default) */
    uint32_t delay_us;         /* every copy waits this long... */
    uint32_t jitter_us;        /* ...plus uniform 0..jitter_us */
    unsigned corrupt_permille; /* chance of damaged bytes... */
    unsigned corrupt_max_bytes; /* ...1..this many (0: 1; at most 16) */
    unsigned truncate_permille; /* chance a datagram is cut short */
    uint64_t blackhole_start_us; /* everything lost from here... */
    uint64_t blackhole_len_us;   /* ...for this long (0: never) */
};

/* Stream numbers are fixed forever, so a seed keeps giving the same
 * decisions; a new impairment takes the next number. Delay and blackhole
 * draw nothing and have none. Draws per datagram: one each for drop, dup
 * and reorder; one per possible copy (2) for jitter; three for corrupt (the
 * decision, and 64 bits that seed the choice of bytes); two for truncate
 * (the decision, the length). */
enum impair_stream {
    IMPAIR_STREAM_DROP = 0,
    IMPAIR_STREAM_DUP = 1,
    IMPAIR_STREAM_REORDER = 2,
    IMPAIR_STREAM_JITTER = 3,
    IMPAIR_STREAM_CORRUPT = 4,
    IMPAIR_STREAM_TRUNCATE = 5,
    IMPAIR_STREAMS
};

/* Always: forwarded == seen - dropped + duplicated, and blackholed <=
 * dropped. The last four count datagrams sent (at least one copy). */
struct impair_counters {
    uint64_t seen;       /* datagrams decided */
    uint64_t dropped;    /* decided with 0 copies, blackholed ones included */
    uint64_t duplicated; /* decided with 2 copies */
    uint64_t forwarded;  /* copies to send, over all datagrams */
    uint64_t blackholed; /* lost to the blackhole */
    uint64_t reordered;  /* held back */
    uint64_t corrupted;  /* with bytes damaged */
    uint64_t truncated;  /* cut short */
};

struct impair {
    struct impair_config config;
    uint64_t rand_state[IMPAIR_STREAMS];
    struct impair_counters counters;
};

/* What to do with one datagram. copies stays first; fields are appended.
 * For a lost datagram everything but copies (0) and blackholed is zero. */
struct impair_decision {
    unsigned copies; /* 0: lost, 1: forwarded, 2: duplicated */
    /* When copy c (c < copies) leaves, on the caller's timeline:
     * arrival + delay_us + its jitter + the reorder hold, if held. */
    uint64_t send_at_us[IMPAIR_COPIES_MAX];
    /* Bytes each copy carries: the datagram's length, or less when cut. */
    size_t send_len_bytes;
    /* XOR corrupt_xor[k] (nonzero) into byte corrupt_offset[k], k <
     * corrupt_count; offsets are distinct and below the datagram's length
     * as it arrived (not necessarily below send_len_bytes). */
    unsigned corrupt_count;
    size_t corrupt_offset[IMPAIR_CORRUPT_BYTES_MAX];
    unsigned char corrupt_xor[IMPAIR_CORRUPT_BYTES_MAX];
    int blackholed; /* lost to the blackhole (then copies is 0) */
    int reordered;  /* held back by reorder_delay_us */
    int truncated;  /* send_len_bytes is below the length */
};

/* NULL when the config is usable; otherwise a fixed message naming the
 * first field out of range: permilles above 1000, corrupt_max_bytes above
 * 16, or a blackhole window that ends past 2^64 - 1 microseconds. */
const char *impair_config_problem(const struct impair_config *config);

/* The starting state of stream `stream` for a direction seeded with
 * `seed`: distinct, well-mixed states even for adjacent seeds. */
uint64_t impair_stream_seed(uint64_t seed, unsigned stream);

/* Starts one direction with zero counters. The config must have passed
 * impair_config_problem; it is copied. */
void impair_init(struct impair *imp, const struct impair_config *config,
                 uint64_t seed);

/* Decides the fate of the next datagram, of len_bytes bytes (below 2^32),
 * which arrived at now_us, and counts it. Datagrams are decided in the
 * order they arrive, so now_us never goes down from one call to the next;
 * send times may (reordering, jitter). */
struct impair_decision
impair_decide_at(struct impair *imp, size_t len_bytes, uint64_t now_us);

/* impair_decide_at(imp, len_bytes, 0): for callers that use no timing
 * impairments, whose copies then all leave at once. */
struct impair_decision impair_decide(struct impair *imp, size_t len_bytes);

#endif /* IMPAIR_H */
