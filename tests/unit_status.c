/* SPDX-License-Identifier: MIT */
/*
 * unit_status.c - status codes, their messages and names.
 */
#include <string.h>

#include "testutil.h"
#include "udprr.h"

static const int all_codes[] = {
#define CODE(name, value, message) UDPRR_##name,
    UDPRR_STATUS_MAP(CODE)
#undef CODE
};
#define NCODES (sizeof all_codes / sizeof all_codes[0])

START_TEST(test_values_are_the_abi)
{
    /* These numbers are part of the ABI: changing one breaks every program
     * built against an earlier header. */
    ck_assert_int_eq(UDPRR_OK, 0);
    ck_assert_int_eq(UDPRR_ETIMEDOUT, -1);
    ck_assert_int_eq(UDPRR_EREFUSED, -2);
    ck_assert_int_eq(UDPRR_ETOOBIG, -3);
    ck_assert_int_eq(UDPRR_ETRUNC, -4);
    ck_assert_int_eq(UDPRR_ERESOLVE, -5);
    ck_assert_int_eq(UDPRR_EINVAL, -6);
    ck_assert_int_eq(UDPRR_ENOMEM, -7);
    ck_assert_int_eq(UDPRR_ESYS, -8);
    ck_assert_int_eq(UDPRR_EREMOTE, -9);
    ck_assert_int_eq(UDPRR_ECANCELED, -10);
    ck_assert_int_eq(UDPRR_EBUSY, -11);
    ck_assert_int_eq(UDPRR_ENOTPENDING, -12);
    ck_assert_int_eq(UDPRR_ENOTSUP, -13);
    ck_assert_uint_eq(NCODES, 14);
}
END_TEST

START_TEST(test_every_code_has_a_distinct_message)
{
    for (size_t i = 0; i < NCODES; i++) {
        const char *mi = udprr_strerror(all_codes[i]);
        ck_assert_ptr_nonnull(mi);
        ck_assert_uint_gt(strlen(mi), 0);
        ck_assert_str_ne(mi, udprr_strerror(12345));
        for (size_t j = i + 1; j < NCODES; j++)
            ck_assert_str_ne(mi, udprr_strerror(all_codes[j]));
    }
}
END_TEST

START_TEST(test_unknown_codes_get_a_generic_message)
{
    const int unknown[] = {1, 5, -14, -1000, 2147483647, -2147483647 - 1};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        ck_assert_str_eq(udprr_strerror(unknown[i]),
                         "unknown libudprr status");
        ck_assert_str_eq(udprr_status_name(unknown[i]), "UDPRR_UNKNOWN");
    }
}
END_TEST

START_TEST(test_names_match_the_enum)
{
    ck_assert_str_eq(udprr_status_name(UDPRR_OK), "UDPRR_OK");
    ck_assert_str_eq(udprr_status_name(UDPRR_ETIMEDOUT), "UDPRR_ETIMEDOUT");
    ck_assert_str_eq(udprr_status_name(UDPRR_ECANCELED), "UDPRR_ECANCELED");
    for (size_t i = 0; i < NCODES; i++)
        for (size_t j = i + 1; j < NCODES; j++)
            ck_assert_str_ne(udprr_status_name(all_codes[i]),
                             udprr_status_name(all_codes[j]));
}
END_TEST

START_TEST(test_version_matches_header)
{
    ck_assert_str_eq(udprr_version(), UDPRR_VERSION_STRING);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("status");
    TCase *tc = tcase_create("codes");
    tcase_add_test(tc, test_values_are_the_abi);
    tcase_add_test(tc, test_every_code_has_a_distinct_message);
    tcase_add_test(tc, test_unknown_codes_get_a_generic_message);
    tcase_add_test(tc, test_names_match_the_enum);
    tcase_add_test(tc, test_version_matches_header);
    suite_add_tcase(s, tc);
    return udprr_test_run(s);
}
