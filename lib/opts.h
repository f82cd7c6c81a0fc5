/* SPDX-License-Identifier: MIT */
/*
 * opts.h - reading a caller's options struct of any version.
 *
 * Every public options struct starts with `size_t size`, which the caller's
 * *_opts_init set to the struct's size in the header the caller was built
 * with. A caller built against an older header passes a shorter struct;
 * the fields it does not have keep the library's defaults.
 */
#ifndef UDPRR_OPTS_H
#define UDPRR_OPTS_H

#include <stddef.h>
#include <string.h>

#include "udprr.h"

/* defaults (of full_size bytes) already holds the library's defaults;
 * copies over them as much of given as given->size says it has. That size
 * must be one a released header had: today only full_size (min_size is
 * kept for the day a field is appended; then the old full size joins the
 * accepted ones, and no size that ends inside a field is ever accepted). */
static inline int udprr__take_opts(void *defaults, size_t full_size,
                                   const void *given, size_t min_size)
{
    size_t given_size;
    if (given == NULL)
        return UDPRR_OK;
    memcpy(&given_size, given, sizeof given_size);
    if (given_size < min_size || given_size != full_size)
        return UDPRR_EINVAL;
    memcpy(defaults, given, given_size);
    memcpy(defaults, &full_size, sizeof full_size);
    return UDPRR_OK;
}

#endif /* UDPRR_OPTS_H */
