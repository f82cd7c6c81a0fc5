/* SPDX-License-Identifier: MIT */
/*
 * unit_seal.c - the sealed datagram (lib/seal.h): the layout byte for
 * byte, checked against libsodium's own XChaCha20-Poly1305 called here
 * directly; round trips in place and apart, empty and largest; random
 * nonces; every single bit flipped and every truncation refused with its
 * reason and the outputs untouched; plain datagrams; the keyring (bounds,
 * duplicate IDs, rotation, wiping); the replay window to its exact edges.
 * Inputs that must not open are opened from heap blocks of their exact
 * size, so the ASan and valgrind runs catch any read past the end.
 */
#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "seal.h"
#include "testutil.h"
#include "udprr.h"
#include "wire.h"

/* Checks without a Check checkpoint per call, for the loops below (see
 * unit_dedup.c). */
#define REQUIRE(cond)                                                          \
    do {                                                                       \
        if (!(cond))                                                           \
            ck_abort_msg("Assertion '%s' failed", #cond);                      \
    } while (0)

/* IDs whose bytes all differ, so a byte-order mistake shows. */
#define ID_A 0xA1B2C3D4u
#define TIME_A 0x0102030405060708ull

static udprr_key make_key(uint32_t id, uint8_t salt)
{
    udprr_key k;
    k.id = id;
    for (size_t i = 0; i < UDPRR_KEY_BYTES; i++)
        k.secret[i] = (uint8_t)(i * 7 + salt);
    return k;
}

static void ring_of(struct udprr__keyring *r, const udprr_key *keys, size_t n)
{
    memset(r, 0, sizeof *r);
    ck_assert_int_eq(udprr__keyring_set(r, keys, n), UDPRR_OK);
}

/* A valid native request with body_len seeded bytes at out; returns its
 * length. */
static size_t make_inner(uint8_t *out, size_t body_len, uint64_t seed)
{
    uint8_t *body = out + UDPRR__WIRE_HEADER_BYTES;
    for (size_t i = 0; i < body_len; i++)
        body[i] = (uint8_t)seeded_rand(&seed);
    struct udprr__wire_header h = {UDPRR__KIND_REQUEST, 1, seed | 1};
    ck_assert_int_eq(udprr__wire_encode(&h, body, body_len, out), UDPRR_OK);
    return UDPRR__WIRE_HEADER_BYTES + body_len;
}

/* What the opener reports; set to values no open produces, so an output
 * written on a failure shows. */
struct opened {
    uint32_t key_id;
    uint64_t time_ms;
    size_t inner_len;
};
static const struct opened untouched = {0x5EA1ED00u, 0xDEADBEEFCAFEull,
                                        (size_t)-7};

/* Opens a copy of sealed[0..len) in a heap block of exactly len bytes;
 * when inner is not NULL, copies what opened there. */
static enum udprr__seal_result open_copy(const struct udprr__keyring *r,
                                         const uint8_t *sealed, size_t len,
                                         struct opened *o, uint8_t *inner)
{
    uint8_t *copy = malloc(len ? len : 1);
    REQUIRE(copy != NULL);
    if (len)
        memcpy(copy, sealed, len);
    *o = untouched;
    enum udprr__seal_result res =
        udprr__seal_open(r, copy, len, &o->key_id, &o->time_ms, &o->inner_len);
    if (res == UDPRR__SEAL_OPENED && inner != NULL)
        memcpy(inner, copy + UDPRR__SEAL_HEAD_BYTES, o->inner_len);
    free(copy);
    return res;
}

static int is_untouched(const struct opened *o)
{
    return o->key_id == untouched.key_id && o->time_ms == untouched.time_ms &&
           o->inner_len == untouched.inner_len;
}

/* The head as seal.h lays it out, for key id and clock t. */
static void expect_head(const uint8_t *out, uint32_t id, uint64_t t)
{
    const uint8_t want[UDPRR__SEAL_AD_BYTES] = {
        0x55, 0x52, 2, 0, (uint8_t)(id >> 24), (uint8_t)(id >> 16),
        (uint8_t)(id >> 8), (uint8_t)id, (uint8_t)(t >> 56),
        (uint8_t)(t >> 48), (uint8_t)(t >> 40), (uint8_t)(t >> 32),
        (uint8_t)(t >> 24), (uint8_t)(t >> 16), (uint8_t)(t >> 8),
        (uint8_t)t};
    ck_assert_mem_eq(out, want, sizeof want);
}

START_TEST(test_init_and_supported)
{
    ck_assert_int_eq(udprr_sealed_supported(), 1);
    ck_assert_int_eq(udprr__seal_init(), UDPRR_OK);
    ck_assert_int_eq(udprr__seal_init(), UDPRR_OK); /* again: still fine */
}
END_TEST

START_TEST(test_round_trip_apart)
{
    ck_assert_int_eq(udprr__seal_init(), UDPRR_OK);
    udprr_key k = make_key(ID_A, 1);
    struct udprr__keyring r;
    ring_of(&r, &k, 1);
    uint8_t inner[UDPRR__WIRE_HEADER_BYTES + 3], keep[sizeof inner];
    size_t len = make_inner(inner, 3, 11);
    memcpy(keep, inner, len);
    uint8_t out[sizeof inner + UDPRR_SEAL_OVERHEAD + 8];
    memset(out, 0xEE, sizeof out);
    size_t n = udprr__seal(&k, TIME_A, inner, len, out);
    ck_assert_uint_eq(n, len + UDPRR_SEAL_OVERHEAD);
    expect_head(out, ID_A, TIME_A);
    ck_assert_mem_eq(inner, keep, len); /* the source is left alone */
    /* Nothing written past the datagram; the inner bytes do not show. */
    for (size_t i = n; i < sizeof out; i++)
        ck_assert_uint_eq(out[i], 0xEE);
    ck_assert(memcmp(out + UDPRR__SEAL_HEAD_BYTES, inner, len) != 0);

    struct opened o;
    uint8_t back[sizeof inner];
    ck_assert_int_eq(open_copy(&r, out, n, &o, back), UDPRR__SEAL_OPENED);
    ck_assert_uint_eq(o.key_id, ID_A);
    ck_assert(o.time_ms == TIME_A);
    ck_assert_uint_eq(o.inner_len, len);
    ck_assert_mem_eq(back, keep, len);

    /* Opened in place, the inner datagram sits right after the head. */
    uint32_t id = 0;
    uint64_t t = 0;
    size_t il = 0;
    ck_assert_int_eq(udprr__seal_open(&r, out, n, &id, &t, &il),
                     UDPRR__SEAL_OPENED);
    ck_assert_mem_eq(out + UDPRR__SEAL_HEAD_BYTES, keep, len);
    struct udprr__wire_header h;
    const uint8_t *body;
    size_t body_len;
    ck_assert_int_eq(udprr__wire_decode(out + UDPRR__SEAL_HEAD_BYTES, il, &h,
                                        &body, &body_len),
                     UDPRR__WIRE_VALID);
    ck_assert_uint_eq(body_len, 3);
}
END_TEST

START_TEST(test_round_trip_in_place)
{
    ck_assert_int_eq(udprr__seal_init(), UDPRR_OK);
    udprr_key k = make_key(7, 2);
    struct udprr__keyring r;
    ring_of(&r, &k, 1);
    uint8_t buf[UDPRR__SEAL_HEAD_BYTES + UDPRR__WIRE_HEADER_BYTES + 100 +
                UDPRR__SEAL_TAG_BYTES];
    size_t len = make_inner(buf + UDPRR__SEAL_HEAD_BYTES, 100, 12);
    uint8_t keep[UDPRR__WIRE_HEADER_BYTES + 100];
    memcpy(keep, buf + UDPRR__SEAL_HEAD_BYTES, len);
    size_t n = udprr__seal(&k, 1234, buf + UDPRR__SEAL_HEAD_BYTES, len, buf);
    ck_assert_uint_eq(n, sizeof buf);
    expect_head(buf, 7, 1234);
    ck_assert(memcmp(buf + UDPRR__SEAL_HEAD_BYTES, keep, len) != 0);
    struct opened o;
    uint8_t back[sizeof keep];
    ck_assert_int_eq(open_copy(&r, buf, n, &o, back), UDPRR__SEAL_OPENED);
    ck_assert_uint_eq(o.key_id, 7);
    ck_assert(o.time_ms == 1234);
    ck_assert_uint_eq(o.inner_len, len);
    ck_assert_mem_eq(back, keep, len);
}
END_TEST

/* A bare header (no body): the smallest sealed datagram, 76 bytes; and an
 * inner datagram of another kind (a decline) seals the same way. */
START_TEST(test_round_trip_empty_body)
{
    ck_assert_int_eq(udprr__seal_init(), UDPRR_OK);
    udprr_key k = make_key(1, 3);
    struct udprr__keyring r;
    ring_of(&r, &k, 1);
    uint8_t inner[UDPRR__WIRE_HEADER_BYTES];
    struct udprr__wire_header h = {UDPRR__KIND_DECLINE, 3, 42};
    ck_assert_int_eq(udprr__wire_encode(&h, NULL, 0, inner), UDPRR_OK);
    uint8_t out[UDPRR__WIRE_HEADER_BYTES + UDPRR_SEAL_OVERHEAD];
    ck_assert_uint_eq(udprr__seal(&k, 0, inner, sizeof inner, out), 76);
    expect_head(out, 1, 0);
    struct opened o;
    uint8_t back[sizeof inner];
    ck_assert_int_eq(open_copy(&r, out, sizeof out, &o, back),
                     UDPRR__SEAL_OPENED);
    ck_assert_uint_eq(o.inner_len, UDPRR__WIRE_HEADER_BYTES);
    ck_assert_uint_eq(o.key_id, 1);
    ck_assert(o.time_ms == 0);
    ck_assert_mem_eq(back, inner, sizeof inner);
}
END_TEST

/* The largest sealed body fills the largest datagram exactly. */
START_TEST(test_round_trip_largest)
{
    ck_assert_int_eq(udprr__seal_init(), UDPRR_OK);
    ck_assert_int_eq(UDPRR__WIRE_HEADER_BYTES + UDPRR_MAX_SEALED_PAYLOAD +
                         UDPRR_SEAL_OVERHEAD,
                     UDPRR_MAX_DATAGRAM);
    udprr_key k = make_key(0xFFFFFFFFu, 4);
    struct udprr__keyring r;
    ring_of(&r, &k, 1);
    size_t len = UDPRR__WIRE_HEADER_BYTES + UDPRR_MAX_SEALED_PAYLOAD;
    uint8_t *inner = malloc(len), *keep = malloc(len);
    uint8_t *out = malloc(UDPRR_MAX_DATAGRAM);
    ck_assert(inner && keep && out);
    ck_assert_uint_eq(make_inner(inner, UDPRR_MAX_SEALED_PAYLOAD, 13), len);
    memcpy(keep, inner, len);

    /* Apart. */
    size_t n = udprr__seal(&k, UINT64_MAX, inner, len, out);
    ck_assert_uint_eq(n, UDPRR_MAX_DATAGRAM);
    expect_head(out, 0xFFFFFFFFu, UINT64_MAX);
    struct opened o;
    ck_assert_int_eq(open_copy(&r, out, n, &o, inner), UDPRR__SEAL_OPENED);
    ck_assert_uint_eq(o.inner_len, len);
    ck_assert(o.time_ms == UINT64_MAX);
    ck_assert_uint_eq(o.key_id, 0xFFFFFFFFu);
    ck_assert(memcmp(inner, keep, len) == 0);

    /* In place, in a block of exactly the largest datagram. */
    memcpy(out + UDPRR__SEAL_HEAD_BYTES, keep, len);
    n = udprr__seal(&k, 5, out + UDPRR__SEAL_HEAD_BYTES, len, out);
    ck_assert_uint_eq(n, UDPRR_MAX_DATAGRAM);
    uint32_t id = 0;
    uint64_t t = 0;
    size_t il = 0;
    ck_assert_int_eq(udprr__seal_open(&r, out, n, &id, &t, &il),
                     UDPRR__SEAL_OPENED);
    ck_assert_uint_eq(il, len);
    ck_assert(memcmp(out + UDPRR__SEAL_HEAD_BYTES, keep, len) == 0);
    free(inner);
    free(keep);
    free(out);
}
END_TEST

START_TEST(test_two_seals_differ_and_both_open)
{
    ck_assert_int_eq(udprr__seal_init(), UDPRR_OK);
    udprr_key k = make_key(9, 5);
    struct udprr__keyring r;
    ring_of(&r, &k, 1);
    uint8_t inner[UDPRR__WIRE_HEADER_BYTES + 16];
    size_t len = make_inner(inner, 16, 14);
    uint8_t a[sizeof inner + UDPRR_SEAL_OVERHEAD];
    uint8_t b[sizeof inner + UDPRR_SEAL_OVERHEAD];
    ck_assert_uint_eq(udprr__seal(&k, 77, inner, len, a), sizeof a);
    ck_assert_uint_eq(udprr__seal(&k, 77, inner, len, b), sizeof b);
    /* The same head, another nonce, so other ciphertext and tag. */
    ck_assert_mem_eq(a, b, UDPRR__SEAL_AD_BYTES);
    ck_assert(memcmp(a + UDPRR__SEAL_AD_BYTES, b + UDPRR__SEAL_AD_BYTES,
                     UDPRR__SEAL_NONCE_BYTES) != 0);
    ck_assert(memcmp(a + UDPRR__SEAL_HEAD_BYTES, b + UDPRR__SEAL_HEAD_BYTES,
                     len + UDPRR__SEAL_TAG_BYTES) != 0);
    struct opened o;
    uint8_t back[sizeof inner];
    ck_assert_int_eq(open_copy(&r, a, sizeof a, &o, back), UDPRR__SEAL_OPENED);
    ck_assert_mem_eq(back, inner, len);
    memset(back, 0, sizeof back);
    ck_assert_int_eq(open_copy(&r, b, sizeof b, &o, back), UDPRR__SEAL_OPENED);
    ck_assert_mem_eq(back, inner, len);
}
END_TEST

/* docs/protocol.md's "Example of a sealed request", byte for byte: the
 * page an independent peer is written from must hold. */
START_TEST(test_the_protocol_page_example)
{
    udprr_key k = {7, {0}};
    for (int i = 0; i < UDPRR_KEY_BYTES; i++)
        k.secret[i] = (uint8_t)i;
    uint8_t nonce[UDPRR__SEAL_NONCE_BYTES];
    for (int i = 0; i < UDPRR__SEAL_NONCE_BYTES; i++)
        nonce[i] = (uint8_t)(0x40 + i);
    static const uint8_t inner[] = {
        0x55, 0x52, 0x01, 0x01, 0x00, 0x01, 0x00, 0x00, 0x01, 0x23, 0x45, 0x67,
        0x89, 0xab, 0xcd, 0xef, 0x5e, 0xf4, 0x96, 0xc0, 0x61, 0x62, 0x63};
    static const uint8_t sealed[] = {
        0x55, 0x52, 0x02, 0x00, 0x00, 0x00, 0x00, 0x07, 0x00, 0x00, 0x01, 0x9b,
        0x76, 0xda, 0xa8, 0x00, 0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47,
        0x48, 0x49, 0x4a, 0x4b, 0x4c, 0x4d, 0x4e, 0x4f, 0x50, 0x51, 0x52, 0x53,
        0x54, 0x55, 0x56, 0x57, 0x81, 0x6b, 0x04, 0x71, 0xd0, 0xe1, 0x79, 0x16,
        0x8e, 0xd7, 0xc2, 0xd9, 0x26, 0x37, 0xa8, 0x7d, 0xcc, 0x4e, 0x3b, 0x04,
        0x72, 0x3b, 0x30, 0x28, 0x6f, 0x7e, 0x81, 0xd9, 0x7a, 0x6e, 0x10, 0x1b,
        0x79, 0x99, 0x75, 0xc7, 0x34, 0xc6, 0x5c};
    struct udprr__wire_header h;
    const uint8_t *body;
    size_t body_len;
    ck_assert_int_eq(udprr__wire_decode(inner, sizeof inner, &h, &body,
                                        &body_len),
                     UDPRR__WIRE_VALID);
    ck_assert_uint_eq(h.id, 0x0123456789abcdefull);
    uint8_t out[sizeof sealed];
    ck_assert_uint_eq(udprr__seal_with_nonce(&k, 1767225600000ull, nonce,
                                             inner, sizeof inner, out),
                      sizeof sealed);
    ck_assert_mem_eq(out, sealed, sizeof sealed);
}
END_TEST

/* The nonce a seal used: bytes 16..39 of the datagram. */
static void seal_nonce(const udprr_key *k, uint8_t nonce[UDPRR__SEAL_NONCE_BYTES])
{
    uint8_t inner[UDPRR__WIRE_HEADER_BYTES];
    uint8_t out[sizeof inner + UDPRR_SEAL_OVERHEAD];
    size_t len = make_inner(inner, 0, 3);
    ck_assert_uint_eq(udprr__seal(k, 1, inner, len, out), sizeof out);
    memcpy(nonce, out + UDPRR__SEAL_AD_BYTES, UDPRR__SEAL_NONCE_BYTES);
}

static uint64_t nonce_count(const uint8_t nonce[UDPRR__SEAL_NONCE_BYTES])
{
    uint64_t c = 0;
    for (int i = 16; i < UDPRR__SEAL_NONCE_BYTES; i++)
        c = c << 8 | nonce[i];
    return c;
}

static void *seal_on_a_thread(void *arg)
{
    static const udprr_key k = {9, {5}};
    seal_nonce(&k, arg);
    return NULL;
}

/* seal.c's rule: one thread's nonces share a random prefix and count up
 * by one; another thread, and a child after fork, draw another prefix. */
START_TEST(test_nonces_never_repeat)
{
    ck_assert_int_eq(udprr__seal_init(), UDPRR_OK);
    const udprr_key k = {9, {5}};
    uint8_t a[UDPRR__SEAL_NONCE_BYTES], b[UDPRR__SEAL_NONCE_BYTES];
    uint8_t t[UDPRR__SEAL_NONCE_BYTES], c[UDPRR__SEAL_NONCE_BYTES];
    uint8_t after[UDPRR__SEAL_NONCE_BYTES];
    seal_nonce(&k, a);
    seal_nonce(&k, b);
    ck_assert_mem_eq(a, b, 16);
    ck_assert_uint_eq(nonce_count(b), nonce_count(a) + 1);

    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, seal_on_a_thread, t), 0);
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    ck_assert(memcmp(t, a, 16) != 0);

    int fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        /* The child tells only through the pipe, then dies at once:
         * valgrind (make check runs this suite under it) would otherwise
         * count the test framework's memory at the child's exit. */
        seal_nonce(&k, c);
        if (write(fds[1], c, sizeof c) != (ssize_t)sizeof c)
            memset(c, 0, sizeof c);
        kill(getpid(), SIGKILL);
    }
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_int_eq(read(fds[0], c, sizeof c), (ssize_t)sizeof c);
    close(fds[0]);
    close(fds[1]);
    /* The child drew anew and counts from 0; the parent goes on. */
    ck_assert(memcmp(c, a, 16) != 0);
    ck_assert_uint_eq(nonce_count(c), 0);
    seal_nonce(&k, after);
    ck_assert_mem_eq(after, a, 16);
    ck_assert_uint_eq(nonce_count(after), nonce_count(b) + 1);
}
END_TEST

