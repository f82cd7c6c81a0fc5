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
 *   this library's size: its fields are taken (its padding is not read);
 *   an older header's size: the fields that version has are taken (its
 *       padding is not read: a later field may be laid out there), the
 *       ones it lacks keep their defaults;
 *   a larger size (a program built against a newer header): accepted when
 *       every byte past this library's struct is zero, that is when the
 *       program left the fields this library does not know at zero (the
 *       rule of Linux's extensible structs, openat2 and clone3: the zero
 *       of an appended field must mean its default); else UDPRR_EINVAL,
 *       since the library cannot honour them;
 *   anything else (0, a size between two versions', a size above
 *       UDPRR__OPTS_MAX_BYTES, which no options struct will ever reach and
 *       which an uninitialized struct would otherwise make the library
 *       read): UDPRR_EINVAL.
 *
 * So that every version has a size of its own, a field appended in a later
 * version starts at or after the previous version's sizeof (with explicit
 * padding before it if need be), never inside that version's padding.
 *
 * The public udprr_*_opts_init_sized functions and the 0.1 symbols live in
 * opts.c, beside the one table of defaults.
 */
#ifndef UDPRR_OPTS_H
#define UDPRR_OPTS_H

#include <stddef.h>

#include "udprr.h"

#define UDPRR__OPTS_MAX_BYTES 4096

/* Fills *out with the defaults, then copies the program's options (given,
 * NULL for none) over them by the rules above. UDPRR_OK or UDPRR_EINVAL;
 * out->size is this library's sizeof after. */
int udprr__client_opts_take(udprr_client_opts *out,
                            const udprr_client_opts *given);
int udprr__server_opts_take(udprr_server_opts *out,
                            const udprr_server_opts *given);
int udprr__send_opts_take(udprr_send_opts *out, const udprr_send_opts *given);

#endif /* UDPRR_OPTS_H */
