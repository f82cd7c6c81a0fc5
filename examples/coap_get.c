/* SPDX-License-Identifier: MIT */
/*
 * coap_get.c - a confirmable CoAP GET (RFC 7252) over libudprr.
 *
 * CoAP puts a 16-bit Message ID at bytes 2-3 of every message, and a
 * server's ACK echoes it, so the client uses id-at-offset framing (offset
 * 2, 2 bytes): the library writes a fresh Message ID into the request,
 * retransmits it on CoAP's own schedule (set below through the client
 * options), and returns only the ACK that carries that ID. This program
 * builds the request (a random token, one Uri-Path option per segment) and
 * checks the response's token before printing its payload.
 *
 * Only piggybacked responses are supported: the server must put its
 * response in the ACK, as libcoap's coap-server does for its default
 * resources. An empty ACK (the server will answer later, in a separate
 * CON message) is reported as unsupported.
 *
 *   coap_get URI-PATH [--server HOST] [--port P] [--deadline MS]
 *            [--verbose] [--help]
 *
 * Build: cc coap_get.c $(pkg-config --cflags --libs udprr)
 */
#define _GNU_SOURCE
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <udprr.h>

#include "example_util.h"

#define COAP_VERSION 1
#define COAP_TYPE_CON 0
#define COAP_TYPE_NON 1
#define COAP_TYPE_ACK 2
#define COAP_TYPE_RST 3
#define COAP_CODE_GET 0x01              /* 0.01 */
#define COAP_CODE_CONTENT 0x45          /* 2.05 */
#define COAP_OPTION_URI_PATH 11
#define COAP_OPTION_BLOCK2 23
#define COAP_PAYLOAD_MARKER 0xFF
#define COAP_TOKEN_BYTES 4              /* of the 0..8 RFC 7252 allows */
#define COAP_MAX_SEGMENT_BYTES 255      /* Uri-Path is 0..255 bytes */

/* RFC 7252 section 4.2 and 4.8: the first wait is a random time between
 * ACK_TIMEOUT (2 s) and ACK_TIMEOUT * ACK_RANDOM_FACTOR (3 s), doubled for
 * each of at most MAX_RETRANSMIT (4) retransmissions. The library waits
 * initial_rto_ms first and shortens each later, doubled wait by a random
 * 0..jitter_pct percent: 3 s and 33% keep every wait within the RFC's
 * range (3 s, then 4..6, 8..12, 16..24, 32..48 s). */
#define COAP_ACK_TIMEOUT_MAX_MS 3000
#define COAP_JITTER_PCT 33
#define COAP_MAX_RETRANSMIT 4

/* What one request may take: far under the 1152 bytes RFC 7252 section
 * 4.6 suggests as the most a CoAP message should be without Block. */
#define REQUEST_CAP 1024

static void usage(FILE *out)
{
    fprintf(out,
            "usage: coap_get URI-PATH [--server HOST] [--port P] "
            "[--deadline MS]\n"
            "                [--verbose] [--help]\n"
            "\n"
            "Sends a confirmable CoAP GET for URI-PATH (\"time\",\n"
            "\".well-known/core\", \"\" for the root; a leading '/' is\n"
            "optional; segments are sent as given, without percent-decoding)\n"
            "and prints the payload of a 2.05 Content response on stdout.\n"
            "Only the server given is asked (default 127.0.0.1, port 5683).\n"
            "\n"
            "  --server HOST   the CoAP server, a name or an address\n"
            "  --port P        its port (default 5683)\n"
            "  --deadline MS   give up after MS milliseconds, retries\n"
            "                  included (default 10000); retransmissions\n"
            "                  follow RFC 7252: after 3 s, then about 4-6,\n"
            "                  8-12, 16-24 s; at most 4\n"
            "  --verbose       print each transmission on stderr\n"
            "\n"
            "Exit status: 0 payload printed; 1 any other response (its code\n"
            "on stderr), no response, or a separate (not piggybacked)\n"
            "response, which this example does not support; 2 usage error.\n");
}

/* Option delta or length as RFC 7252 section 3.1 encodes it: the 4-bit
 * nibble, and 0, 1 or 2 extended bytes after the option's first byte. */
