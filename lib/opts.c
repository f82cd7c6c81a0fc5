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
        .max_pending = 65536,
        .max_pending_bytes = 64u << 20,
        .max_window = 64,
        .multicast_ttl = 1,
        .failover = UDPRR_FAILOVER_ANY,
        .endpoint_retry_ms = 1000,
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
        .max_deferred = 4096,
        .deferred_lifetime_ms = 10000,
        .workers = 1,
        .amplification_factor = 3,
    };
    memcpy(out, &o, sizeof o);
}

static void send_defaults(void *out)
{
    udprr_send_opts o = {
        .size = sizeof o,
        .deadline_ms = 0, /* the handle's */
    };
    memcpy(out, &o, sizeof o);
}

/*
 * The options structs as 0.1.0's header declared them, frozen: never edit
 * these. A program's struct is recognised by its size, and of an older
 * version's struct only the bytes up to the end of its last field are
 * read: its padding may hold anything, and a field appended later may be
 * laid out inside that padding (a 4-byte field after id_len would be).
 * Frozen copies, rather than today's struct, also keep the old sizes
 * right if an appended field ever raises the struct's alignment.
 */
struct client_opts_0_1 {
    size_t size;
    unsigned deadline_ms, max_attempts, initial_rto_ms, min_rto_ms;
    unsigned max_rto_ms, backoff_pct, jitter_pct;
    int fixed_rto;
    udprr_attempt_fn on_attempt;
    void *on_attempt_user;
    int framing;
    size_t id_offset;
    unsigned id_len;
};

/* 0.2.0's client options: 0.1's and the asynchronous client's. Frozen
 * like 0.1's once 0.2.0 is released (kept in sync with udprr.h until then:
 * see the assertions below). */
struct client_opts_0_2 {
    struct client_opts_0_1 v0_1;
    size_t max_pending, max_pending_bytes;
    unsigned max_window;
    const char *local_host, *local_service, *interface;
    int broadcast;
    unsigned multicast_ttl;
    int dont_fragment;
    int failover;
    unsigned endpoint_retry_ms;
    const udprr_key *key;
};

struct server_opts_0_1 {
    size_t size;
    int reply_cache;
    size_t cache_entries, cache_bytes;
    unsigned cache_lifetime_ms;
    int framing;
    size_t id_offset;
    unsigned id_len;
};

/* 0.2.0's server options: 0.1's, deferred answers', workers and the
 * interface. Frozen
 * like 0.1's once 0.2.0 is released. */
struct server_opts_0_2 {
    struct server_opts_0_1 v0_1;
    size_t max_deferred;
    unsigned deferred_lifetime_ms;
    unsigned workers;
    const char *interface;
    size_t rcvbuf_bytes;
    unsigned amplification_factor;
    const udprr_key *keys;
    size_t n_keys;
};

/* udprr_key never changes (udprr.h): arrays of it are passed. */
_Static_assert(sizeof(udprr_key) == 4 + UDPRR_KEY_BYTES &&
                   offsetof(udprr_key, secret) == 4,
               "udprr_key's layout is fixed");

#define FIELD_END(type, field)                                                 \
    (offsetof(type, field) + sizeof(((type *)0)->field))

/* Fields are only appended: today's structs begin with 0.1's. */
_Static_assert(offsetof(udprr_client_opts, id_len) ==
                       offsetof(struct client_opts_0_1, id_len) &&
                   offsetof(udprr_client_opts, on_attempt) ==
                       offsetof(struct client_opts_0_1, on_attempt),
               "udprr_client_opts no longer begins with 0.1's fields");
_Static_assert(offsetof(udprr_server_opts, id_len) ==
                       offsetof(struct server_opts_0_1, id_len) &&
                   offsetof(udprr_server_opts, cache_lifetime_ms) ==
                       offsetof(struct server_opts_0_1, cache_lifetime_ms),
               "udprr_server_opts no longer begins with 0.1's fields");
/* Each version's fields start past the previous version's size. */
_Static_assert(offsetof(udprr_client_opts, max_pending) >=
                   sizeof(struct client_opts_0_1),
               "0.2's client options must start past 0.1's struct");
