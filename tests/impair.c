/*
 * impair.c - the impairment decisions; the rules are in impair.h.
 */
#include "impair.h"

#include "seeded_rand.h"

const char *udprr_test_impair_config_problem(
    const struct udprr_test_impair_config *config)
{
    if (config == NULL)
        return "no impairment config";
    if (config->drop_permille > UDPRR_TEST_PERMILLE_MAX)
        return "drop_permille is above 1000";
    if (config->dup_permille > UDPRR_TEST_PERMILLE_MAX)
        return "dup_permille is above 1000";
    return NULL;
}

uint64_t udprr_test_impair_stream_seed(uint64_t seed, unsigned stream)
{
    /* SplitMix64's finalizer: xorshift64* started from states that differ
     * in a bit or two gives visibly correlated first outputs, and seeds
     * in tests are small adjacent numbers. */
    uint64_t z = seed + (uint64_t)(stream + 1) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void udprr_test_impair_init(struct udprr_test_impair *imp,
                            const struct udprr_test_impair_config *config,
                            uint64_t seed)
{
    imp->config = *config;
    for (unsigned s = 0; s < UDPRR_TEST_IMPAIR_STREAMS; s++)
        imp->rand_state[s] = udprr_test_impair_stream_seed(seed, s);
    imp->counters = (struct udprr_test_impair_counters){0};
}

/* One draw from a stream, taken whatever the setting (see impair.h). */
static int happens(struct udprr_test_impair *imp,
                   enum udprr_test_impair_stream stream, unsigned permille)
{
    uint32_t r = udprr_test_rand(&imp->rand_state[stream]);
    return (((uint64_t)r * UDPRR_TEST_PERMILLE_MAX) >> 32) < permille;
}

struct udprr_test_impair_decision
udprr_test_impair_decide(struct udprr_test_impair *imp, size_t len_bytes)
{
    (void)len_bytes; /* truncation and corruption will need it */
    struct udprr_test_impair_decision d = {.copies = 1};

    int lost = happens(imp, UDPRR_TEST_IMPAIR_STREAM_DROP,
                       imp->config.drop_permille);
    int doubled = happens(imp, UDPRR_TEST_IMPAIR_STREAM_DUP,
                          imp->config.dup_permille);
    if (lost)
        d.copies = 0;
    else if (doubled)
        d.copies = 2;

    imp->counters.seen++;
    imp->counters.dropped += d.copies == 0;
    imp->counters.duplicated += d.copies == 2;
    imp->counters.forwarded += d.copies;
    return d;
}
