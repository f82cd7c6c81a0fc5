/* SPDX-License-Identifier: MIT */
/*
 * seal.c - sealed datagrams (seal.h): libsodium's XChaCha20-Poly1305
 * around a native datagram. Without libsodium (make SODIUM=no) only the
 * keyring and the clock remain, and udprr__seal_init says UDPRR_ENOTSUP,
 * so no handle that would seal is ever made.
 */
#include "seal.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#ifdef UDPRR_HAVE_SODIUM
#include <sodium.h>
_Static_assert(crypto_aead_xchacha20poly1305_ietf_NPUBBYTES ==
                       UDPRR__SEAL_NONCE_BYTES &&
                   crypto_aead_xchacha20poly1305_ietf_ABYTES ==
                       UDPRR__SEAL_TAG_BYTES &&
                   crypto_aead_xchacha20poly1305_ietf_KEYBYTES ==
                       UDPRR_KEY_BYTES,
               "the sealed layout is XChaCha20-Poly1305's");
#endif

#include "wire.h"

/* The smallest sealed datagram: its head and tag around a bare header. */
#define MIN_SEALED                                                             \
    (UDPRR__SEAL_HEAD_BYTES + UDPRR__WIRE_HEADER_BYTES + UDPRR__SEAL_TAG_BYTES)

int udprr_sealed_supported(void)
{
#ifdef UDPRR_HAVE_SODIUM
    return 1;
#else
    return 0;
#endif
}

/*
 * Nonces. Each thread that seals draws 16 random bytes once and counts
 * datagrams in the other 8: a nonce is its thread's prefix and count. Two
 * threads (of any process, on any host: every sender of a key) share a
 * prefix with a probability of about n^2 / 2^129 for n threads, and one
 * thread never counts to 2^64, so no nonce repeats under a key, at the
 * cost of one random draw per thread rather than one system call
 * (getrandom) per datagram. A child of fork would copy its parent's count
 * and send the same nonces, so a fork makes every thread of the child draw
 * a new prefix before it seals again.
 */
struct nonces {
    uint8_t prefix[16];
    uint64_t count;
    uint64_t forks; /* forks_seen when prefix was drawn; 0: never drawn */
};

static _Thread_local struct nonces thread_nonces;
/* Forks since the library was loaded, + 1. 64 bits never wrap to 0. */
static _Atomic uint64_t forks_seen = 1;

/* What the nonces cannot see: a copy of the process made without fork's
 * handlers (a raw clone, glibc's _Fork, a restored checkpoint or virtual
 * machine snapshot) would repeat its original's nonces. Such a copy must
 * not go on sealing with the keys it holds. */
#ifdef UDPRR_HAVE_SODIUM
static void after_fork_in_child(void)
{
    atomic_fetch_add(&forks_seen, 1);
}
#endif

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static int init_status, init_errno;

static void init(void)
{
#ifdef UDPRR_HAVE_SODIUM
    /* sodium_init is thread-safe; 1 means it was done already. It sets no
     * errno, and fails only when it finds no random source. */
    int rc = sodium_init() < 0
                 ? ENOSYS
                 : pthread_atfork(NULL, NULL, after_fork_in_child);
    init_status = rc == 0 ? UDPRR_OK : UDPRR_ESYS;
    init_errno = rc;
#else
    init_status = UDPRR_ENOTSUP;
#endif
}

int udprr__seal_init(void)
{
    pthread_once(&init_once, init);
    if (init_status == UDPRR_ESYS)
        errno = init_errno;
    return init_status;
}

/* The calling thread's next nonce. */
static void next_nonce(uint8_t out[UDPRR__SEAL_NONCE_BYTES])
{
    struct nonces *n = &thread_nonces;
    uint64_t forks = atomic_load_explicit(&forks_seen, memory_order_relaxed);
    if (n->forks != forks) {
#ifdef UDPRR_HAVE_SODIUM
        randombytes_buf(n->prefix, sizeof n->prefix);
#endif
        n->count = 0;
        n->forks = forks;
    }
    memcpy(out, n->prefix, sizeof n->prefix);
    uint64_t c = n->count++;
    for (int i = 7; i >= 0; i--, c >>= 8)
        out[sizeof n->prefix + (size_t)i] = (uint8_t)c;
}

int udprr__keyring_set(struct udprr__keyring *r, const udprr_key *keys,
                       size_t n)
{
    if (r == NULL || keys == NULL || n == 0 || n > UDPRR_MAX_KEYS)
        return UDPRR_EINVAL;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < i; j++)
            if (keys[i].id == keys[j].id)
                return UDPRR_EINVAL;
    /* Made apart and copied whole, so that no slot keeps an old key. */
    struct udprr__keyring next;
    memset(&next, 0, sizeof next);
    memcpy(next.keys, keys, n * sizeof *keys);
    next.n = n;
    *r = next;
    udprr__keyring_wipe(&next);
    return UDPRR_OK;
}