static unsigned option_nibble(size_t v, uint8_t ext[2], size_t *ext_len)
{
    if (v < 13) {
        *ext_len = 0;
        return (unsigned)v;
    }
    if (v < 269) {
        ext[0] = (uint8_t)(v - 13);
        *ext_len = 1;
        return 13;
    }
    ext[0] = (uint8_t)((v - 269) >> 8);
    ext[1] = (uint8_t)(v - 269);
    *ext_len = 2;
    return 14;
}

/* Appends option `number` (options must come in ascending order; prev is
 * the previous one's number) with value[0..len). Returns -1 when it would
 * not fit in cap. */
static int put_option(uint8_t *msg, size_t *used, size_t cap, unsigned prev,
                      unsigned number, const void *value, size_t len)
{
    uint8_t delta_ext[2], len_ext[2];
    size_t delta_ext_len, len_ext_len;
    unsigned delta_nibble =
        option_nibble(number - prev, delta_ext, &delta_ext_len);
    unsigned len_nibble = option_nibble(len, len_ext, &len_ext_len);
    size_t need = 1 + delta_ext_len + len_ext_len + len;
    if (need > cap - *used)
        return -1;
    uint8_t *p = msg + *used;
    *p++ = (uint8_t)(delta_nibble << 4 | len_nibble);
    memcpy(p, delta_ext, delta_ext_len);
    p += delta_ext_len;
    memcpy(p, len_ext, len_ext_len);
    p += len_ext_len;
    if (len > 0)
        memcpy(p, value, len);
    *used += need;
    return 0;
}

/* Reads an option delta or length whose nibble is n, its extended bytes at
 * msg[*pos]; advances *pos. Returns -1 for nibble 15 or bytes past len. */
static int get_option_field(const uint8_t *msg, size_t len, size_t *pos,
                            unsigned n, size_t *out)
{
    if (n < 13) {
        *out = n;
    } else if (n == 13) {
        if (len - *pos < 1)
            return -1;
        *out = 13 + (size_t)msg[*pos];
        *pos += 1;
    } else if (n == 14) {
        if (len - *pos < 2)
            return -1;
        *out = 269 + ((size_t)msg[*pos] << 8 | msg[*pos + 1]);
        *pos += 2;
    } else {
        return -1;
    }
    return 0;
}

static const char *code_name(unsigned code)
{
    switch (code) {
    case 0x41: return "Created";
    case 0x42: return "Deleted";
    case 0x43: return "Valid";
    case 0x44: return "Changed";
    case 0x45: return "Content";
    case 0x5F: return "Continue";
    case 0x80: return "Bad Request";
    case 0x81: return "Unauthorized";
    case 0x82: return "Bad Option";
    case 0x83: return "Forbidden";
    case 0x84: return "Not Found";
    case 0x85: return "Method Not Allowed";
    case 0x86: return "Not Acceptable";
    case 0x8C: return "Precondition Failed";
    case 0x8D: return "Request Entity Too Large";
    case 0x8F: return "Unsupported Content-Format";
    case 0xA0: return "Internal Server Error";
    case 0xA1: return "Not Implemented";
    case 0xA2: return "Bad Gateway";
    case 0xA3: return "Service Unavailable";
    case 0xA4: return "Gateway Timeout";
    case 0xA5: return "Proxying Not Supported";
    default: return "";
    }
}

/* Writes bytes so that a hostile payload cannot drive the terminal: the
 * printable ASCII, tab and newline as they are, the rest as \xHH. */
static void put_text(FILE *out, const uint8_t *p, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if ((p[i] >= 0x20 && p[i] < 0x7F) || p[i] == '\n' || p[i] == '\t')
            fputc(p[i], out);
        else
            fprintf(out, "\\x%02x", p[i]);
    }
}

struct attempt_log {
    uint64_t message_id; /* of the last transmission, from the hook */
    int verbose;
};

static void on_attempt(void *user, const udprr_attempt_info *info)
{
    struct attempt_log *log = user;
    log->message_id = info->id;
    if (log->verbose)
        fprintf(stderr,
                "coap_get: attempt %u: sent %zu bytes with Message ID "
                "0x%04llx; waiting up to %.3f s\n",
                info->attempt, info->len, (unsigned long long)info->id,
                info->wait_us / 1e6);
}

