/* SPDX-License-Identifier: MIT */
/*
 * unit_framing.c - native, raw and id-at-offset framing: what goes on the
 * wire for a request, how replies and requests parse, where IDs go.
 */
#include <string.h>

#include "framing.h"
#include "testutil.h"
#include "udprr.h"

static const struct udprr__framing native = {UDPRR_FRAMING_NATIVE, 0, 0, 0};
static const struct udprr__framing raw = {UDPRR_FRAMING_RAW, 0, 0, 0};
static const struct udprr__framing dns = {UDPRR_FRAMING_ID_AT_OFFSET, 0, 2, 0};
static const struct udprr__framing coap = {UDPRR_FRAMING_ID_AT_OFFSET, 2, 2, 0};

START_TEST(test_check_rejects_bad_framings)
{
    struct udprr__framing f = {UDPRR_FRAMING_ID_AT_OFFSET, 0, 0, 0};
    ck_assert_int_eq(udprr__framing_check(&native), UDPRR_OK);
    ck_assert_int_eq(udprr__framing_check(&raw), UDPRR_OK);
    ck_assert_int_eq(udprr__framing_check(&dns), UDPRR_OK);
    ck_assert_int_eq(udprr__framing_check(&f), UDPRR_EINVAL); /* 0 bytes */
    f.id_len = 9;
    ck_assert_int_eq(udprr__framing_check(&f), UDPRR_EINVAL);
    f.id_len = 8;
    f.id_offset = UDPRR_MAX_DATAGRAM - 8;
    ck_assert_int_eq(udprr__framing_check(&f), UDPRR_OK);
    f.id_offset++;
    ck_assert_int_eq(udprr__framing_check(&f), UDPRR_EINVAL);
    f.id_offset = (size_t)-1; /* must not wrap */
    ck_assert_int_eq(udprr__framing_check(&f), UDPRR_EINVAL);
    f.kind = 3;
    ck_assert_int_eq(udprr__framing_check(&f), UDPRR_EINVAL);
    ck_assert_int_eq(udprr__framing_check(NULL), UDPRR_EINVAL);
}
END_TEST

START_TEST(test_sizes_and_masks)
{
    ck_assert_uint_eq(udprr__framing_max_body(&native), UDPRR_MAX_PAYLOAD);
    ck_assert_uint_eq(udprr__framing_max_body(&raw), UDPRR_MAX_DATAGRAM);
    ck_assert_uint_eq(udprr__framing_overhead(&dns), 0);
    ck_assert(udprr__framing_id_mask(&dns) == 0xffff);
    ck_assert(udprr__framing_id_mask(&native) == UINT64_MAX);
    struct udprr__framing one = {UDPRR_FRAMING_ID_AT_OFFSET, 5, 1, 0};
    struct udprr__framing eight = {UDPRR_FRAMING_ID_AT_OFFSET, 5, 8, 0};
    ck_assert(udprr__framing_id_mask(&one) == 0xff);
    ck_assert(udprr__framing_id_mask(&eight) == UINT64_MAX);
    ck_assert(udprr__framing_has_id(&dns) && !udprr__framing_has_id(&raw));
}
END_TEST

START_TEST(test_native_request_round_trip)
{
    uint8_t out[64];
    size_t n;
    struct udprr__framed in;
    ck_assert_int_eq(udprr__framing_request(&native, 0xabcdef, 1, "hi", 2,
                                            out, &n),
                     UDPRR_OK);
    ck_assert_uint_eq(n, UDPRR__WIRE_HEADER_BYTES + 2);
    udprr__framing_stamp(&native, 0xabcdef, 7, out, n);
    ck_assert_int_eq(udprr__framing_parse(&native, out, n, 0, &in),
                     UDPRR__WIRE_VALID);
    ck_assert_int_eq(in.kind, UDPRR__KIND_REQUEST);
    ck_assert(in.id == 0xabcdef);
    ck_assert_uint_eq(in.attempt, 7);
    ck_assert_uint_eq(in.body_len, 2);
    ck_assert_mem_eq(in.body, "hi", 2);
}
END_TEST

START_TEST(test_raw_is_the_body_alone)
{
    uint8_t out[64];
    size_t n;
    struct udprr__framed in;
    ck_assert_int_eq(udprr__framing_request(&raw, 99, 1, "hello", 5, out, &n),
                     UDPRR_OK);
    ck_assert_uint_eq(n, 5);
    ck_assert_mem_eq(out, "hello", 5);
    udprr__framing_stamp(&raw, 99, 3, out, n); /* nothing to rewrite */
    ck_assert_mem_eq(out, "hello", 5);
    /* Anything at all is a reply (from the server) or a request (to it). */
    ck_assert_int_eq(udprr__framing_parse(&raw, "", 0, 1, &in),
                     UDPRR__WIRE_VALID);
    ck_assert_int_eq(in.kind, UDPRR__KIND_REPLY);
    ck_assert_uint_eq(in.attempt, 0);
    ck_assert_int_eq(udprr__framing_parse(&raw, "xyz", 3, 0, &in),
                     UDPRR__WIRE_VALID);
    ck_assert_int_eq(in.kind, UDPRR__KIND_REQUEST);
    ck_assert(in.id == 0);
    ck_assert_uint_eq(in.body_len, 3);
}
END_TEST

