/* SPDX-License-Identifier: MIT */
/*
 * unit_wire.c - the native header: round trips, every malformed case, and
 * boundary lengths. Malformed inputs are also checked for reads past the
 * buffer by the ASan and valgrind runs of this suite, which place each
 * input at the very end of its own heap block.
 */
#include <string.h>

#include "testutil.h"
#include "udprr.h"
#include "wire.h"

/* A valid reply with 3 payload bytes, as docs/protocol.md spells it out. */
static const uint8_t golden[] = {
    0x55, 0x52,                                    /* "UR" */
    0x01,                                          /* version */
    0x02,                                          /* reply */
    0x01, 0x02,                                    /* attempt 258 */
    0x00, 0x00,                                    /* flags */
    0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, /* ID */
    0xd6, 0x8b, 0xf4, 0xf8,                         /* CRC-32C */
    'a', 'b', 'c',
};

/* Decodes a copy that ends exactly where the heap block ends. */
static enum udprr__wire_result decode_exact(const uint8_t *bytes, size_t len,
                                            struct udprr__wire_header *hdr,
                                            size_t *payload_len)
{
    uint8_t *copy = malloc(len ? len : 1);
    ck_assert_ptr_nonnull(copy);
    if (len)
        memcpy(copy, bytes, len);
    const uint8_t *payload = NULL;
    enum udprr__wire_result r =
        udprr__wire_decode(copy, len, hdr, &payload, payload_len);
    if (r == UDPRR__WIRE_VALID)
        ck_assert_ptr_eq(payload, copy + UDPRR__WIRE_HEADER_BYTES);
    free(copy);
    return r;
}

START_TEST(test_decodes_the_spec_example)
{
    struct udprr__wire_header h;
    size_t n = 0;
    ck_assert_int_eq(decode_exact(golden, sizeof golden, &h, &n),
                     UDPRR__WIRE_VALID);
    ck_assert_int_eq(h.kind, UDPRR__KIND_REPLY);
    ck_assert_uint_eq(h.attempt, 258);
    ck_assert(h.id == 0x0123456789abcdefull);
    ck_assert_uint_eq(n, 3);
}
END_TEST

START_TEST(test_encodes_the_spec_example)
{
    struct udprr__wire_header h = {UDPRR__KIND_REPLY, 258,
                                   0x0123456789abcdefull};
    uint8_t out[UDPRR__WIRE_HEADER_BYTES];
    ck_assert_int_eq(udprr__wire_encode(&h, "abc", 3, out), UDPRR_OK);
    ck_assert_mem_eq(out, golden, sizeof out);
}
END_TEST

START_TEST(test_round_trips_kinds_attempts_ids)
{
    static const enum udprr__wire_kind kinds[] = {
        UDPRR__KIND_REQUEST, UDPRR__KIND_REPLY, UDPRR__KIND_DECLINE};
    static const uint16_t attempts[] = {1, 2, 255, 256, 65534, 65535};
    static const uint64_t ids[] = {0, 1, 0xff, 0x8000000000000000ull,
                                   0xffffffffffffffffull,
                                   0x0102030405060708ull};
    for (size_t k = 0; k < 3; k++)
        for (size_t a = 0; a < sizeof attempts / sizeof attempts[0]; a++)
            for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
                struct udprr__wire_header in = {kinds[k], attempts[a], ids[i]};
                struct udprr__wire_header out;
                uint8_t buf[UDPRR__WIRE_HEADER_BYTES];
                size_t n = 99;
                ck_assert_int_eq(udprr__wire_encode(&in, NULL, 0, buf),
                                 UDPRR_OK);
                ck_assert_int_eq(decode_exact(buf, sizeof buf, &out, &n),
                                 UDPRR__WIRE_VALID);
                ck_assert_int_eq(out.kind, in.kind);
                ck_assert_uint_eq(out.attempt, in.attempt);
                ck_assert(out.id == in.id);
                ck_assert_uint_eq(n, 0);
            }
}
END_TEST

START_TEST(test_payload_boundaries)
{
    static const size_t sizes[] = {0, 1, 1000, UDPRR_MAX_PAYLOAD};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t len = UDPRR__WIRE_HEADER_BYTES + sizes[i];
        uint8_t *buf = malloc(len);
        ck_assert_ptr_nonnull(buf);
        struct udprr__wire_header in = {UDPRR__KIND_REQUEST, 1, 42};
        for (size_t j = 0; j < sizes[i]; j++)
            buf[UDPRR__WIRE_HEADER_BYTES + j] = (uint8_t)(j * 7);
        ck_assert_int_eq(udprr__wire_encode(&in, buf + UDPRR__WIRE_HEADER_BYTES,
                                            sizes[i], buf),
                         UDPRR_OK);
        struct udprr__wire_header out;
        const uint8_t *payload;
        size_t n;
        ck_assert_int_eq(udprr__wire_decode(buf, len, &out, &payload, &n),
                         UDPRR__WIRE_VALID);
        ck_assert_uint_eq(n, sizes[i]);
        for (size_t j = 0; j < n; j++)
            ck_assert_uint_eq(payload[j], (uint8_t)(j * 7));
        free(buf);
    }
    ck_assert_uint_eq(UDPRR_MAX_PAYLOAD, 65487);
}
END_TEST

