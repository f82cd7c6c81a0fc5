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
 * copies over them as much of given as given->size says it has. given
 * must reach at least min_size (its first two fields), and must not be
 * larger than this library's struct (a newer header). */
static inline int udprr__take_opts(void *defaults, size_t full_size,
                                   const void *given, size_t min_size)
{
    size_t given_size;
    if (given == NULL)
        return UDPRR_OK;
    memcpy(&given_size, given, sizeof given_size);
    if (given_size < min_size || given_size > full_size)
        return UDPRR_EINVAL;
    memcpy(defaults, given, given_size);
    memcpy(defaults, &full_size, sizeof full_size);
    return UDPRR_OK;
}

#endif /* UDPRR_OPTS_H */
