/* SPDX-License-Identifier: MIT */
/*
 * dedup.c - the server's reply cache. See dedup.h for the contract and the
 * memory accounting.
 *
 * Each entry is one allocation: a header followed by the copy of its reply.
 * It sits on two lists at once: the age list (doubly linked, oldest first,
 * so the head is the next to expire or be evicted and any entry can be
 * unlinked in O(1)) and the singly linked chain of its hash bucket.
 * In-progress entries sit on a list of their own instead of the age list:
 * pinned, never expired nor evicted, outside the bounds.
 *
 * Blocks come in size classes, eight to each doubling from 128 bytes up to
 * 128 KiB (one for any reply a datagram can carry), and a removed entry's
 * block goes on its class's free list for the next insert to take, so a
 * cache in steady state (as many entries going as coming) makes no
 * allocation. What the free lists hold is capped at an eighth of
 * max_bytes; a block beyond the cap, or larger than any class, is freed.
 */
#include "dedup.h"

#include <string.h>

#include "alloc.h"
#include "list.h"
#include "siphash.h"
#include "udprr.h"

struct entry {
    struct udprr__link link;  /* on the age list, or the pinned one */
    struct entry *chain_next; /* next in the same bucket */
    uint64_t inserted_us;
    uint32_t reply_len; /* at most UDPRR_MAX_DATAGRAM (insert checks) */
    int8_t kind;        /* a wire kind, or UDPRR__DEDUP_IN_PROGRESS */
    uint8_t size_class; /* of the block; CLASS_NONE: its exact size */
    struct udprr__dedup_key key;
    uint8_t reply[]; /* reply_len bytes, in the same block */
};

/* The figure in dedup.h: the header, malloc's header and rounding (up to
 * 24 bytes), and two bucket slots. */
_Static_assert(sizeof(struct entry) + 24 + 2 * sizeof(struct entry *) <=
                   UDPRR_CACHE_ENTRY_OVERHEAD,
               "UDPRR_CACHE_ENTRY_OVERHEAD no longer covers an entry");

/* Size classes: 128 bytes, then eight steps to each doubling up to
 * 2^CLASS_TOP_SHIFT bytes. */
#define CLASS_MIN_SHIFT 7
#define CLASS_TOP_SHIFT 17
#define CLASS_STEPS 8
#define CLASS_COUNT (1 + (CLASS_TOP_SHIFT - CLASS_MIN_SHIFT) * CLASS_STEPS)
#define CLASS_NONE 255
/* A class is the size of the chunk malloc takes for a block, its own
 * header included: asking for a power of two would cost the next chunk
 * size up. glibc's header is 8 bytes; elsewhere this only moves where
 * the rounding falls. */
#define MALLOC_HEADER_BYTES 8
_Static_assert(CLASS_COUNT < CLASS_NONE, "a class index fits its field");
_Static_assert(sizeof(struct entry) + UDPRR_MAX_DATAGRAM +
                       MALLOC_HEADER_BYTES <=
                   (size_t)1 << CLASS_TOP_SHIFT,
               "every reply a datagram carries has a class");

struct udprr__dedup {
    struct udprr__dedup_limits limits;
    struct entry **buckets;
    size_t bucket_mask; /* bucket count - 1; the count is a power of two */
    struct udprr__list age;    /* answers: expiry and eviction order */
    struct udprr__list pinned; /* in progress */
    size_t pinned_count;
    struct udprr__dedup_stats stats; /* entries and bytes kept current */
    struct entry *spare[CLASS_COUNT]; /* free blocks by class, through
                                         chain_next */
    size_t spare_bytes, spare_cap;
};

/* The class of a block of `bytes`, and the class's block size; CLASS_NONE
 * (and bytes itself) when it is larger than every class. */
