/* SPDX-License-Identifier: MIT */
/*
 * defer.h - the server's deferred requests: those whose handler returned
 * UDPRR_DEFER and whose answer is still to come, each named by a token.
 *
 * A pure module: time comes in as a value; no clock, no socket, no lock
 * (the server guards the table with its mutex, since answers come from any
 * thread). It allocates through udprr__malloc/udprr__free (alloc.h).
 *
 * Tokens count up from 1 and are never reused by a table, so a stale token
 * never names another request. Every entry lives the same lifetime from
 * its insertion, so insertion order is expiry order: one list gives the
 * next to expire in O(1); a hash on the token finds an entry in O(1) on
 * average.
 */
#ifndef UDPRR_DEFER_H
#define UDPRR_DEFER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "dedup.h"
#include "list.h"
#include "sock.h"

/* The largest max_deferred. */
#define UDPRR__DEFER_MAX ((size_t)1 << 20)

/* What the server needs to answer a request later. */
struct udprr__deferred {
    uint64_t token;
    uint64_t expires_us;
    struct sockaddr_storage peer; /* where the answer goes */
    socklen_t peer_len;
    struct udprr__sock_local local; /* and where it comes from */
    size_t request_len;             /* the request datagram's size, and */
    int proven;                     /* whether it proved its address (the
                                       amplification guard: server.c) */
    int sealed;                     /* it came sealed with key key_id: its
                                       answer goes sealed with that key */
    uint32_t key_id;
    uint64_t id;                  /* the request's ID and attempt, echoed */
    unsigned attempt;
    struct udprr__dedup_key key;  /* its reply cache key; addr_len 0:
                                     not cached */
    int state;                    /* the server's (server.c) */
    /* The table's own links. */
    struct udprr__deferred *chain;
    struct udprr__link link; /* expiry order */
};

typedef struct udprr__defer udprr__defer;

/* An empty table for at most max entries (1..UDPRR__DEFER_MAX), each
 * living lifetime_us (>= 1). UDPRR_OK, UDPRR_EINVAL, UDPRR_ENOMEM; *out
 * NULL on failure. */
int udprr__defer_new(udprr__defer **out, size_t max, uint64_t lifetime_us);

/* Frees the table and every entry still in it; NULL is a no-op. */
void udprr__defer_free(udprr__defer *t);

/* The token the next add will give, or 0 when the table is full (the
 * handler is told before it decides: udprr_request.token). */
uint64_t udprr__defer_next_token(const udprr__defer *t);

/* Adds e, allocated by the caller (the table owns it until it is taken
 * out again), as the entry for the token udprr__defer_next_token gave,
 * expiring at now_us + lifetime; sets its token, expiry and links.
 * UDPRR_OK, or UDPRR_EBUSY when the table is full (e stays the
 * caller's). */
int udprr__defer_add(udprr__defer *t, struct udprr__deferred *e,
                     uint64_t now_us);

/* Removes the entry with that token and returns it (the caller frees it
 * with udprr__free), or NULL when there is none. */
struct udprr__deferred *udprr__defer_take(udprr__defer *t, uint64_t token);

/* Removes and returns the oldest entry if its lifetime has ended at
 * now_us, else NULL: call until NULL to expire everything due. */
struct udprr__deferred *udprr__defer_take_expired(udprr__defer *t,
                                                  uint64_t now_us);

/* Removes and returns the oldest entry whatever its age (NULL when empty),
 * for a close that ends them all. */
struct udprr__deferred *udprr__defer_take_oldest(udprr__defer *t);

/* When the oldest entry expires: 1 and *when_us, or 0 when empty. */
int udprr__defer_next_expiry(const udprr__defer *t, uint64_t *when_us);

/* Entries in the table now. */
size_t udprr__defer_count(const udprr__defer *t);

#endif /* UDPRR_DEFER_H */
