/* SPDX-License-Identifier: MIT */
/*
 * dns_query.c - one DNS question (RFC 1035) over libudprr, the way a stub
 * resolver asks a recursive server.
 *
 * DNS carries its own 16-bit ID in the first two bytes of every message, so
 * the client uses id-at-offset framing (offset 0, 2 bytes): the library
 * writes a fresh, unpredictable ID into each request, retransmits on its
 * schedule, and hands back only the reply that carries that ID. This
 * program builds the query, and parses the reply without trusting any of
 * its bytes.
 *
 * It asks only the server named with --server (default 127.0.0.1 port 53);
 * it never reads /etc/resolv.conf and never talks to anything else.
 *
 *   dns_query NAME [--server HOST] [--port P] [--type A|AAAA]
 *             [--deadline MS] [--verbose] [--help]
 *
 * Build: cc dns_query.c $(pkg-config --cflags --libs udprr)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <udprr.h>

#include "example_util.h"

#define DNS_HEADER_BYTES 12
#define DNS_MAX_NAME_BYTES 255 /* a name on the wire, length bytes included */
#define DNS_MAX_LABEL_BYTES 63
#define DNS_FLAG_QR 0x8000
#define DNS_FLAG_TC 0x0200
#define DNS_FLAG_RD 0x0100
#define DNS_CLASS_IN 1
#define DNS_TYPE_A 1
#define DNS_TYPE_CNAME 5
#define DNS_TYPE_AAAA 28

/* A chain of compression pointers longer than this is taken for a loop. */
#define DNS_MAX_POINTER_HOPS 64

/* A name as text: each of up to 255 wire bytes may become "\DDD". */
#define NAME_TEXT_CAP (4 * DNS_MAX_NAME_BYTES + 2)

static void usage(FILE *out)
{
    fprintf(out,
            "usage: dns_query NAME [--server HOST] [--port P] [--type A|AAAA]\n"
            "                 [--deadline MS] [--verbose] [--help]\n"
            "\n"
            "Asks one DNS server for the A (default) or AAAA records of NAME\n"
            "and prints each address with its TTL, one per line, in zone-file\n"
            "form. Only the server given is asked (default 127.0.0.1, port\n"
            "53); /etc/resolv.conf is not read.\n"
            "\n"
            "  --server HOST   the DNS server, a name or an address\n"
            "  --port P        its port (default 53)\n"
            "  --type T        A or AAAA (default A)\n"
            "  --deadline MS   give up after MS milliseconds, retries\n"
            "                  included (default 5000)\n"
            "  --verbose       print each transmission on stderr\n"
            "\n"
            "Exit status: 0 addresses printed; 1 no address (the reason is\n"
            "on stderr); 2 usage error.\n");
}

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
           p[3];
}

static void put16(uint8_t *p, unsigned v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

/*
 * Writes NAME ("www.example.org", a trailing dot allowed, "." for the root)
 * in wire form at out, which has room for DNS_MAX_NAME_BYTES. Returns the
 * bytes written, or 0 for a name that cannot be sent: an empty label, a
 * label over 63 bytes, a name over 255.
 */
static size_t encode_name(const char *name, uint8_t *out)
{
    size_t used = 0;
    if (strcmp(name, ".") != 0) {
        const char *label = name;
        while (*label != '\0') {
            const char *dot = strchr(label, '.');
            size_t label_len = dot ? (size_t)(dot - label) : strlen(label);
            if (label_len == 0 || label_len > DNS_MAX_LABEL_BYTES ||
                used + 1 + label_len + 1 > DNS_MAX_NAME_BYTES)
                return 0;
            out[used++] = (uint8_t)label_len;
            memcpy(out + used, label, label_len);
            used += label_len;
            if (dot == NULL)
                break;
            label = dot + 1;
        }
    }
    out[used++] = 0;
    return used;
}

/*
 * Reads the name at msg[*pos], following compression pointers (RFC 1035
 * 4.1.4), into out as text: labels joined by dots, no trailing dot, "." for
 * the root, bytes other than letters, digits, '-' and '_' written as \DDD
 * so a hostile reply cannot put control characters on the terminal.
 * Advances *pos past the name as it sits at *pos (a pointer ends it).
 * Returns 0, or -1 for a malformed name: out of bounds, a reserved label
 * type, over 255 bytes, or a pointer chain longer than
 * DNS_MAX_POINTER_HOPS (a loop). Never reads outside msg[0..len).
 */
static int read_name(const uint8_t *msg, size_t len, size_t *pos, char *out)
{
    size_t at = *pos, name_bytes = 0, text_len = 0;
    unsigned hops = 0;
    int jumped = 0;

    for (;;) {
        if (at >= len)
            return -1;
        uint8_t b = msg[at];
        if ((b & 0xC0) == 0xC0) {
            if (at + 1 >= len || ++hops > DNS_MAX_POINTER_HOPS)
                return -1;
            if (!jumped)
                *pos = at + 2;
            jumped = 1;
            at = (size_t)(b & 0x3F) << 8 | msg[at + 1];
            continue;
        }
        if ((b & 0xC0) != 0)
            return -1; /* 0x40 and 0x80: extended and reserved label types */
        name_bytes += 1u + b;
        if (name_bytes > DNS_MAX_NAME_BYTES)
            return -1;
        if (b == 0) {
            if (!jumped)
                *pos = at + 1;
            if (text_len == 0)
                out[text_len++] = '.';
            out[text_len] = '\0';
            return 0;
        }
        if (b > len - at - 1)
            return -1;
        if (text_len > 0)
            out[text_len++] = '.';
        for (size_t i = 1; i <= b; i++) {
            uint8_t c = msg[at + i];
            if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                (c >= '0' && c <= '9') || c == '-' || c == '_') {
                out[text_len++] = (char)c;
            } else {
                snprintf(out + text_len, 5, "\\%03u", c);
                text_len += 4;
            }
        }
        at += 1u + b;
    }
}

