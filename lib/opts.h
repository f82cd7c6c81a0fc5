/* SPDX-License-Identifier: MIT */
/*
 * opts.h - options structs of any version: the size travels with the struct.
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
 */
#ifndef UDPRR_OPTS_H
#define UDPRR_OPTS_H

#include <stddef.h>

#define UDPRR__OPTS_MAX_BYTES 4096

/* The size a struct had when `last` was its last field: the end of that
 * field, rounded up to the struct's alignment, as the compiler lays it out.
 * Fields are only ever appended, so an older version's size is computed
 * from today's struct. */
#define UDPRR__SIZE_THROUGH(type, last)                                        \
    ((offsetof(type, last) + sizeof(((type *)0)->last) + _Alignof(type) - 1) / \
     _Alignof(type) * _Alignof(type))

/* Writes the defaults (lib_size bytes) into the program's struct of size
 * bytes: as much of them as fits, zeros past lib_size, then size into the
 * size field. Does nothing when opts is NULL or size cannot hold the size
 * field. */
void udprr__opts_init(void *opts, size_t size, const void *defaults,
                      size_t lib_size);

/* Copies the program's options over out (lib_size bytes, holding the
 * defaults) by the rules above; released[0..n_released) are the sizes
 * released headers had, this library's among them. given NULL leaves the
 * defaults. UDPRR_OK or UDPRR_EINVAL; out's size field is lib_size after. */
int udprr__opts_take(void *out, size_t lib_size, const void *given,
                     const size_t *released, size_t n_released);

#endif /* UDPRR_OPTS_H */
