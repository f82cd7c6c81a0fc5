/* SPDX-License-Identifier: MIT */
/*
 * opts.c - the options structs: the one table of their defaults, the
 * public init functions, and reading a program's struct of any version
 * (the rules are in opts.h).
 */
#include "opts.h"

#include <stdint.h>
#include <string.h>

#include "rtt.h"

#define US_PER_MS 1000u

/* The retry policy's defaults are the rtt core's (docs/retry.md gives the
 * reasons); the rest are the client handle's. */
static void client_defaults(void *out)
{
    struct udprr__rtt_policy p;
    udprr__rtt_policy_default(&p);
    udprr_client_opts o = {
        .size = sizeof o,
        .deadline_ms = 10000,
        .max_attempts = 0, /* until the deadline */
        .initial_rto_ms = (unsigned)(p.initial_rto_us / US_PER_MS),
        .min_rto_ms = (unsigned)(p.min_rto_us / US_PER_MS),
        .max_rto_ms = (unsigned)(p.max_rto_us / US_PER_MS),
        .backoff_pct = p.backoff_pct,
        .jitter_pct = p.jitter_pct,
        .fixed_rto = !p.adaptive,
        .framing = UDPRR_FRAMING_NATIVE,
    };
    memcpy(out, &o, sizeof o);
}

static void server_defaults(void *out)
{
    udprr_server_opts o = {
        .size = sizeof o,
        .reply_cache = 1,
        .cache_entries = 65536,
        .cache_bytes = 64u << 20,
        .cache_lifetime_ms = 30000,
        .framing = UDPRR_FRAMING_NATIVE,
    };
    memcpy(out, &o, sizeof o);
}

/* What the library knows of one options struct. */
struct opts_kind {
    void (*defaults)(void *out);
    size_t lib_size;
    /* Sizes released headers gave the struct, this library's among them. */
    size_t released[2];
};

/* 0.1's structs ended at id_len. */
static const struct opts_kind client_kind = {
    client_defaults,
    sizeof(udprr_client_opts),
    {UDPRR__SIZE_THROUGH(udprr_client_opts, id_len),
     sizeof(udprr_client_opts)},
};
static const struct opts_kind server_kind = {
    server_defaults,
    sizeof(udprr_server_opts),
    {UDPRR__SIZE_THROUGH(udprr_server_opts, id_len),
     sizeof(udprr_server_opts)},
};

/* Room for the defaults of any options struct. */
union any_opts {
    udprr_client_opts client;
    udprr_server_opts server;
};

static void init(void *opts, size_t size, const struct opts_kind *k)
{
    if (opts == NULL || size < sizeof(size_t))
        return;
    union any_opts d;
    k->defaults(&d);
    size_t known = size < k->lib_size ? size : k->lib_size;
    memcpy(opts, &d, known);
    memset((uint8_t *)opts + known, 0, size - known);
    memcpy(opts, &size, sizeof size);
}

static int take(void *out, const void *given, const struct opts_kind *k)
{
    k->defaults(out);
    if (given == NULL)
        return UDPRR_OK;
    size_t given_size;
    memcpy(&given_size, given, sizeof given_size);
    if (given_size > UDPRR__OPTS_MAX_BYTES)
        return UDPRR_EINVAL;
    if (given_size > k->lib_size) {
        const uint8_t *extra = (const uint8_t *)given + k->lib_size;
        for (size_t i = 0; i < given_size - k->lib_size; i++)
            if (extra[i] != 0)
                return UDPRR_EINVAL;
        given_size = k->lib_size;
    } else if (given_size != k->released[0] &&
               given_size != k->released[1]) {
        return UDPRR_EINVAL;
    }
    memcpy(out, given, given_size);
    memcpy(out, &k->lib_size, sizeof k->lib_size);
    return UDPRR_OK;
}

void udprr_client_opts_init_sized(udprr_client_opts *opts, size_t size)
{
    init(opts, size, &client_kind);
}

void udprr_server_opts_init_sized(udprr_server_opts *opts, size_t size)
{
    init(opts, size, &server_kind);
}

/* The symbols programs built against 0.1's header call: they have 0.1's
 * structs, so exactly 0.1's size is written. */
void(udprr_client_opts_init)(udprr_client_opts *opts)
{
    init(opts, client_kind.released[0], &client_kind);
}

void(udprr_server_opts_init)(udprr_server_opts *opts)
{
    init(opts, server_kind.released[0], &server_kind);
}

int udprr__client_opts_take(udprr_client_opts *out,
                            const udprr_client_opts *given)
{
    return take(out, given, &client_kind);
}

int udprr__server_opts_take(udprr_server_opts *out,
                            const udprr_server_opts *given)
{
    return take(out, given, &server_kind);
}
