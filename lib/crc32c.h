/* SPDX-License-Identifier: MIT */
/*
 * crc32c.h - CRC-32C of the native header and body (docs/protocol.md).
 */
#ifndef UDPRR_CRC32C_H
#define UDPRR_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Continues a CRC-32C over data[0..len): start with crc 0; feeding pieces
 * in turn gives the CRC of their concatenation. */
uint32_t udprr__crc32c_update(uint32_t crc, const void *data, size_t len);

/* The same by the table alone, whatever the processor (for the tests that
 * compare the two ways). */
uint32_t udprr__crc32c_update_portable(uint32_t crc, const void *data,
                                       size_t len);

/* 1 when udprr__crc32c_update uses the processor's crc32 instruction
 * (x86-64 with SSE4.2), else 0. */
int udprr__crc32c_hardware(void);

#endif /* UDPRR_CRC32C_H */
