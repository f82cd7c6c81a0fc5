/* SPDX-License-Identifier: MIT */
/*
 * wire.h - the native datagram header (docs/protocol.md is the spec).
 *
 * A pure module: bytes in, a decoded header or a precise reason out. It does
 * no I/O, never allocates, and never reads outside the buffer it is given.
 *
 *   offset  size  field
 *        0     2  magic "UR" (0x55 0x52)
 *        2     1  version (1)
 *        3     1  kind: 1 request, 2 reply, 3 decline, 4 echo
 *        4     2  attempt, big-endian, 1..65535
 *        6     2  flags, big-endian: 0, or in a request 0x0001
 *                 (a 16-byte cookie comes first in the body)
 *        8     8  request ID, big-endian
 *       16     4  CRC-32C of bytes 0..15 followed by the application
 *                 bytes, big-endian
 *       20     -  application bytes (none in a decline)
 */
#ifndef UDPRR_WIRE_H
#define UDPRR_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "udprr.h"

#define UDPRR__WIRE_HEADER_BYTES 20
#define UDPRR__WIRE_MAGIC0 0x55 /* 'U' */
#define UDPRR__WIRE_MAGIC1 0x52 /* 'R' */
#define UDPRR__WIRE_PROTOCOL_VERSION 1
#define UDPRR__WIRE_MAX_ATTEMPT 65535u

/* The limits are public (udprr.h); the wire format fixes how they relate.
 * The largest datagram is the largest UDP payload IPv4 can carry (65535 -
 * 20 IP - 8 UDP); IPv6 could carry 20 more, but one limit for both keeps a
 * request valid on either. The header takes its 20 bytes from it. */
_Static_assert(UDPRR_MAX_DATAGRAM == 65535 - 20 - 8,
               "UDPRR_MAX_DATAGRAM is the largest UDP payload over IPv4");
_Static_assert(UDPRR__WIRE_HEADER_BYTES + UDPRR_MAX_PAYLOAD ==
                   UDPRR_MAX_DATAGRAM,
               "the header and the largest payload fill the largest datagram");

enum udprr__wire_kind {
    UDPRR__KIND_REQUEST = 1,
    UDPRR__KIND_REPLY = 2,
    UDPRR__KIND_DECLINE = 3,
    UDPRR__KIND_ECHO = 4 /* server to client: prove your address by
                            sending the request again with this cookie */
};

/* A request flag: the first UDPRR__WIRE_COOKIE_BYTES of the body are a
 * cookie from an echo, the request's own bytes follow. */
#define UDPRR__WIRE_FLAG_COOKIE 0x0001u
#define UDPRR__WIRE_COOKIE_BYTES 16

struct udprr__wire_header {
    enum udprr__wire_kind kind;
    uint16_t attempt; /* 1 for the first transmission of a request */
    uint64_t id;
};

/* Why a datagram was rejected; UDPRR__WIRE_VALID means it was not. The
 * text says what each reason means; the table generates the enum, and
 * UDPRR__WIRE_RESULT_COUNT sizes anything indexed by reason (per-reason
 * drop counters, say). */
#define UDPRR__WIRE_RESULT_MAP(XX)                                             \
    XX(VALID, "valid")                                                         \
    XX(SHORT, "shorter than the 20-byte header")                               \
    XX(MAGIC, "magic is not \"UR\"")                                           \
    XX(VERSION, "unsupported version")                                         \
    XX(KIND, "unknown kind")                                                   \
    XX(ATTEMPT, "attempt number 0")                                            \
    XX(FLAGS, "reserved flags not zero")                                       \
    XX(DECLINE_BODY, "a decline carries bytes after the header")               \
    XX(CHECKSUM, "CRC-32C does not match: damaged or truncated")               \
    XX(ECHO_BODY, "an echo carries other than a 16-byte cookie")               \
    XX(COOKIE, "a request flagged with a cookie is too short to hold it")

enum udprr__wire_result {
#define UDPRR__WIRE_RESULT_ENUM(name, text) UDPRR__WIRE_##name,
    UDPRR__WIRE_RESULT_MAP(UDPRR__WIRE_RESULT_ENUM)
#undef UDPRR__WIRE_RESULT_ENUM
        UDPRR__WIRE_RESULT_COUNT
};

/* Writes the 20-byte header for a datagram carrying body[0..body_len)
 * into out (which must have room for UDPRR__WIRE_HEADER_BYTES; the body
 * may follow it in the same buffer or live elsewhere). Returns UDPRR_OK, or
 * UDPRR_EINVAL for an unknown kind, attempt 0, a NULL body with a length,
 * a decline with a body or an echo without a 16-byte one: the encoder
 * never writes what the decoder would reject. */
int udprr__wire_encode(const struct udprr__wire_header *hdr, const void *body,
                       size_t body_len, uint8_t out[UDPRR__WIRE_HEADER_BYTES]);

/* The same with flags (0, or UDPRR__WIRE_FLAG_COOKIE on a request whose
 * body, cookie first, holds at least UDPRR__WIRE_COOKIE_BYTES); anything
 * else is UDPRR_EINVAL. */
int udprr__wire_encode_flags(const struct udprr__wire_header *hdr,
                             unsigned flags, const void *body, size_t body_len,
                             uint8_t out[UDPRR__WIRE_HEADER_BYTES]);

/* Decodes the datagram buf[0..len). On UDPRR__WIRE_VALID fills *hdr and
 * points *payload into buf at the application bytes (*payload_len of them);
 * on any other result the outputs are left untouched. */
enum udprr__wire_result udprr__wire_decode(const void *buf, size_t len,
                                           struct udprr__wire_header *hdr,
                                           const uint8_t **payload,
                                           size_t *payload_len);

/* The flags of a datagram udprr__wire_decode found valid. */
unsigned udprr__wire_flags(const void *buf);

#endif /* UDPRR_WIRE_H */