START_TEST(test_every_short_length_is_rejected)
{
    /* 0..19 bytes: even a valid-looking prefix is too short. */
    for (size_t len = 0; len < UDPRR__WIRE_HEADER_BYTES; len++)
        ck_assert_int_eq(decode_exact(golden, len, NULL, NULL),
                         UDPRR__WIRE_SHORT);
    ck_assert_int_eq(udprr__wire_decode(NULL, 100, NULL, NULL, NULL),
                     UDPRR__WIRE_SHORT);
}
END_TEST

/* Flips golden[offset] to value and expects the decoder to say why. */
static void expect_rejected(size_t offset, uint8_t value,
                            enum udprr__wire_result want)
{
    uint8_t buf[sizeof golden];
    memcpy(buf, golden, sizeof buf);
    buf[offset] = value;
    struct udprr__wire_header h = {UDPRR__KIND_REQUEST, 7, 7};
    size_t n = 12345;
    ck_assert_int_eq(decode_exact(buf, sizeof buf, &h, &n), want);
    /* A rejected datagram leaves the outputs alone. */
    ck_assert_int_eq(h.kind, UDPRR__KIND_REQUEST);
    ck_assert_uint_eq(h.attempt, 7);
    ck_assert_uint_eq(n, 12345);
}

START_TEST(test_each_malformed_field_has_its_reason)
{
    expect_rejected(0, 'X', UDPRR__WIRE_MAGIC);
    expect_rejected(1, 'X', UDPRR__WIRE_MAGIC);
    expect_rejected(2, 0, UDPRR__WIRE_VERSION);
    expect_rejected(2, 2, UDPRR__WIRE_VERSION);
    expect_rejected(2, 0xff, UDPRR__WIRE_VERSION);
    expect_rejected(3, 0, UDPRR__WIRE_KIND);
    expect_rejected(3, 4, UDPRR__WIRE_ECHO_BODY); /* an echo: 16 bytes */
    expect_rejected(3, 5, UDPRR__WIRE_KIND);
    expect_rejected(3, 0xff, UDPRR__WIRE_KIND);
    expect_rejected(6, 0x80, UDPRR__WIRE_FLAGS);
    expect_rejected(7, 0x01, UDPRR__WIRE_FLAGS);

    uint8_t buf[sizeof golden];
    memcpy(buf, golden, sizeof buf);
    buf[4] = 0;
    buf[5] = 0;
    ck_assert_int_eq(decode_exact(buf, sizeof buf, NULL, NULL),
                     UDPRR__WIRE_ATTEMPT);
}
END_TEST