START_TEST(test_id_at_offset_writes_and_reads_the_id)
{
    const uint8_t query[6] = {0xee, 0xee, 0x01, 0x00, 'a', 'b'};
    uint8_t out[16];
    size_t n;
    struct udprr__framed in;
    ck_assert_int_eq(udprr__framing_request(&dns, 0xbeef, 1, query,
                                            sizeof query, out, &n),
                     UDPRR_OK);
    ck_assert_uint_eq(n, 6);
    const uint8_t want[6] = {0xbe, 0xef, 0x01, 0x00, 'a', 'b'};
    ck_assert_mem_eq(out, want, 6);
    ck_assert_int_eq(udprr__framing_parse(&dns, out, n, 1, &in),
                     UDPRR__WIRE_VALID);
    ck_assert(in.id == 0xbeef);
    ck_assert_uint_eq(in.attempt, 0);
    ck_assert_uint_eq(in.body_len, 6); /* the whole datagram */

    ck_assert_int_eq(udprr__framing_request(&coap, 0x1234, 1, query,
                                            sizeof query, out, &n),
                     UDPRR_OK);
    const uint8_t want_coap[6] = {0xee, 0xee, 0x12, 0x34, 'a', 'b'};
    ck_assert_mem_eq(out, want_coap, 6);
}
END_TEST

START_TEST(test_id_at_offset_needs_room_for_the_id)
{
    uint8_t out[16];
    size_t n = 77;
    struct udprr__framed in;
    ck_assert_int_eq(udprr__framing_request(&coap, 1, 1, "abc", 3, out, &n),
                     UDPRR_EINVAL);
    ck_assert_uint_eq(n, 77);
    ck_assert_int_eq(udprr__framing_request(&coap, 1, 1, "abcd", 4, out, &n),
                     UDPRR_OK);
    ck_assert_int_eq(udprr__framing_parse(&coap, "abc", 3, 1, &in),
                     UDPRR__WIRE_SHORT);
    struct udprr__framing far = {UDPRR_FRAMING_ID_AT_OFFSET, 100, 4, 0};
    ck_assert_int_eq(udprr__framing_parse(&far, "abc", 3, 1, &in),
                     UDPRR__WIRE_SHORT);
}
END_TEST

START_TEST(test_reply_headers)
{
    uint8_t header[UDPRR__WIRE_HEADER_BYTES];
    size_t hl = 99;
    uint8_t body[4] = {0, 0, 'o', 'k'};
    ck_assert_int_eq(udprr__framing_reply(&native, UDPRR__KIND_REPLY, 5, 3,
                                          body, 4, header, &hl),
                     1);
    ck_assert_uint_eq(hl, UDPRR__WIRE_HEADER_BYTES);
    /* header and body together form a valid datagram */
    uint8_t whole[UDPRR__WIRE_HEADER_BYTES + 4];
    memcpy(whole, header, hl);
    memcpy(whole + hl, body, 4);
    struct udprr__wire_header h;
    ck_assert_int_eq(udprr__wire_decode(whole, sizeof whole, &h, NULL, NULL),
                     UDPRR__WIRE_VALID);
    ck_assert(h.id == 5 && h.attempt == 3 && h.kind == UDPRR__KIND_REPLY);

    udprr__framing_reply_id(&native, 0x0a0b, body, 4); /* no ID to write */
    ck_assert_uint_eq(body[0], 0);
    udprr__framing_reply_id(&dns, 0x0a0b, body, 4);
    ck_assert_int_eq(udprr__framing_reply(&dns, UDPRR__KIND_REPLY, 0x0a0b, 0,
                                          body, 4, header, &hl),
                     1);
    ck_assert_uint_eq(hl, 0);
    ck_assert_uint_eq(body[0], 0x0a);
    ck_assert_uint_eq(body[1], 0x0b);
    /* a reply too short for the ID is sent as it is */
    uint8_t tiny[1] = {7};
    udprr__framing_reply_id(&dns, 0xffff, tiny, 1);
    ck_assert_uint_eq(tiny[0], 7);
    /* declines exist only natively */
    ck_assert_int_eq(udprr__framing_reply(&raw, UDPRR__KIND_DECLINE, 0, 0,
                                          NULL, 0, header, &hl),
                     0);
    ck_assert_int_eq(udprr__framing_reply(&native, UDPRR__KIND_DECLINE, 1, 1,
                                          NULL, 0, header, &hl),
                     1);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("framing");
    TCase *tc = tcase_create("framing");
    tcase_add_test(tc, test_check_rejects_bad_framings);
    tcase_add_test(tc, test_sizes_and_masks);
    tcase_add_test(tc, test_native_request_round_trip);
    tcase_add_test(tc, test_raw_is_the_body_alone);
    tcase_add_test(tc, test_id_at_offset_writes_and_reads_the_id);
    tcase_add_test(tc, test_id_at_offset_needs_room_for_the_id);
    tcase_add_test(tc, test_reply_headers);
    suite_add_tcase(s, tc);
    return udprr_test_run(s);
}
