/* SPDX-License-Identifier: MIT */
/*
 * opts.h - the options structs: their defaults, and reading a program's
 * struct of any version. The size travels with the struct.
 *
 * Every public options struct starts with `size_t size`. The program's
 * udprr_*_opts_init macro passes sizeof the struct as the program's header
 * declares it, and init writes exactly that many bytes. open then reads
 * exactly opts->size bytes, never more:
 *
 *   a released size (this library's, or an older header's): the fields the
 *       program has are taken, the ones its version lacks keep their
 *       defaults;
 *   a larger size (a program built against a newer header): accepted when
 *       every byte past this library's struct is zero, that is when the
 *       program left the fields this library does not know at zero (the
 *       rule of Linux's extensible structs, openat2 and clone3); else
 *       UDPRR_EINVAL, since the library cannot honour them;
 *   anything else (0, a size that ends inside a field, a size above
 *       UDPRR__OPTS_MAX_BYTES, which no options struct will ever reach and
 *       which an uninitialized struct would otherwise make the library
 *       read): UDPRR_EINVAL.
 *
 * The public udprr_*_opts_init_sized functions and the 0.1 symbols live in
 * opts.c, beside the one table of defaults.
 */
#ifndef UDPRR_OPTS_H
#define UDPRR_OPTS_H

#include <stddef.h>

#include "udprr.h"

#define UDPRR__OPTS_MAX_BYTES 4096

/* The size a struct had when `last` was its last field: the end of that
 * field, rounded up to the struct's alignment, as the compiler lays it out.
 * Fields are only ever appended, so an older version's size is computed
 * from today's struct. */
#define UDPRR__SIZE_THROUGH(type, last)                                        \
    ((offsetof(type, last) + sizeof(((type *)0)->last) + _Alignof(type) - 1) / \
     _Alignof(type) * _Alignof(type))

/* Fills *out with the defaults, then copies the program's options (given,
 * NULL for none) over them by the rules above. UDPRR_OK or UDPRR_EINVAL;
 * out->size is this library's sizeof after. */
int udprr__client_opts_take(udprr_client_opts *out,
                            const udprr_client_opts *given);
int udprr__server_opts_take(udprr_server_opts *out,
                            const udprr_server_opts *given);

#endif /* UDPRR_OPTS_H */
