/* SPDX-License-Identifier: MIT */
/*
 * framing.c - native, raw and id-at-offset framing. See framing.h.
 */
#include "framing.h"

#include <string.h>

#include "udprr.h"

int udprr__framing_check(const struct udprr__framing *f)
{
    if (f == NULL || (f->sealed && f->kind != UDPRR_FRAMING_NATIVE))
        return UDPRR_EINVAL;
    switch (f->kind) {
    case UDPRR_FRAMING_NATIVE:
    case UDPRR_FRAMING_RAW:
        return UDPRR_OK;
    case UDPRR_FRAMING_ID_AT_OFFSET:
        if (f->id_len < 1 || f->id_len > 8 ||
            f->id_offset > UDPRR_MAX_DATAGRAM - f->id_len)
            return UDPRR_EINVAL;
        return UDPRR_OK;
    default:
        return UDPRR_EINVAL;
    }
}

size_t udprr__framing_overhead(const struct udprr__framing *f)
{
    return f->kind == UDPRR_FRAMING_NATIVE ? UDPRR__WIRE_HEADER_BYTES : 0;
}

size_t udprr__framing_max_body(const struct udprr__framing *f)
{
    return UDPRR_MAX_DATAGRAM - udprr__framing_overhead(f) -
           (f->sealed ? UDPRR_SEAL_OVERHEAD : 0);
}

uint64_t udprr__framing_id_mask(const struct udprr__framing *f)
{
    if (f->kind != UDPRR_FRAMING_ID_AT_OFFSET || f->id_len >= 8)
        return UINT64_MAX;
    return (UINT64_C(1) << (8 * f->id_len)) - 1;
}

int udprr__framing_has_id(const struct udprr__framing *f)
{
    return f->kind != UDPRR_FRAMING_RAW;
}

static void put_id(const struct udprr__framing *f, uint64_t id, uint8_t *body)
{
    for (unsigned i = 0; i < f->id_len; i++)
        body[f->id_offset + i] = (uint8_t)(id >> (8 * (f->id_len - 1 - i)));
}

static uint64_t get_id(const struct udprr__framing *f, const uint8_t *body)
{
    uint64_t id = 0;
    for (unsigned i = 0; i < f->id_len; i++)
        id = id << 8 | body[f->id_offset + i];
    return id;
}

static int holds_id(const struct udprr__framing *f, size_t len)
{
    return len >= f->id_offset && len - f->id_offset >= f->id_len;
}

int udprr__framing_request(const struct udprr__framing *f, uint64_t id,
                           unsigned attempt, const void *body, size_t len,
                           uint8_t *out, size_t *out_len)
{
    size_t overhead = udprr__framing_overhead(f);
    if (f->kind == UDPRR_FRAMING_ID_AT_OFFSET && !holds_id(f, len))
        return UDPRR_EINVAL;
    if (len > 0)
        memcpy(out + overhead, body, len);
    *out_len = overhead + len;
    udprr__framing_stamp(f, id, attempt, out, *out_len);
    return UDPRR_OK;
}

void udprr__framing_stamp(const struct udprr__framing *f, uint64_t id,
                          unsigned attempt, uint8_t *datagram, size_t len)
{
    if (f->kind == UDPRR_FRAMING_ID_AT_OFFSET)
        put_id(f, id, datagram);
    if (f->kind != UDPRR_FRAMING_NATIVE)
        return;
    struct udprr__wire_header h = {UDPRR__KIND_REQUEST, (uint16_t)attempt, id};
    udprr__wire_encode(&h, datagram + UDPRR__WIRE_HEADER_BYTES,
                       len - UDPRR__WIRE_HEADER_BYTES, datagram);
}

void udprr__framing_stamp_cookie(uint64_t id, unsigned attempt,
                                 uint8_t *datagram, size_t len)
{
    struct udprr__wire_header h = {UDPRR__KIND_REQUEST, (uint16_t)attempt, id};
    udprr__wire_encode_flags(&h, UDPRR__WIRE_FLAG_COOKIE,
                             datagram + UDPRR__WIRE_HEADER_BYTES,
                             len - UDPRR__WIRE_HEADER_BYTES, datagram);
}

enum udprr__wire_result udprr__framing_parse(const struct udprr__framing *f,
                                             const void *buf, size_t len,
                                             int from_server,
                                             struct udprr__framed *out)
{
    if (f->kind == UDPRR_FRAMING_NATIVE) {
        struct udprr__wire_header h;
        enum udprr__wire_result r =
            udprr__wire_decode(buf, len, &h, &out->body, &out->body_len);
        if (r != UDPRR__WIRE_VALID)
            return r;
        out->kind = h.kind;
        out->id = h.id;
        out->attempt = h.attempt;
        out->cookie = NULL;
        if (udprr__wire_flags(buf) & UDPRR__WIRE_FLAG_COOKIE) {
            /* The decoder checked that the body holds it. */
            out->cookie = out->body;
            out->body += UDPRR__WIRE_COOKIE_BYTES;
            out->body_len -= UDPRR__WIRE_COOKIE_BYTES;
        }
        return UDPRR__WIRE_VALID;
    }
    if (f->kind == UDPRR_FRAMING_ID_AT_OFFSET && !holds_id(f, len))
        return UDPRR__WIRE_SHORT;
    out->kind = from_server ? UDPRR__KIND_REPLY : UDPRR__KIND_REQUEST;
    out->id = f->kind == UDPRR_FRAMING_ID_AT_OFFSET ? get_id(f, buf) : 0;
    out->attempt = 0;
    out->body = buf;
    out->body_len = len;
    out->cookie = NULL;
    return UDPRR__WIRE_VALID;
}

void udprr__framing_reply_id(const struct udprr__framing *f, uint64_t id,
                             uint8_t *body, size_t body_len)
{
    if (f->kind == UDPRR_FRAMING_ID_AT_OFFSET && holds_id(f, body_len))
        put_id(f, id, body);
}

int udprr__framing_reply(const struct udprr__framing *f,
                         enum udprr__wire_kind kind, uint64_t id,
                         unsigned attempt, const uint8_t *body,
                         size_t body_len,
                         uint8_t header[UDPRR__WIRE_HEADER_BYTES],
                         size_t *header_len)
{
    if (f->kind == UDPRR_FRAMING_NATIVE) {
        struct udprr__wire_header h = {kind, (uint16_t)attempt, id};
        udprr__wire_encode(&h, body, body_len, header);
        *header_len = UDPRR__WIRE_HEADER_BYTES;
        return 1;
    }
    *header_len = 0;
    return kind != UDPRR__KIND_DECLINE;
}