static unsigned class_of(size_t bytes, size_t *class_bytes)
{
    if (bytes <= (size_t)1 << CLASS_MIN_SHIFT) {
        *class_bytes = (size_t)1 << CLASS_MIN_SHIFT;
        return 0;
    }
    /* The classes end at 2^CLASS_TOP_SHIFT bytes. */
    if (bytes > (size_t)1 << CLASS_TOP_SHIFT) {
        *class_bytes = bytes;
        return CLASS_NONE;
    }
    /* 2^shift < bytes <= 2^(shift + 1), shift < CLASS_TOP_SHIFT */
    unsigned shift = CLASS_MIN_SHIFT;
    while (((size_t)1 << (shift + 1)) < bytes)
        shift++;
    size_t base = (size_t)1 << shift, step = base / CLASS_STEPS;
    size_t k = (bytes - base + step - 1) / step; /* 1 .. CLASS_STEPS */
    *class_bytes = base + k * step;
    return 1 + (shift - CLASS_MIN_SHIFT) * CLASS_STEPS + (unsigned)(k - 1);
}

/* A block for an entry with reply_len bytes of reply: a spare of its
 * class, else a new one. NULL when out of memory. */
static struct entry *block_get(udprr__dedup *d, size_t reply_len)
{
    size_t class_bytes;
    unsigned c = class_of(sizeof(struct entry) + reply_len +
                              MALLOC_HEADER_BYTES,
                          &class_bytes);
    struct entry *e;
    if (c != CLASS_NONE && d->spare[c] != NULL) {
        e = d->spare[c];
        d->spare[c] = e->chain_next;
        d->spare_bytes -= class_bytes;
    } else {
        e = udprr__malloc(class_bytes - MALLOC_HEADER_BYTES);
        if (e == NULL)
            return NULL;
    }
    e->size_class = (uint8_t)c;
    return e;
}

/* Keeps a removed entry's block for a later insert, within the cap. */
static void block_put(udprr__dedup *d, struct entry *e)
{
    size_t class_bytes;
    unsigned c = e->size_class;
    if (c != CLASS_NONE) {
        class_of(sizeof *e + e->reply_len + MALLOC_HEADER_BYTES,
                 &class_bytes);
        if (d->spare_bytes + class_bytes <= d->spare_cap) {
            e->chain_next = d->spare[c];
            d->spare[c] = e;
            d->spare_bytes += class_bytes;
            return;
        }
    }
    udprr__free(e);
}

static int key_valid(const struct udprr__dedup_key *key)
{
    return key != NULL && key->addr_len >= 1 &&
           key->addr_len <= UDPRR__DEDUP_ADDR_MAX;
}

/* The same peer and ID (the hash covers these alone, so keys that differ
 * only in their digest share a bucket). */
static int same_peer_and_id(const struct udprr__dedup_key *a,
                            const struct udprr__dedup_key *b)
{
    return a->id == b->id && a->addr_len == b->addr_len &&
           memcmp(a->addr, b->addr, a->addr_len) == 0;
}

static int key_equal(const struct udprr__dedup_key *a,
                     const struct udprr__dedup_key *b)
{
    return a->digest == b->digest && same_peer_and_id(a, b);
}

/* Whether an entry has key's peer and ID, whatever its digest. */
static int id_taken(const udprr__dedup *d, const struct udprr__dedup_key *key);

/* SipHash of the address bytes and the ID under the server's secret key:
 * a peer picks its IDs (and, with some effort, its port), so without a
 * keyed hash it could aim every entry at one bucket. */
static uint64_t key_hash(const udprr__dedup *d,
                         const struct udprr__dedup_key *key)
{
    uint8_t bytes[UDPRR__DEDUP_ADDR_MAX + 8];
    memcpy(bytes, key->addr, key->addr_len);
    for (int i = 0; i < 8; i++)
        bytes[key->addr_len + i] = (uint8_t)(key->id >> (8 * i));
    return udprr__siphash24(d->limits.hash_key[0], d->limits.hash_key[1],
                            bytes, key->addr_len + 8u);
}

static struct entry **bucket_of(const udprr__dedup *d,
                                const struct udprr__dedup_key *key)
{
    return &d->buckets[key_hash(d, key) & d->bucket_mask];
}

static struct entry *find(const udprr__dedup *d,
                          const struct udprr__dedup_key *key)
{
    for (struct entry *e = *bucket_of(d, key); e != NULL; e = e->chain_next)
        if (key_equal(&e->key, key))
            return e;
    return NULL;
}

static int id_taken(const udprr__dedup *d, const struct udprr__dedup_key *key)
{
    for (struct entry *e = *bucket_of(d, key); e != NULL; e = e->chain_next)
        if (same_peer_and_id(&e->key, key))
            return 1;
    return 0;
}