/*
 * Checks the response and prints its payload. Returns the exit status.
 * Never reads outside msg[0..len).
 */
static int print_response(const uint8_t *msg, size_t len, uint64_t sent_id,
                          const uint8_t *token, size_t token_len)
{
    if (len < 4 || msg[0] >> 6 != COAP_VERSION) {
        fprintf(stderr, "coap_get: the response is not a CoAP version 1 "
                        "message\n");
        return 1;
    }
    unsigned type = msg[0] >> 4 & 3, tkl = msg[0] & 0xF, code = msg[1];
    unsigned message_id = (unsigned)msg[2] << 8 | msg[3];
    if (message_id != sent_id) {
        fprintf(stderr, "coap_get: response Message ID 0x%04x is not the "
                        "request's 0x%04llx\n",
                message_id, (unsigned long long)sent_id);
        return 1;
    }
    if (type == COAP_TYPE_RST) {
        fprintf(stderr, "coap_get: the server reset the request (RST)\n");
        return 1;
    }
    if (type != COAP_TYPE_ACK) {
        fprintf(stderr, "coap_get: expected an ACK, got a %s message\n",
                type == COAP_TYPE_CON ? "CON" : "NON");
        return 1;
    }
    if (code == 0) {
        fprintf(stderr, "coap_get: the server sent an empty ACK: it will "
                        "answer in a separate response, which this example "
                        "does not support\n");
        return 1;
    }
    if (tkl > 8 || len - 4 < tkl) {
        fprintf(stderr, "coap_get: malformed response (token length %u "
                        "in a %zu-byte message)\n", tkl, len);
        return 1;
    }
    if (tkl != token_len || memcmp(msg + 4, token, token_len) != 0) {
        fprintf(stderr, "coap_get: the response's token is not the "
                        "request's\n");
        return 1;
    }

    /* Options, then the payload after the 0xFF marker, if any. */
    size_t pos = 4 + tkl, option = 0;
    int more_blocks = 0;
    const uint8_t *payload = NULL;
    size_t payload_len = 0;
    while (pos < len) {
        if (msg[pos] == COAP_PAYLOAD_MARKER) {
            pos++;
            if (pos == len) {
                fprintf(stderr, "coap_get: malformed response (payload "
                                "marker with no payload)\n");
                return 1;
            }
            payload = msg + pos;
            payload_len = len - pos;
            break;
        }
        unsigned delta_nibble = msg[pos] >> 4, len_nibble = msg[pos] & 0xF;
        size_t delta, value_len;
        pos++;
        if (get_option_field(msg, len, &pos, delta_nibble, &delta) != 0 ||
            get_option_field(msg, len, &pos, len_nibble, &value_len) != 0 ||
            value_len > len - pos) {
            fprintf(stderr, "coap_get: malformed option in the response\n");
            return 1;
        }
        option += delta;
        if (option == COAP_OPTION_BLOCK2 && value_len > 0 &&
            (msg[pos + value_len - 1] & 0x08))
            more_blocks = 1;
        pos += value_len;
    }

    if (code != COAP_CODE_CONTENT) {
        const char *name = code_name(code);
        fprintf(stderr, "coap_get: %u.%02u%s%s", code >> 5, code & 0x1F,
                *name ? " " : "", name);
        if (payload_len > 0) {
            fputs(": ", stderr);
            put_text(stderr, payload, payload_len);
        }
        fputc('\n', stderr);
        return 1;
    }
    if (payload_len > 0) {
        fwrite(payload, 1, payload_len, stdout);
        if (payload[payload_len - 1] != '\n')
            fputc('\n', stdout);
    }
    if (more_blocks) {
        fprintf(stderr, "coap_get: this is only the first block of the "
                        "resource (Block2); block-wise transfer is not "
                        "supported here\n");
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"server", required_argument, NULL, 's'},
        {"port", required_argument, NULL, 'p'},
        {"deadline", required_argument, NULL, 'D'},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    const char *server = "127.0.0.1", *port = "5683";
    unsigned deadline_ms = 10000;
    struct attempt_log log = {0, 0};
    int opt;

    while ((opt = getopt_long(argc, argv, "s:p:D:vh", longopts, NULL)) !=
           -1) {
        switch (opt) {
        case 's': server = optarg; break;
        case 'p': port = optarg; break;
        case 'D':
            if (example_parse_ms(optarg, &deadline_ms) != 0 || deadline_ms == 0) {
                fprintf(stderr, "coap_get: --deadline takes 1..3600000 "
                                "milliseconds\n");
                return 2;
            }
            break;
        case 'v': log.verbose = 1; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind + 1 != argc) {
        usage(stderr);
        return 2;
    }
    const char *path = argv[optind];
    if (path[0] == '/')
        path++;

    /* Version 1, CON, token length; GET; Message ID 0 (the library writes
     * the real one); the token. */
    uint8_t request[REQUEST_CAP];
    uint8_t token[COAP_TOKEN_BYTES];
    if (getrandom(token, sizeof token, 0) != (ssize_t)sizeof token) {
        perror("coap_get: getrandom");
        return 1;
    }
    request[0] = (uint8_t)(COAP_VERSION << 6 | COAP_TYPE_CON << 4 |
                           COAP_TOKEN_BYTES);
    request[1] = COAP_CODE_GET;
    request[2] = request[3] = 0;
    memcpy(request + 4, token, sizeof token);
    size_t used = 4 + sizeof token;

    /* One Uri-Path option per segment, empty ones included ("a/" is "a"
     * and ""); the root, "", has none (RFC 7252 section 6.4). */
    unsigned prev_option = 0;
    const char *seg = *path != '\0' ? path : NULL;
    while (seg != NULL) {
        const char *slash = strchr(seg, '/');
        size_t seg_len = slash ? (size_t)(slash - seg) : strlen(seg);
        if (seg_len > COAP_MAX_SEGMENT_BYTES ||
            put_option(request, &used, sizeof request, prev_option,
                       COAP_OPTION_URI_PATH, seg, seg_len) != 0) {
            fprintf(stderr, "coap_get: path too long (segments up to %d "
                            "bytes, the request up to %d)\n",
                    COAP_MAX_SEGMENT_BYTES, REQUEST_CAP);
            return 2;
        }
        prev_option = COAP_OPTION_URI_PATH;
        seg = slash ? slash + 1 : NULL;
    }

    udprr_client_opts opts;
    udprr_client_opts_init(&opts);
    opts.framing = UDPRR_FRAMING_ID_AT_OFFSET;
    opts.id_offset = 2;
    opts.id_len = 2;
    opts.deadline_ms = deadline_ms;
    opts.max_attempts = 1 + COAP_MAX_RETRANSMIT;
    opts.initial_rto_ms = COAP_ACK_TIMEOUT_MAX_MS;
    opts.max_rto_ms = COAP_ACK_TIMEOUT_MAX_MS << COAP_MAX_RETRANSMIT;
    opts.jitter_pct = COAP_JITTER_PCT;
    opts.fixed_rto = 1; /* RFC 7252 does not adapt its timeout */
    opts.on_attempt = on_attempt;
    opts.on_attempt_user = &log;

    udprr_client *c;
    int rc = udprr_client_open(&c, server, port, &opts);
    if (rc != UDPRR_OK) {
        fprintf(stderr, "coap_get: cannot reach %s port %s: %s\n", server,
                port, udprr_strerror(rc));
        return 1;
    }
    static uint8_t response[UDPRR_MAX_DATAGRAM];
    size_t response_len = 0;
    rc = udprr_client_request(c, request, used, response, sizeof response,
                              &response_len);
    udprr_client_close(c);

    switch (rc) {
    case UDPRR_OK:
        return print_response(response, response_len, log.message_id, token,
                              sizeof token);
    case UDPRR_EREFUSED:
        fprintf(stderr, "coap_get: nothing listens at %s port %s (%s)\n",
                server, port, udprr_strerror(rc));
        return 1;
    case UDPRR_ETIMEDOUT:
        fprintf(stderr, "coap_get: no response from %s port %s (%s)\n",
                server, port, udprr_strerror(rc));
        return 1;
    default:
        fprintf(stderr, "coap_get: %s: %s\n", udprr_status_name(rc),
                udprr_strerror(rc));
        return 1;
    }
}