/* With a given nonce the output is a function of the inputs, and it is
 * exactly libsodium's XChaCha20-Poly1305-IETF (combined: ciphertext then
 * tag) with bytes 0..15 as associated data, computed here on its own. */
START_TEST(test_with_nonce_is_deterministic_and_is_xchacha)
{
    ck_assert_int_eq(udprr__seal_init(), UDPRR_OK);
    udprr_key k = make_key(ID_A, 6);
    uint8_t nonce[UDPRR__SEAL_NONCE_BYTES];
    for (size_t i = 0; i < sizeof nonce; i++)
        nonce[i] = (uint8_t)(0xC0 + i);
    uint8_t inner[UDPRR__WIRE_HEADER_BYTES + 33];
    size_t len = make_inner(inner, 33, 15);
    uint8_t a[sizeof inner + UDPRR_SEAL_OVERHEAD];
    uint8_t b[sizeof inner + UDPRR_SEAL_OVERHEAD];
    ck_assert_uint_eq(udprr__seal_with_nonce(&k, TIME_A, nonce, inner, len, a),
                      sizeof a);
    ck_assert_uint_eq(udprr__seal_with_nonce(&k, TIME_A, nonce, inner, len, b),
                      sizeof b);
    ck_assert_mem_eq(a, b, sizeof a);
    expect_head(a, ID_A, TIME_A);
    ck_assert_mem_eq(a + UDPRR__SEAL_AD_BYTES, nonce, sizeof nonce);

    uint8_t want[sizeof inner + crypto_aead_xchacha20poly1305_ietf_ABYTES];
    unsigned long long want_len = 0;
    ck_assert_int_eq(crypto_aead_xchacha20poly1305_ietf_encrypt(
                         want, &want_len, inner, len, a, UDPRR__SEAL_AD_BYTES,
                         NULL, nonce, k.secret),
                     0);
    ck_assert_uint_eq(want_len, len + UDPRR__SEAL_TAG_BYTES);
    ck_assert_mem_eq(a + UDPRR__SEAL_HEAD_BYTES, want, (size_t)want_len);

    /* Each input shows in the output: another nonce, clock, key ID, key. */
    uint8_t c[sizeof a];
    nonce[23] ^= 1;
    udprr__seal_with_nonce(&k, TIME_A, nonce, inner, len, c);
    ck_assert(memcmp(a + UDPRR__SEAL_HEAD_BYTES, c + UDPRR__SEAL_HEAD_BYTES,
                     len) != 0);
    nonce[23] ^= 1;
    udprr__seal_with_nonce(&k, TIME_A + 1, nonce, inner, len, c);
    ck_assert_mem_eq(a + UDPRR__SEAL_HEAD_BYTES, c + UDPRR__SEAL_HEAD_BYTES,
                     len); /* the clock is only authenticated: same stream */
    ck_assert(memcmp(a + UDPRR__SEAL_HEAD_BYTES + len,
                     c + UDPRR__SEAL_HEAD_BYTES + len,
                     UDPRR__SEAL_TAG_BYTES) != 0);
    udprr_key k2 = k;
    k2.id++;
    udprr__seal_with_nonce(&k2, TIME_A, nonce, inner, len, c);
    ck_assert(memcmp(a + UDPRR__SEAL_HEAD_BYTES + len,
                     c + UDPRR__SEAL_HEAD_BYTES + len,
                     UDPRR__SEAL_TAG_BYTES) != 0);
    k2 = k;
    k2.secret[31] ^= 0x80;
    udprr__seal_with_nonce(&k2, TIME_A, nonce, inner, len, c);
    ck_assert(memcmp(a + UDPRR__SEAL_HEAD_BYTES, c + UDPRR__SEAL_HEAD_BYTES,
                     len) != 0);
}
END_TEST