uint64_t udprr__dedup_digest(const udprr__dedup *d, const void *request,
                             size_t len)
{
    /* A key of its own, derived from the table's: the digest and the
     * bucket hash never share one. */
    return udprr__siphash24(d->limits.hash_key[0] ^ 0x6469676573742121ull,
                            d->limits.hash_key[1] ^ 0x7564707272646967ull,
                            request, len);
}

static size_t entry_cost(size_t reply_len)
{
    return reply_len + UDPRR_CACHE_ENTRY_OVERHEAD;
}

static int is_pinned(const struct entry *e)
{
    return e->kind == UDPRR__DEDUP_IN_PROGRESS;
}

/* The oldest entry of a list, or NULL. */
static struct entry *oldest_of(const struct udprr__list *l)
{
    return l->oldest != NULL
               ? udprr__container_of(l->oldest, struct entry, link)
               : NULL;
}

/* Takes e off its bucket chain and its list, and frees it. */
static void remove_entry(udprr__dedup *d, struct entry *e)
{
    struct entry **link = bucket_of(d, &e->key);
    while (*link != e)
        link = &(*link)->chain_next;
    *link = e->chain_next;

    if (is_pinned(e)) {
        udprr__list_unlink(&d->pinned, &e->link);
        d->pinned_count--;
    } else {
        udprr__list_unlink(&d->age, &e->link);
        d->stats.entries--;
        d->stats.bytes -= entry_cost(e->reply_len);
    }
    block_put(d, e);
}

int udprr__dedup_new(udprr__dedup **out, const struct udprr__dedup_limits *lim)
{
    if (out == NULL)
        return UDPRR_EINVAL;
    *out = NULL;
    if (lim == NULL || lim->max_entries < 1 ||
        lim->max_entries > UDPRR__DEDUP_MAX_ENTRIES ||
        lim->max_bytes < UDPRR_CACHE_ENTRY_OVERHEAD || lim->lifetime_us < 1)
        return UDPRR_EINVAL;

    /* Every entry costs at least the overhead, so the byte bound may allow
     * fewer entries than max_entries; size the table for the smaller. At
     * most one entry per bucket on average, and it never has to grow. */
    size_t most_entries = lim->max_bytes / UDPRR_CACHE_ENTRY_OVERHEAD;
    if (most_entries > lim->max_entries)
        most_entries = lim->max_entries;
    size_t bucket_count = 1;
    while (bucket_count < most_entries)
        bucket_count <<= 1;

    udprr__dedup *d = udprr__calloc(1, sizeof *d);
    if (d == NULL)
        return UDPRR_ENOMEM;
    d->buckets = udprr__calloc(bucket_count, sizeof *d->buckets);
    if (d->buckets == NULL) {
        udprr__free(d);
        return UDPRR_ENOMEM;
    }
    d->limits = *lim;
    d->bucket_mask = bucket_count - 1;
    d->spare_cap = lim->max_bytes / 8;
    *out = d;
    return UDPRR_OK;
}

void udprr__dedup_free(udprr__dedup *d)
{
    if (d == NULL)
        return;
    struct udprr__list *lists[2] = {&d->age, &d->pinned};
    for (int i = 0; i < 2; i++) {
        struct entry *e = oldest_of(lists[i]);
        while (e != NULL) {
            struct udprr__link *newer = e->link.newer;
            udprr__free(e);
            e = newer != NULL
                    ? udprr__container_of(newer, struct entry, link)
                    : NULL;
        }
    }
    for (int c = 0; c < CLASS_COUNT; c++)
        while (d->spare[c] != NULL) {
            struct entry *next = d->spare[c]->chain_next;
            udprr__free(d->spare[c]);
            d->spare[c] = next;
        }
    udprr__free(d->buckets);
    udprr__free(d);
}

static int lifetime_ended(const udprr__dedup *d, const struct entry *e,
                          uint64_t now_us)
{
    /* Not inserted_us + lifetime_us <= now_us: that sum can wrap, and a
     * clock that stepped back must not end anything. */
    return now_us >= e->inserted_us &&
           now_us - e->inserted_us >= d->limits.lifetime_us;
}

