/* SPDX-License-Identifier: MIT */
/*
 * impair.c - the impairment decisions; the rules are in impair.h.
 */
#include "impair.h"

#include "seeded_rand.h"

const char *impair_config_problem(const struct impair_config *config)
{
    if (config == NULL)
        return "no impairment config";
    if (config->drop_permille > IMPAIR_PERMILLE_MAX)
        return "drop_permille is above 1000";
    if (config->dup_permille > IMPAIR_PERMILLE_MAX)
        return "dup_permille is above 1000";
    if (config->reorder_permille > IMPAIR_PERMILLE_MAX)
        return "reorder_permille is above 1000";
    if (config->corrupt_permille > IMPAIR_PERMILLE_MAX)
        return "corrupt_permille is above 1000";
    if (config->corrupt_max_bytes > IMPAIR_CORRUPT_BYTES_MAX)
        return "corrupt_max_bytes is above 16";
    if (config->truncate_permille > IMPAIR_PERMILLE_MAX)
        return "truncate_permille is above 1000";
    if (config->blackhole_len_us > UINT64_MAX - config->blackhole_start_us)
        return "the blackhole window ends past the end of time";
    return NULL;
}

uint64_t impair_stream_seed(uint64_t seed, unsigned stream)
{
    /* SplitMix64's finalizer: xorshift64* started from states that differ
     * in a bit or two gives visibly correlated first outputs, and seeds
     * in tests are small adjacent numbers. */
    uint64_t z = seed + (uint64_t)(stream + 1) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void impair_init(struct impair *imp, const struct impair_config *config,
                 uint64_t seed)
{
    imp->config = *config;
    for (unsigned s = 0; s < IMPAIR_STREAMS; s++)
        imp->rand_state[s] = impair_stream_seed(seed, s);
    imp->counters = (struct impair_counters){0};
}

static uint32_t draw(struct impair *imp, enum impair_stream stream)
{
    return seeded_rand(&imp->rand_state[stream]);
}

/* Uniform in 0..n-1 from one draw; n is at most 2^32. */
static uint64_t below(uint32_t r, uint64_t n)
{
    return ((uint64_t)r * n) >> 32;
}

/* One draw from a stream, taken whatever the setting (see impair.h). */
static int happens(struct impair *imp, enum impair_stream stream,
                   unsigned permille)
{
    return below(draw(imp, stream), IMPAIR_PERMILLE_MAX) < permille;
}

/* Picks `count` distinct offsets below len_bytes (count <= len_bytes) and
 * a nonzero mask for each, from a generator of their own seeded by
 * `choice`, so the number of draws here never shifts the stream. */
static void choose_corruption(struct impair_decision *d,
                              uint64_t choice, unsigned count,
                              size_t len_bytes)
{
    uint64_t state = impair_stream_seed(choice, 0);
    for (unsigned k = 0; k < count; k++) {
        size_t offset = (size_t)below(seeded_rand(&state), len_bytes);
        /* Taken already: the next free byte after it, wrapping around.
         * One exists, since fewer than len_bytes are taken. */
        for (unsigned j = 0; j < k;) {
            if (d->corrupt_offset[j] == offset) {
                offset = (offset + 1) % len_bytes;
                j = 0;
            } else {
                j++;
            }
        }
        d->corrupt_offset[k] = offset;
        d->corrupt_xor[k] =
            (unsigned char)(1 + below(seeded_rand(&state), 255));
    }
    d->corrupt_count = count;
}

struct impair_decision
impair_decide_at(struct impair *imp, size_t len_bytes, uint64_t now_us)
{
    const struct impair_config *cf = &imp->config;
    struct impair_decision d = {.copies = 1};
    /* UDP lengths are far below this; it keeps below()'s product exact. */
    uint64_t len = len_bytes > UINT32_MAX ? UINT32_MAX : len_bytes;

    /* Every draw first, whatever the settings and the outcome. */
    int lost = happens(imp, IMPAIR_STREAM_DROP, cf->drop_permille);
    int doubled =
        happens(imp, IMPAIR_STREAM_DUP, cf->dup_permille);
    int held = happens(imp, IMPAIR_STREAM_REORDER,
                       cf->reorder_permille);
    uint32_t jitter_draw[IMPAIR_COPIES_MAX];
    for (unsigned c = 0; c < IMPAIR_COPIES_MAX; c++)
        jitter_draw[c] = draw(imp, IMPAIR_STREAM_JITTER);
    int damaged = happens(imp, IMPAIR_STREAM_CORRUPT,
                          cf->corrupt_permille);
    uint64_t corrupt_choice =
        (uint64_t)draw(imp, IMPAIR_STREAM_CORRUPT) << 32;
    corrupt_choice |= draw(imp, IMPAIR_STREAM_CORRUPT);
    int cut = happens(imp, IMPAIR_STREAM_TRUNCATE,
                      cf->truncate_permille);
    uint32_t cut_draw = draw(imp, IMPAIR_STREAM_TRUNCATE);

    if (doubled)
        d.copies = 2;
    uint64_t hold_us = 0;
    if (held)
        hold_us = cf->reorder_delay_us ? cf->reorder_delay_us
                                       : IMPAIR_REORDER_DELAY_US;
    uint64_t last_leaves_us = now_us;
    for (unsigned c = 0; c < d.copies; c++) {
        d.send_at_us[c] = now_us + cf->delay_us +
                          below(jitter_draw[c], (uint64_t)cf->jitter_us + 1) +
                          hold_us;
        if (d.send_at_us[c] > last_leaves_us)
            last_leaves_us = d.send_at_us[c];
    }
    /* Lost if its stay [now_us, last_leaves_us] meets the window. */
    int blackholed = cf->blackhole_len_us > 0 &&
                     now_us < cf->blackhole_start_us + cf->blackhole_len_us &&
                     last_leaves_us >= cf->blackhole_start_us;

    if (lost || blackholed) {
        d = (struct impair_decision){.blackholed = blackholed};
    } else {
        d.reordered = held;
        d.send_len_bytes = len_bytes;
        if (cut && len > 0) {
            d.send_len_bytes = (size_t)below(cut_draw, len);
            d.truncated = 1;
        }
        if (damaged && len > 0) {
            unsigned most = cf->corrupt_max_bytes ? cf->corrupt_max_bytes : 1;
            unsigned count = 1 + (unsigned)below((uint32_t)corrupt_choice,
                                                 most);
            if (count > len)
                count = (unsigned)len;
            choose_corruption(&d, corrupt_choice, count, (size_t)len);
        }
    }

    imp->counters.seen++;
    imp->counters.dropped += d.copies == 0;
    imp->counters.duplicated += d.copies == 2;
    imp->counters.forwarded += d.copies;
    imp->counters.blackholed += d.blackholed != 0;
    imp->counters.reordered += d.reordered != 0;
    imp->counters.corrupted += d.corrupt_count > 0;
    imp->counters.truncated += d.truncated != 0;
    return d;
}

struct impair_decision
impair_decide(struct impair *imp, size_t len_bytes)
{
    return impair_decide_at(imp, len_bytes, 0);
}
