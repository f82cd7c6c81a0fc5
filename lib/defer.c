/* SPDX-License-Identifier: MIT */
/*
 * defer.c - the table of deferred requests. See defer.h.
 */
#include "defer.h"

#include <string.h>

#include "alloc.h"
#include "udprr.h"

struct udprr__defer {
    struct udprr__deferred **buckets;
    size_t nbuckets; /* a power of two, at least max: chains stay short */
    size_t count, max;
    uint64_t lifetime_us;
    uint64_t last_token;
    struct udprr__list age; /* oldest first: expiry order */
};

int udprr__defer_new(udprr__defer **out, size_t max, uint64_t lifetime_us)
{
    if (out == NULL)
        return UDPRR_EINVAL;
    *out = NULL;
    if (max < 1 || max > UDPRR__DEFER_MAX || lifetime_us < 1)
        return UDPRR_EINVAL;
    udprr__defer *t = udprr__calloc(1, sizeof *t);
    if (t == NULL)
        return UDPRR_ENOMEM;
    t->nbuckets = 1;
    while (t->nbuckets < max)
        t->nbuckets *= 2;
    t->buckets = udprr__calloc(t->nbuckets, sizeof *t->buckets);
    if (t->buckets == NULL) {
        udprr__free(t);
        return UDPRR_ENOMEM;
    }
    t->max = max;
    t->lifetime_us = lifetime_us;
    *out = t;
    return UDPRR_OK;
}

void udprr__defer_free(udprr__defer *t)
{
    if (t == NULL)
        return;
    struct udprr__deferred *e;
    while ((e = udprr__defer_take_oldest(t)) != NULL)
        udprr__free(e);
    udprr__free(t->buckets);
    udprr__free(t);
}

uint64_t udprr__defer_next_token(const udprr__defer *t)
{
    return t->count < t->max ? t->last_token + 1 : 0;
}

static struct udprr__deferred **bucket_of(const udprr__defer *t,
                                          uint64_t token)
{
    return &t->buckets[token & (t->nbuckets - 1)];
}

int udprr__defer_add(udprr__defer *t, struct udprr__deferred *n,
                     uint64_t now_us)
{
    if (t->count >= t->max)
        return UDPRR_EBUSY;
    n->token = ++t->last_token;
    n->expires_us = now_us <= UINT64_MAX - t->lifetime_us
                        ? now_us + t->lifetime_us
                        : UINT64_MAX;
    struct udprr__deferred **b = bucket_of(t, n->token);
    n->chain = *b;
    *b = n;
    udprr__list_append(&t->age, &n->link);
    t->count++;
    return UDPRR_OK;
}

static void unlink_entry(udprr__defer *t, struct udprr__deferred *e)
{
    struct udprr__deferred **p = bucket_of(t, e->token);
    while (*p != e)
        p = &(*p)->chain;
    *p = e->chain;
    udprr__list_unlink(&t->age, &e->link);
    t->count--;
}

struct udprr__deferred *udprr__defer_take(udprr__defer *t, uint64_t token)
{
    struct udprr__deferred *e = *bucket_of(t, token);
    while (e != NULL && e->token != token)
        e = e->chain;
    if (e != NULL)
        unlink_entry(t, e);
    return e;
}

/* The oldest entry, or NULL. */
static struct udprr__deferred *oldest_of(const udprr__defer *t)
{
    return t->age.oldest != NULL ? udprr__container_of(t->age.oldest,
                                                       struct udprr__deferred,
                                                       link)
                                 : NULL;
}

struct udprr__deferred *udprr__defer_take_expired(udprr__defer *t,
                                                  uint64_t now_us)
{
    struct udprr__deferred *e = oldest_of(t);
    if (e == NULL || now_us < e->expires_us)
        return NULL;
    unlink_entry(t, e);
    return e;
}

struct udprr__deferred *udprr__defer_take_oldest(udprr__defer *t)
{
    struct udprr__deferred *e = oldest_of(t);
    if (e != NULL)
        unlink_entry(t, e);
    return e;
}

int udprr__defer_next_expiry(const udprr__defer *t, uint64_t *when_us)
{
    const struct udprr__deferred *e = oldest_of(t);
    if (e == NULL)
        return 0;
    *when_us = e->expires_us;
    return 1;
}

size_t udprr__defer_count(const udprr__defer *t)
{
    return t->count;
}