void udprr__dedup_expire(udprr__dedup *d, uint64_t now_us)
{
    if (d == NULL)
        return;
    struct entry *e;
    while ((e = oldest_of(&d->age)) != NULL &&
           lifetime_ended(d, e, now_us)) {
        remove_entry(d, e);
        d->stats.expired++;
    }
}

int udprr__dedup_lookup(udprr__dedup *d, const struct udprr__dedup_key *key,
                        uint64_t now_us, int *kind, const uint8_t **reply,
                        size_t *reply_len)
{
    if (d == NULL || !key_valid(key))
        return 0;
    udprr__dedup_expire(d, now_us);
    const struct entry *e = find(d, key);
    if (e == NULL) {
        if (id_taken(d, key))
            d->stats.reused++;
        return 0;
    }
    if (!is_pinned(e))
        d->stats.hits++;
    if (kind != NULL)
        *kind = e->kind;
    if (reply != NULL)
        *reply = e->reply;
    if (reply_len != NULL)
        *reply_len = e->reply_len;
    return 1;
}

int udprr__dedup_insert(udprr__dedup *d, const struct udprr__dedup_key *key,
                        uint64_t now_us, int kind, const void *reply,
                        size_t reply_len)
{
    if (d == NULL || !key_valid(key) || (reply == NULL && reply_len > 0) ||
        (kind == UDPRR__DEDUP_IN_PROGRESS && reply_len > 0))
        return UDPRR_EINVAL;
    /* max_bytes >= the overhead was checked at creation: no wrap. */
    const size_t max_bytes = d->limits.max_bytes;
    if (reply_len > max_bytes - UDPRR_CACHE_ENTRY_OVERHEAD ||
        reply_len > UINT32_MAX)
        return UDPRR_ETOOBIG;
    const size_t cost = entry_cost(reply_len);

    /* Allocate before touching anything, so that running out of memory
     * leaves the cache exactly as it was. The size cannot wrap: reply_len
     * is at most SIZE_MAX - UDPRR_CACHE_ENTRY_OVERHEAD and the header is
     * smaller than the overhead (the static assertion above). */
    struct entry *fresh = block_get(d, reply_len);
    if (fresh == NULL)
        return UDPRR_ENOMEM;
    fresh->key = *key;
    fresh->inserted_us = now_us;
    fresh->reply_len = reply_len;
    fresh->kind = kind;
    if (reply_len > 0)
        memcpy(fresh->reply, reply, reply_len);

    /* Expire first, so that an entry whose life has ended is counted as
     * expired rather than replaced or evicted. */
    udprr__dedup_expire(d, now_us);
    struct entry *previous = find(d, key);
    if (previous != NULL) {
        /* An answer taking its in-progress entry's place replaces no
         * answer. */
        if (!is_pinned(previous))
            d->stats.replaced++;
        remove_entry(d, previous);
    }
    struct entry **bucket = bucket_of(d, key);
    fresh->chain_next = *bucket;
    *bucket = fresh;
    if (is_pinned(fresh)) {
        udprr__list_append(&d->pinned, &fresh->link);
        d->pinned_count++;
        return UDPRR_OK;
    }
    /* Ends at the latest when the cache is empty: cost <= max_bytes and
     * max_entries >= 1. */
    while (d->stats.entries >= d->limits.max_entries ||
           d->stats.bytes > max_bytes - cost) {
        remove_entry(d, oldest_of(&d->age));
        d->stats.evicted++;
    }
    udprr__list_append(&d->age, &fresh->link);

    d->stats.entries++;
    d->stats.bytes += cost;
    d->stats.inserted++;
    return UDPRR_OK;
}

void udprr__dedup_forget(udprr__dedup *d, const struct udprr__dedup_key *key)
{
    if (d == NULL || !key_valid(key))
        return;
    struct entry *e = find(d, key);
    if (e != NULL && is_pinned(e))
        remove_entry(d, e);
}

size_t udprr__dedup_in_progress(const udprr__dedup *d)
{
    return d == NULL ? 0 : d->pinned_count;
}

void udprr__dedup_stats(const udprr__dedup *d, struct udprr__dedup_stats *out)
{
    if (out == NULL)
        return;
    if (d == NULL) {
        memset(out, 0, sizeof *out);
        return;
    }
    *out = d->stats;
}