static const char *rcode_name(unsigned rcode)
{
    static const char *const names[] = {
        "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED",
        "YXDOMAIN", "YXRRSET", "NXRRSET", "NOTAUTH", "NOTZONE"};
    return rcode < sizeof names / sizeof names[0] ? names[rcode] : "RCODE?";
}

static const char *rcode_meaning(unsigned rcode)
{
    switch (rcode) {
    case 1: return "the server could not parse the query";
    case 2: return "the server failed to get an answer";
    case 3: return "the name does not exist";
    case 4: return "the server does not do this kind of query";
    case 5: return "the server refuses to answer";
    default: return "the server gave no answer";
    }
}

/* The ID of the last transmission, from the library's per-attempt hook:
 * the reply must carry it, which this program checks rather than trusts. */
struct attempt_log {
    uint64_t id;
    int verbose;
};

static void on_attempt(void *user, const udprr_attempt_info *info)
{
    struct attempt_log *log = user;
    log->id = info->id;
    if (log->verbose)
        fprintf(stderr,
                ";; attempt %u: sent %zu bytes with ID 0x%04llx; waiting up "
                "to %.3f s\n",
                info->attempt, info->len, (unsigned long long)info->id,
                info->wait_us / 1e6);
}

/*
 * Checks the reply against the query and prints the answers of type qtype.
 * Returns the exit status: 0 if at least one address was printed.
 */
