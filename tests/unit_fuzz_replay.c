/* SPDX-License-Identifier: MIT */
/*
 * unit_fuzz_replay.c - replays every saved input of the decoder fuzz target
 * (fuzz/corpus/decode) through it, without a fuzzing engine, as a
 * regression test. Under ASan and valgrind (make check runs both) any read
 * outside an input is an error; the target itself aborts on a wrong
 * decode.
 */
#include <dirent.h>
#include <stdio.h>
#include <string.h>

#include "testutil.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#include "../fuzz/fuzz_decode.c"

START_TEST(test_replay_corpus)
{
    const char *dir = "fuzz/corpus/decode";
    DIR *d = opendir(dir);
    ck_assert_msg(d != NULL, "no corpus at %s (run from the project root)",
                  dir);
    int files = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char path[512];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        FILE *f = fopen(path, "rb");
        ck_assert_ptr_nonnull(f);
        static uint8_t buf[UDPRR_MAX_DATAGRAM + 64];
        size_t n = fread(buf, 1, sizeof buf, f);
        fclose(f);
        /* Each input in a heap block of its own size, so ASan and valgrind
         * see any read past its end. */
        uint8_t *copy = malloc(n ? n : 1);
        ck_assert_ptr_nonnull(copy);
        memcpy(copy, buf, n);
        LLVMFuzzerTestOneInput(copy, n);
        free(copy);
        files++;
    }
    closedir(d);
    ck_assert_int_gt(files, 10);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("fuzz_replay");
    TCase *tc = tcase_create("decode");
    tcase_add_test(tc, test_replay_corpus);
    suite_add_tcase(s, tc);
    return udprr_test_run(s);
}
