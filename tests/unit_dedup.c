/* SPDX-License-Identifier: MIT */
/*
 * unit_dedup.c - the server's reply cache: keys, lifetimes to the
 * microsecond, both memory bounds, first-in-first-out eviction, exact
 * counters, and that running out of memory changes nothing. A seeded model
 * of the contract in lib/dedup.h checks thousands of mixed operations.
 */
#include <string.h>

#include "alloc.h"
#include "dedup.h"
#include "testutil.h"
#include "udprr.h"
#include "wire.h"


/* Every ck_assert that passes records a checkpoint, a write to a file: too
 * slow for the loops of 100000 operations below, above all under valgrind.
 * This calls Check only when the condition fails. */
#define REQUIRE(cond)                                                          \
    do {                                                                       \
        if (!(cond))                                                           \
            ck_abort_msg("Assertion '%s' failed", #cond);                      \
    } while (0)

/* A key whose address is 16 bytes (a sockaddr_in's size); the first four
 * spell out peer, so distinct peers always have distinct addresses. */
static struct udprr__dedup_key key_of(unsigned peer, uint64_t id)
{
    struct udprr__dedup_key k;
    memset(&k, 0, sizeof k);
    k.addr_len = 16;
    for (size_t i = 0; i < k.addr_len; i++)
        k.addr[i] = (uint8_t)((peer >> (8 * (i % 4))) + i);
    k.id = id;
    return k;
}

static udprr__dedup *cache_new(size_t max_entries, size_t max_bytes,
                               uint64_t lifetime_us)
{
    struct udprr__dedup_limits lim = {max_entries, max_bytes, lifetime_us,
                                      {0x5eedf00dULL, 0x1234ULL}};
    udprr__dedup *d = NULL;
    ck_assert_int_eq(udprr__dedup_new(&d, &lim), UDPRR_OK);
    ck_assert_ptr_nonnull(d);
    return d;
}

static struct udprr__dedup_stats stats_of(const udprr__dedup *d)
{
    struct udprr__dedup_stats s;
    udprr__dedup_stats(d, &s);
    return s;
}

static void assert_stats_equal(struct udprr__dedup_stats a,
                               struct udprr__dedup_stats b)
{
    if (a.entries == b.entries && a.bytes == b.bytes && a.hits == b.hits &&
        a.inserted == b.inserted && a.evicted == b.evicted &&
        a.expired == b.expired && a.replaced == b.replaced &&
        a.reused == b.reused)
        return;
    /* Only now, to say which counter and by how much. */
    ck_assert_uint_eq(a.entries, b.entries);
    ck_assert_uint_eq(a.bytes, b.bytes);
    ck_assert_uint_eq(a.hits, b.hits);
    ck_assert_uint_eq(a.inserted, b.inserted);
    ck_assert_uint_eq(a.evicted, b.evicted);
    ck_assert_uint_eq(a.expired, b.expired);
    ck_assert_uint_eq(a.replaced, b.replaced);
}

/* The reply stored for an entry in these tests: len bytes from seed. */
static void fill_reply(uint8_t *buf, size_t len, unsigned seed)
{
    for (size_t i = 0; i < len; i++)
        buf[i] = (uint8_t)(seed * 13 + i * 7);
}

static void insert_ok(udprr__dedup *d, const struct udprr__dedup_key *k,
                      uint64_t now_us, size_t len, unsigned seed)
{
    uint8_t buf[4096];
    REQUIRE(len <= sizeof buf);
    fill_reply(buf, len, seed);
    REQUIRE(udprr__dedup_insert(d, k, now_us, UDPRR__KIND_REPLY, buf, len) ==
            UDPRR_OK);
}

/* Looks k up and, when found, checks it holds the reply insert_ok made. */
static int holds(udprr__dedup *d, const struct udprr__dedup_key *k,
                 uint64_t now_us, size_t len, unsigned seed)
{
    const uint8_t *reply = NULL;
    size_t reply_len = 0;
    int kind = 0;
    if (!udprr__dedup_lookup(d, k, now_us, &kind, &reply, &reply_len))
        return 0;
    uint8_t want[4096];
    fill_reply(want, len, seed);
    REQUIRE(kind == UDPRR__KIND_REPLY);
    REQUIRE(reply_len == len);
    REQUIRE(len == 0 || memcmp(reply, want, len) == 0);
    return 1;
}

/* Stores n keys in a cache of n entries and finds each one's own reply.
 * The table then has fewer than 2n buckets, so many keys share one, where
 * only the key comparison can tell them apart: a comparison that skipped a
 * part of the key would return another key's reply. */
static void expect_all_kept(const struct udprr__dedup_key *keys, unsigned n)
{
    udprr__dedup *d =
        cache_new(n, (size_t)n * (UDPRR_CACHE_ENTRY_OVERHEAD + 8), 1000);
    for (unsigned i = 0; i < n; i++)
        insert_ok(d, &keys[i], 0, 8, i);
    for (unsigned i = 0; i < n; i++)
        REQUIRE(holds(d, &keys[i], 0, 8, i));
    ck_assert_uint_eq(stats_of(d).entries, n);
    udprr__dedup_free(d);
}

START_TEST(test_miss_then_insert_then_hit)
{
    udprr__dedup *d = cache_new(8, 1 << 16, 1000000);
    struct udprr__dedup_key k = key_of(1, 0x0123456789abcdefull);
    int kind = -1;
    const uint8_t *reply = (const uint8_t *)"untouched";
    size_t reply_len = 777;
    ck_assert_int_eq(udprr__dedup_lookup(d, &k, 0, &kind, &reply, &reply_len),
                     0);
    /* A miss leaves the outputs alone. */
    ck_assert_int_eq(kind, -1);
    ck_assert_str_eq((const char *)reply, "untouched");
    ck_assert_uint_eq(reply_len, 777);

    uint8_t sent[5] = {'h', 'e', 'l', 'l', 'o'};
    ck_assert_int_eq(
        udprr__dedup_insert(d, &k, 10, UDPRR__KIND_REPLY, sent, sizeof sent),
        UDPRR_OK);
    sent[0] = 'J'; /* the cache keeps its own copy */
    ck_assert_int_eq(udprr__dedup_lookup(d, &k, 20, &kind, &reply, &reply_len),
                     1);
    ck_assert_int_eq(kind, UDPRR__KIND_REPLY);
    ck_assert_uint_eq(reply_len, 5);
    ck_assert_mem_eq(reply, "hello", 5);
    ck_assert_ptr_ne(reply, sent);
    /* Outputs the caller does not want may be NULL. */
    ck_assert_int_eq(udprr__dedup_lookup(d, &k, 20, NULL, NULL, NULL), 1);
    udprr__dedup_free(d);
}
END_TEST

START_TEST(test_same_id_other_bytes_is_another_request)
{
    udprr__dedup *d = cache_new(8, 1 << 16, 1000000);
    struct udprr__dedup_key a = key_of(1, 42), b = a;
    a.digest = udprr__dedup_digest(d, "what is 1+1?", 12);
    b.digest = udprr__dedup_digest(d, "what is 2+2?", 12);
    ck_assert_uint_ne(a.digest, b.digest);
    /* The same bytes digest the same; the digest is not the table's
     * bucket hash of them. */
    ck_assert_uint_eq(udprr__dedup_digest(d, "what is 1+1?", 12), a.digest);
    ck_assert_int_eq(udprr__dedup_insert(d, &a, 0, UDPRR__KIND_REPLY, "2", 1),
                     UDPRR_OK);
    /* The ID reused for other bytes: a miss, counted as a reuse. */
    ck_assert_int_eq(udprr__dedup_lookup(d, &b, 1, NULL, NULL, NULL), 0);
    ck_assert_uint_eq(stats_of(d).reused, 1);
    ck_assert_uint_eq(stats_of(d).hits, 0);
    /* Its own answer sits beside the first; each answers its own bytes. */
    ck_assert_int_eq(udprr__dedup_insert(d, &b, 2, UDPRR__KIND_REPLY, "4", 1),
                     UDPRR_OK);
    ck_assert_uint_eq(stats_of(d).entries, 2);
    const uint8_t *reply;
    size_t len;
    ck_assert_int_eq(udprr__dedup_lookup(d, &a, 3, NULL, &reply, &len), 1);
    ck_assert_mem_eq(reply, "2", 1);
    ck_assert_int_eq(udprr__dedup_lookup(d, &b, 3, NULL, &reply, &len), 1);
    ck_assert_mem_eq(reply, "4", 1);
    /* A plain miss (no entry with that ID) is no reuse. */
    struct udprr__dedup_key c = key_of(1, 43);
    ck_assert_int_eq(udprr__dedup_lookup(d, &c, 4, NULL, NULL, NULL), 0);
    ck_assert_uint_eq(stats_of(d).reused, 1);
    udprr__dedup_free(d);
}
END_TEST

START_TEST(test_same_id_from_two_addresses_is_two_entries)
{
    udprr__dedup *d = cache_new(8, 1 << 16, 1000000);
    struct udprr__dedup_key a = key_of(1, 42), b = key_of(2, 42);
    insert_ok(d, &a, 0, 10, 1);
    ck_assert(!holds(d, &b, 0, 10, 1));
    insert_ok(d, &b, 0, 20, 2);
    ck_assert(holds(d, &a, 0, 10, 1));
    ck_assert(holds(d, &b, 0, 20, 2));
    ck_assert_uint_eq(stats_of(d).entries, 2);

    /* Peers whose addresses differ in one byte only, the last one. */
    struct udprr__dedup_key c = a;
    c.addr[15] ^= 1;
    ck_assert(!holds(d, &c, 0, 10, 1));
    udprr__dedup_free(d);

    struct udprr__dedup_key keys[200];
    for (unsigned i = 0; i < 200; i++)
        keys[i] = key_of(i, 42);
    expect_all_kept(keys, 200);
}
END_TEST

START_TEST(test_same_address_different_ids_are_two_entries)
{
    udprr__dedup *d = cache_new(8, 1 << 16, 1000000);
    struct udprr__dedup_key a = key_of(1, 42), b = key_of(1, 43);
    insert_ok(d, &a, 0, 10, 1);
    ck_assert(!holds(d, &b, 0, 10, 1));
    insert_ok(d, &b, 0, 20, 2);
    ck_assert(holds(d, &a, 0, 10, 1));
    ck_assert(holds(d, &b, 0, 20, 2));
    ck_assert_uint_eq(stats_of(d).entries, 2);
    udprr__dedup_free(d);

    struct udprr__dedup_key keys[200];
    for (unsigned i = 0; i < 200; i++)
        keys[i] = key_of(1, 1000 + i);
    expect_all_kept(keys, 200);
}
END_TEST

START_TEST(test_address_length_is_part_of_the_key)
{
    udprr__dedup *d = cache_new(8, 1 << 16, 1000000);
    struct udprr__dedup_key v4 = key_of(1, 42);
    struct udprr__dedup_key longer = v4;
    longer.addr_len = UDPRR__DEDUP_ADDR_MAX; /* same first 16 bytes, zeros */
    insert_ok(d, &v4, 0, 10, 1);
    ck_assert(!holds(d, &longer, 0, 10, 1));
    insert_ok(d, &longer, 0, 20, 2);
    ck_assert(holds(d, &v4, 0, 10, 1));
    ck_assert(holds(d, &longer, 0, 20, 2));
    udprr__dedup_free(d);

    struct udprr__dedup_key keys[200];
    for (unsigned i = 0; i < 200; i += 2) {
        keys[i] = key_of(i, 42);
        keys[i + 1] = keys[i];
        keys[i + 1].addr_len = UDPRR__DEDUP_ADDR_MAX;
    }
    expect_all_kept(keys, 200);
}
END_TEST

START_TEST(test_bytes_past_addr_len_are_ignored)
{
    udprr__dedup *d = cache_new(8, 1 << 16, 1000000);
    struct udprr__dedup_key k = key_of(1, 42), same = k;
    memset(same.addr + same.addr_len, 0xEE,
           UDPRR__DEDUP_ADDR_MAX - same.addr_len);
    insert_ok(d, &k, 0, 10, 1);
    ck_assert(holds(d, &same, 0, 10, 1));
    udprr__dedup_free(d);
}
END_TEST

START_TEST(test_replace_keeps_one_entry_and_its_bytes)
{
    udprr__dedup *d = cache_new(8, 1 << 16, 1000000);
    struct udprr__dedup_key k = key_of(1, 42);
    insert_ok(d, &k, 0, 100, 1);
    ck_assert_uint_eq(stats_of(d).bytes, 100 + UDPRR_CACHE_ENTRY_OVERHEAD);
    insert_ok(d, &k, 5, 10, 2);
    struct udprr__dedup_stats s = stats_of(d);
    ck_assert_uint_eq(s.entries, 1);
    ck_assert_uint_eq(s.bytes, 10 + UDPRR_CACHE_ENTRY_OVERHEAD);
    ck_assert_uint_eq(s.inserted, 2);
    ck_assert_uint_eq(s.replaced, 1);
    ck_assert_uint_eq(s.evicted, 0);
    ck_assert(holds(d, &k, 5, 10, 2));

    /* The kind is replaced with the bytes. */
    ck_assert_int_eq(
        udprr__dedup_insert(d, &k, 6, UDPRR__KIND_DECLINE, NULL, 0), UDPRR_OK);
    int kind = 0;
    size_t len = 99;
    ck_assert(udprr__dedup_lookup(d, &k, 6, &kind, NULL, &len));
    ck_assert_int_eq(kind, UDPRR__KIND_DECLINE);
    ck_assert_uint_eq(len, 0);
    ck_assert_uint_eq(stats_of(d).bytes, UDPRR_CACHE_ENTRY_OVERHEAD);
    udprr__dedup_free(d);
}
END_TEST

START_TEST(test_replaced_entry_takes_the_newest_place)
{
    /* A replaced key lives its lifetime from the replacement, so it moves
     * to the young end: the others go before it. */
    udprr__dedup *d = cache_new(3, 1 << 16, 1000);
    struct udprr__dedup_key a = key_of(1, 1), b = key_of(1, 2),
                            c = key_of(1, 3), e = key_of(1, 4);
    insert_ok(d, &a, 0, 1, 1);
    insert_ok(d, &b, 0, 1, 2);
    insert_ok(d, &c, 0, 1, 3);
    insert_ok(d, &a, 500, 1, 4);
    insert_ok(d, &e, 500, 1, 5); /* full: evicts b, the oldest now */
    ck_assert(!holds(d, &b, 500, 1, 2));
    ck_assert(holds(d, &a, 500, 1, 4));
    ck_assert(holds(d, &c, 500, 1, 3));
    ck_assert(!holds(d, &c, 1000, 1, 3)); /* c's lifetime ends */
    ck_assert(holds(d, &a, 1499, 1, 4));
    ck_assert(!holds(d, &a, 1500, 1, 4));
    udprr__dedup_free(d);
}
END_TEST

START_TEST(test_expires_exactly_at_lifetime_end)
{
    udprr__dedup *d = cache_new(8, 1 << 16, 500);
    struct udprr__dedup_key k = key_of(1, 42);
    insert_ok(d, &k, 1000, 3, 1);
    ck_assert(holds(d, &k, 1000, 3, 1));
    ck_assert(holds(d, &k, 1499, 3, 1)); /* one microsecond before the end */
    ck_assert_uint_eq(stats_of(d).expired, 0);
    ck_assert(!holds(d, &k, 1500, 3, 1));
    struct udprr__dedup_stats s = stats_of(d);
    ck_assert_uint_eq(s.expired, 1);
    ck_assert_uint_eq(s.entries, 0);
    ck_assert_uint_eq(s.bytes, 0);
    udprr__dedup_free(d);
}
END_TEST

START_TEST(test_expire_removes_only_ended_entries)
{
    udprr__dedup *d = cache_new(8, 1 << 16, 100);
    struct udprr__dedup_key k[3] = {key_of(1, 1), key_of(2, 2), key_of(3, 3)};
    for (unsigned i = 0; i < 3; i++)
        insert_ok(d, &k[i], 10 * i, 4, i);
    udprr__dedup_expire(d, 109);
    ck_assert_uint_eq(stats_of(d).entries, 2);
    udprr__dedup_expire(d, 110);
    ck_assert_uint_eq(stats_of(d).entries, 1);
    ck_assert_uint_eq(stats_of(d).expired, 2);
    ck_assert(holds(d, &k[2], 119, 4, 2));
    udprr__dedup_expire(d, 120);
    ck_assert_uint_eq(stats_of(d).entries, 0);
    udprr__dedup_expire(NULL, 120); /* a no-op, not a crash */
    udprr__dedup_free(d);
}
END_TEST

START_TEST(test_clock_stepping_back_expires_nothing)
{
    udprr__dedup *d = cache_new(8, 1 << 16, 100);
    struct udprr__dedup_key k = key_of(1, 42);
    insert_ok(d, &k, 1000000, 4, 1);
    udprr__dedup_expire(d, 0);
    ck_assert(holds(d, &k, 0, 4, 1));
    ck_assert(holds(d, &k, 999999, 4, 1));
    ck_assert(!holds(d, &k, 1000100, 4, 1));
    udprr__dedup_free(d);
}
END_TEST

START_TEST(test_time_arithmetic_cannot_wrap)
{
    /* inserted + lifetime would wrap past 2^64 here; the entry must still
     * be alive, not taken for long dead. */
    udprr__dedup *d = cache_new(8, 1 << 16, UINT64_MAX);
    struct udprr__dedup_key k = key_of(1, 42);
    insert_ok(d, &k, UINT64_MAX - 5, 4, 1);
    ck_assert(holds(d, &k, UINT64_MAX, 4, 1));
    udprr__dedup_free(d);

    d = cache_new(8, 1 << 16, 3);
    insert_ok(d, &k, UINT64_MAX - 5, 4, 1);
    ck_assert(holds(d, &k, UINT64_MAX - 3, 4, 1));
    ck_assert(!holds(d, &k, UINT64_MAX - 2, 4, 1));
    udprr__dedup_free(d);
}
END_TEST

START_TEST(test_entry_bound_evicts_the_oldest)
{
    udprr__dedup *d = cache_new(3, 1 << 16, 1000000);
    struct udprr__dedup_key k[6];
    for (unsigned i = 0; i < 5; i++) {
        k[i] = key_of(i, 100 + i);
        insert_ok(d, &k[i], i, 8, i);
        ck_assert_uint_le(stats_of(d).entries, 3);
    }
    ck_assert(!holds(d, &k[0], 5, 8, 0));
    ck_assert(!holds(d, &k[1], 5, 8, 1));
    ck_assert(holds(d, &k[2], 5, 8, 2));
    ck_assert(holds(d, &k[3], 5, 8, 3));
    ck_assert(holds(d, &k[4], 5, 8, 4));
    struct udprr__dedup_stats s = stats_of(d);
    ck_assert_uint_eq(s.entries, 3);
    ck_assert_uint_eq(s.evicted, 2);
    ck_assert_uint_eq(s.bytes, 3 * (8 + UDPRR_CACHE_ENTRY_OVERHEAD));
    udprr__dedup_free(d);
}
END_TEST

START_TEST(test_a_hit_does_not_make_an_entry_younger)
{
    udprr__dedup *d = cache_new(2, 1 << 16, 1000000);
    struct udprr__dedup_key a = key_of(1, 1), b = key_of(1, 2),
                            c = key_of(1, 3);
    insert_ok(d, &a, 0, 1, 1);
    insert_ok(d, &b, 1, 1, 2);
    ck_assert(holds(d, &a, 2, 1, 1));
    insert_ok(d, &c, 3, 1, 3);
    ck_assert(!holds(d, &a, 3, 1, 1));
    ck_assert(holds(d, &b, 3, 1, 2));
    udprr__dedup_free(d);
}
END_TEST

START_TEST(test_byte_bound_evicts_the_oldest_until_the_new_entry_fits)
{
    /* Room for exactly three 100-byte replies. */
    udprr__dedup *d =
        cache_new(100, 3 * (100 + UDPRR_CACHE_ENTRY_OVERHEAD), 1000000);
    struct udprr__dedup_key k[5];
    for (unsigned i = 0; i < 4; i++) {
        k[i] = key_of(i, i);
        insert_ok(d, &k[i], i, 100, i);
    }
    ck_assert(!holds(d, &k[0], 4, 100, 0));
    ck_assert(holds(d, &k[1], 4, 100, 1));
    ck_assert_uint_eq(stats_of(d).bytes,
                      3 * (100 + UDPRR_CACHE_ENTRY_OVERHEAD));

    /* A 250-byte reply needs two of the three to go, oldest first. */
    k[4] = key_of(4, 4);
    insert_ok(d, &k[4], 5, 250, 4);
    ck_assert(!holds(d, &k[1], 5, 100, 1));
    ck_assert(!holds(d, &k[2], 5, 100, 2));
    ck_assert(holds(d, &k[3], 5, 100, 3));
    ck_assert(holds(d, &k[4], 5, 250, 4));
    struct udprr__dedup_stats s = stats_of(d);
    ck_assert_uint_eq(s.entries, 2);
    ck_assert_uint_eq(s.bytes, 350 + 2 * UDPRR_CACHE_ENTRY_OVERHEAD);
    ck_assert_uint_eq(s.evicted, 3);
    udprr__dedup_free(d);
}
END_TEST

START_TEST(test_bounds_hold_under_load)
{
    /* 100000 distinct entries of seeded sizes, far more than fit, with the
     * clock advancing so that some expire as well. */
    /* By bytes about 265 average entries fit, by count 250, by lifetime
     * about 240: all three ways out take turns. */
    const size_t max_entries = 250, max_bytes = 300000;
    udprr__dedup *d = cache_new(max_entries, max_bytes, 12000);
    uint64_t seed = 20261122, now_us = 0;
    enum { N = 100000 };
    static size_t lens[N];
    for (unsigned i = 0; i < N; i++) {
        struct udprr__dedup_key k = key_of(i % 97, i);
        lens[i] = seeded_rand(&seed) % 2000;
        now_us += seeded_rand(&seed) % 100;
        insert_ok(d, &k, now_us, lens[i], i);
        struct udprr__dedup_stats s = stats_of(d);
        REQUIRE(s.bytes <= max_bytes);
        REQUIRE(s.entries <= max_entries);
        REQUIRE(s.evicted + s.expired + s.entries == s.inserted);
        REQUIRE(s.inserted == i + 1);
    }
    struct udprr__dedup_stats s = stats_of(d);
    ck_assert_uint_gt(s.evicted, 1000);
    ck_assert_uint_gt(s.expired, 1000);
    /* Out first in first: the survivors are exactly the newest entries,
     * and their bytes add up to what the stats say. */
    size_t bytes = 0;
    for (unsigned i = N - (unsigned)s.entries; i < N; i++) {
        struct udprr__dedup_key k = key_of(i % 97, i);
        REQUIRE(holds(d, &k, now_us, lens[i], i));
        bytes += lens[i] + UDPRR_CACHE_ENTRY_OVERHEAD;
    }
    ck_assert_uint_eq(bytes, s.bytes);
    unsigned gone = N - (unsigned)s.entries - 1;
    struct udprr__dedup_key k = key_of(gone % 97, gone);
    ck_assert(!holds(d, &k, now_us, lens[gone], gone));
    udprr__dedup_free(d);
}
END_TEST

START_TEST(test_many_peers_all_found)
{
    /* IDs that only count, from many peers: every entry is found again and
     * none is confused with another (a weak hash would chain them all). */
    enum { N = 40000 };
    udprr__dedup *d =
        cache_new(N, (size_t)N * (UDPRR_CACHE_ENTRY_OVERHEAD + 8), 1000000);
    for (unsigned i = 0; i < N; i++) {
        struct udprr__dedup_key k = key_of(i / 64, (uint64_t)(i % 64) << 48);
        insert_ok(d, &k, 0, 8, i);
    }
    for (unsigned i = 0; i < N; i++) {
        struct udprr__dedup_key k = key_of(i / 64, (uint64_t)(i % 64) << 48);
        REQUIRE(holds(d, &k, 1, 8, i));
    }
    ck_assert_uint_eq(stats_of(d).entries, N);
    ck_assert_uint_eq(stats_of(d).evicted, 0);
    udprr__dedup_free(d);
}
END_TEST

/* ---- a model of the contract, checked against the cache ---------------- */

struct model_entry {
    unsigned key_index;
    uint64_t inserted_us;
    size_t len;
    unsigned seed;
    int kind;
};

struct model {
    struct model_entry e[64]; /* oldest first */
    size_t n;
    size_t bytes;
    struct udprr__dedup_stats stats;
};

static void model_remove(struct model *m, size_t i)
{
    m->bytes -= m->e[i].len + UDPRR_CACHE_ENTRY_OVERHEAD;
    memmove(&m->e[i], &m->e[i + 1], (m->n - i - 1) * sizeof m->e[0]);
    m->n--;
}

static void model_expire(struct model *m, uint64_t now_us, uint64_t life_us)
{
    while (m->n > 0 && now_us - m->e[0].inserted_us >= life_us) {
        model_remove(m, 0);
        m->stats.expired++;
    }
}

START_TEST(test_matches_a_simple_model)
{
    enum { PEERS = 3, IDS = 12, KEYS = PEERS * IDS };
    const size_t max_entries = 6,
                 max_bytes = 8 * UDPRR_CACHE_ENTRY_OVERHEAD + 2000;
    const uint64_t life_us = 400;
    udprr__dedup *d = cache_new(max_entries, max_bytes, life_us);
    struct udprr__dedup_key keys[KEYS];
    for (unsigned i = 0; i < KEYS; i++)
        keys[i] = key_of(i / IDS, 0x1000 + i % IDS);
    struct model m;
    memset(&m, 0, sizeof m);
    uint64_t seed = 7, now_us = 0;

    for (int step = 0; step < 30000; step++) {
        now_us += seeded_rand(&seed) % 40;
        if (seeded_rand(&seed) % 50 == 0)
            now_us += life_us; /* a quiet spell: everything expires */
        unsigned ki = seeded_rand(&seed) % KEYS;
        unsigned op = seeded_rand(&seed) % 10;
        if (op < 5) {
            size_t len = seeded_rand(&seed) % 600;
            if (len > 500)
                len = 0;
            int kind = len == 0 ? UDPRR__KIND_DECLINE : UDPRR__KIND_REPLY;
            unsigned rseed = (unsigned)step;
            uint8_t buf[600];
            fill_reply(buf, len, rseed);
            REQUIRE(udprr__dedup_insert(d, &keys[ki], now_us, kind, buf,
                                        len) == UDPRR_OK);
            model_expire(&m, now_us, life_us);
            for (size_t i = 0; i < m.n; i++)
                if (m.e[i].key_index == ki) {
                    model_remove(&m, i);
                    m.stats.replaced++;
                    break;
                }
            while (m.n >= max_entries ||
                   m.bytes + len + UDPRR_CACHE_ENTRY_OVERHEAD > max_bytes) {
                model_remove(&m, 0);
                m.stats.evicted++;
            }
            m.e[m.n++] = (struct model_entry){ki, now_us, len, rseed, kind};
            m.bytes += len + UDPRR_CACHE_ENTRY_OVERHEAD;
            m.stats.inserted++;
        } else if (op < 9) {
            model_expire(&m, now_us, life_us);
            const struct model_entry *want = NULL;
            for (size_t i = 0; i < m.n; i++)
                if (m.e[i].key_index == ki)
                    want = &m.e[i];
            int kind = 0;
            const uint8_t *reply = NULL;
            size_t len = 0;
            int found = udprr__dedup_lookup(d, &keys[ki], now_us, &kind,
                                            &reply, &len);
            REQUIRE(found == (want != NULL));
            if (found) {
                uint8_t buf[600];
                fill_reply(buf, want->len, want->seed);
                m.stats.hits++;
                REQUIRE(kind == want->kind);
                REQUIRE(len == want->len);
                REQUIRE(len == 0 || memcmp(reply, buf, len) == 0);
            }
        } else {
            udprr__dedup_expire(d, now_us);
            model_expire(&m, now_us, life_us);
        }
        m.stats.entries = m.n;
        m.stats.bytes = m.bytes;
        assert_stats_equal(stats_of(d), m.stats);
    }
    ck_assert_uint_gt(m.stats.evicted, 0);
    ck_assert_uint_gt(m.stats.expired, 0);
    ck_assert_uint_gt(m.stats.replaced, 0);
    ck_assert_uint_gt(m.stats.hits, 0);
    udprr__dedup_free(d);
}
END_TEST

/* ---- limits and arguments ---------------------------------------------- */

START_TEST(test_reply_bigger_than_budget_is_too_big_and_changes_nothing)
{
    const size_t max_bytes = 4 * UDPRR_CACHE_ENTRY_OVERHEAD + 1000;
    udprr__dedup *d = cache_new(10, max_bytes, 100);
    struct udprr__dedup_key a = key_of(1, 1), b = key_of(2, 2);
    insert_ok(d, &a, 0, 100, 1);
    insert_ok(d, &b, 0, 100, 2);
    static uint8_t big[8192];
    struct udprr__dedup_stats before = stats_of(d);

    /* Too big even for an empty cache: refused before anything expires,
     * is replaced or is evicted, though all three were due. */
    size_t too_big = max_bytes - UDPRR_CACHE_ENTRY_OVERHEAD + 1;
    ck_assert_int_eq(udprr__dedup_insert(d, &a, 100, UDPRR__KIND_REPLY, big,
                                         too_big),
                     UDPRR_ETOOBIG);
    ck_assert_int_eq(udprr__dedup_insert(d, &a, 100, UDPRR__KIND_REPLY, big,
                                         SIZE_MAX),
                     UDPRR_ETOOBIG);
    assert_stats_equal(stats_of(d), before);
    ck_assert(holds(d, &a, 99, 100, 1));
    ck_assert(holds(d, &b, 99, 100, 2));

    /* One byte less fills the whole budget, evicting everything else. */
    ck_assert_int_eq(udprr__dedup_insert(d, &a, 99, UDPRR__KIND_REPLY, big,
                                         too_big - 1),
                     UDPRR_OK);
    ck_assert_uint_eq(stats_of(d).bytes, max_bytes);
    ck_assert_uint_eq(stats_of(d).entries, 1);
    ck_assert(!holds(d, &b, 99, 100, 2));
    udprr__dedup_free(d);
}
END_TEST

START_TEST(test_empty_replies_are_cached)
{
    /* A decline has no body; it must be remembered like any reply, or a
     * retried request would run the handler again. */
    udprr__dedup *d = cache_new(4, UDPRR_CACHE_ENTRY_OVERHEAD, 100);
    struct udprr__dedup_key k = key_of(1, 42);
    ck_assert_int_eq(
        udprr__dedup_insert(d, &k, 0, UDPRR__KIND_DECLINE, NULL, 0), UDPRR_OK);
    int kind = 0;
    size_t len = 99;
    const uint8_t *reply = NULL;
    ck_assert_int_eq(udprr__dedup_lookup(d, &k, 1, &kind, &reply, &len), 1);
    ck_assert_int_eq(kind, UDPRR__KIND_DECLINE);
    ck_assert_uint_eq(len, 0);
    ck_assert_ptr_nonnull(reply);
    ck_assert_uint_eq(stats_of(d).bytes, UDPRR_CACHE_ENTRY_OVERHEAD);
    /* The smallest budget holds exactly one empty entry, nothing larger. */
    uint8_t one = 1;
    ck_assert_int_eq(udprr__dedup_insert(d, &k, 1, UDPRR__KIND_REPLY, &one, 1),
                     UDPRR_ETOOBIG);
    struct udprr__dedup_key other = key_of(2, 42);
    ck_assert_int_eq(
        udprr__dedup_insert(d, &other, 1, UDPRR__KIND_DECLINE, "", 0),
        UDPRR_OK);
    ck_assert_uint_eq(stats_of(d).entries, 1);
    ck_assert_uint_eq(stats_of(d).evicted, 1);
    udprr__dedup_free(d);
}
END_TEST

START_TEST(test_invalid_limits_are_rejected)
{
    const struct udprr__dedup_limits good = {16, 4096, 1000, {0, 0}};
    struct udprr__dedup_limits lim;
    udprr__dedup *d = (udprr__dedup *)&d; /* must be reset to NULL */

    ck_assert_int_eq(udprr__dedup_new(NULL, &good), UDPRR_EINVAL);
    ck_assert_int_eq(udprr__dedup_new(&d, NULL), UDPRR_EINVAL);
    ck_assert_ptr_null(d);

#define EXPECT_INVALID(field, value)                                           \
    do {                                                                       \
        lim = good;                                                            \
        lim.field = (value);                                                   \
        d = (udprr__dedup *)&d;                                                \
        ck_assert_int_eq(udprr__dedup_new(&d, &lim), UDPRR_EINVAL);            \
        ck_assert_ptr_null(d);                                                 \
    } while (0)
    EXPECT_INVALID(max_entries, 0);
    EXPECT_INVALID(max_entries, UDPRR__DEDUP_MAX_ENTRIES + 1);
    EXPECT_INVALID(max_entries, SIZE_MAX);
    EXPECT_INVALID(max_bytes, 0);
    EXPECT_INVALID(max_bytes, UDPRR_CACHE_ENTRY_OVERHEAD - 1);
    EXPECT_INVALID(lifetime_us, 0);
#undef EXPECT_INVALID

    /* The boundaries themselves are accepted. */
    lim = (struct udprr__dedup_limits){UDPRR__DEDUP_MAX_ENTRIES,
                                       UDPRR_CACHE_ENTRY_OVERHEAD, 1, {0, 0}};
    ck_assert_int_eq(udprr__dedup_new(&d, &lim), UDPRR_OK);
    udprr__dedup_free(d);
    lim = (struct udprr__dedup_limits){1, SIZE_MAX, UINT64_MAX, {0, 0}};
    ck_assert_int_eq(udprr__dedup_new(&d, &lim), UDPRR_OK);
    udprr__dedup_free(d);
}
END_TEST

START_TEST(test_invalid_arguments_are_rejected)
{
    udprr__dedup *d = cache_new(4, 4096, 100);
    struct udprr__dedup_key k = key_of(1, 42);
    insert_ok(d, &k, 0, 10, 1);
    struct udprr__dedup_stats before = stats_of(d);

    struct udprr__dedup_key no_addr = k, long_addr = k;
    no_addr.addr_len = 0;
    long_addr.addr_len = UDPRR__DEDUP_ADDR_MAX + 1;
    const int r = UDPRR__KIND_REPLY;
    ck_assert_int_eq(udprr__dedup_insert(NULL, &k, 0, r, "x", 1),
                     UDPRR_EINVAL);
    ck_assert_int_eq(udprr__dedup_insert(d, NULL, 0, r, "x", 1), UDPRR_EINVAL);
    ck_assert_int_eq(udprr__dedup_insert(d, &no_addr, 0, r, "x", 1),
                     UDPRR_EINVAL);
    ck_assert_int_eq(udprr__dedup_insert(d, &long_addr, 0, r, "x", 1),
                     UDPRR_EINVAL);
    ck_assert_int_eq(udprr__dedup_insert(d, &k, 0, r, NULL, 1), UDPRR_EINVAL);
    /* Invalid arguments are checked before the size, and before expiry. */
    ck_assert_int_eq(udprr__dedup_insert(d, &k, 1000, r, NULL, SIZE_MAX),
                     UDPRR_EINVAL);
    assert_stats_equal(stats_of(d), before);

    int kind = -1;
    ck_assert_int_eq(udprr__dedup_lookup(NULL, &k, 0, &kind, NULL, NULL), 0);
    ck_assert_int_eq(udprr__dedup_lookup(d, NULL, 0, &kind, NULL, NULL), 0);
    ck_assert_int_eq(udprr__dedup_lookup(d, &no_addr, 0, &kind, NULL, NULL),
                     0);
    ck_assert_int_eq(udprr__dedup_lookup(d, &long_addr, 0, &kind, NULL, NULL),
                     0);
    ck_assert_int_eq(kind, -1);
    assert_stats_equal(stats_of(d), before);
    ck_assert(holds(d, &k, 0, 10, 1));
    udprr__dedup_free(d);
}
END_TEST

START_TEST(test_stats_count_a_scripted_sequence)
{
    udprr__dedup *d = cache_new(2, 1 << 16, 100);
    struct udprr__dedup_key a = key_of(1, 1), b = key_of(1, 2),
                            c = key_of(1, 3);
    struct udprr__dedup_stats s = stats_of(d);
    assert_stats_equal(s, (struct udprr__dedup_stats){0});

    insert_ok(d, &a, 0, 10, 1);          /* inserted 1 */
    ck_assert(holds(d, &a, 1, 10, 1));   /* hit 1 */
    ck_assert(!holds(d, &b, 1, 10, 1));
    insert_ok(d, &b, 10, 20, 2);         /* inserted 2 */
    insert_ok(d, &c, 20, 30, 3);         /* inserted 3, evicts a */
    ck_assert(!holds(d, &a, 20, 10, 1));
    insert_ok(d, &c, 30, 40, 4);         /* inserted 4, replaces c */
    ck_assert(holds(d, &b, 109, 20, 2)); /* hit 2 */
    ck_assert(!holds(d, &b, 110, 20, 2)); /* b expires */
    ck_assert(holds(d, &c, 129, 40, 4)); /* hit 3 */
    udprr__dedup_expire(d, 130);         /* c expires */

    s = stats_of(d);
    ck_assert_uint_eq(s.inserted, 4);
    ck_assert_uint_eq(s.hits, 3);
    ck_assert_uint_eq(s.evicted, 1);
    ck_assert_uint_eq(s.replaced, 1);
    ck_assert_uint_eq(s.expired, 2);
    ck_assert_uint_eq(s.entries, 0);
    ck_assert_uint_eq(s.bytes, 0);
    ck_assert_uint_eq(s.inserted,
                      s.entries + s.evicted + s.expired + s.replaced);
    udprr__dedup_free(d);
}
END_TEST

START_TEST(test_freeing_null_is_a_no_op)
{
    udprr__dedup_free(NULL);
    struct udprr__dedup_stats s;
    memset(&s, 0xAB, sizeof s);
    udprr__dedup_stats(NULL, &s);
    assert_stats_equal(s, (struct udprr__dedup_stats){0});
}
END_TEST

/* ---- allocation failure ------------------------------------------------- */

static unsigned allocations;  /* counted since the hooks went in */
static unsigned fail_at;      /* 1-based; 0 never fails */

static int this_one_fails(void)
{
    return ++allocations == fail_at;
}

static void *failing_malloc(size_t size)
{
    return this_one_fails() ? NULL : malloc(size);
}

static void *failing_calloc(size_t count, size_t size)
{
    return this_one_fails() ? NULL : calloc(count, size);
}

static void *failing_realloc(void *ptr, size_t size)
{
    return this_one_fails() ? NULL : realloc(ptr, size);
}

static void fail_allocation(unsigned n)
{
    static const struct udprr__allocator hooks = {
        failing_malloc, failing_calloc, failing_realloc, free};
    allocations = 0;
    fail_at = n;
    udprr__set_allocator(&hooks);
}

START_TEST(test_new_survives_every_allocation_failure)
{
    const struct udprr__dedup_limits lim = {1000, 1 << 20, 1000, {7, 8}};
    unsigned n;
    for (n = 1;; n++) {
        udprr__dedup *d = (udprr__dedup *)&d;
        fail_allocation(n);
        int st = udprr__dedup_new(&d, &lim);
        udprr__set_allocator(NULL);
        if (st == UDPRR_OK) {
            /* Every allocation before this one was made to fail once. */
            ck_assert_uint_eq(allocations, n - 1);
            struct udprr__dedup_key k = key_of(1, 1);
            insert_ok(d, &k, 0, 10, 1);
            ck_assert(holds(d, &k, 0, 10, 1));
            udprr__dedup_free(d);
            break;
        }
        ck_assert_int_eq(st, UDPRR_ENOMEM);
        ck_assert_ptr_null(d);
    }
    ck_assert_uint_ge(n, 2); /* at least the handle and the table */
}
END_TEST

/* Inserts a 150-byte reply under target at now_us, first making each
 * allocation fail in turn; every failure must leave the n entries in
 * present (key, length, seed) where and as they were. */
static void insert_despite_failures(udprr__dedup *d,
                                    const struct udprr__dedup_key *target,
                                    uint64_t now_us,
                                    const struct udprr__dedup_key *present,
                                    const size_t *lens, const unsigned *seeds,
                                    size_t n, uint64_t check_us)
{
    uint8_t reply[150];
    fill_reply(reply, sizeof reply, 9);
    unsigned attempt;
    for (attempt = 1;; attempt++) {
        struct udprr__dedup_stats before = stats_of(d);
        fail_allocation(attempt);
        int st = udprr__dedup_insert(d, target, now_us, UDPRR__KIND_REPLY,
                                     reply, sizeof reply);
        udprr__set_allocator(NULL);
        if (st == UDPRR_OK) {
            ck_assert_uint_eq(allocations, attempt - 1);
            break;
        }
        ck_assert_int_eq(st, UDPRR_ENOMEM);
        assert_stats_equal(stats_of(d), before);
        for (size_t i = 0; i < n; i++)
            ck_assert(holds(d, &present[i], check_us, lens[i], seeds[i]));
    }
    ck_assert_uint_ge(attempt, 2); /* at least one allocation was failed */
    ck_assert(holds(d, target, now_us, sizeof reply, 9));
}

START_TEST(test_insert_survives_every_allocation_failure)
{
    /* At time 1000 the first entry's lifetime has ended and the new
     * 150-byte entry only fits if the second is evicted too: a failed
     * insert must do neither. (Two 150-byte entries still fit: 300 is at
     * most the overhead + 180.) */
    udprr__dedup *d = cache_new(10, 3 * UDPRR_CACHE_ENTRY_OVERHEAD + 180, 1000);
    const struct udprr__dedup_key k[4] = {key_of(1, 1), key_of(1, 2),
                                          key_of(1, 3), key_of(1, 4)};
    const size_t lens[4] = {10, 20, 30, 150};
    const unsigned seeds[4] = {0, 1, 2, 9};
    insert_ok(d, &k[0], 0, lens[0], seeds[0]);
    insert_ok(d, &k[1], 500, lens[1], seeds[1]);
    insert_ok(d, &k[2], 600, lens[2], seeds[2]);

    insert_despite_failures(d, &k[3], 1000, k, lens, seeds, 3, 999);
    struct udprr__dedup_stats s = stats_of(d);
    ck_assert_uint_eq(s.expired, 1);
    ck_assert_uint_eq(s.evicted, 1);
    ck_assert_uint_eq(s.entries, 2);

    /* Replacing: the old reply stays until the new one is in. */
    insert_despite_failures(d, &k[2], 1000, k + 2, lens + 2, seeds + 2, 2,
                            1000);
    s = stats_of(d);
    ck_assert_uint_eq(s.replaced, 1);
    ck_assert_uint_eq(s.entries, 2);
    ck_assert_uint_eq(s.bytes, 2 * (150 + UDPRR_CACHE_ENTRY_OVERHEAD));
    udprr__dedup_free(d);
}
END_TEST

/* A deferred request's entry: found (so a retransmission does not run the
 * handler again), but no hit; the answer replaces it in place of newest. */
START_TEST(test_in_progress_entry_is_found_but_no_hit)
{
    udprr__dedup *d = cache_new(8, 1 << 20, 1000);
    struct udprr__dedup_key k = key_of(1, 42);
    ck_assert_int_eq(udprr__dedup_insert(d, &k, 10, UDPRR__DEDUP_IN_PROGRESS,
                                         NULL, 0),
                     UDPRR_OK);
    int kind = 0;
    ck_assert_int_eq(udprr__dedup_lookup(d, &k, 20, &kind, NULL, NULL), 1);
    ck_assert_int_eq(kind, UDPRR__DEDUP_IN_PROGRESS);
    ck_assert_uint_eq(stats_of(d).hits, 0);
    ck_assert_int_eq(udprr__dedup_insert(d, &k, 30, UDPRR__KIND_REPLY, "ok", 2),
                     UDPRR_OK);
    const uint8_t *reply = NULL;
    size_t len = 0;
    ck_assert_int_eq(udprr__dedup_lookup(d, &k, 40, &kind, &reply, &len), 1);
    ck_assert_int_eq(kind, UDPRR__KIND_REPLY);
    ck_assert_mem_eq(reply, "ok", 2);
    ck_assert_uint_eq(stats_of(d).hits, 1);
    ck_assert_uint_eq(stats_of(d).entries, 1);
    ck_assert_uint_eq(stats_of(d).replaced, 0); /* no answer replaced */
    ck_assert_uint_eq(udprr__dedup_in_progress(d), 0);
    /* The answer lives its own lifetime, from its insertion. */
    ck_assert_int_eq(udprr__dedup_lookup(d, &k, 1029, NULL, NULL, NULL), 1);
    ck_assert_int_eq(udprr__dedup_lookup(d, &k, 1030, NULL, NULL, NULL), 0);
    udprr__dedup_free(d);
}
END_TEST

/* In-progress entries are pinned: a flood of answers that evicts every
 * other entry, and time far past the lifetime, leave them; they are
 * outside the bounds; forget removes them, and only them. */
START_TEST(test_in_progress_entries_are_pinned)
{
    udprr__dedup *d = cache_new(4, 1 << 20, 1000);
    struct udprr__dedup_key busy = key_of(1, 7), other = key_of(2, 7);
    ck_assert_int_eq(udprr__dedup_insert(d, &busy, 0, UDPRR__DEDUP_IN_PROGRESS,
                                         NULL, 0),
                     UDPRR_OK);
    ck_assert_int_eq(udprr__dedup_insert(d, &other, 0,
                                         UDPRR__DEDUP_IN_PROGRESS, "x", 1),
                     UDPRR_EINVAL); /* no reply in progress */
    for (unsigned i = 0; i < 100; i++) {
        struct udprr__dedup_key k = key_of(100 + i, i);
        ck_assert_int_eq(udprr__dedup_insert(d, &k, 10 * i, UDPRR__KIND_REPLY,
                                             "a", 1),
                         UDPRR_OK);
    }
    struct udprr__dedup_stats st = stats_of(d);
    ck_assert_uint_eq(st.entries, 4); /* the bound, in-progress not in it */
    ck_assert_uint_eq(st.evicted + st.expired, 96);
    int kind = 0;
    ck_assert_int_eq(udprr__dedup_lookup(d, &busy, 1000000, &kind, NULL, NULL),
                     1);
    ck_assert_int_eq(kind, UDPRR__DEDUP_IN_PROGRESS);
    ck_assert_uint_eq(udprr__dedup_in_progress(d), 1);
    /* forget leaves answers alone, and removes an in-progress entry. */
    struct udprr__dedup_key answered = key_of(199, 99);
    ck_assert_int_eq(udprr__dedup_insert(d, &answered, 1000000,
                                         UDPRR__KIND_REPLY, "b", 1),
                     UDPRR_OK);
    udprr__dedup_forget(d, &answered);
    ck_assert_int_eq(udprr__dedup_lookup(d, &answered, 1000001, NULL, NULL,
                                         NULL),
                     1);
    udprr__dedup_forget(d, &busy);
    ck_assert_int_eq(udprr__dedup_lookup(d, &busy, 1000001, NULL, NULL, NULL),
                     0);
    ck_assert_uint_eq(udprr__dedup_in_progress(d), 0);
    /* Freed with the cache while still in progress (valgrind checks). */
    ck_assert_int_eq(udprr__dedup_insert(d, &other, 1000002,
                                         UDPRR__DEDUP_IN_PROGRESS, NULL, 0),
                     UDPRR_OK);
    udprr__dedup_free(d);
}
END_TEST

/* ---- block reuse -------------------------------------------------------- */

/* A full cache whose entries come and go at like sizes takes each new
 * entry's block from one it removed: no allocation, and every reply intact
 * in its reused block. */
START_TEST(test_steady_state_allocates_nothing)
{
    udprr__dedup *d = cache_new(8, 1 << 20, 1000000);
    const size_t lens[4] = {0, 40, 300, 1500}; /* four size classes */
    unsigned id;
    /* Full, then one eviction of each size: a spare block of each. */
    for (id = 0; id < 12; id++)
        insert_ok(d, &(struct udprr__dedup_key){.addr_len = 1, .id = id}, 0,
                  lens[id % 4], id);
    fail_allocation(0); /* counts, never fails */
    for (; id < 200; id++)
        insert_ok(d, &(struct udprr__dedup_key){.addr_len = 1, .id = id}, 0,
                  lens[id % 4], id);
    udprr__set_allocator(NULL);
    ck_assert_uint_eq(allocations, 0);
    for (unsigned back = 1; back <= 8; back++) {
        unsigned k = id - back;
        ck_assert(holds(d, &(struct udprr__dedup_key){.addr_len = 1, .id = k},
                        0, lens[k % 4], k));
    }
    struct udprr__dedup_stats st = stats_of(d);
    ck_assert_uint_eq(st.entries, 8);
    ck_assert_uint_eq(st.evicted, 200 - 8);
    ck_assert_uint_eq(st.bytes, 2 * (0 + 40 + 300 + 1500) +
                                    8 * UDPRR_CACHE_ENTRY_OVERHEAD);
    udprr__dedup_free(d);
}
END_TEST

/* Spare blocks are kept up to an eighth of max_bytes, the rest freed: with
 * room for two 128-byte blocks, six of eight expired entries need new
 * blocks again. */
START_TEST(test_spare_blocks_are_capped)
{
    udprr__dedup *d = cache_new(8, 16 * 128, 1000);
    for (unsigned id = 0; id < 8; id++)
        insert_ok(d, &(struct udprr__dedup_key){.addr_len = 1, .id = id}, 0,
                  0, 0);
    udprr__dedup_expire(d, 1000);
    ck_assert_uint_eq(stats_of(d).expired, 8);
    fail_allocation(0);
    for (unsigned id = 0; id < 8; id++)
        insert_ok(d, &(struct udprr__dedup_key){.addr_len = 1, .id = id},
                  1000, 0, 0);
    udprr__set_allocator(NULL);
    ck_assert_uint_eq(allocations, 6);
    udprr__dedup_free(d);
}
END_TEST

/* Blocks larger than every size class (over 128 KiB) are allocated and
 * freed, never kept: inserting, replacing and evicting them is safe. */
START_TEST(test_blocks_beyond_the_classes)
{
    udprr__dedup *d = cache_new(2, 8u << 20, 1000000);
    static uint8_t big[200000];
    struct udprr__dedup_key a = key_of(1, 1), b = key_of(2, 2);
    ck_assert_int_eq(udprr__dedup_insert(d, &a, 0, UDPRR__KIND_REPLY, big,
                                         140000),
                     UDPRR_OK);
    ck_assert_int_eq(udprr__dedup_insert(d, &b, 0, UDPRR__KIND_REPLY, big,
                                         sizeof big),
                     UDPRR_OK);
    ck_assert_int_eq(udprr__dedup_insert(d, &a, 1, UDPRR__KIND_REPLY, "x", 1),
                     UDPRR_OK); /* replaces the 140000-byte answer */
    for (unsigned i = 3; i < 8; i++) {
        struct udprr__dedup_key k = key_of(i, i);
        ck_assert_int_eq(udprr__dedup_insert(d, &k, 2, UDPRR__KIND_REPLY, big,
                                             131000 + i),
                         UDPRR_OK); /* evicts the one before */
    }
    const uint8_t *reply = NULL;
    size_t len = 0;
    struct udprr__dedup_key last = key_of(7, 7);
    ck_assert_int_eq(udprr__dedup_lookup(d, &last, 3, NULL, &reply, &len), 1);
    ck_assert_uint_eq(len, 131007);
    udprr__dedup_free(d);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("dedup");
    TCase *keys = tcase_create("keys");
    tcase_add_test(keys, test_miss_then_insert_then_hit);
    tcase_add_test(keys, test_same_id_other_bytes_is_another_request);
    tcase_add_test(keys, test_same_id_from_two_addresses_is_two_entries);
    tcase_add_test(keys, test_same_address_different_ids_are_two_entries);
    tcase_add_test(keys, test_address_length_is_part_of_the_key);
    tcase_add_test(keys, test_bytes_past_addr_len_are_ignored);
    tcase_add_test(keys, test_replace_keeps_one_entry_and_its_bytes);
    tcase_add_test(keys, test_replaced_entry_takes_the_newest_place);
    tcase_add_test(keys, test_many_peers_all_found);
    suite_add_tcase(s, keys);

    TCase *life = tcase_create("lifetime");
    tcase_add_test(life, test_expires_exactly_at_lifetime_end);
    tcase_add_test(life, test_expire_removes_only_ended_entries);
    tcase_add_test(life, test_clock_stepping_back_expires_nothing);
    tcase_add_test(life, test_time_arithmetic_cannot_wrap);
    suite_add_tcase(s, life);

    TCase *bounds = tcase_create("bounds");
    tcase_add_test(bounds, test_entry_bound_evicts_the_oldest);
    tcase_add_test(bounds, test_a_hit_does_not_make_an_entry_younger);
    tcase_add_test(bounds,
                   test_byte_bound_evicts_the_oldest_until_the_new_entry_fits);
    tcase_add_test(bounds, test_bounds_hold_under_load);
    tcase_add_test(bounds,
                   test_reply_bigger_than_budget_is_too_big_and_changes_nothing);
    tcase_add_test(bounds, test_empty_replies_are_cached);
    tcase_add_test(bounds, test_matches_a_simple_model);
    tcase_add_test(bounds, test_stats_count_a_scripted_sequence);
    suite_add_tcase(s, bounds);

    TCase *api = tcase_create("api");
    tcase_add_test(api, test_invalid_limits_are_rejected);
    tcase_add_test(api, test_invalid_arguments_are_rejected);
    tcase_add_test(api, test_freeing_null_is_a_no_op);
    tcase_add_test(api, test_new_survives_every_allocation_failure);
    tcase_add_test(api, test_insert_survives_every_allocation_failure);
    tcase_add_test(api, test_in_progress_entry_is_found_but_no_hit);
    tcase_add_test(api, test_in_progress_entries_are_pinned);
    tcase_add_test(api, test_blocks_beyond_the_classes);
    tcase_add_test(api, test_steady_state_allocates_nothing);
    tcase_add_test(api, test_spare_blocks_are_capped);
    suite_add_tcase(s, api);
    return udprr_test_run(s);
}
