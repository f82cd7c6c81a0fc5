/* SPDX-License-Identifier: MIT */
/* A program that uses libudprr the way a user would: the installed header,
 * flags from pkg-config, the shared library at run time. */
#include <stdio.h>
#include <string.h>
#include <udprr.h>

int main(void)
{
    if (strcmp(udprr_version(), UDPRR_VERSION_STRING) != 0) {
        fprintf(stderr, "header %s, library %s\n", UDPRR_VERSION_STRING,
                udprr_version());
        return 1;
    }
    printf("libudprr %s: %s: %s\n", udprr_version(),
           udprr_status_name(UDPRR_ETIMEDOUT), udprr_strerror(UDPRR_ETIMEDOUT));
    return 0;
}
