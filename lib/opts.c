/* SPDX-License-Identifier: MIT */
/*
 * opts.c - options structs of any version (see opts.h).
 */
#include "opts.h"

#include <stdint.h>
#include <string.h>

#include "udprr.h"

void udprr__opts_init(void *opts, size_t size, const void *defaults,
                      size_t lib_size)
{
    if (opts == NULL || size < sizeof(size_t))
        return;
    size_t known = size < lib_size ? size : lib_size;
    memcpy(opts, defaults, known);
    memset((uint8_t *)opts + known, 0, size - known);
    memcpy(opts, &size, sizeof size);
}

int udprr__opts_take(void *out, size_t lib_size, const void *given,
                     const size_t *released, size_t n_released)
{
    size_t given_size;
    if (given == NULL)
        return UDPRR_OK;
    memcpy(&given_size, given, sizeof given_size);

    if (given_size > UDPRR__OPTS_MAX_BYTES)
        return UDPRR_EINVAL;
    if (given_size > lib_size) {
        const uint8_t *extra = (const uint8_t *)given + lib_size;
        for (size_t i = 0; i < given_size - lib_size; i++)
            if (extra[i] != 0)
                return UDPRR_EINVAL;
        given_size = lib_size;
    } else {
        size_t i = 0;
        while (i < n_released && released[i] != given_size)
            i++;
        if (i == n_released)
            return UDPRR_EINVAL;
    }
    memcpy(out, given, given_size);
    memcpy(out, &lib_size, sizeof lib_size);
    return UDPRR_OK;
}
