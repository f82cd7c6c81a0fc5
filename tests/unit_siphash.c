/* SPDX-License-Identifier: MIT */
/*
 * unit_siphash.c - SipHash-2-4 against the test vector of its paper, and
 * the properties the reply cache relies on.
 */
#include "siphash.h"
#include "testutil.h"

/* Key bytes 00..0f, little-endian words. */
static const uint64_t k0 = 0x0706050403020100ull, k1 = 0x0f0e0d0c0b0a0908ull;

START_TEST(test_paper_vector)
{
    /* The paper's example: message bytes 00..0e (15 bytes). */
    uint8_t msg[15];
    for (int i = 0; i < 15; i++)
        msg[i] = (uint8_t)i;
    ck_assert(udprr__siphash24(k0, k1, msg, sizeof msg) ==
              0xa129ca6149be45e5ull);
}
END_TEST

START_TEST(test_every_length_and_key_bit_matters)
{
    uint8_t msg[40] = {0};
    uint64_t seen[41];
    for (size_t len = 0; len <= 40; len++) {
        seen[len] = udprr__siphash24(k0, k1, msg, len);
        for (size_t j = 0; j < len; j++)
            ck_assert(seen[len] != seen[j]); /* zeros of other lengths */
    }
    for (int bit = 0; bit < 64; bit++) {
        ck_assert(udprr__siphash24(k0 ^ (1ull << bit), k1, msg, 36) !=
                  seen[36]);
        ck_assert(udprr__siphash24(k0, k1 ^ (1ull << bit), msg, 36) !=
                  seen[36]);
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("siphash");
    TCase *tc = tcase_create("siphash");
    tcase_add_test(tc, test_paper_vector);
    tcase_add_test(tc, test_every_length_and_key_bit_matters);
    suite_add_tcase(s, tc);
    return udprr_test_run(s);
}