_Static_assert(offsetof(udprr_server_opts, max_deferred) >=
                       sizeof(struct server_opts_0_1) &&
                   offsetof(udprr_server_opts, max_deferred) ==
                       offsetof(struct server_opts_0_2, max_deferred) &&
                   offsetof(udprr_server_opts, deferred_lifetime_ms) ==
                       offsetof(struct server_opts_0_2, deferred_lifetime_ms) &&
                   offsetof(udprr_server_opts, workers) ==
                       offsetof(struct server_opts_0_2, workers) &&
                   offsetof(udprr_server_opts, interface) ==
                       offsetof(struct server_opts_0_2, interface) &&
                   offsetof(udprr_server_opts, rcvbuf_bytes) ==
                       offsetof(struct server_opts_0_2, rcvbuf_bytes) &&
                   offsetof(udprr_server_opts, amplification_factor) ==
                       offsetof(struct server_opts_0_2, amplification_factor) &&
                   offsetof(udprr_server_opts, keys) ==
                       offsetof(struct server_opts_0_2, keys) &&
                   offsetof(udprr_server_opts, n_keys) ==
                       offsetof(struct server_opts_0_2, n_keys),
               "udprr_server_opts no longer begins with 0.2's fields");
_Static_assert(offsetof(udprr_client_opts, max_pending) ==
                       offsetof(struct client_opts_0_2, max_pending) &&
                   offsetof(udprr_client_opts, max_window) ==
                       offsetof(struct client_opts_0_2, max_window) &&
                   offsetof(udprr_client_opts, local_host) ==
                       offsetof(struct client_opts_0_2, local_host) &&
                   offsetof(udprr_client_opts, dont_fragment) ==
                       offsetof(struct client_opts_0_2, dont_fragment) &&
                   offsetof(udprr_client_opts, endpoint_retry_ms) ==
                       offsetof(struct client_opts_0_2, endpoint_retry_ms) &&
                   offsetof(udprr_client_opts, key) ==
                       offsetof(struct client_opts_0_2, key),
               "udprr_client_opts no longer begins with 0.2's fields");

/* One version of an options struct: the size that names it, and how many
 * of its bytes are fields (the rest is padding). */
struct opts_version {
    size_t size;
    size_t field_bytes;
};

/* What the library knows of one options struct: its own version, and
 * every version released (or about to be) since 0.1, its own included, so
 * that a library with fields appended later needs only a new `own`. An
 * entry of size 0 is unused. */
struct opts_kind {
    void (*defaults)(void *out);
    struct opts_version own;
    struct opts_version older[2];
    /* The fields appended after 0.1, whose zero means their default. */
    struct field_span {
        size_t offset, size;
    } zero_default[5];
};

#define SPAN(type, field) {offsetof(type, field), sizeof(((type *)0)->field)}

static const struct opts_kind client_kind = {
    client_defaults,
    {sizeof(udprr_client_opts),
     FIELD_END(udprr_client_opts, key)},
    {{sizeof(struct client_opts_0_1),
      FIELD_END(struct client_opts_0_1, id_len)},
     {sizeof(struct client_opts_0_2),
      FIELD_END(struct client_opts_0_2, key)}},
    {SPAN(udprr_client_opts, max_pending),
     SPAN(udprr_client_opts, max_pending_bytes),
     SPAN(udprr_client_opts, max_window),
     SPAN(udprr_client_opts, multicast_ttl),
     SPAN(udprr_client_opts, endpoint_retry_ms)},
};
static const struct opts_kind server_kind = {
    server_defaults,
    {sizeof(udprr_server_opts),
     FIELD_END(udprr_server_opts, n_keys)},
    {{sizeof(struct server_opts_0_1),
      FIELD_END(struct server_opts_0_1, id_len)},
     {sizeof(struct server_opts_0_2),
      FIELD_END(struct server_opts_0_2, n_keys)}},
    {SPAN(udprr_server_opts, max_deferred),
     SPAN(udprr_server_opts, deferred_lifetime_ms),
     SPAN(udprr_server_opts, workers),
     SPAN(udprr_server_opts, amplification_factor)},
};