START_TEST(test_wrong_key_is_forged)
{
    ck_assert_int_eq(udprr__seal_init(), UDPRR_OK);
    udprr_key k = make_key(5, 7), other = make_key(5, 8);
    struct udprr__keyring r;
    ring_of(&r, &other, 1);
    uint8_t inner[UDPRR__WIRE_HEADER_BYTES + 10];
    size_t len = make_inner(inner, 10, 16);
    uint8_t out[sizeof inner + UDPRR_SEAL_OVERHEAD];
    size_t n = udprr__seal(&k, 1, inner, len, out);
    struct opened o;
    ck_assert_int_eq(open_copy(&r, out, n, &o, NULL), UDPRR__SEAL_FORGED);
    ck_assert(is_untouched(&o));
    /* Even when the ring holds the right key under another ID. */
    udprr_key moved[2] = {other, k};
    moved[1].id = 6;
    ring_of(&r, moved, 2);
    ck_assert_int_eq(open_copy(&r, out, n, &o, NULL), UDPRR__SEAL_FORGED);
    ck_assert(is_untouched(&o));
}
END_TEST

START_TEST(test_unknown_key_id)
{
    ck_assert_int_eq(udprr__seal_init(), UDPRR_OK);
    udprr_key k = make_key(0x00010000u, 9);
    udprr_key ring_keys[2] = {make_key(0x00000100u, 9), make_key(1, 9)};
    struct udprr__keyring r;
    ring_of(&r, ring_keys, 2);
    uint8_t inner[UDPRR__WIRE_HEADER_BYTES];
    size_t len = make_inner(inner, 0, 17);
    uint8_t out[sizeof inner + UDPRR_SEAL_OVERHEAD];
    size_t n = udprr__seal(&k, 1, inner, len, out);
    struct opened o;
    ck_assert_int_eq(open_copy(&r, out, n, &o, NULL), UDPRR__SEAL_KEY);
    ck_assert(is_untouched(&o));
}
END_TEST

