/* SPDX-License-Identifier: MIT */
/*
 * seal.h - sealed datagrams (docs/protocol.md, "Sealed datagrams").
 *
 * A pure module over libsodium: bytes and a key in, sealed bytes out, and
 * back; it does no I/O and never allocates. The clock is the caller's, so
 * the replay window is tested with any time at all.
 *
 * A sealed datagram wraps a whole native (version 1) datagram, the inner
 * one, whatever its kind:
 *
 *   offset  size  field
 *        0     2  magic "UR" (0x55 0x52)
 *        2     1  version 2 (sealed)
 *        3     1  reserved, 0
 *        4     4  key ID, big-endian
 *        8     8  the sender's clock: milliseconds since 1970-01-01 UTC,
 *                 big-endian
 *       16    24  nonce: never the same twice under one key (below)
 *       40     n  the inner datagram, encrypted
 *     40+n    16  the tag
 *
 * AEAD: XChaCha20-Poly1305 (IETF), the key's 32 bytes, the nonce above,
 * bytes 0..15 as associated data. XChaCha's 192-bit nonce leaves room for
 * 128 random bits: each sending thread draws a random 16-byte prefix and
 * counts its datagrams in the last 8 bytes (seal.c), so no nonce repeats
 * under one key with no state shared between the many senders of a key
 * (every client, every server worker, every process; a fork draws anew)
 * and no system call per datagram. A nonce derived from the ID, the
 * attempt and the direction instead would repeat whenever two clients of
 * one key drew the same ID, or a server answered one attempt twice with
 * other bytes.
 */
#ifndef UDPRR_SEAL_H
#define UDPRR_SEAL_H

#include <stddef.h>
#include <stdint.h>

#include "udprr.h"

#define UDPRR__SEAL_VERSION 2
#define UDPRR__SEAL_AD_BYTES 16
#define UDPRR__SEAL_NONCE_BYTES 24
#define UDPRR__SEAL_HEAD_BYTES (UDPRR__SEAL_AD_BYTES + UDPRR__SEAL_NONCE_BYTES)
#define UDPRR__SEAL_TAG_BYTES 16

_Static_assert(UDPRR__SEAL_HEAD_BYTES + UDPRR__SEAL_TAG_BYTES ==
                   UDPRR_SEAL_OVERHEAD,
               "UDPRR_SEAL_OVERHEAD is the head and the tag");

/* The keys one end holds: a client's one, a server's up to
 * UDPRR_MAX_KEYS. */
struct udprr__keyring {
    size_t n;
    udprr_key keys[UDPRR_MAX_KEYS];
};

/* Why a datagram did not open; UDPRR__SEAL_OPENED means it did. */
enum udprr__seal_result {
    UDPRR__SEAL_OPENED,
    UDPRR__SEAL_SHORT,    /* shorter than the head, the tag and a header */
    UDPRR__SEAL_PLAIN,    /* not a sealed datagram (magic, version) */
    UDPRR__SEAL_RESERVED, /* reserved byte not zero */
    UDPRR__SEAL_KEY,      /* a key ID the keyring does not hold */
    UDPRR__SEAL_FORGED    /* the tag does not verify: another key, or
                             changed or truncated bytes */
};

/* Makes libsodium ready and registers the fork handler that renews the
 * nonces (once per process; any thread). UDPRR_OK; UDPRR_ENOTSUP in a
 * build without libsodium; UDPRR_ESYS when it cannot start. */
int udprr__seal_init(void);

/* Sets *r to keys[0..n), the slots past n zeroed (no old key stays in
 * them): UDPRR_OK, or UDPRR_EINVAL for keys NULL, n 0 or above
 * UDPRR_MAX_KEYS, or two keys with one ID (*r unchanged then). */
int udprr__keyring_set(struct udprr__keyring *r, const udprr_key *keys,
                       size_t n);

/* The key with that ID, or NULL. */
const udprr_key *udprr__keyring_find(const struct udprr__keyring *r,
                                     uint32_t id);

/* Zeroes the keys in a way the compiler keeps. */
void udprr__keyring_wipe(struct udprr__keyring *r);

/* Seals inner[0..len) into out, which has room for len +
 * UDPRR_SEAL_OVERHEAD bytes: the head, then the ciphertext, then the tag;
 * returns that total. inner may be out + UDPRR__SEAL_HEAD_BYTES (sealing in
 * place) or lie apart from out. time_ms is the sender's clock. */
size_t udprr__seal(const udprr_key *key, uint64_t time_ms,
                   const uint8_t *inner, size_t len, uint8_t *out);

/* The same with a given nonce: for test vectors only (a nonce must never
 * be used twice under one key). */
size_t udprr__seal_with_nonce(const udprr_key *key, uint64_t time_ms,
                              const uint8_t nonce[UDPRR__SEAL_NONCE_BYTES],
                              const uint8_t *inner, size_t len, uint8_t *out);

/* Opens the sealed datagram buf[0..len) in place. On UDPRR__SEAL_OPENED
 * the inner datagram is buf[UDPRR__SEAL_HEAD_BYTES..) for *inner_len bytes,
 * and *key_id and *time_ms are the sender's; otherwise the outputs are
 * untouched and buf may hold anything. Never reads outside buf. */
enum udprr__seal_result udprr__seal_open(const struct udprr__keyring *r,
                                         uint8_t *buf, size_t len,
                                         uint32_t *key_id, uint64_t *time_ms,
                                         size_t *inner_len);

/* Whether a request sealed at time_ms may be taken at now_ms: they differ
 * by at most window_ms either way. */
int udprr__seal_fresh(uint64_t time_ms, uint64_t now_ms, uint64_t window_ms);

/* The wall clock in milliseconds since 1970-01-01 UTC (CLOCK_REALTIME). */
uint64_t udprr__seal_clock_ms(void);

#endif /* UDPRR_SEAL_H */
