/* SPDX-License-Identifier: MIT */
/*
 * client_internal.h - what tests may see of a client handle beyond the
 * public API.
 */
#ifndef UDPRR_CLIENT_INTERNAL_H
#define UDPRR_CLIENT_INTERNAL_H

#include "udprr.h"

/* The handle's socket, for tests that need to act on it from outside. */
int udprr__client_fd(const udprr_client *c);

#endif /* UDPRR_CLIENT_INTERNAL_H */