/* Every single bit of a sealed datagram, flipped in turn: none opens, and
 * each says why (the head's first bytes before the key). The ring holds
 * ID 1 (the sender's) and ID 3, which is ID 1 with bit 1 flipped: that
 * flip finds a key, which does not verify. */
static void flip_every_bit(size_t body_len)
{
    udprr_key keys[2] = {make_key(1, 10), make_key(3, 11)};
    struct udprr__keyring r;
    ring_of(&r, keys, 2);
    uint8_t inner[UDPRR__WIRE_HEADER_BYTES + 8];
    size_t len = make_inner(inner, body_len, 18 + body_len);
    uint8_t out[sizeof inner + UDPRR_SEAL_OVERHEAD];
    size_t n = udprr__seal(&keys[0], 99, inner, len, out);
    struct opened o;
    ck_assert_int_eq(open_copy(&r, out, n, &o, NULL), UDPRR__SEAL_OPENED);
    size_t found_key = 0;
    for (size_t i = 0; i < n; i++) {
        for (int bit = 0; bit < 8; bit++) {
            out[i] ^= (uint8_t)(1u << bit);
            enum udprr__seal_result want;
            if (i < 3)
                want = UDPRR__SEAL_PLAIN;
            else if (i == 3)
                want = UDPRR__SEAL_RESERVED;
            else if (i < 8) {
                uint32_t id = (uint32_t)out[4] << 24 |
                              (uint32_t)out[5] << 16 |
                              (uint32_t)out[6] << 8 | out[7];
                want = id == 3 ? UDPRR__SEAL_FORGED : UDPRR__SEAL_KEY;
                found_key += id == 3;
            } else
                want = UDPRR__SEAL_FORGED;
            enum udprr__seal_result got = open_copy(&r, out, n, &o, NULL);
            if (got != want)
                ck_abort_msg("bit %d of byte %zu flipped: got %d, want %d",
                             bit, i, (int)got, (int)want);
            REQUIRE(is_untouched(&o));
            out[i] ^= (uint8_t)(1u << bit);
        }
    }
    ck_assert_uint_eq(found_key, 1);
    ck_assert_int_eq(open_copy(&r, out, n, &o, NULL), UDPRR__SEAL_OPENED);
}

