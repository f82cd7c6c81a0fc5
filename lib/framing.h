/* SPDX-License-Identifier: MIT */
/*
 * framing.h - how requests and replies sit in datagrams: libudprr's native
 * header, or a foreign protocol's own bytes.
 *
 * A pure module over wire.c: bytes in, a parsed view or a precise reason
 * out; no I/O, no allocation. The exchange (client) and the server both go
 * through it, so one engine serves every framing.
 *
 *   native        20-byte header (wire.h) + body; the reply echoes the ID
 *                 and the attempt number, so every reply is an unambiguous
 *                 RTT sample.
 *   raw           the body alone. A datagram carries no identity: the
 *                 client keeps one request in flight and takes the next
 *                 datagram from its peer as the reply; samples follow
 *                 Karn's rule (first transmission only).
 *   id-at-offset  the body alone, with an ID of id_len bytes (1..8,
 *                 big-endian) at id_offset, as DNS (offset 0, 2 bytes) and
 *                 CoAP (offset 2, 2 bytes) carry one. The client writes a
 *                 fresh random ID there and matches replies on it; the
 *                 server keys its reply cache on it and copies it into the
 *                 reply. Samples follow Karn's rule.
 */
#ifndef UDPRR_FRAMING_H
#define UDPRR_FRAMING_H

#include <stddef.h>
#include <stdint.h>

#include "wire.h"

struct udprr__framing {
    int kind;         /* UDPRR_FRAMING_* from udprr.h */
    size_t id_offset; /* id-at-offset only */
    unsigned id_len;  /* id-at-offset only: 1..8 */
    int sealed;       /* native only: each datagram travels sealed
                         (seal.h), UDPRR_SEAL_OVERHEAD bytes larger, so
                         the body has that much less room */
};

/* A datagram as the framing sees it. */
struct udprr__framed {
    enum udprr__wire_kind kind; /* request, reply, decline or echo */
    uint64_t id;                /* 0 in raw framing */
    unsigned attempt;           /* 0 when the framing carries none */
    const uint8_t *body;        /* what the application sees (an echo's:
                                   its cookie) */
    size_t body_len;
    const uint8_t *cookie;      /* a native request's echoed cookie
                                   (UDPRR__WIRE_COOKIE_BYTES), else NULL */
};

/* UDPRR_OK, or UDPRR_EINVAL for an unknown kind, or an id-at-offset ID of
 * 0 or more than 8 bytes, or an offset so large that no datagram could
 * hold the ID, or a sealed framing other than native. */
int udprr__framing_check(const struct udprr__framing *f);

/* Bytes the framing adds in front of the body: UDPRR__WIRE_HEADER_BYTES
 * (20) native, 0 otherwise. */
size_t udprr__framing_overhead(const struct udprr__framing *f);

/* The largest body one datagram carries in this framing (sealed or
 * not). */
size_t udprr__framing_max_body(const struct udprr__framing *f);

/* The IDs the framing can carry: all 64 bits, or the low 8 * id_len. */
uint64_t udprr__framing_id_mask(const struct udprr__framing *f);

/* Whether the framing identifies requests (native and id-at-offset) or not
 * (raw: one request in flight, no reply cache). */
int udprr__framing_has_id(const struct udprr__framing *f);

/* Writes transmission `attempt` of request `id` with body[0..len) into out,
 * which has room for overhead + len bytes; *out_len gets the datagram's
 * size. UDPRR_OK, or UDPRR_EINVAL when an id-at-offset body is too short
 * to hold the ID. */
int udprr__framing_request(const struct udprr__framing *f, uint64_t id,
                           unsigned attempt, const void *body, size_t len,
                           uint8_t *out, size_t *out_len);

/* Rewrites the ID and the attempt number (and so the checksum) of a
 * datagram of len bytes made by udprr__framing_request, in the framings
 * that carry them (raw carries neither, id-at-offset no attempt number).
 * A request can so be made once, then given its ID when it is sent. */
void udprr__framing_stamp(const struct udprr__framing *f, uint64_t id,
                          unsigned attempt, uint8_t *datagram, size_t len);

/* The same for a native request whose body begins with an echoed cookie
 * (UDPRR__WIRE_COOKIE_BYTES, already in place after the header): flagged
 * so. */
void udprr__framing_stamp_cookie(uint64_t id, unsigned attempt,
                                 uint8_t *datagram, size_t len);

/* Parses a datagram received by a client (expecting a reply) or by a
 * server (expecting a request). UDPRR__WIRE_VALID and *out filled, or the
 * reason it is not one: UDPRR__WIRE_SHORT for an id-at-offset datagram too
 * short to hold the ID, the native decoder's reasons otherwise. The kind
 * is not checked against the expectation here: callers count a wrong kind
 * as unexpected, apart from malformed. */
enum udprr__wire_result udprr__framing_parse(const struct udprr__framing *f,
                                             const void *buf, size_t len,
                                             int from_server,
                                             struct udprr__framed *out);

/* Writes the request's ID into a reply body (id-at-offset framing, when
 * the body is long enough to hold it; a no-op in the others). */
void udprr__framing_reply_id(const struct udprr__framing *f, uint64_t id,
                             uint8_t *body, size_t body_len);

/* The bytes a server sends in front of the reply body[0..body_len): the
 * native header with its checksum (written into header, *header_len 20),
 * or nothing. Declines exist only in native framing; in the others a
 * decline is not sent (returns 0); otherwise returns 1. */
int udprr__framing_reply(const struct udprr__framing *f,
                         enum udprr__wire_kind kind, uint64_t id,
                         unsigned attempt, const uint8_t *body,
                         size_t body_len,
                         uint8_t header[UDPRR__WIRE_HEADER_BYTES],
                         size_t *header_len);

#endif /* UDPRR_FRAMING_H */