START_TEST(test_cookie_and_echo)
{
    uint8_t buf[64], body[32];
    memset(body, 'c', sizeof body);
    /* A request carrying a cookie (16 bytes first in its body). */
    struct udprr__wire_header req = {UDPRR__KIND_REQUEST, 2, 0x77};
    ck_assert_int_eq(udprr__wire_encode_flags(&req, UDPRR__WIRE_FLAG_COOKIE,
                                              body, 20, buf),
                     UDPRR_OK);
    memcpy(buf + UDPRR__WIRE_HEADER_BYTES, body, 20);
    ck_assert_int_eq(decode_exact(buf, UDPRR__WIRE_HEADER_BYTES + 20, NULL,
                                  NULL),
                     UDPRR__WIRE_VALID);
    ck_assert_uint_eq(udprr__wire_flags(buf), UDPRR__WIRE_FLAG_COOKIE);
    /* Too short to hold its cookie; a cookie on anything but a request;
     * any other flag. */
    ck_assert_int_eq(udprr__wire_encode_flags(&req, UDPRR__WIRE_FLAG_COOKIE,
                                              body, 15, buf),
                     UDPRR_EINVAL);
    ck_assert_int_eq(udprr__wire_encode(&req, body, 15, buf), UDPRR_OK);
    buf[7] = 0x01; /* flagged after the fact: the checksum covers it */
    ck_assert_int_ne(decode_exact(buf, UDPRR__WIRE_HEADER_BYTES + 15, NULL,
                                  NULL),
                     UDPRR__WIRE_VALID);
    struct udprr__wire_header rep = {UDPRR__KIND_REPLY, 2, 0x77};
    ck_assert_int_eq(udprr__wire_encode_flags(&rep, UDPRR__WIRE_FLAG_COOKIE,
                                              body, 20, buf),
                     UDPRR_EINVAL);
    ck_assert_int_eq(udprr__wire_encode_flags(&req, 2, body, 20, buf),
                     UDPRR_EINVAL);
    /* An echo carries exactly a cookie. */
    struct udprr__wire_header echo = {UDPRR__KIND_ECHO, 2, 0x77};
    ck_assert_int_eq(udprr__wire_encode(&echo, body, 16, buf), UDPRR_OK);
    memcpy(buf + UDPRR__WIRE_HEADER_BYTES, body, 16);
    struct udprr__wire_header h;
    size_t n;
    ck_assert_int_eq(decode_exact(buf, UDPRR__WIRE_HEADER_BYTES + 16, &h, &n),
                     UDPRR__WIRE_VALID);
    ck_assert_int_eq(h.kind, UDPRR__KIND_ECHO);
    ck_assert_uint_eq(n, 16);
    ck_assert_int_eq(udprr__wire_encode(&echo, body, 17, buf), UDPRR_EINVAL);
    ck_assert_int_eq(udprr__wire_encode(&rep, body, 17, buf), UDPRR_OK);
    memcpy(buf + UDPRR__WIRE_HEADER_BYTES, body, 17);
    buf[3] = UDPRR__KIND_ECHO;
    ck_assert_int_eq(decode_exact(buf, UDPRR__WIRE_HEADER_BYTES + 17, NULL,
                                  NULL),
                     UDPRR__WIRE_ECHO_BODY);
    struct udprr__wire_header decline = {UDPRR__KIND_DECLINE, 2, 0x77};
    ck_assert_int_eq(udprr__wire_encode(&decline, body, 1, buf), UDPRR_EINVAL);
}
END_TEST

START_TEST(test_decline_carries_no_body)
{
    uint8_t buf[sizeof golden];
    memcpy(buf, golden, sizeof buf);
    buf[3] = UDPRR__KIND_DECLINE;
    ck_assert_int_eq(decode_exact(buf, sizeof buf, NULL, NULL),
                     UDPRR__WIRE_DECLINE_BODY);
    struct udprr__wire_header decline = {UDPRR__KIND_DECLINE, 3, 9};
    ck_assert_int_eq(udprr__wire_encode(&decline, NULL, 0, buf), UDPRR_OK);
    ck_assert_int_eq(decode_exact(buf, UDPRR__WIRE_HEADER_BYTES, NULL, NULL),
                     UDPRR__WIRE_VALID);
}
END_TEST

START_TEST(test_encoder_refuses_what_decoder_rejects)
{
    uint8_t out[UDPRR__WIRE_HEADER_BYTES];
    memset(out, 0xAA, sizeof out);
    struct udprr__wire_header zero_attempt = {UDPRR__KIND_REQUEST, 0, 1};
    struct udprr__wire_header bad_kind = {(enum udprr__wire_kind)9, 1, 1};
    struct udprr__wire_header good = {UDPRR__KIND_REQUEST, 1, 1};
    ck_assert_int_eq(udprr__wire_encode(&zero_attempt, NULL, 0, out),
                     UDPRR_EINVAL);
    ck_assert_int_eq(udprr__wire_encode(&bad_kind, NULL, 0, out),
                     UDPRR_EINVAL);
    ck_assert_int_eq(udprr__wire_encode(NULL, NULL, 0, out), UDPRR_EINVAL);
    ck_assert_int_eq(udprr__wire_encode(&good, NULL, 5, out), UDPRR_EINVAL);
    for (size_t i = 0; i < sizeof out; i++)
        ck_assert_uint_eq(out[i], 0xAA);
}
END_TEST

START_TEST(test_random_bytes_never_misdecode)
{
    /* Seeded garbage of every length up to 40 bytes: anything the decoder
     * accepts must re-encode to exactly the bytes it came from. */
    uint64_t seed = 20261122;
    uint8_t buf[40];
    for (int round = 0; round < 20000; round++) {
        size_t len = seeded_rand(&seed) % (sizeof buf + 1);
        for (size_t i = 0; i < len; i++)
            buf[i] = (uint8_t)seeded_rand(&seed);
        if (round % 4 == 0 && len >= 4) { /* make valid headers likely too */
            buf[0] = 'U';
            buf[1] = 'R';
            buf[2] = 1;
            buf[3] = (uint8_t)(1 + seeded_rand(&seed) % 3);
            if (len >= 8)
                buf[6] = buf[7] = 0;
        }
        struct udprr__wire_header h;
        size_t n;
        if (decode_exact(buf, len, &h, &n) == UDPRR__WIRE_VALID) {
            uint8_t again[UDPRR__WIRE_HEADER_BYTES];
            ck_assert_int_eq(udprr__wire_encode(&h,
                                                buf + UDPRR__WIRE_HEADER_BYTES,
                                                n, again),
                             UDPRR_OK);
            ck_assert_mem_eq(again, buf, sizeof again);
            ck_assert_uint_eq(n, len - UDPRR__WIRE_HEADER_BYTES);
        }
    }
}
END_TEST