START_TEST(test_every_bit_flip_is_refused)
{
    ck_assert_int_eq(udprr__seal_init(), UDPRR_OK);
    flip_every_bit(0);
    flip_every_bit(8);
}
END_TEST

/* Every length short of the whole datagram: SHORT below 76 bytes (head,
 * tag and a bare header), FORGED from there on. */
START_TEST(test_every_truncation_is_refused)
{
    ck_assert_int_eq(udprr__seal_init(), UDPRR_OK);
    udprr_key k = make_key(2, 12);
    struct udprr__keyring r;
    ring_of(&r, &k, 1);
    uint8_t inner[UDPRR__WIRE_HEADER_BYTES + 40];
    size_t len = make_inner(inner, 40, 19);
    uint8_t out[sizeof inner + UDPRR_SEAL_OVERHEAD];
    size_t n = udprr__seal(&k, 3, inner, len, out);
    struct opened o;
    for (size_t cut = 0; cut < n; cut++) {
        enum udprr__seal_result want =
            cut < 76 ? UDPRR__SEAL_SHORT : UDPRR__SEAL_FORGED;
        enum udprr__seal_result got = open_copy(&r, out, cut, &o, NULL);
        if (got != want)
            ck_abort_msg("cut to %zu bytes: got %d, want %d", cut, (int)got,
                         (int)want);
        REQUIRE(is_untouched(&o));
    }
    ck_assert_int_eq(open_copy(&r, out, n, &o, NULL), UDPRR__SEAL_OPENED);
}
END_TEST

