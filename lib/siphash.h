/* SPDX-License-Identifier: MIT */
/*
 * siphash.h - SipHash-2-4 (Aumasson and Bernstein, 2012): a keyed hash for
 * hash tables whose keys an outsider chooses, so that without the key no
 * one can aim many keys at one bucket.
 */
#ifndef UDPRR_SIPHASH_H
#define UDPRR_SIPHASH_H

#include <stddef.h>
#include <stdint.h>

/* The 64-bit SipHash-2-4 of data[0..len) under the 128-bit key k0 || k1
 * (k0 holds key bytes 0..7 little-endian, k1 bytes 8..15). */
uint64_t udprr__siphash24(uint64_t k0, uint64_t k1, const void *data,
                          size_t len);

#endif /* UDPRR_SIPHASH_H */
