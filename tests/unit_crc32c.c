/* SPDX-License-Identifier: MIT */
/*
 * unit_crc32c.c - CRC-32C: the known answers of RFC 3720 (iSCSI, B.4) and
 * docs/protocol.md, pieces fed in turn, and the processor's crc32
 * instruction against the table at every length and alignment.
 */
#include <string.h>

#include "crc32c.h"
#include "testutil.h"

START_TEST(test_known_answers)
{
    uint8_t buf[32];
    ck_assert_uint_eq(udprr__crc32c_update(0, "123456789", 9), 0xE3069283u);
    ck_assert_uint_eq(udprr__crc32c_update(0, "", 0), 0);
    memset(buf, 0, sizeof buf);
    ck_assert_uint_eq(udprr__crc32c_update(0, buf, 32), 0x8A9136AAu);
    memset(buf, 0xff, sizeof buf);
    ck_assert_uint_eq(udprr__crc32c_update(0, buf, 32), 0x62A8AB43u);
    for (int i = 0; i < 32; i++)
        buf[i] = (uint8_t)i;
    ck_assert_uint_eq(udprr__crc32c_update(0, buf, 32), 0x46DD794Eu);
    for (int i = 0; i < 32; i++)
        buf[i] = (uint8_t)(31 - i);
    ck_assert_uint_eq(udprr__crc32c_update(0, buf, 32), 0x113FDB5Cu);
    /* The same by the table alone. */
    ck_assert_uint_eq(udprr__crc32c_update_portable(0, "123456789", 9),
                      0xE3069283u);
    ck_assert_uint_eq(udprr__crc32c_update_portable(0, buf, 32), 0x113FDB5Cu);
}
END_TEST

/* Every split of a buffer, fed in two pieces, gives the whole's CRC. */
START_TEST(test_pieces_in_turn)
{
    uint8_t buf[100];
    uint64_t seed = 7;
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (uint8_t)seeded_rand(&seed);
    uint32_t whole = udprr__crc32c_update(0, buf, sizeof buf);
    for (size_t cut = 0; cut <= sizeof buf; cut++) {
        uint32_t c = udprr__crc32c_update(0, buf, cut);
        ck_assert_uint_eq(udprr__crc32c_update(c, buf + cut, sizeof buf - cut),
                          whole);
    }
}
END_TEST

/* Whichever way udprr__crc32c_update takes, it agrees with the table at
 * every length up to 300 bytes from every alignment, continuing any CRC;
 * and it takes the instruction exactly where the processor has it. */
START_TEST(test_instruction_matches_table)
{
    static uint8_t buf[300 + 8];
    uint64_t seed = 11;
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (uint8_t)seeded_rand(&seed);
    for (size_t at = 0; at < 8; at++)
        for (size_t len = 0; len + at <= sizeof buf && len <= 300; len++) {
            uint32_t start = (uint32_t)seeded_rand(&seed);
            ck_assert_uint_eq(udprr__crc32c_update(start, buf + at, len),
                              udprr__crc32c_update_portable(start, buf + at,
                                                            len));
        }
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    ck_assert_int_eq(udprr__crc32c_hardware(),
                     __builtin_cpu_supports("sse4.2") != 0);
#else
    ck_assert_int_eq(udprr__crc32c_hardware(), 0);
#endif
}
END_TEST

int main(void)
{
    Suite *s = suite_create("crc32c");
    TCase *tc = tcase_create("crc32c");
    tcase_add_test(tc, test_known_answers);
    tcase_add_test(tc, test_pieces_in_turn);
    tcase_add_test(tc, test_instruction_matches_table);
    suite_add_tcase(s, tc);
    return udprr_test_run(s);
}
