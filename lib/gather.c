/* SPDX-License-Identifier: MIT */
/*
 * gather.c - a gather's schedule and its repliers. See gather.h.
 */
#include "gather.h"

#include <string.h>

#include "alloc.h"
#include "udprr.h"

int udprr__gather_init(struct udprr__gather *g,
                       const struct udprr__framing *framing, uint64_t id,
                       uint64_t now_us, uint64_t window_us,
                       size_t max_replies, unsigned max_attempts)
{
    memset(g, 0, sizeof *g);
    if (window_us == 0 || max_replies == 0 ||
        max_replies > UDPRR_GATHER_MAX || now_us > UINT64_MAX - window_us)
        return UDPRR_EINVAL;
    g->framing = *framing;
    g->id = id;
    g->end_us = now_us + window_us;
    g->next_us = now_us;
    g->max_attempts = max_attempts;
    g->max_replies = max_replies;
    return UDPRR_OK;
}

void udprr__gather_free(struct udprr__gather *g)
{
    udprr__free(g->seen);
    g->seen = NULL;
    g->seen_cap = 0;
    udprr__free(g->echoed);
    g->echoed = NULL;
    g->echoed_cap = g->n_echoed = 0;
}

int udprr__gather_over(const struct udprr__gather *g, uint64_t now_us)
{
    return g->stopped || now_us >= g->end_us || g->replies >= g->max_replies;
}

void udprr__gather_stop(struct udprr__gather *g)
{
    g->stopped = 1;
}

unsigned udprr__gather_due(struct udprr__gather *g,
                           const struct udprr__rtt *rtt, uint64_t now_us,
                           uint32_t random)
{
    if (udprr__gather_over(g, now_us) || g->next_us == UINT64_MAX ||
        now_us < g->next_us)
        return 0;
    unsigned attempt = ++g->sent;
    if (g->max_attempts != 0 && g->sent >= g->max_attempts) {
        g->next_us = UINT64_MAX;
    } else {
        uint64_t wait = udprr__rtt_wait_us(rtt, attempt, random);
        /* Counted from now, not from when it was due: a late caller does
         * not send a burst to catch up. */
        g->next_us = wait > UINT64_MAX - now_us ? UINT64_MAX : now_us + wait;
    }
    return attempt;
}

uint64_t udprr__gather_next_us(const struct udprr__gather *g)
{
    return g->next_us < g->end_us ? g->next_us : g->end_us;
}

static int seen_before(const struct udprr__gather *g,
                       const struct udprr__gather_key *key)
{
    for (size_t i = 0; i < g->replies; i++)
        if (g->seen[i].len == key->len &&
            memcmp(g->seen[i].addr, key->addr, key->len) == 0)
            return 1;
    return 0;
}

/* array (used elements of size bytes, room for *cap) with room for one
 * more: itself, or grown (8, then doubling, never past max) when full;
 * NULL, array untouched, when there is no memory. */
static void *room_for_one(void *array, size_t size, size_t used, size_t *cap,
                          size_t max)
{
    if (used < *cap)
        return array;
    size_t more = *cap == 0 ? 8 : 2 * *cap;
    if (more > max)
        more = max;
    void *grown = udprr__realloc(array, more * size);
    if (grown != NULL)
        *cap = more;
    return grown;
}

static int remember(struct udprr__gather *g,
                    const struct udprr__gather_key *key)
{
    struct udprr__gather_key *seen = room_for_one(
        g->seen, sizeof *seen, g->replies, &g->seen_cap, g->max_replies);
    if (seen == NULL)
        return UDPRR_ENOMEM;
    g->seen = seen;
    g->seen[g->replies++] = *key;
    return UDPRR_OK;
}

/* Counts an echo from the server with key: 1 when it may be answered
 * (fewer than UDPRR__GATHER_ECHOES so far), 0 when not, UDPRR_ENOMEM. A
 * server is listed once, and no more servers than max_replies are. */
static int count_echo(struct udprr__gather *g,
                      const struct udprr__gather_key *key)
{
    for (size_t i = 0; i < g->n_echoed; i++) {
        struct udprr__gather_echoed *e = &g->echoed[i];
        if (e->key.len == key->len &&
            memcmp(e->key.addr, key->addr, key->len) == 0) {
            if (e->echoes >= UDPRR__GATHER_ECHOES)
                return 0;
            e->echoes++;
            return 1;
        }
    }
    if (g->n_echoed == g->max_replies)
        return 0;
    struct udprr__gather_echoed *echoed = room_for_one(
        g->echoed, sizeof *echoed, g->n_echoed, &g->echoed_cap, g->max_replies);
    if (echoed == NULL)
        return UDPRR_ENOMEM;
    g->echoed = echoed;
    g->echoed[g->n_echoed].key = *key;
    g->echoed[g->n_echoed++].echoes = 1;
    return 1;
}

int udprr__gather_datagram(struct udprr__gather *g, const uint8_t *buf,
                           size_t len, const struct udprr__gather_key *key,
                           int *status, const uint8_t **body,
                           size_t *body_len)
{
    struct udprr__framed in;
    if (g->stopped || g->replies >= g->max_replies || g->sent == 0 ||
        key->len == 0 || key->len > UDPRR__GATHER_KEY_BYTES ||
        udprr__framing_parse(&g->framing, buf, len, 1, &in) !=
            UDPRR__WIRE_VALID)
        return 0;
    if (in.kind != UDPRR__KIND_REPLY && in.kind != UDPRR__KIND_DECLINE &&
        in.kind != UDPRR__KIND_ECHO)
        return 0;
    if (udprr__framing_has_id(&g->framing) && in.id != g->id)
        return 0;
    if (in.attempt > g->sent)
        return 0; /* answers a transmission never made */
    if (seen_before(g, key))
        return 0;
    if (in.kind == UDPRR__KIND_ECHO) {
        /* The attempt the request goes with counts as a transmission,
         * so that the answer it draws is one to a transmission made. */
        int rc = g->sent < UDPRR__WIRE_MAX_ATTEMPT ? count_echo(g, key) : 0;
        if (rc != 1)
            return rc;
        *status = (int)++g->sent;
        *body = in.body;
        *body_len = in.body_len;
        return UDPRR__GATHER_ECHO;
    }
    int rc = remember(g, key);
    if (rc != UDPRR_OK)
        return rc;
    *status = in.kind == UDPRR__KIND_DECLINE ? UDPRR_EREMOTE : UDPRR_OK;
    *body = in.body;
    *body_len = in.body_len;
    return 1;
}
