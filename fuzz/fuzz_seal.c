/* SPDX-License-Identifier: MIT */
/*
 * fuzz_seal.c - a libFuzzer target for the sealed datagram (seal.c), the
 * first thing a sealed client or server does with untrusted bytes. Build
 * with `make fuzz` (clang's -fsanitize=fuzzer); without a fuzzing engine,
 * tests/unit_fuzz_replay.c replays the saved inputs in fuzz/corpus/seal in
 * `make check`.
 *
 * Each input is used twice:
 *   - as a received datagram, opened with a fixed ring of two keys (IDs 1
 *     and 2) from a writable copy of exactly its size: when it opens, the
 *     inner datagram is all but the 56 bytes of overhead and names a key of
 *     the ring, and it goes on through the native decoder like any received
 *     datagram;
 *   - as an inner datagram, sealed with one of the keys (the input picks
 *     which, the clock and the nonce), then opened again: it opens (once
 *     the sealed datagram reaches the 76-byte minimum), gives back the
 *     same bytes, key ID and clock, and decodes exactly as the input does;
 *     and the sealed datagram with one bit flipped (the input picks which)
 *     does not open.
 * Any broken invariant aborts.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "seal.h"
#include "udprr.h"
#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The keys the corpus's sealed datagrams were made with: secret byte i of
 * the key with ID n is i * 3 + n * 0x40. */
static void seal_fuzz_keys(udprr_key keys[2])
{
    for (uint32_t k = 0; k < 2; k++) {
        keys[k].id = k + 1;
        for (size_t i = 0; i < UDPRR_KEY_BYTES; i++)
            keys[k].secret[i] = (uint8_t)(i * 3 + (k + 1) * 0x40);
    }
}

static const struct udprr__keyring *seal_fuzz_ring(void)
{
    static struct udprr__keyring ring;
    static int ready;
    if (!ready) {
        udprr_key keys[2];
        seal_fuzz_keys(keys);
        if (udprr__seal_init() != UDPRR_OK ||
            udprr__keyring_set(&ring, keys, 2) != UDPRR_OK)
            abort();
        ready = 1;
    }
    return &ring;
}

/* A small hash of the input, to pick the key, clock, nonce and bit. */
static uint64_t seal_fuzz_hash(const uint8_t *data, size_t size)
{
    uint64_t h = 0xcbf29ce484222325ull ^ size;
    for (size_t i = 0; i < size; i++)
        h = (h ^ data[i]) * 0x100000001b3ull;
    return h;
}

/* The native decoder's verdict on buf[0..len), and its view. */
struct seal_fuzz_decoded {
    enum udprr__wire_result res;
    struct udprr__wire_header hdr;
    size_t offset, body_len;
};

static struct seal_fuzz_decoded seal_fuzz_decode(const uint8_t *buf,
                                                 size_t len)
{
    struct seal_fuzz_decoded d;
    memset(&d, 0, sizeof d);
    const uint8_t *body = NULL;
    d.res = udprr__wire_decode(buf, len, &d.hdr, &body, &d.body_len);
    if (d.res == UDPRR__WIRE_VALID) {
        if (body < buf || d.body_len > len || body + d.body_len != buf + len)
            abort();
        d.offset = (size_t)(body - buf);
    }
    return d;
}

static void seal_fuzz_open(const uint8_t *data, size_t size)
{
    uint8_t *buf = malloc(size ? size : 1);
    if (buf == NULL)
        abort();
    if (size)
        memcpy(buf, data, size);
    uint32_t key_id = 0xFFFFFFFFu;
    uint64_t time_ms = 0;
    size_t inner_len = (size_t)-1;
    enum udprr__seal_result r = udprr__seal_open(
        seal_fuzz_ring(), buf, size, &key_id, &time_ms, &inner_len);
    if (r == UDPRR__SEAL_OPENED) {
        if (size < UDPRR_SEAL_OVERHEAD + UDPRR__WIRE_HEADER_BYTES ||
            inner_len != size - UDPRR_SEAL_OVERHEAD ||
            (key_id != 1 && key_id != 2))
            abort();
        (void)seal_fuzz_decode(buf + UDPRR__SEAL_HEAD_BYTES, inner_len);
    } else if (key_id != 0xFFFFFFFFu || time_ms != 0 ||
               inner_len != (size_t)-1) {
        abort(); /* a refusal wrote an output */
    }
    free(buf);
}

static void seal_fuzz_round_trip(const uint8_t *data, size_t size)
{
    if (size > UDPRR_MAX_DATAGRAM - UDPRR_SEAL_OVERHEAD)
        return;
    uint64_t h = seal_fuzz_hash(data, size);
    udprr_key keys[2];
    seal_fuzz_keys(keys);
    const udprr_key *key = &keys[h & 1];
    uint64_t time_ms = h * 0x9E3779B97F4A7C15ull;
    uint8_t nonce[UDPRR__SEAL_NONCE_BYTES];
    for (size_t i = 0; i < sizeof nonce; i++)
        nonce[i] = (uint8_t)(h >> (8 * (i % 8))) ^ (uint8_t)i;

    size_t n = size + UDPRR_SEAL_OVERHEAD;
    uint8_t *sealed = malloc(n);
    if (sealed == NULL)
        abort();
    if (udprr__seal_with_nonce(key, time_ms, nonce, data, size, sealed) != n)
        abort();

    /* One bit flipped, anywhere: never opens. */
    size_t bit = (size_t)((h >> 1) % (n * 8));
    uint8_t *flipped = malloc(n);
    if (flipped == NULL)
        abort();
    memcpy(flipped, sealed, n);
    flipped[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    uint32_t key_id = 0;
    uint64_t t = 0;
    size_t inner_len = 0;
    if (udprr__seal_open(seal_fuzz_ring(), flipped, n, &key_id, &t,
                         &inner_len) == UDPRR__SEAL_OPENED)
        abort();
    free(flipped);

    enum udprr__seal_result r = udprr__seal_open(seal_fuzz_ring(), sealed, n,
                                                 &key_id, &t, &inner_len);
    if (size < UDPRR__WIRE_HEADER_BYTES) {
        if (r != UDPRR__SEAL_SHORT)
            abort();
    } else {
        const uint8_t *inner = sealed + UDPRR__SEAL_HEAD_BYTES;
        if (r != UDPRR__SEAL_OPENED || key_id != key->id || t != time_ms ||
            inner_len != size || memcmp(inner, data, size) != 0)
            abort();
        struct seal_fuzz_decoded a = seal_fuzz_decode(data, size);
        struct seal_fuzz_decoded b = seal_fuzz_decode(inner, inner_len);
        if (a.res != b.res ||
            (a.res == UDPRR__WIRE_VALID &&
             (a.hdr.kind != b.hdr.kind || a.hdr.attempt != b.hdr.attempt ||
              a.hdr.id != b.hdr.id || a.offset != b.offset ||
              a.body_len != b.body_len)))
            abort();
    }
    free(sealed);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    seal_fuzz_open(data, size);
    seal_fuzz_round_trip(data, size);
    return 0;
}