const udprr_key *udprr__keyring_find(const struct udprr__keyring *r,
                                     uint32_t id)
{
    for (size_t i = 0; i < r->n; i++)
        if (r->keys[i].id == id)
            return &r->keys[i];
    return NULL;
}

void udprr__keyring_wipe(struct udprr__keyring *r)
{
#ifdef UDPRR_HAVE_SODIUM
    sodium_memzero(r, sizeof *r);
#else
    /* Through a volatile pointer, which the compiler may not skip. */
    volatile uint8_t *p = (volatile uint8_t *)r;
    for (size_t i = 0; i < sizeof *r; i++)
        p[i] = 0;
#endif
}

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 3; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

static uint64_t get_be(const uint8_t *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

size_t udprr__seal_with_nonce(const udprr_key *key, uint64_t time_ms,
                              const uint8_t nonce[UDPRR__SEAL_NONCE_BYTES],
                              const uint8_t *inner, size_t len, uint8_t *out)
{
    uint8_t *ad = out, *cipher = out + UDPRR__SEAL_HEAD_BYTES;
    /* In place (inner == cipher) the plaintext is where the ciphertext
     * goes; apart, it must not be overwritten by the head first. */
    if (inner != cipher)
        memmove(cipher, inner, len);
    ad[0] = UDPRR__WIRE_MAGIC0;
    ad[1] = UDPRR__WIRE_MAGIC1;
    ad[2] = UDPRR__SEAL_VERSION;
    ad[3] = 0;
    put32(ad + 4, key->id);
    put64(ad + 8, time_ms);
    memcpy(out + UDPRR__SEAL_AD_BYTES, nonce, UDPRR__SEAL_NONCE_BYTES);
#ifdef UDPRR_HAVE_SODIUM
    crypto_aead_xchacha20poly1305_ietf_encrypt_detached(
        cipher, cipher + len, NULL, cipher, len, ad, UDPRR__SEAL_AD_BYTES,
        NULL, nonce, key->secret);
#else
    (void)key;
    memset(cipher + len, 0, UDPRR__SEAL_TAG_BYTES); /* unreachable */
#endif
    return len + UDPRR_SEAL_OVERHEAD;
}

size_t udprr__seal(const udprr_key *key, uint64_t time_ms,
                   const uint8_t *inner, size_t len, uint8_t *out)
{
    uint8_t nonce[UDPRR__SEAL_NONCE_BYTES];
    next_nonce(nonce);
    return udprr__seal_with_nonce(key, time_ms, nonce, inner, len, out);
}

enum udprr__seal_result udprr__seal_open(const struct udprr__keyring *r,
                                         uint8_t *buf, size_t len,
                                         uint32_t *key_id, uint64_t *time_ms,
                                         size_t *inner_len)
{
    if (len < MIN_SEALED)
        return UDPRR__SEAL_SHORT;
    if (buf[0] != UDPRR__WIRE_MAGIC0 || buf[1] != UDPRR__WIRE_MAGIC1 ||
        buf[2] != UDPRR__SEAL_VERSION)
        return UDPRR__SEAL_PLAIN;
    if (buf[3] != 0)
        return UDPRR__SEAL_RESERVED;
    uint32_t id = (uint32_t)get_be(buf + 4, 4);
    const udprr_key *key = udprr__keyring_find(r, id);
    if (key == NULL)
        return UDPRR__SEAL_KEY;
    size_t n = len - UDPRR_SEAL_OVERHEAD;
    uint8_t *cipher = buf + UDPRR__SEAL_HEAD_BYTES;
#ifdef UDPRR_HAVE_SODIUM
    /* Verifies the tag first; on failure it zeroes the bytes it would
     * have written (buf then holds anything: seal.h). */
    if (crypto_aead_xchacha20poly1305_ietf_decrypt_detached(
            cipher, NULL, cipher, n, cipher + n, buf, UDPRR__SEAL_AD_BYTES,
            buf + UDPRR__SEAL_AD_BYTES, key->secret) != 0)
        return UDPRR__SEAL_FORGED;
#else
    (void)cipher;
    return UDPRR__SEAL_FORGED;
#endif
    *key_id = id;
    *time_ms = get_be(buf + 8, 8);
    *inner_len = n;
    return UDPRR__SEAL_OPENED;
}

int udprr__seal_fresh(uint64_t time_ms, uint64_t now_ms, uint64_t window_ms)
{
    uint64_t apart = time_ms > now_ms ? time_ms - now_ms : now_ms - time_ms;
    return apart <= window_ms;
}

uint64_t udprr__seal_clock_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}
