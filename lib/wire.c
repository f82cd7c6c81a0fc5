/* SPDX-License-Identifier: MIT */
/*
 * wire.c - encode and decode the native header. See wire.h and
 * docs/protocol.md.
 */
#include "wire.h"

#include "crc32c.h"
#include "udprr.h"

static void put_be16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static uint16_t get_be16(const uint8_t *p)
{
    return (uint16_t)((unsigned)p[0] << 8 | p[1]);
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint32_t get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
           p[3];
}

/* The checksum covers the 16 bytes before it and the body after it. */
static uint32_t checksum(const uint8_t *head16, const void *body,
                         size_t body_len)
{
    uint32_t crc = udprr__crc32c_update(0, head16, 16);
    return body_len > 0 ? udprr__crc32c_update(crc, body, body_len) : crc;
}

static void put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

static uint64_t get_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

static int kind_known(unsigned kind)
{
    return kind == UDPRR__KIND_REQUEST || kind == UDPRR__KIND_REPLY ||
           kind == UDPRR__KIND_DECLINE || kind == UDPRR__KIND_ECHO;
}

/* Why a header's kind, flags and length do not go together, or VALID. */
static enum udprr__wire_result shape(unsigned kind, unsigned flags,
                                     size_t body_len)
{
    if (flags != 0 && (flags != UDPRR__WIRE_FLAG_COOKIE ||
                       kind != UDPRR__KIND_REQUEST))
        return UDPRR__WIRE_FLAGS;
    if (flags != 0 && body_len < UDPRR__WIRE_COOKIE_BYTES)
        return UDPRR__WIRE_COOKIE;
    if (kind == UDPRR__KIND_DECLINE && body_len != 0)
        return UDPRR__WIRE_DECLINE_BODY;
    if (kind == UDPRR__KIND_ECHO && body_len != UDPRR__WIRE_COOKIE_BYTES)
        return UDPRR__WIRE_ECHO_BODY;
    return UDPRR__WIRE_VALID;
}

int udprr__wire_encode(const struct udprr__wire_header *hdr, const void *body,
                       size_t body_len, uint8_t out[UDPRR__WIRE_HEADER_BYTES])
{
    return udprr__wire_encode_flags(hdr, 0, body, body_len, out);
}

int udprr__wire_encode_flags(const struct udprr__wire_header *hdr,
                             unsigned flags, const void *body, size_t body_len,
                             uint8_t out[UDPRR__WIRE_HEADER_BYTES])
{
    if (hdr == NULL || out == NULL || !kind_known((unsigned)hdr->kind) ||
        hdr->attempt == 0 || (body == NULL && body_len > 0) ||
        shape((unsigned)hdr->kind, flags, body_len) != UDPRR__WIRE_VALID)
        return UDPRR_EINVAL;
    out[0] = UDPRR__WIRE_MAGIC0;
    out[1] = UDPRR__WIRE_MAGIC1;
    out[2] = UDPRR__WIRE_PROTOCOL_VERSION;
    out[3] = (uint8_t)hdr->kind;
    put_be16(out + 4, hdr->attempt);
    put_be16(out + 6, (uint16_t)flags);
    put_be64(out + 8, hdr->id);
    put_be32(out + 16, checksum(out, body, body_len));
    return UDPRR_OK;
}

enum udprr__wire_result udprr__wire_decode(const void *buf, size_t len,
                                           struct udprr__wire_header *hdr,
                                           const uint8_t **payload,
                                           size_t *payload_len)
{
    const uint8_t *p = buf;

    /* Every check below reads only bytes that this first check proved are
     * inside the buffer. */
    if (p == NULL || len < UDPRR__WIRE_HEADER_BYTES)
        return UDPRR__WIRE_SHORT;
    if (p[0] != UDPRR__WIRE_MAGIC0 || p[1] != UDPRR__WIRE_MAGIC1)
        return UDPRR__WIRE_MAGIC;
    if (p[2] != UDPRR__WIRE_PROTOCOL_VERSION)
        return UDPRR__WIRE_VERSION;
    if (!kind_known(p[3]))
        return UDPRR__WIRE_KIND;
    if (get_be16(p + 4) == 0)
        return UDPRR__WIRE_ATTEMPT;
    enum udprr__wire_result r =
        shape(p[3], get_be16(p + 6), len - UDPRR__WIRE_HEADER_BYTES);
    if (r != UDPRR__WIRE_VALID)
        return r;
    if (get_be32(p + 16) != checksum(p, p + UDPRR__WIRE_HEADER_BYTES,
                                     len - UDPRR__WIRE_HEADER_BYTES))
        return UDPRR__WIRE_CHECKSUM;

    if (hdr != NULL) {
        hdr->kind = (enum udprr__wire_kind)p[3];
        hdr->attempt = get_be16(p + 4);
        hdr->id = get_be64(p + 8);
    }
    if (payload != NULL)
        *payload = p + UDPRR__WIRE_HEADER_BYTES;
    if (payload_len != NULL)
        *payload_len = len - UDPRR__WIRE_HEADER_BYTES;
    return UDPRR__WIRE_VALID;
}

unsigned udprr__wire_flags(const void *buf)
{
    return get_be16((const uint8_t *)buf + 6);
}