/* A plain (version 1) datagram is no sealed one, whatever its length. */
START_TEST(test_plain_datagram_is_refused)
{
    ck_assert_int_eq(udprr__seal_init(), UDPRR_OK);
    udprr_key k = make_key(1, 13);
    struct udprr__keyring r;
    ring_of(&r, &k, 1);
    uint8_t plain[UDPRR__WIRE_HEADER_BYTES + 200];
    struct opened o;
    for (size_t body = 0; body <= 200; body += 8) {
        size_t len = make_inner(plain, body, 20 + body);
        enum udprr__seal_result want =
            len < 76 ? UDPRR__SEAL_SHORT : UDPRR__SEAL_PLAIN;
        ck_assert_int_eq(open_copy(&r, plain, len, &o, NULL), want);
        ck_assert(is_untouched(&o));
    }
    /* A version-1 datagram at exactly 76 bytes. */
    size_t len = make_inner(plain, 76 - UDPRR__WIRE_HEADER_BYTES, 21);
    ck_assert_uint_eq(len, 76);
    ck_assert_int_eq(open_copy(&r, plain, len, &o, NULL), UDPRR__SEAL_PLAIN);
    ck_assert(is_untouched(&o));
}
END_TEST

START_TEST(test_keyring_set_and_find)
{
    udprr_key keys[UDPRR_MAX_KEYS + 1];
    for (size_t i = 0; i < UDPRR_MAX_KEYS + 1; i++)
        keys[i] = make_key((uint32_t)(1000 + i * 3), (uint8_t)i);
    for (size_t n = 1; n <= UDPRR_MAX_KEYS; n++) {
        struct udprr__keyring r;
        memset(&r, 0xAB, sizeof r);
        ck_assert_int_eq(udprr__keyring_set(&r, keys, n), UDPRR_OK);
        ck_assert_uint_eq(r.n, n);
        for (size_t i = 0; i < n; i++) {
            const udprr_key *f = udprr__keyring_find(&r, keys[i].id);
            ck_assert_ptr_nonnull(f);
            ck_assert_uint_eq(f->id, keys[i].id);
            ck_assert_mem_eq(f->secret, keys[i].secret, UDPRR_KEY_BYTES);
        }
        /* Not in the ring: a key past n, and IDs never given. */
        ck_assert_ptr_null(udprr__keyring_find(&r, keys[n].id));
        ck_assert_ptr_null(udprr__keyring_find(&r, 0));
        ck_assert_ptr_null(udprr__keyring_find(&r, 1001));
    }
}
END_TEST