static int print_reply(const uint8_t *msg, size_t len, const uint8_t *query,
                       size_t query_len, uint64_t sent_id, unsigned qtype,
                       const char *qtype_name)
{
    char want[NAME_TEXT_CAP], got[NAME_TEXT_CAP], owner[NAME_TEXT_CAP],
        target[NAME_TEXT_CAP];
    size_t qpos = DNS_HEADER_BYTES;
    if (read_name(query, query_len, &qpos, want) != 0)
        return 1; /* cannot happen: we built it */

    if (len < DNS_HEADER_BYTES) {
        fprintf(stderr, "dns_query: reply of %zu bytes is shorter than a "
                        "DNS header\n", len);
        return 1;
    }
    unsigned flags = get16(msg + 2);
    unsigned qdcount = get16(msg + 4), ancount = get16(msg + 6);
    if (get16(msg) != sent_id) {
        fprintf(stderr, "dns_query: reply ID 0x%04x is not the request's "
                        "0x%04llx\n", get16(msg), (unsigned long long)sent_id);
        return 1;
    }
    if (!(flags & DNS_FLAG_QR) || (flags >> 11 & 0xF) != 0) {
        fprintf(stderr, "dns_query: the reply is not a standard query "
                        "response\n");
        return 1;
    }
    unsigned rcode = flags & 0xF;
    if (rcode != 0) {
        fprintf(stderr, "dns_query: %s: %s (%s)\n", want, rcode_name(rcode),
                rcode_meaning(rcode));
        return 1;
    }
    if (flags & DNS_FLAG_TC) {
        fprintf(stderr, "dns_query: the reply was truncated (TC): the "
                        "answer needs DNS over TCP, which this example does "
                        "not do\n");
        return 1;
    }

    /* The reply must repeat our question (RFC 5452 section 9.1). */
    size_t pos = DNS_HEADER_BYTES;
    if (qdcount != 1 || read_name(msg, len, &pos, got) != 0 ||
        len - pos < 4 || strcasecmp(got, want) != 0 ||
        get16(msg + pos) != qtype || get16(msg + pos + 2) != DNS_CLASS_IN) {
        fprintf(stderr, "dns_query: the reply does not repeat the question "
                        "asked\n");
        return 1;
    }
    pos += 4;

    unsigned printed = 0;
    for (unsigned i = 0; i < ancount; i++) {
        if (read_name(msg, len, &pos, owner) != 0 || len - pos < 10) {
            fprintf(stderr, "dns_query: answer %u is malformed\n", i + 1);
            return 1;
        }
        unsigned type = get16(msg + pos), rclass = get16(msg + pos + 2);
        uint32_t ttl = get32(msg + pos + 4);
        size_t rdlength = get16(msg + pos + 8);
        pos += 10;
        if (rdlength > len - pos) {
            fprintf(stderr, "dns_query: answer %u runs past the end of the "
                            "reply\n", i + 1);
            return 1;
        }
        const uint8_t *rdata = msg + pos;
        if (rclass == DNS_CLASS_IN && type == qtype &&
            rdlength == (type == DNS_TYPE_A ? 4u : 16u)) {
            char text[INET6_ADDRSTRLEN];
            inet_ntop(type == DNS_TYPE_A ? AF_INET : AF_INET6, rdata, text,
                      sizeof text);
            printf("%s.\t%lu\tIN\t%s\t%s\n", owner, (unsigned long)ttl,
                   qtype_name, text);
            printed++;
        } else if (rclass == DNS_CLASS_IN && type == DNS_TYPE_CNAME) {
            size_t tpos = pos;
            if (read_name(msg, len, &tpos, target) != 0 ||
                tpos != pos + rdlength) {
                fprintf(stderr, "dns_query: CNAME in answer %u is "
                                "malformed\n", i + 1);
                return 1;
            }
            printf("%s.\t%lu\tIN\tCNAME\t%s.\n", owner, (unsigned long)ttl,
                   target);
        }
        /* Anything else (other types, a wrong-length address) is skipped. */
        pos += rdlength;
    }
    if (printed == 0) {
        fprintf(stderr, "dns_query: %s has no %s record (NOERROR, no "
                        "answer)\n", want, qtype_name);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"server", required_argument, NULL, 's'},
        {"port", required_argument, NULL, 'p'},
        {"type", required_argument, NULL, 't'},
        {"deadline", required_argument, NULL, 'D'},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    const char *server = "127.0.0.1", *port = "53", *qtype_name = "A";
    unsigned qtype = DNS_TYPE_A, deadline_ms = 5000;
    struct attempt_log log = {0, 0};
    int opt;

    while ((opt = getopt_long(argc, argv, "s:p:t:D:vh", longopts, NULL)) !=
           -1) {
        switch (opt) {
        case 's': server = optarg; break;
        case 'p': port = optarg; break;
        case 't':
            if (strcasecmp(optarg, "A") == 0) {
                qtype = DNS_TYPE_A;
                qtype_name = "A";
            } else if (strcasecmp(optarg, "AAAA") == 0) {
                qtype = DNS_TYPE_AAAA;
                qtype_name = "AAAA";
            } else {
                fprintf(stderr, "dns_query: --type must be A or AAAA\n");
                return 2;
            }
            break;
        case 'D':
            if (example_parse_ms(optarg, &deadline_ms) != 0 || deadline_ms == 0) {
                fprintf(stderr, "dns_query: --deadline takes 1..3600000 "
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
    const char *name = argv[optind];

    /* Header: ID 0 (the library writes the real one), RD set, one
     * question; then QNAME, QTYPE, QCLASS IN. */
    uint8_t query[DNS_HEADER_BYTES + DNS_MAX_NAME_BYTES + 4] = {0};
    put16(query + 2, DNS_FLAG_RD);
    put16(query + 4, 1);
    size_t name_len = encode_name(name, query + DNS_HEADER_BYTES);
    if (name_len == 0) {
        fprintf(stderr, "dns_query: '%s' is not a name DNS can carry "
                        "(empty label, label over 63 bytes or name over "
                        "255)\n", name);
        return 2;
    }
    size_t query_len = DNS_HEADER_BYTES + name_len;
    put16(query + query_len, qtype);
    put16(query + query_len + 2, DNS_CLASS_IN);
    query_len += 4;

    udprr_client_opts opts;
    udprr_client_opts_init(&opts);
    opts.framing = UDPRR_FRAMING_ID_AT_OFFSET;
    opts.id_offset = 0;
    opts.id_len = 2;
    opts.deadline_ms = deadline_ms;
    opts.on_attempt = on_attempt;
    opts.on_attempt_user = &log;

    udprr_client *c;
    int rc = udprr_client_open(&c, server, port, &opts);
    if (rc != UDPRR_OK) {
        fprintf(stderr, "dns_query: cannot reach %s port %s: %s\n", server,
                port, udprr_strerror(rc));
        return 1;
    }
    static uint8_t reply[UDPRR_MAX_DATAGRAM];
    size_t reply_len = 0;
    rc = udprr_client_request(c, query, query_len, reply, sizeof reply,
                              &reply_len);
    udprr_client_close(c);

    switch (rc) {
    case UDPRR_OK:
        return print_reply(reply, reply_len, query, query_len, log.id, qtype,
                           qtype_name);
    case UDPRR_EREFUSED:
        fprintf(stderr, "dns_query: nothing listens at %s port %s (%s)\n",
                server, port, udprr_strerror(rc));
        return 1;
    case UDPRR_ETIMEDOUT:
        fprintf(stderr, "dns_query: no reply from %s port %s within %u ms "
                        "(%s)\n", server, port, deadline_ms,
                udprr_strerror(rc));
        return 1;
    default:
        fprintf(stderr, "dns_query: %s: %s\n", udprr_status_name(rc),
                udprr_strerror(rc));
        return 1;
    }
}