/* Per-request options are new in 0.2: no older version. */
static const struct opts_kind send_kind = {
    send_defaults,
    {sizeof(udprr_send_opts), FIELD_END(udprr_send_opts, deadline_ms)},
    {{0, 0}, {0, 0}},
    {{0, 0}},
};

#define N_OLDER (sizeof client_kind.older / sizeof client_kind.older[0])

/* Room for the defaults of any options struct. */
union any_opts {
    udprr_client_opts client;
    udprr_server_opts server;
    udprr_send_opts send;
};

static void init(void *opts, size_t size, const struct opts_kind *k)
{
    if (opts == NULL || size < sizeof(size_t))
        return;
    union any_opts d;
    k->defaults(&d);
    size_t known = size < k->own.size ? size : k->own.size;
    memcpy(opts, &d, known);
    memset((uint8_t *)opts + known, 0, size - known);
    memcpy(opts, &size, sizeof size);
}

/* How many bytes of a program's struct of given_size to copy over the
 * defaults, by the rules in opts.h; 0 when the size is refused. */
static size_t bytes_to_take(const void *given, size_t given_size,
                            const struct opts_kind *k)
{
    if (given_size > UDPRR__OPTS_MAX_BYTES)
        return 0;
    if (given_size > k->own.size) {
        /* A newer header's struct: the fields this library does not know
         * start at or after its own size (opts.h), and must be zero. */
        const uint8_t *newer = (const uint8_t *)given + k->own.size;
        for (size_t i = 0; i < given_size - k->own.size; i++)
            if (newer[i] != 0)
                return 0;
        return k->own.field_bytes;
    }
    if (given_size == k->own.size)
        return k->own.field_bytes;
    for (size_t i = 0; i < N_OLDER; i++)
        if (k->older[i].size != 0 && given_size == k->older[i].size)
            return k->older[i].field_bytes;
    return 0;
}

/* A field appended after 0.1 that the program left at zero takes its
 * default (the rule in opts.h). */
static void zero_means_default(void *out, const struct opts_kind *k)
{
    union any_opts d;
    k->defaults(&d);
    for (size_t i = 0; i < sizeof k->zero_default / sizeof k->zero_default[0];
         i++) {
        const struct field_span *f = &k->zero_default[i];
        const uint8_t *field = (const uint8_t *)out + f->offset;
        size_t nonzero = 0;
        for (size_t b = 0; b < f->size; b++)
            nonzero |= field[b];
        if (f->size > 0 && nonzero == 0)
            memcpy((uint8_t *)out + f->offset, (const uint8_t *)&d + f->offset,
                   f->size);
    }
}

static int take(void *out, const void *given, const struct opts_kind *k)
{
    k->defaults(out);
    if (given == NULL)
        return UDPRR_OK;
    size_t given_size;
    memcpy(&given_size, given, sizeof given_size);
    size_t n = bytes_to_take(given, given_size, k);
    if (n == 0)
        return UDPRR_EINVAL;
    memcpy((uint8_t *)out + sizeof given_size,
           (const uint8_t *)given + sizeof given_size, n - sizeof given_size);
    zero_means_default(out, k);
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

void udprr_send_opts_init_sized(udprr_send_opts *opts, size_t size)
{
    init(opts, size, &send_kind);
}

/* The symbols programs built against 0.1's header call: they have 0.1's
 * structs, so exactly 0.1's size is written. */
void(udprr_client_opts_init)(udprr_client_opts *opts)
{
    init(opts, client_kind.older[0].size, &client_kind);
}

void(udprr_server_opts_init)(udprr_server_opts *opts)
{
    init(opts, server_kind.older[0].size, &server_kind);
}

int udprr__client_opts_take(udprr_client_opts *out,
                            const udprr_client_opts *given)
{
    return take(out, given, &client_kind);
}

int udprr__send_opts_take(udprr_send_opts *out, const udprr_send_opts *given)
{
    return take(out, given, &send_kind);
}

int udprr__server_opts_take(udprr_server_opts *out,
                            const udprr_server_opts *given)
{
    return take(out, given, &server_kind);
}
