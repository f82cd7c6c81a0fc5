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

#endif /* UDPRR_CRC32C_H */