START_TEST(test_keyring_refuses_and_stays)
{
    udprr_key keys[UDPRR_MAX_KEYS + 1];
    for (size_t i = 0; i < UDPRR_MAX_KEYS + 1; i++)
        keys[i] = make_key((uint32_t)(50 + i), (uint8_t)(i + 100));
    struct udprr__keyring r, before;
    ring_of(&r, keys, 3);
    memcpy(&before, &r, sizeof r);
    ck_assert_int_eq(udprr__keyring_set(&r, keys, 0), UDPRR_EINVAL);
    ck_assert_mem_eq(&r, &before, sizeof r);
    ck_assert_int_eq(udprr__keyring_set(&r, keys, UDPRR_MAX_KEYS + 1),
                     UDPRR_EINVAL);
    ck_assert_mem_eq(&r, &before, sizeof r);
    ck_assert_int_eq(udprr__keyring_set(&r, NULL, 1), UDPRR_EINVAL);
    ck_assert_mem_eq(&r, &before, sizeof r);
    /* Duplicate IDs, first and last of 16, and two neighbours. */
    udprr_key dup[UDPRR_MAX_KEYS];
    memcpy(dup, keys + 1, sizeof dup);
    dup[UDPRR_MAX_KEYS - 1].id = dup[0].id;
    ck_assert_int_eq(udprr__keyring_set(&r, dup, UDPRR_MAX_KEYS),
                     UDPRR_EINVAL);
    ck_assert_mem_eq(&r, &before, sizeof r);
    memcpy(dup, keys + 1, sizeof dup);
    dup[8].id = dup[7].id;
    dup[8].secret[0] ^= 1; /* another secret: still one ID twice */
    ck_assert_int_eq(udprr__keyring_set(&r, dup, UDPRR_MAX_KEYS),
                     UDPRR_EINVAL);
    ck_assert_mem_eq(&r, &before, sizeof r);
    /* Those IDs alone, each once, are fine. */
    ck_assert_int_eq(udprr__keyring_set(&r, dup, 8), UDPRR_OK);
    ck_assert_uint_eq(r.n, 8);
}
END_TEST

/* Rotation: a ring of keys 1 and 2 opens what either sealed; once it is
 * set to key 2 alone, key 1's datagrams no longer open. */
START_TEST(test_keyring_rotation)
{
    ck_assert_int_eq(udprr__seal_init(), UDPRR_OK);
    udprr_key keys[2] = {make_key(1, 20), make_key(2, 21)};
    struct udprr__keyring r;
    ring_of(&r, keys, 2);
    uint8_t inner[UDPRR__WIRE_HEADER_BYTES + 4];
    size_t len = make_inner(inner, 4, 22);
    uint8_t d1[sizeof inner + UDPRR_SEAL_OVERHEAD];
    uint8_t d2[sizeof inner + UDPRR_SEAL_OVERHEAD];
    udprr__seal(&keys[0], 10, inner, len, d1);
    udprr__seal(&keys[1], 20, inner, len, d2);
    struct opened o;
    ck_assert_int_eq(open_copy(&r, d1, sizeof d1, &o, NULL),
                     UDPRR__SEAL_OPENED);
    ck_assert_uint_eq(o.key_id, 1);
    ck_assert(o.time_ms == 10);
    ck_assert_int_eq(open_copy(&r, d2, sizeof d2, &o, NULL),
                     UDPRR__SEAL_OPENED);
    ck_assert_uint_eq(o.key_id, 2);
    ck_assert(o.time_ms == 20);

    ck_assert_int_eq(udprr__keyring_set(&r, &keys[1], 1), UDPRR_OK);
    ck_assert_uint_eq(r.n, 1);
    /* No slot past the new keys still holds an old one. */
    const udprr_key zero = {0};
    for (size_t i = 1; i < UDPRR_MAX_KEYS; i++)
        ck_assert_mem_eq(&r.keys[i], &zero, sizeof zero);
    ck_assert_int_eq(open_copy(&r, d1, sizeof d1, &o, NULL), UDPRR__SEAL_KEY);
    ck_assert(is_untouched(&o));
    ck_assert_int_eq(open_copy(&r, d2, sizeof d2, &o, NULL),
                     UDPRR__SEAL_OPENED);
    ck_assert_uint_eq(o.key_id, 2);
}
END_TEST

