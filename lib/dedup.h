/* SPDX-License-Identifier: MIT */
/*
 * dedup.h - the server's reply cache: at-most-once execution with bounded
 * memory.
 *
 * A pure module: it is given the time as a value and never reads a clock or
 * touches a socket. It allocates (entries and reply copies) only through
 * udprr__malloc/udprr__free (alloc.h); with replies of steady sizes, only
 * while it holds more than it ever held before (removed entries' blocks
 * are kept by size class for later inserts: see the memory accounting
 * below).
 *
 * Keyed by (peer address bytes, request ID). Entries live in insertion
 * order on one list, which is also expiry order (every entry lives the same
 * lifetime from its insertion) and eviction order, so expiring and evicting
 * are O(1) per entry; lookups go through a hash table, O(1) on average.
 *
 * Eviction is first in, first out: a hit does not make an entry younger,
 * so the oldest entry is always the next to expire and the next to evict.
 *
 * Memory accounting: an entry costs its reply's length plus
 * UDPRR_CACHE_ENTRY_OVERHEAD (udprr.h) bytes; the cache never holds more than
 * max_entries entries nor more than max_bytes bytes by that count. A reply
 * whose entry alone would exceed max_bytes is not cached (insert returns
 * UDPRR_ETOOBIG and the cache is unchanged).
 *
 * The overhead is 128 bytes on every platform. On LP64 it covers the
 * 88-byte entry header that sits in front of the reply copy (one block
 * per entry), up to 24 bytes of malloc's own header and rounding, and two
 * hash slots: the table is allocated once, at creation, with a power of two
 * of buckets below twice the most entries the bounds allow (min(max_entries,
 * max_bytes / UDPRR_CACHE_ENTRY_OVERHEAD)), so it never grows. A block is
 * rounded up to its size class (128 bytes, then eight classes to each
 * doubling: at most an eighth more than header and reply), and the blocks
 * of removed entries are kept for later inserts (so that a cache in steady
 * state allocates nothing), up to an eighth of max_bytes. The real memory
 * therefore stays within max_bytes plus an eighth (the spare blocks) when
 * the cache holds all the small entries it can, and within max_bytes plus
 * three eighths (the table, the rounding, the spares) when it holds a few
 * large ones; plus the handle (under 1 KiB).
 *
 * Times are microseconds on a clock that does not step back (the server
 * uses CLOCK_MONOTONIC). If now_us is ever below an entry's insertion time,
 * that entry counts as not yet expired; nothing wraps around.
 */
#ifndef UDPRR_DEDUP_H
#define UDPRR_DEDUP_H

#include <stddef.h>
#include <stdint.h>

#include "udprr.h"

/* The kind of an entry whose answer does not exist yet: a deferred request
 * (udprr.h, UDPRR_DEFER) still being worked on. Inserted with no reply, it
 * is found like any entry, so a retransmission does not run the handler
 * again, but a lookup that finds it is no hit (nothing is answered). It is
 * pinned: never expired, never evicted, and outside the bounds and the
 * counters (the server bounds such requests itself, by max_deferred),
 * until an insert of the same key (the answer) replaces it or
 * udprr__dedup_forget removes it. */
#define UDPRR__DEDUP_IN_PROGRESS (-1)

/* Room for any sockaddr the server can see (sockaddr_in6 is 28 bytes). */
#define UDPRR__DEDUP_ADDR_MAX 28

/* The largest max_entries accepted: keeps the hash table (one pointer per
 * bucket, allocated up front) within 128 MiB whatever the limits say. */
#define UDPRR__DEDUP_MAX_ENTRIES ((size_t)1 << 24)

struct udprr__dedup_key {
    uint8_t addr[UDPRR__DEDUP_ADDR_MAX]; /* normalized peer address bytes */
    uint8_t addr_len;                    /* 1..UDPRR__DEDUP_ADDR_MAX; bytes
                                          * past it are ignored */
    uint64_t id;
    uint64_t digest; /* of the request's bytes (udprr__dedup_digest): a
                        key matches only a request with the same bytes,
                        so a reused ID with other bytes is another key */
};