/* A valid request with a 100-byte seeded body. */
static size_t make_valid(uint8_t *buf, uint64_t seed)
{
    struct udprr__wire_header h = {UDPRR__KIND_REQUEST, 3, seed * 7919};
    for (size_t j = 0; j < 100; j++)
        buf[UDPRR__WIRE_HEADER_BYTES + j] = (uint8_t)seeded_rand(&seed);
    ck_assert_int_eq(udprr__wire_encode(&h, buf + UDPRR__WIRE_HEADER_BYTES,
                                        100, buf),
                     UDPRR_OK);
    return UDPRR__WIRE_HEADER_BYTES + 100;
}

START_TEST(test_checksum_catches_every_bit_flip)
{
    uint8_t buf[UDPRR__WIRE_HEADER_BYTES + 100];
    size_t len = make_valid(buf, 1);
    ck_assert_int_eq(decode_exact(buf, len, NULL, NULL), UDPRR__WIRE_VALID);
    for (size_t i = 0; i < len; i++)
        for (int bit = 0; bit < 8; bit++) {
            buf[i] ^= (uint8_t)(1u << bit);
            if (decode_exact(buf, len, NULL, NULL) == UDPRR__WIRE_VALID)
                ck_abort_msg("flip of byte %zu bit %d accepted", i, bit);
            buf[i] ^= (uint8_t)(1u << bit);
        }
    /* and a damaged body is rejected for its checksum in particular */
    buf[len - 1] ^= 0xff;
    ck_assert_int_eq(decode_exact(buf, len, NULL, NULL), UDPRR__WIRE_CHECKSUM);
}
END_TEST

START_TEST(test_checksum_catches_every_truncation)
{
    uint8_t buf[UDPRR__WIRE_HEADER_BYTES + 100];
    size_t len = make_valid(buf, 2);
    for (size_t cut = UDPRR__WIRE_HEADER_BYTES; cut < len; cut++)
        ck_assert_int_eq(decode_exact(buf, cut, NULL, NULL),
                         UDPRR__WIRE_CHECKSUM);
}
END_TEST

START_TEST(test_checksum_catches_seeded_multi_byte_damage)
{
    /* What the impairment relay does: 1..16 random bytes XORed with random
     * nonzero values. */
    uint8_t buf[UDPRR__WIRE_HEADER_BYTES + 100];
    uint64_t seed = 77;
    for (int round = 0; round < 20000; round++) {
        size_t len = make_valid(buf, (uint64_t)round + 10);
        unsigned flips = 1 + seeded_rand(&seed) % 16;
        for (unsigned f = 0; f < flips; f++) {
            uint8_t x = (uint8_t)(1 + seeded_rand(&seed) % 255);
            buf[seeded_rand(&seed) % len] ^= x;
        }
        struct udprr__wire_header h;
        if (decode_exact(buf, len, &h, NULL) == UDPRR__WIRE_VALID) {
            /* only if the flips cancelled out exactly */
            uint8_t fresh[UDPRR__WIRE_HEADER_BYTES + 100];
            make_valid(fresh, (uint64_t)round + 10);
            ck_assert_mem_eq(buf, fresh, len);
        }
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("wire");
    TCase *tc = tcase_create("header");
    tcase_add_test(tc, test_decodes_the_spec_example);
    tcase_add_test(tc, test_encodes_the_spec_example);
    tcase_add_test(tc, test_round_trips_kinds_attempts_ids);
    tcase_add_test(tc, test_payload_boundaries);
    tcase_add_test(tc, test_every_short_length_is_rejected);
    tcase_add_test(tc, test_checksum_catches_every_bit_flip);
    tcase_add_test(tc, test_checksum_catches_every_truncation);
    tcase_add_test(tc, test_checksum_catches_seeded_multi_byte_damage);
    tcase_add_test(tc, test_each_malformed_field_has_its_reason);
    tcase_add_test(tc, test_decline_carries_no_body);
    tcase_add_test(tc, test_cookie_and_echo);
    tcase_add_test(tc, test_encoder_refuses_what_decoder_rejects);
    tcase_add_test(tc, test_random_bytes_never_misdecode);
    suite_add_tcase(s, tc);
    return udprr_test_run(s);
}
