/* SPDX-License-Identifier: MIT */
/*
 * fuzz_decode.c - a libFuzzer target for every decoder of untrusted bytes:
 * the native header (wire.c) and the three framings (framing.c), as client
 * and as server. Build with `make fuzz` (clang's -fsanitize=fuzzer);
 * without a fuzzing engine, tests/unit_fuzz_replay.c replays the saved
 * inputs in fuzz/corpus/decode in `make check`.
 *
 * What it checks beyond "no crash, no out-of-bounds read" (the sanitizers
 * see those): whatever decodes re-encodes to the same bytes, and every view
 * it returns lies inside the input.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "framing.h"
#include "udprr.h"
#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_native(const uint8_t *data, size_t size)
{
    struct udprr__wire_header h;
    const uint8_t *body;
    size_t body_len;
    if (udprr__wire_decode(data, size, &h, &body, &body_len) !=
        UDPRR__WIRE_VALID)
        return;
    if (body != data + UDPRR__WIRE_HEADER_BYTES ||
        body_len != size - UDPRR__WIRE_HEADER_BYTES)
        abort();
    uint8_t again[UDPRR__WIRE_HEADER_BYTES];
    if (udprr__wire_encode_flags(&h, udprr__wire_flags(data), body, body_len,
                                 again) != UDPRR_OK ||
        memcmp(again, data, sizeof again) != 0)
        abort();
}

static void check_framing(const struct udprr__framing *f, const uint8_t *data,
                          size_t size)
{
    for (int from_server = 0; from_server < 2; from_server++) {
        struct udprr__framed out;
        if (udprr__framing_parse(f, data, size, from_server, &out) !=
            UDPRR__WIRE_VALID)
            continue;
        if (out.body < data || out.body_len > size ||
            out.body + out.body_len > data + size)
            abort();
        /* A cookie sits right before the body, inside the datagram. */
        if (out.cookie != NULL &&
            (out.cookie < data ||
             out.cookie + UDPRR__WIRE_COOKIE_BYTES != out.body))
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const struct udprr__framing framings[] = {
        {UDPRR_FRAMING_NATIVE, 0, 0, 0},
        {UDPRR_FRAMING_RAW, 0, 0, 0},
        {UDPRR_FRAMING_ID_AT_OFFSET, 0, 2, 0},
        {UDPRR_FRAMING_ID_AT_OFFSET, 2, 2, 0},
        {UDPRR_FRAMING_ID_AT_OFFSET, 13, 8, 0},
    };
    check_native(data, size);
    for (size_t i = 0; i < sizeof framings / sizeof framings[0]; i++)
        check_framing(&framings[i], data, size);
    return 0;
}