struct udprr__dedup_limits {
    size_t max_entries;   /* 1..UDPRR__DEDUP_MAX_ENTRIES */
    size_t max_bytes;     /* >= UDPRR_CACHE_ENTRY_OVERHEAD */
    uint64_t lifetime_us; /* >= 1 */
    uint64_t hash_key[2]; /* secret, random SipHash key: a client that
                             picks its own IDs cannot aim them at one
                             bucket. Any value works, 0 included */
};

struct udprr__dedup_stats {
    size_t entries;
    size_t bytes;
    uint64_t hits;      /* lookups answered from the cache (in-progress
                         * entries found are not counted) */
    uint64_t inserted;
    uint64_t evicted;   /* removed early to stay within the bounds */
    uint64_t expired;   /* removed because their lifetime ended */
    uint64_t replaced;  /* removed by an insert of the same key; so that
                         * inserted == entries + evicted + expired + replaced */
    uint64_t reused;    /* lookups that missed, though an entry had the
                         * same address and ID (another digest) */
};

typedef struct udprr__dedup udprr__dedup;

/* Creates an empty cache. UDPRR_OK, UDPRR_EINVAL (a limit out of range,
 * NULL out or lim), UDPRR_ENOMEM. On failure *out (when out is not NULL) is
 * set to NULL. */
int udprr__dedup_new(udprr__dedup **out, const struct udprr__dedup_limits *lim);

/* Frees the cache and every entry; NULL is a no-op. */
void udprr__dedup_free(udprr__dedup *d);

/* The digest of a request's bytes for its key: SipHash under a key the
 * cache derives from its own secret, so that no peer can make two
 * requests with different bytes share one (2^-64 by chance). */
uint64_t udprr__dedup_digest(const udprr__dedup *d, const void *request,
                             size_t len);

/* Removes every entry whose lifetime has ended at now_us (inserted at t,
 * it ends when now_us >= t + lifetime_us). */
void udprr__dedup_expire(udprr__dedup *d, uint64_t now_us);

/* Looks a key up after expiring what has ended at now_us. Found: returns 1
 * and sets *kind (the wire kind stored with it), *reply and *reply_len
 * (valid until the next call that changes the cache); any of the three may
 * be NULL when not wanted. Not found, or d NULL or key invalid: returns 0
 * and leaves the outputs alone. */
int udprr__dedup_lookup(udprr__dedup *d, const struct udprr__dedup_key *key,
                        uint64_t now_us, int *kind, const uint8_t **reply,
                        size_t *reply_len);

/* Stores a copy of the reply under key at now_us, first expiring, then
 * evicting the oldest entries until the new one fits within both bounds.
 * A key already present is replaced. reply may be NULL when reply_len is 0
 * (a decline is cached like any reply). UDPRR_OK, UDPRR_EINVAL (d or key
 * NULL, addr_len 0 or above UDPRR__DEDUP_ADDR_MAX, reply NULL with a
 * length; nothing changed), UDPRR_ETOOBIG (the entry alone exceeds
 * max_bytes; nothing changed), UDPRR_ENOMEM (nothing changed, not even
 * expiry). */
int udprr__dedup_insert(udprr__dedup *d, const struct udprr__dedup_key *key,
                        uint64_t now_us, int kind, const void *reply,
                        size_t reply_len);

/* Removes the in-progress entry of key, if there is one (an answer that
 * could not be cached must not leave its request "in progress" forever);
 * an answer stays. */
void udprr__dedup_forget(udprr__dedup *d, const struct udprr__dedup_key *key);

/* In-progress entries held now. */
size_t udprr__dedup_in_progress(const udprr__dedup *d);

/* Copies the counters; d NULL gives all zeros. */
void udprr__dedup_stats(const udprr__dedup *d, struct udprr__dedup_stats *out);

#endif /* UDPRR_DEDUP_H */