START_TEST(test_keyring_wipe)
{
    udprr_key keys[UDPRR_MAX_KEYS];
    for (size_t i = 0; i < UDPRR_MAX_KEYS; i++)
        keys[i] = make_key((uint32_t)(i + 1), (uint8_t)(i + 1));
    struct udprr__keyring r, zero;
    ring_of(&r, keys, UDPRR_MAX_KEYS);
    memset(&zero, 0, sizeof zero);
    ck_assert(memcmp(&r, &zero, sizeof r) != 0);
    udprr__keyring_wipe(&r);
    ck_assert_mem_eq(&r, &zero, sizeof r);
    ck_assert_uint_eq(r.n, 0);
    ck_assert_ptr_null(udprr__keyring_find(&r, 1));
}
END_TEST

START_TEST(test_fresh_edges)
{
    const uint64_t w = 15000, now = 1764500000000ull;
    ck_assert_int_eq(udprr__seal_fresh(now, now, w), 1);
    ck_assert_int_eq(udprr__seal_fresh(now - w, now, w), 1);
    ck_assert_int_eq(udprr__seal_fresh(now + w, now, w), 1);
    ck_assert_int_eq(udprr__seal_fresh(now - w - 1, now, w), 0);
    ck_assert_int_eq(udprr__seal_fresh(now + w + 1, now, w), 0);
    /* Window 0: the same millisecond only. */
    ck_assert_int_eq(udprr__seal_fresh(now, now, 0), 1);
    ck_assert_int_eq(udprr__seal_fresh(now + 1, now, 0), 0);
    ck_assert_int_eq(udprr__seal_fresh(now - 1, now, 0), 0);
    /* At 0: nothing below it to wrap to. */
    ck_assert_int_eq(udprr__seal_fresh(0, 0, w), 1);
    ck_assert_int_eq(udprr__seal_fresh(0, w, w), 1);
    ck_assert_int_eq(udprr__seal_fresh(0, w + 1, w), 0);
    ck_assert_int_eq(udprr__seal_fresh(w, 0, w), 1);
    ck_assert_int_eq(udprr__seal_fresh(w + 1, 0, w), 0);
    /* At the top: a subtraction that wrapped would look near. */
    ck_assert_int_eq(udprr__seal_fresh(UINT64_MAX, 0, w), 0);
    ck_assert_int_eq(udprr__seal_fresh(0, UINT64_MAX, w), 0);
    ck_assert_int_eq(udprr__seal_fresh(UINT64_MAX, UINT64_MAX, w), 1);
    ck_assert_int_eq(udprr__seal_fresh(UINT64_MAX - w, UINT64_MAX, w), 1);
    ck_assert_int_eq(udprr__seal_fresh(UINT64_MAX, UINT64_MAX - w, w), 1);
    ck_assert_int_eq(udprr__seal_fresh(UINT64_MAX - w - 1, UINT64_MAX, w), 0);
    ck_assert_int_eq(udprr__seal_fresh(UINT64_MAX, UINT64_MAX - w - 1, w), 0);
    /* The widest window takes everything. */
    ck_assert_int_eq(udprr__seal_fresh(0, UINT64_MAX, UINT64_MAX), 1);
    ck_assert_int_eq(udprr__seal_fresh(UINT64_MAX, 0, UINT64_MAX), 1);
    ck_assert_int_eq(udprr__seal_fresh(0, UINT64_MAX, UINT64_MAX - 1), 0);
}
END_TEST

/* The wall clock in milliseconds: within a second or so of time(). */
START_TEST(test_clock_is_the_wall_clock)
{
    uint64_t before = (uint64_t)time(NULL) * 1000;
    uint64_t ms = udprr__seal_clock_ms();
    uint64_t after = (uint64_t)time(NULL) * 1000 + 1000;
    ck_assert(ms >= before && ms < after);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("seal");
    TCase *tc = tcase_create("seal");
    tcase_add_test(tc, test_init_and_supported);
    tcase_add_test(tc, test_round_trip_apart);
    tcase_add_test(tc, test_round_trip_in_place);
    tcase_add_test(tc, test_round_trip_empty_body);
    tcase_add_test(tc, test_round_trip_largest);
    tcase_add_test(tc, test_two_seals_differ_and_both_open);
    tcase_add_test(tc, test_nonces_never_repeat);
    tcase_add_test(tc, test_the_protocol_page_example);
    tcase_add_test(tc, test_with_nonce_is_deterministic_and_is_xchacha);
    tcase_add_test(tc, test_wrong_key_is_forged);
    tcase_add_test(tc, test_unknown_key_id);
    tcase_add_test(tc, test_every_bit_flip_is_refused);
    tcase_add_test(tc, test_every_truncation_is_refused);
    tcase_add_test(tc, test_plain_datagram_is_refused);
    suite_add_tcase(s, tc);
    TCase *keys = tcase_create("keyring");
    tcase_add_test(keys, test_keyring_set_and_find);
    tcase_add_test(keys, test_keyring_refuses_and_stays);
    tcase_add_test(keys, test_keyring_rotation);
    tcase_add_test(keys, test_keyring_wipe);
    suite_add_tcase(s, keys);
    TCase *window = tcase_create("window");
    tcase_add_test(window, test_fresh_edges);
    tcase_add_test(window, test_clock_is_the_wall_clock);
    suite_add_tcase(s, window);
    return udprr_test_run(s);
}
