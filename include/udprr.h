/* SPDX-License-Identifier: MIT */
/*
 * udprr.h - libudprr: reliable request/reply over UDP.
 *
 * This header is the whole public API. Everything it exports starts with
 * udprr_ or UDPRR_; nothing else is part of the interface.
 *
 * Thread rules, unless a declaration says otherwise: functions that take no
 * handle (udprr_strerror, udprr_status_name, udprr_version) are safe to call
 * from any thread at any time and return pointers to static, read-only
 * storage that stays valid for the life of the process.
 */
#ifndef UDPRR_H
#define UDPRR_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The version lives here once; the Makefile and udprr.pc read it from these
 * three lines. udprr_version() reports the version of the library actually
 * linked, which can differ from these macros when a program was built against
 * an older header. */
#define UDPRR_VERSION_MAJOR 0
#define UDPRR_VERSION_MINOR 2
#define UDPRR_VERSION_PATCH 0

#define UDPRR__STR2(x) #x
#define UDPRR__STR(x) UDPRR__STR2(x)
#define UDPRR_VERSION_STRING                                                   \
    UDPRR__STR(UDPRR_VERSION_MAJOR)                                            \
    "." UDPRR__STR(UDPRR_VERSION_MINOR) "." UDPRR__STR(UDPRR_VERSION_PATCH)

/* Only symbols marked UDPRR_API leave the shared library; the build hides
 * everything else with -fvisibility=hidden. */
#if defined(__GNUC__) || defined(__clang__)
#define UDPRR_API __attribute__((visibility("default")))
#else
#define UDPRR_API
#endif

/*
 * Status codes.
 *
 * Every function that can fail returns an int: UDPRR_OK (0) on success, one
 * of the negative codes below on failure. The numeric values are part of the
 * ABI: they are never renumbered, and new codes are only ever appended with
 * the next free negative number.
 *
 * This one table generates the enum, udprr_strerror() and
 * udprr_status_name(), so the three cannot drift apart.
 *
 *   XX(name, value, message)
 */
#define UDPRR_STATUS_MAP(XX)                                                   \
    XX(OK, 0, "success")                                                       \
    XX(ETIMEDOUT, -1, "request timed out: no reply before the deadline or "    \
                      "after the last attempt")                                \
    XX(EREFUSED, -2, "connection refused: nothing listens at the server's "    \
                     "address (ICMP port unreachable)")                        \
    XX(ETOOBIG, -3, "message too big for one datagram")                        \
    XX(ETRUNC, -4, "reply larger than the caller's buffer")                    \
    XX(ERESOLVE, -5, "host or service could not be resolved")                  \
    XX(EINVAL, -6, "invalid argument")                                         \
    XX(ENOMEM, -7, "out of memory")                                            \
    XX(ESYS, -8, "system call failed (errno has the reason)")                  \
    XX(EREMOTE, -9, "the server's handler declined the request")              \
    XX(ECANCELED, -10, "request canceled")                                    \
    XX(EBUSY, -11, "too many requests pending on the handle (max_pending or " \
                   "max_pending_bytes): retry once some have completed")      \
    XX(ENOTPENDING, -12, "no such request pending: it has already ended, "    \
                         "or was never sent")                                  \
    XX(ENOTSUP, -13, "not supported by this build of libudprr (the sealed "   \
                     "mode needs libsodium)")

typedef enum udprr_status {
#define UDPRR__STATUS_ENUM(name, value, message) UDPRR_##name = (value),
    UDPRR_STATUS_MAP(UDPRR__STATUS_ENUM)
#undef UDPRR__STATUS_ENUM
} udprr_status;

/*
 * udprr_strerror - a fixed, human-readable sentence for a status code.
 *
 * Every code has its own distinct message. A value that is not a libudprr
 * status (a positive number, an errno value, a code from a newer library)
 * gets a generic "unknown libudprr status" message. Never returns NULL. The
 * string is static: do not free or modify it.
 *
 * This is the fixed text of a code. It does not describe a particular
 * handle's last failure; after UDPRR_ESYS, errno says which system call
 * failed and why.
 */
UDPRR_API const char *udprr_strerror(int status);

/*
 * udprr_status_name - the code's name as a string, e.g. "UDPRR_ETIMEDOUT",
 * for logs and tests. Unknown values give "UDPRR_UNKNOWN". Never returns
 * NULL; the string is static.
 */
UDPRR_API const char *udprr_status_name(int status);

/*
 * udprr_version - the version of the linked library as "MAJOR.MINOR.PATCH".
 * Never returns NULL; the string is static.
 */
UDPRR_API const char *udprr_version(void);


/*
 * Limits.
 *
 * UDPRR_MAX_PAYLOAD is the largest request or reply, in bytes, that native
 * framing carries in one datagram: the largest UDP payload over IPv4
 * (65507 bytes) less libudprr's 20-byte header. A larger request fails with
 * UDPRR_ETOOBIG before anything is sent. Paths with a smaller MTU fragment
 * large datagrams at the IP layer; a lost fragment loses the datagram and
 * the retry covers it.
 */
#define UDPRR_MAX_PAYLOAD 65487

/* The largest datagram libudprr sends or accepts as a request: also the
 * largest request or reply in the raw and id-at-offset framings, which add
 * no header. */
#define UDPRR_MAX_DATAGRAM 65507

/*
 * Sealed mode (docs/protocol.md, "Sealed datagrams"; docs/sealed.md).
 *
 * With a pre-shared key, every native datagram between a client and a
 * server is sealed: encrypted and authenticated with XChaCha20-Poly1305
 * (libsodium) over its header and body, and carrying the sender's clock.
 * A datagram that does not open (another key, a key ID the receiver does
 * not hold, a changed or truncated byte, a plain datagram) is dropped and
 * counted (stats dropped_auth) before anything else looks at it: a
 * server's handler never sees it and no answer goes out. There is no
 * handshake: a request still takes one round trip.
 *
 * A key is UDPRR_KEY_BYTES secret bytes (draw them from a cryptographic
 * source, e.g. `head -c 32 /dev/urandom`) and an ID that names it on the
 * wire, chosen by whoever hands out keys. A client holds one key; a
 * server holds up to UDPRR_MAX_KEYS at once and answers each request with
 * the key it came with, so keys rotate without downtime: give servers the
 * new key beside the old one (udprr_server_set_keys), move the clients to
 * it, then take the old one away.
 *
 * Replays: a sealed request carries the client's clock (CLOCK_REALTIME)
 * as it was at the request's first transmission; every retransmission
 * carries the same. A server takes it only when that clock is within W
 * of its own, W = cache_lifetime_ms / 2 (rounded down; 15 s by default);
 * other requests are dropped and counted (stats dropped_clock). Within
 * that window the reply cache answers a replayed request, from whatever
 * address it comes, without running the handler: sealed requests are
 * remembered by (key ID, request ID, bytes), since the key, not the source
 * address, tells who sent them. The window is half the cache's lifetime
 * so that every request a server still takes has its answer remembered:
 * the first transmission that reached the server did so within W of the
 * request's clock, and its answer stays 2 W from then. This holds while
 * the cache's bounds allow (an answer evicted early, stats cache_evicted,
 * lets its replay run the handler again), with the reply cache on (with
 * reply_cache 0 every replay inside the window runs the handler), and for
 * one server: a request replayed to another server that holds the same
 * key runs there too (give such servers keys of their own where that
 * matters), as it may on another worker of the same server (with workers
 * > 1 each worker has a cache of its own, and the kernel picks the worker
 * by the source address: serve with one worker where a replay must never
 * run twice). A request's whole life, retransmissions and deferral
 * included (deadline_ms), plus the difference between the two clocks
 * must so stay within W: a retransmission sent later than that is
 * dropped. NTP keeps clocks to milliseconds; raise cache_lifetime_ms for
 * longer requests. A client does not check the server's clock in its
 * answers.
 *
 * Sealing adds UDPRR_SEAL_OVERHEAD bytes to each datagram, so a sealed
 * request or reply holds at most UDPRR_MAX_SEALED_PAYLOAD bytes. Only the
 * native framing is sealed. udprr_sealed_supported() tells whether this
 * build has the sealed mode: a library built without libsodium (make
 * SODIUM=no) fails every open that asks for it with UDPRR_ENOTSUP.
 */
#define UDPRR_KEY_BYTES 32
#define UDPRR_MAX_KEYS 16
#define UDPRR_SEAL_OVERHEAD 56
#define UDPRR_MAX_SEALED_PAYLOAD (UDPRR_MAX_PAYLOAD - UDPRR_SEAL_OVERHEAD)

/* A pre-shared key. This struct never changes (arrays of it are passed):
 * later versions that need more name it otherwise. The library copies the
 * keys it is given and wipes its copies when the handle is closed. */
typedef struct udprr_key {
    uint32_t id;                            /* names the key on the wire */
    unsigned char secret[UDPRR_KEY_BYTES];  /* the key itself */
} udprr_key;

/* 1 when this build has the sealed mode (libsodium), else 0. */
UDPRR_API int udprr_sealed_supported(void);

/*
 * Framings: how requests and replies sit in datagrams. Clients and servers
 * pick one in their options; both sides of an exchange must agree.
 *
 *   UDPRR_FRAMING_NATIVE        libudprr's 20-byte header in front of the
 *                               application's bytes (docs/protocol.md): a
 *                               64-bit ID, attempt numbers echoed, declines,
 *                               and a CRC-32C over header and bytes, so a
 *                               damaged or truncated datagram is dropped,
 *                               never taken for a reply or a request.
 *   UDPRR_FRAMING_RAW           the application's bytes alone, to talk to
 *                               plain UDP services. No identity: a client
 *                               keeps one request in flight and takes the
 *                               next datagram from its server as the reply;
 *                               a server has no reply cache (every datagram
 *                               runs the handler) and cannot decline (a
 *                               declined request gets no answer). As with
 *                               any plain UDP client, a late answer to a
 *                               retransmitted request can arrive while the
 *                               next request waits and be taken as its
 *                               reply: use raw framing where that cannot
 *                               matter, or where the reply identifies
 *                               itself to the application.
 *   UDPRR_FRAMING_ID_AT_OFFSET  the application's bytes alone, carrying an
 *                               ID of id_len bytes (1..8, big-endian) at
 *                               id_offset, as DNS (0, 2) and CoAP (2, 2)
 *                               do. A client overwrites those bytes of each
 *                               request with a fresh random ID and matches
 *                               replies on them; a server keys its reply
 *                               cache on them and copies them into each
 *                               reply that is long enough. No declines, as
 *                               in raw.
 *
 * In raw and id-at-offset framing, replies do not say which transmission
 * they answer, so the RTT is sampled only from requests answered on their
 * first transmission (Karn's rule).
 *
 * IDs: 8-byte IDs (native, or id_len 8) are drawn from the kernel's random
 * source. Shorter IDs come from a secret, per-handle random permutation of
 * a counter: unpredictable to anyone without the handle's key, and never
 * repeated by a handle before it has used all 2^(8*id_len) of them (65536
 * for a 2-byte ID), as RFC 7252 asks of CoAP message IDs. A server's reply
 * cache takes a repeated (peer, ID) for a retransmission, so with short IDs
 * keep a server's cache_lifetime_ms shorter than the time one client takes
 * to make 2^(8*id_len) requests.
 */
#define UDPRR_FRAMING_NATIVE 0
#define UDPRR_FRAMING_RAW 1
#define UDPRR_FRAMING_ID_AT_OFFSET 2

/* What one cached answer costs beyond its bytes, in the server's
 * cache_bytes accounting. */
#define UDPRR_CACHE_ENTRY_OVERHEAD 128

/* ------------------------------------------------------------------------
 * Client
 *
 * A client handle owns one UDP socket connect()ed to one server address, so
 * the kernel drops datagrams from anyone else and reports "nothing listens
 * there" (ICMP port unreachable) as UDPRR_EREFUSED at once. It sends each
 * request with a fresh ID (random 64 bits in native framing; see Framings)
 * and resends it on a capped, jittered exponential backoff until the
 * matching reply comes, the deadline passes, or the last attempt has been
 * waited out. The round-trip estimate (SRTT,
 * RTTVAR, RTO) lives in the handle and carries over from one request to the
 * next. docs/retry.md gives the formulas.
 *
 * Thread rules: a handle may be used by one thread at a time; different
 * handles are independent. udprr_client_request blocks, never longer than
 * its deadline when one is set; udprr_client_open blocks while
 * getaddrinfo resolves a name (numeric addresses do not wait). Nothing else
 * blocks. Signals do not interrupt a request; EINTR is retried. Done
 * callbacks of asynchronous requests run on the thread that made the call
 * that ran them (udprr_client_process, _cancel, _close or _request).
 * ------------------------------------------------------------------------ */

typedef struct udprr_client udprr_client;

/* Information passed to the per-attempt hook; valid only during the call. */
typedef struct udprr_attempt_info {
    uint64_t id;       /* the request ID (in raw framing, which sends none,
                          a random number that names the request) */
    unsigned attempt;  /* 1 for the first transmission */
    uint64_t wait_us;  /* how long the client now waits for a reply: the
                          schedule's wait, clipped to the deadline */
    uint64_t rto_us;   /* the handle's current RTO */
    size_t len;        /* request bytes, header not counted */
} udprr_attempt_info;

/* Called after each transmission of each request, from inside the call
 * that sent it. It must not call into the same handle. */
typedef void (*udprr_attempt_fn)(void *user, const udprr_attempt_info *info);

/*
 * Client options. Always start from udprr_client_opts_init(), then change
 * fields. See "Options and ABI" below for how the struct's size keeps
 * programs and libraries of different versions working together.
 *
 * Durations are in milliseconds. A request ends at the first of: its
 * deadline, or max_attempts transmissions each waited out. With both 0 a
 * request is retried at intervals that settle at max_rto_ms until it is
 * answered or has been sent 65535 times (the wire format's attempt limit;
 * more than six days at the default cap and jitter). Such a client outlives a server's reply
 * cache: a request retried for longer than the server's cache_lifetime_ms
 * may run its handler again (see "At most once" below).
 *
 * The RTO bounds must satisfy 1 <= min_rto_ms <= initial_rto_ms <=
 * max_rto_ms <= 3600000; anything else makes udprr_client_open fail with
 * UDPRR_EINVAL.
 */
typedef struct udprr_client_opts {
    size_t size;              /* the program's sizeof(udprr_client_opts);
                                 set by udprr_client_opts_init() */
    unsigned deadline_ms;     /* whole request, retries included; 0: none.
                                 Default 10000 */
    unsigned max_attempts;    /* transmissions per request, 1..65535;
                                 0: until the deadline. Default 0 */
    unsigned initial_rto_ms;  /* RTO before the first sample. Default 1000 */
    unsigned min_rto_ms;      /* floor of the adaptive RTO, >= 1.
                                 Default 1 (docs/retry.md says why) */
    unsigned max_rto_ms;      /* cap of the RTO and every backed-off wait.
                                 Default 10000; at most 3600000 */
    unsigned backoff_pct;     /* each wait grows by this: 200 doubles,
                                 100 keeps it constant; 100..1000.
                                 Default 200 */
    unsigned jitter_pct;      /* retransmission waits shortened by a random
                                 0..jitter_pct percent; 0..100. Default 20 */
    int fixed_rto;            /* nonzero: never adapt, always start from
                                 initial_rto_ms (the textbook client).
                                 Default 0 */
    udprr_attempt_fn on_attempt; /* optional hook; default NULL */
    void *on_attempt_user;       /* its first argument */
    int framing;                 /* UDPRR_FRAMING_*. Default native */
    size_t id_offset;            /* id-at-offset: where the ID starts */
    unsigned id_len;             /* id-at-offset: its bytes, 1..8 */
    /* Since 0.2: the asynchronous client (see udprr_client_send). A zero
     * means the default. */
    size_t max_pending;          /* requests accepted and not yet ended,
                                    in flight or waiting, 1..1048576;
                                    beyond it a send fails with
                                    UDPRR_EBUSY. Default 65536 */
    size_t max_pending_bytes;    /* the memory they may hold: each counts
                                    its bytes plus UDPRR_PENDING_OVERHEAD;
                                    beyond it a send fails with
                                    UDPRR_EBUSY. At least
                                    UDPRR_PENDING_OVERHEAD +
                                    UDPRR_MAX_DATAGRAM, whatever the
                                    framing. Default 64 MiB */
    unsigned max_window;         /* most requests in flight at once,
                                    1..65535: the ceiling of the congestion
                                    window (docs/async.md). Default 64 */
    /* Since 0.2: addresses, interfaces, broadcast, multicast and the path
     * MTU (docs/network.md). Zero or NULL means the default. The strings
     * are read by udprr_client_open() and copied. */
    const char *local_host;      /* the source address: the socket is bound
                                    to it before it is connected; a name or
                                    a number. NULL: the kernel chooses */
    const char *local_service;   /* the source port, a name or a number.
                                    With several endpoints every one's
                                    socket binds it (SO_REUSEADDR: each
                                    is connected to its own server); a
                                    lone one keeps it to itself. NULL:
                                    any free port */
    const char *interface;       /* the one interface the handle sends and
                                    receives on (SO_BINDTODEVICE), such as
                                    "eth1"; multicast requests leave
                                    through it. NULL: any */
    int broadcast;               /* nonzero: the handle may send to a
                                    broadcast address (SO_BROADCAST); a
                                    broadcast address without it fails
                                    open with UDPRR_ESYS (EACCES). Only
                                    udprr_client_gather() hears answers
                                    to a broadcast or multicast address:
                                    the handle's connected socket takes
                                    datagrams from the address it is
                                    connected to alone, so its requests
                                    time out. Default 0 */
    unsigned multicast_ttl;      /* how many routers a multicast request may
                                    cross plus one, 1..255 (IP_MULTICAST_TTL,
                                    IPV6_MULTICAST_HOPS). Default 1: the
                                    local link only */
    int dont_fragment;           /* nonzero: never fragment (path MTU
                                    discovery, IP_MTU_DISCOVER and
                                    IPV6_MTU_DISCOVER set to DO): a request
                                    larger than the path MTU the kernel
                                    knows fails with UDPRR_ETOOBIG, and
                                    udprr_client_mtu() tells that MTU.
                                    Default 0: large datagrams are
                                    fragmented */
    /* Since 0.2: several servers (see "Several servers" below). Zero
     * means the default. */
    int failover;                /* UDPRR_FAILOVER_*: what moves a request
                                    to another endpoint. Default
                                    UDPRR_FAILOVER_ANY */
    unsigned endpoint_retry_ms;  /* how long a failed endpoint is left
                                    alone before it is tried again, after
                                    its first failure in a row; doubled by
                                    each further one, up to 64 times this.
                                    1..3600000. Default 1000 */
    /* Since 0.2: the sealed mode (see "Sealed mode" above). */
    const udprr_key *key;        /* seal every datagram with this key
                                    (native framing only). Read by open
                                    and copied. NULL: plain datagrams */
} udprr_client_opts;

/*
 * Options and ABI (the same rules for udprr_server_opts).
 *
 * The size the program was built with travels with the struct from init
 * onwards, and the library never reads or writes past it:
 *
 *   - udprr_client_opts_init(opts) is a macro that passes sizeof *opts, as
 *     this header declares the struct, to udprr_client_opts_init_sized(),
 *     which writes the library's defaults into exactly that many bytes and
 *     stores the size in opts->size.
 *   - udprr_client_open() reads at most opts->size bytes. A size that an
 *     older header gave the struct is taken field by field (its padding
 *     is never read), and the fields that version lacks keep their
 *     defaults. This header's size is taken as it is. A larger size (a
 *     program built against a newer header than the library it runs with)
 *     is accepted when every byte past the library's struct is zero, i.e.
 *     the program left the newer fields at the zero init gave them (the
 *     zero of every appended field means its default); otherwise, and for
 *     any other size (0 from a struct that was never initialized, a size
 *     no version had, more than 4096), open fails with UDPRR_EINVAL.
 *   - Fields are only ever appended, never removed or reordered, within a
 *     soname, and each version's fields start past the previous version's
 *     size, so that every version has a size of its own (NEWS.md states
 *     the policy).
 *
 * Programs built against 0.1.x called a function named
 * udprr_client_opts_init; the library still exports it, and it writes
 * exactly 0.1's struct. Calling it directly, as (udprr_client_opts_init)(o),
 * is for that purpose only.
 *
 * udprr_client_opts_init_sized: fills opts[0..size) with the defaults
 * above (bytes past the fields this library knows are zeroed) and sets
 * opts->size = size. A NULL opts, or a size too small to hold the size
 * field, is a no-op. Call it through the macro.
 */
UDPRR_API void udprr_client_opts_init_sized(udprr_client_opts *opts,
                                            size_t size);
UDPRR_API void(udprr_client_opts_init)(udprr_client_opts *opts);
#define udprr_client_opts_init(opts)                                           \
    udprr_client_opts_init_sized((opts), sizeof *(opts))

/*
 * udprr_client_open - resolves host and service with getaddrinfo (names or
 * numbers, IPv4 or IPv6, service names such as "domain"), and connects one
 * UDP socket to every address returned (up to UDPRR_MAX_ENDPOINTS, in
 * getaddrinfo's order; an address no socket can be made or set up for is
 * left out): each is an endpoint, and requests fail over between them
 * (see "Several servers" below). So "localhost" answers when the server
 * listens on 127.0.0.1 alone, even where ::1 comes first: ::1 refuses,
 * and the request moves on at once.
 *
 * opts NULL means the defaults. On success *out is a new handle, which the
 * caller frees with udprr_client_close(). With opts.local_host or
 * opts.local_service the socket is bound to that source address and port
 * first (only addresses of the server's family are tried); opts.interface,
 * broadcast, multicast_ttl and dont_fragment are set on the socket before
 * it is connected.
 *
 * Returns UDPRR_OK; UDPRR_EINVAL (out, host or service NULL; an option out
 * of range; a key with a framing other than native; an opts->size the
 * library cannot take, see "Options and ABI" above); UDPRR_ENOTSUP (a key,
 * and a library built without the sealed mode); UDPRR_ERESOLVE (no
 * address for host/service, or for local_host/local_service, or no
 * interface named opts.interface); UDPRR_ESYS (no socket could be made,
 * bound or connected, or the kernel's random source failed; errno says
 * why: EACCES for a broadcast address without opts.broadcast, EPERM when
 * SO_BINDTODEVICE needs a privilege the process lacks, EADDRINUSE for a
 * local port in use); UDPRR_ENOMEM. On failure *out is unchanged.
 */
UDPRR_API int udprr_client_open(udprr_client **out, const char *host,
                                const char *service,
                                const udprr_client_opts *opts);

/*
 * udprr_client_request - sends req[0..req_len) and waits for its reply.
 *
 * On UDPRR_OK the reply's bytes are in reply[0..*reply_len). The reply
 * buffer may be NULL when reply_cap is 0; req may be NULL when req_len is 0.
 * In id-at-offset framing the library writes the request's ID into a copy
 * of req (req itself is not modified), and the reply returned is the whole
 * datagram, ID included.
 *
 * Returns:
 *   UDPRR_OK         the reply arrived;
 *   UDPRR_ETIMEDOUT  the deadline passed, or the last attempt was waited out;
 *   UDPRR_EREFUSED   the kernel reported that nothing listens there (ICMP
 *                    port unreachable); this ends the request at once,
 *                    without further retries. It says the server's port is
 *                    closed now, not that the request never ran: a server
 *                    that answered an earlier transmission and then went
 *                    away gives the same result if the answer was lost;
 *   UDPRR_EREMOTE    the server's handler declined the request;
 *   UDPRR_ETOOBIG    req_len over what one datagram carries in the
 *                    handle's framing: UDPRR_MAX_PAYLOAD native,
 *                    UDPRR_MAX_SEALED_PAYLOAD sealed,
 *                    UDPRR_MAX_DATAGRAM raw and id-at-offset (nothing was
 *                    sent); or the local stack refused a datagram that size;
 *   UDPRR_ETRUNC     the reply is larger than reply_cap: the first reply_cap
 *                    bytes are in reply and *reply_len is the reply's real
 *                    size;
 *   UDPRR_EINVAL     c or reply_len NULL, or a NULL buffer with a nonzero
 *                    length; in id-at-offset framing, a request too short to
 *                    hold the ID at its offset;
 *   UDPRR_EBUSY      the handle's max_pending or max_pending_bytes is
 *                    reached by asynchronous requests (nothing was sent);
 *   UDPRR_ECANCELED  a done callback of an asynchronous request, run from
 *                    inside this call, closed the handle (it is freed);
 *   UDPRR_ENOMEM, UDPRR_ESYS (errno says why).
 * *reply_len is set only for UDPRR_OK and UDPRR_ETRUNC. From inside a done
 * callback of the same handle it fails with UDPRR_EINVAL (see
 * udprr_done_fn).
 */
UDPRR_API int udprr_client_request(udprr_client *c, const void *req,
                                   size_t req_len, void *reply,
                                   size_t reply_cap, size_t *reply_len);

/*
 * Client counters since open. Set size to sizeof(struct udprr_client_stats)
 * before the call (the library fills only what fits, so fields can be
 * appended in later versions).
 * The counters add up: attempts + unsent + queued == requests +
 * retransmissions, requests == in_flight + queued + every request that
 * has ended (also when read from inside a done callback), and
 * every request that has ended is counted in exactly one of completed,
 * timeouts, refused, declined, canceled, failed (and in none while it is
 * still pending). A request whose very first send fails at once, inside
 * udprr_client_request or udprr_client_send (refused, or too big for the
 * local stack), returns that error and is not counted at all.
 */
struct udprr_client_stats {
    size_t size;
    uint64_t requests;          /* requests accepted (sent at once, or
                                   queued to be sent) */
    uint64_t completed;         /* a reply arrived: UDPRR_OK, or
                                   UDPRR_ETRUNC when it did not fit */
    uint64_t attempts;          /* transmissions, first ones included
                                   (send_errors among them) */
    uint64_t retransmissions;   /* datagrams sent after the first */
    uint64_t timeouts;          /* ended with UDPRR_ETIMEDOUT */
    uint64_t refused;           /* ended with UDPRR_EREFUSED */
    uint64_t declined;          /* ended with UDPRR_EREMOTE */
    uint64_t canceled;          /* ended with UDPRR_ECANCELED */
    uint64_t failed;            /* ended with another error: UDPRR_ETOOBIG
                                   on a retransmission, or UDPRR_ESYS when
                                   waiting on the socket failed (0.1
                                   counted the latter in canceled) */
    uint64_t dropped_stale;     /* replies whose ID is not outstanding */
    uint64_t dropped_duplicate; /* replies to one of the last 64 requests
                                   that already ended, however it ended */
    uint64_t dropped_malformed; /* datagrams that failed to decode */
    uint64_t dropped_unexpected; /* well formed, but no reply to anything
                                    sent (a request, an attempt never made) */
    uint64_t rtt_samples;       /* round-trip samples taken */
    uint64_t send_errors;       /* transmissions the socket refused for a
                                   passing reason (ENOBUFS, ...), counted
                                   as lost and retried */
    uint64_t spurious_retransmissions; /* sent after the transmission that
                                   was answered, so not needed: its reply
                                   was on the way (native framing only; a
                                   high share means the RTO is too short
                                   for the path) */
    /* The RTT and the window: those of the endpoint the next request
     * would go to (the only one, unless the handle has several). */
    uint64_t srtt_us;           /* smoothed RTT; 0 before the first sample */
    uint64_t rttvar_us;         /* RTT variation; 0 before the first sample */
    uint64_t rto_us;            /* the current RTO */
    /* Since 0.2. */
    uint64_t window;            /* the congestion window now: most
                                   requests in flight (1..max_window) */
    uint64_t in_flight;         /* requests sent and not yet ended */
    uint64_t queued;            /* accepted, waiting for room in the
                                   window (or, in raw framing, for the
                                   request in flight) */
    uint64_t unsent;            /* ended without ever being sent: canceled
                                   or past their deadline while queued, or
                                   their first send failed at once */
    uint64_t window_reductions; /* times a loss halved the window */
    uint64_t echoes;            /* echoes from servers that wanted proof
                                   of this client's address before a large
                                   answer (udprr_server_opts's
                                   "Amplification"): the request went again
                                   at once, with their cookie (counted in
                                   retransmissions) */
    /* Since 0.2: the sealed mode. */
    uint64_t dropped_auth;      /* datagrams that did not open with the
                                   handle's key (see "Sealed mode"):
                                   dropped before any other check */
};

/* Fills *out with as much as out->size covers, and sets out->size to the
 * bytes filled. UDPRR_OK, or UDPRR_EINVAL (c or out NULL, out->size less
 * than the size of the size field). */
UDPRR_API int udprr_client_stats(const udprr_client *c,
                                 struct udprr_client_stats *out);

/*
 * udprr_client_fd - a descriptor for poll(2) and the like, readable when a
 * datagram or an ICMP error waits. With one endpoint it is the handle's
 * UDP socket, connect()ed to the server (getsockname(2) gives the local
 * port); with several (see "Several servers" below) an epoll(7)
 * descriptor that is readable, level-triggered, while any endpoint's
 * socket is. The handle owns it: do not close it, and do not read from or
 * write to it (a datagram read there is lost to the handle). It stays the
 * same for the life of the handle and is closed by udprr_client_close().
 * Returns -1 for NULL. Never blocks.
 */
UDPRR_API int udprr_client_fd(const udprr_client *c);

/* ------------------------------------------------------------------------
 * Several servers (docs/scaling.md)
 *
 * A handle has one endpoint per server address: every address its name
 * resolved to (udprr_client_open), or every address of every entry of a
 * list (udprr_client_open_list), as a resolver takes its nameservers. Each
 * endpoint has a connected socket, an RTT estimate, a congestion window
 * and counters of its own (udprr_client_endpoint_stats).
 *
 * Choice. A request goes to the best endpoint with room in its congestion
 * window when it is sent (it waits while every window is full): one whose
 * failure back-off has run out and that is due to be tried again first,
 * so that a failed server is never forgotten; else the one with the
 * fewest consecutive failures, then the lowest SRTT (one not yet measured
 * counting as 0), then the earliest in the list. A failure is a refusal
 * (ICMP port unreachable) or a transmission unanswered for its whole
 * wait; an answer (reply or decline) clears the endpoint's failures. A
 * failed endpoint is left alone for endpoint_retry_ms after its first
 * failure in a row, twice as long after the second, and so on up to 64
 * times; then one request tries it again. While every endpoint is
 * failed, the one with the fewest failures is used (of those, the one
 * whose back-off ends first).
 *
 * Failover. A request refused by its endpoint moves at once to the best
 * endpoint that has not refused it, with its next attempt number, passing
 * over those known to refuse (refused last, and still left alone); one
 * with no such endpoint left ends with UDPRR_EREFUSED, and when every
 * endpoint is known to refuse, nothing listens anywhere: the requests
 * waiting to be sent end with UDPRR_EREFUSED too. With failover
 * UDPRR_FAILOVER_ANY (the default) a transmission unanswered for its
 * whole wait also moves the request: its retransmission goes to the best
 * other endpoint. A reply from any endpoint the request was sent to
 * completes it. The deadline, max_attempts and the retry schedule's
 * back-off count across endpoints (a retransmission waits the new
 * endpoint's RTO backed off by its attempt number); a request that runs
 * out of time or attempts ends with UDPRR_ETIMEDOUT, unless its last
 * transmission was refused (UDPRR_EREFUSED).
 *
 * At most once, per server. Each server's reply cache makes a request run
 * at most once on that server; a request retried on another server may
 * run there too (the first server may have run it, and only its answer
 * was lost). Requests that must not run twice want failover
 * UDPRR_FAILOVER_REFUSED: a request then moves only when refused, that is
 * when nothing listened, and is retransmitted to the same endpoint
 * otherwise. (A refusal says the port is closed now; a server that ran
 * the request and then stopped before its answer arrived also refuses.)
 */

/* The most endpoints one client handle has. */
#define UDPRR_MAX_ENDPOINTS 16

/* udprr_client_opts.failover */
#define UDPRR_FAILOVER_ANY 0     /* refusals and unanswered transmissions */
#define UDPRR_FAILOVER_REFUSED 1 /* refusals only (not idempotent) */

/* One entry of a list of servers: a host and a service, as
 * udprr_client_open() takes them. */
typedef struct udprr_endpoint {
    const char *host;
    const char *service;
} udprr_endpoint;

/*
 * udprr_client_open_list - as udprr_client_open(), with n servers
 * (1..UDPRR_MAX_ENDPOINTS entries): each entry is resolved, and each of
 * its addresses becomes an endpoint, in the list's order, up to
 * UDPRR_MAX_ENDPOINTS in all. The errors are udprr_client_open()'s:
 * UDPRR_ERESOLVE when no entry resolves, UDPRR_ESYS when no address takes
 * a socket; list NULL or n out of range is UDPRR_EINVAL. An entry that
 * does not resolve, or whose addresses take no socket, is left out while
 * another works.
 */
UDPRR_API int udprr_client_open_list(udprr_client **out,
                                     const udprr_endpoint *list, size_t n,
                                     const udprr_client_opts *opts);

/* How many endpoints the handle has (0 for NULL). */
UDPRR_API size_t udprr_client_endpoints(const udprr_client *c);

/*
 * One endpoint's counters since open. Set size to sizeof(struct
 * udprr_endpoint_stats) before the call; the library fills only what
 * fits. The handle's udprr_client_stats() counts requests; these count
 * what each endpoint saw of them, so a request that failed over shows in
 * more than one.
 */
struct udprr_endpoint_stats {
    size_t size;
    struct sockaddr_storage addr; /* the endpoint's address */
    socklen_t addr_len;
    uint64_t attempts;   /* transmissions sent to it */
    uint64_t answers;    /* replies and declines that came from it */
    uint64_t timeouts;   /* transmissions to it unanswered for their whole
                            wait */
    uint64_t refusals;   /* times it refused (nothing listened) */
    uint64_t failovers;  /* requests that moved away from it */
    uint64_t failures;   /* consecutive failures now; 0: healthy */
    uint64_t retry_in_ms; /* a failed endpoint: how long until it is tried
                            again (0: now, or healthy) */
    uint64_t srtt_us;    /* its smoothed RTT; 0 before the first sample */
    uint64_t rttvar_us;
    uint64_t rto_us;
    uint64_t window;     /* its congestion window */
    uint64_t in_flight;  /* requests whose last transmission went to it */
};

/* Fills *out for endpoint i (0 .. udprr_client_endpoints() - 1), as much
 * as out->size covers, and sets out->size to the bytes filled. UDPRR_OK;
 * UDPRR_EINVAL (c or out NULL, out->size less than the size field, i out
 * of range). */
UDPRR_API int udprr_client_endpoint_stats(const udprr_client *c, size_t i,
                                          struct udprr_endpoint_stats *out);

/* ------------------------------------------------------------------------
 * Broadcast and multicast gathers, the path MTU (docs/network.md)
 */

/* The most replies one gather reports (udprr_client_gather). */
#define UDPRR_GATHER_MAX 4096

/*
 * Called once for each server that answered a gather: from is its address
 * (from_len bytes), status UDPRR_OK for a reply or UDPRR_EREMOTE for a
 * decline (native framing), and reply[0..reply_len) the reply's body (in
 * id-at-offset and raw framing the whole datagram). The pointers are valid
 * during the call only. Return 0 to go on gathering, nonzero to stop. It
 * may close the handle (the gather then ends: see udprr_client_gather);
 * other calls on the handle fail with UDPRR_EINVAL from inside it.
 */
typedef int (*udprr_gather_fn)(void *user, const struct sockaddr *from,
                               socklen_t from_len, int status,
                               const void *reply, size_t reply_len);

/*
 * udprr_client_gather - sends req[0..req_len) to the handle's address (its
 * first endpoint's, with several), a
 * broadcast address (open with opts.broadcast set) or a multicast group,
 * or any unicast address, and hands every distinct server's answer to fn
 * until window_ms has passed or max_replies servers (1..UDPRR_GATHER_MAX;
 * 0: UDPRR_GATHER_MAX) have answered, or fn returns nonzero. Blocks.
 *
 * The request is sent again on the handle's retry schedule (the RTO, its
 * backoff and jitter: docs/retry.md) while the window lasts, every time
 * with the same ID, so that a server which answered already answers the
 * retransmission from its reply cache without running its handler again,
 * and one whose answer was lost gets another chance. A server is reported
 * once, however many of its answers arrive: servers are told apart by
 * their address and port. max_attempts, when set, bounds the
 * transmissions; the deadline does not apply (the window is the gather's
 * deadline).
 *
 * A gather uses a socket of its own, made for the call with the handle's
 * options (local_host, interface, broadcast, multicast_ttl,
 * dont_fragment; any free port, not local_service) and closed before it
 * returns: replies come from the servers' own addresses, which a socket
 * connected to the group or the broadcast address would never receive.
 * The handle's asynchronous requests make no progress during a gather.
 * Every framing works: in raw framing every datagram that arrives on the
 * gather's socket counts as its sender's answer. In native framing a
 * server that holds a large answer back behind an echo (udprr_server_opts,
 * "Amplification") is sent the request again, to its own address, with
 * the echo's cookie and the next attempt number (counted by max_attempts);
 * at most two echoes per server are answered.
 *
 * A gather is not counted in udprr_client_stats() (but for dropped_auth:
 * its datagrams that do not open with the handle's key), and on_attempt
 * is not called for its transmissions.
 *
 * Returns UDPRR_OK when at least one server answered; UDPRR_ETIMEDOUT when
 * none did within the window; UDPRR_ECANCELED when fn closed the handle
 * (it is freed; the answers fn was given stand); UDPRR_EINVAL (c or fn
 * NULL, req NULL with a nonzero req_len, window_ms 0 or above 3600000, max_replies above
 * UDPRR_GATHER_MAX, a request too short for its ID in id-at-offset
 * framing, or called from inside a done callback of the handle);
 * UDPRR_ETOOBIG (req_len over what one datagram carries in the handle's
 * framing, or, with dont_fragment, over the path MTU); UDPRR_ENOMEM;
 * UDPRR_ESYS (the socket could not be made, the first transmission or a
 * wait failed; errno says why: a later transmission that fails counts as
 * lost). UDPRR_EREFUSED never ends a gather: one server that is not
 * listening says nothing of the others.
 */
UDPRR_API int udprr_client_gather(udprr_client *c, const void *req,
                                  size_t req_len, unsigned window_ms,
                                  size_t max_replies, udprr_gather_fn fn,
                                  void *user);

/*
 * udprr_client_mtu - the path MTU the kernel knows for the handle's server
 * (its first endpoint, with several)
 * (IP_MTU, IPV6_MTU): the largest IP packet, headers included, that leaves
 * without fragmenting. It is the outgoing interface's MTU until an ICMP
 * "fragmentation needed" (IPv4) or "packet too big" (IPv6) message lowers
 * it; the largest request body that fits is the MTU less 28 bytes (IPv4
 * and UDP headers; 48 over IPv6) and, in native framing, less the 20-byte
 * header. Meaningful with dont_fragment, where a larger request fails with
 * UDPRR_ETOOBIG; without it the kernel fragments instead.
 * UDPRR_OK and *mtu set; UDPRR_EINVAL (c or mtu NULL); UDPRR_ESYS (the
 * kernel knows no route to the server; errno says why).
 */
UDPRR_API int udprr_client_mtu(const udprr_client *c, unsigned *mtu);

/* ------------------------------------------------------------------------
 * Asynchronous requests, driven by the application's event loop
 *
 * udprr_client_send queues a request and returns at once; the handle's
 * socket (udprr_client_fd), the time until its next timer
 * (udprr_client_timeout_ms) and a step that never blocks
 * (udprr_client_process) let any event loop drive it: poll(2), epoll,
 * libuv, libevent. examples/poll_client.c and examples/uv_client.c show
 * both; docs/async.md is the guide.
 *
 *     udprr_client_send(c, req, len, done, user);      ... more sends
 *     while (requests are pending) {
 *         struct pollfd p = {udprr_client_fd(c), POLLIN, 0};
 *         poll(&p, 1, udprr_client_timeout_ms(c));
 *         udprr_client_process(c);                     runs done callbacks
 *     }
 *
 * Each request is the blocking call's: a fresh ID, the same retries and
 * RTO, the handle's deadline (or its own), and exactly one call of its
 * done callback, with its reply or the status it ended with.
 *
 * How many are in flight: a congestion window (RFC 8085, section 3.1)
 * allows at most `window` requests sent and not yet answered. It starts
 * at 4 (or max_window if smaller), grows by one per reply while it is
 * full (doubling each round trip) up to a threshold, then by one per
 * window's worth of replies, and halves when a request's timer runs out
 * (once per window of requests: losses among requests sent before the
 * halving do not halve it again), never below 1 nor above max_window.
 * docs/async.md gives the algorithm and the reasons for its constants.
 * Requests beyond the window wait in a queue, in the order they were
 * sent. In raw framing, which cannot tell replies apart, one request is in
 * flight and the others wait; with an ID shorter than 8 bytes no two
 * requests in flight ever carry the same ID (those that would wait).
 *
 * Memory: a pending request (in flight or queued) holds a copy of its
 * bytes plus at most UDPRR_PENDING_OVERHEAD bytes of bookkeeping;
 * max_pending and max_pending_bytes bound both (UDPRR_EBUSY beyond them).
 *
 * A blocking udprr_client_request on a handle with asynchronous requests
 * pending shares the window and the queue with them: its request waits
 * its turn like any other, and while it waits the done callbacks of the
 * others run from inside it.
 * ------------------------------------------------------------------------ */

/* What a pending request costs beyond its bytes, at most. */
#define UDPRR_PENDING_OVERHEAD 512

/*
 * The done callback: runs exactly once for every request that
 * udprr_client_send accepted, from inside udprr_client_process,
 * udprr_client_cancel, udprr_client_close or udprr_client_request (never
 * from inside the send that queued it).
 *
 * status is UDPRR_OK with the reply in reply[0..reply_len), valid during
 * the call only (copy what you keep); or the status the request ended
 * with (reply NULL, reply_len 0): UDPRR_ETIMEDOUT, UDPRR_EREFUSED,
 * UDPRR_EREMOTE, UDPRR_ECANCELED (udprr_client_cancel, or
 * udprr_client_close with the request pending), UDPRR_ETOOBIG (the local
 * stack refused a datagram that size), UDPRR_ESYS.
 *
 * From a done callback the program may send, cancel, and close the
 * handle (then the handle is freed when the library call that ran the
 * callback returns; do not touch it after close). udprr_client_process
 * and udprr_client_request, called from a done callback of the same
 * handle, fail with UDPRR_EINVAL.
 */
typedef void (*udprr_done_fn)(void *user, int status, const void *reply,
                              size_t reply_len);

/*
 * Per-request options, for udprr_client_send_ex. Start from
 * udprr_send_opts_init(), as for the handle's options (the size rules of
 * "Options and ABI" apply).
 */
typedef struct udprr_send_opts {
    size_t size;          /* the program's sizeof(udprr_send_opts); set by
                             udprr_send_opts_init() */
    unsigned deadline_ms; /* this request's deadline, counted from the
                             send (time spent queued included); 0: the
                             handle's deadline_ms. Default 0 */
} udprr_send_opts;

UDPRR_API void udprr_send_opts_init_sized(udprr_send_opts *opts,
                                          size_t size);
#define udprr_send_opts_init(opts)                                             \
    udprr_send_opts_init_sized((opts), sizeof *(opts))

/*
 * udprr_client_send - copies req[0..len) and queues it as a request.
 *
 * It is sent at once when the window has room and nothing waits before
 * it, else when its turn comes (inside a later udprr_client_process).
 * On UDPRR_OK, done(user, ...) runs exactly once, later. On failure
 * nothing was queued and done is never called: UDPRR_EINVAL (c or done
 * NULL, req NULL with len > 0, an id-at-offset request too short to hold
 * the ID, the handle is being closed); UDPRR_ETOOBIG (len over what the
 * framing carries, or the local stack refused the size at once);
 * UDPRR_EREFUSED (sent at once, and the kernel reported that nothing
 * listens there); UDPRR_EBUSY (max_pending or max_pending_bytes
 * reached); UDPRR_ENOMEM; UDPRR_ESYS (the random source).
 *
 * udprr_client_send_ex adds per-request options (opts NULL: the
 * defaults) and, when ticket is not NULL, stores in *ticket a number that
 * names this request for udprr_client_cancel. Tickets count up from 1 and
 * are never reused by a handle, so a stale ticket never names another
 * request.
 */
UDPRR_API int udprr_client_send(udprr_client *c, const void *req,
                                size_t len, udprr_done_fn done, void *user);
UDPRR_API int udprr_client_send_ex(udprr_client *c, const void *req,
                                   size_t len, const udprr_send_opts *opts,
                                   udprr_done_fn done, void *user,
                                   uint64_t *ticket);

/*
 * udprr_client_cancel - ends the pending request named by ticket: its done
 * callback runs once, with UDPRR_ECANCELED, before cancel returns.
 * UDPRR_OK; UDPRR_ENOTPENDING when no request with that ticket is pending
 * (a harmless no-op): it has ended, and its done callback has run, or
 * is about to run, with the status it ended with. The latter only inside
 * a done callback, while a close or a refusal ends every request at once:
 * the others' callbacks run after this one returns, so do not free what
 * they use on the strength of ENOTPENDING alone; UDPRR_EINVAL for a NULL
 * c. A datagram already sent cannot be recalled:
 * the server may still run the request.
 */
UDPRR_API int udprr_client_cancel(udprr_client *c, uint64_t ticket);

/*
 * udprr_client_timeout_ms - how long the event loop may wait before it
 * calls udprr_client_process, if the socket stays quiet: -1 when no
 * request is pending (wait for the socket, or not at all); 0 when a timer
 * is due now; else the milliseconds to the next retransmission or
 * deadline, rounded up, so that waiting that long never wakes early and
 * spins (at most INT_MAX). Never blocks.
 */
UDPRR_API int udprr_client_timeout_ms(const udprr_client *c);

/*
 * udprr_client_process - does what is ready, without blocking: takes the
 * datagrams waiting on the socket (in batches, by recvmmsg(2); at most
 * 256 per call, so that a flood cannot hold back the timers: wait for the
 * socket level-triggered, as poll(2) does, and the next call takes the
 * rest), completing the requests they answer; sends what a timer has made due
 * (retransmissions), ends what is past its deadline or its last attempt;
 * sends queued requests the window now has room for. Done callbacks run
 * from inside it. Call it when udprr_client_fd is readable or
 * udprr_client_timeout_ms has passed; calling it at other times is
 * harmless. UDPRR_OK, or UDPRR_EINVAL (c NULL, or called from a done
 * callback of c).
 */
UDPRR_API int udprr_client_process(udprr_client *c);

/* Completes every pending request with UDPRR_ECANCELED (their done
 * callbacks run from inside the call, once each; sends from them fail with
 * UDPRR_EINVAL), closes the socket and frees the handle. May be called
 * from a done callback (see udprr_done_fn). NULL is a no-op. */
UDPRR_API void udprr_client_close(udprr_client *c);

/* ------------------------------------------------------------------------
 * Server
 *
 * A server handle owns one bound UDP socket (one per worker: see Workers
 * below). udprr_server_run() hands each
 * valid request to the application's handler and sends the handler's reply
 * back to the address the request came from, echoing the request's ID and
 * attempt number (in native framing; see Framings for the others).
 *
 * At most once: the server remembers each answer in a reply cache keyed by
 * (client address, request ID). A retransmitted request whose answer is
 * still cached gets that answer again, without the handler running. An
 * answer stays cached for cache_lifetime_ms after the handler produced it,
 * unless the cache's bounds (cache_entries, cache_bytes) force the oldest
 * answers out first. A retransmission that arrives after its answer expired
 * or was evicted runs the handler again: choose a lifetime longer than your
 * clients' deadline (the defaults are 30 s and 10 s) and bounds that hold
 * the answers of one lifetime's worth of requests. With the cache off,
 * every datagram that arrives runs the handler: for idempotent handlers.
 * Declines are cached like replies.
 *
 * Two ways to drive it: udprr_server_run() until udprr_server_stop(), or
 * the program's own event loop with udprr_server_fd(),
 * udprr_server_timeout_ms() and udprr_server_process() (run is a loop over
 * them). A handler may answer at once or later: see UDPRR_DEFER.
 *
 * Thread rules: udprr_server_run() and udprr_server_process() run on one
 * thread at a time per handle (the server's thread), and the handler runs
 * on that thread (with workers, on every worker's thread at once).
 * udprr_server_reply() and udprr_server_decline() may be
 * called from any thread at any time between open and close.
 * udprr_server_stop() may be called from any thread or a signal handler,
 * udprr_server_sockname() and udprr_server_stats() from any thread at any
 * time (the counters are kept so that reading them while the server runs
 * never tears one). udprr_server_close() must not run concurrently with
 * anything else on the handle: join the threads that answer deferred
 * requests first.
 *
 * Workers (since 0.2): with the option workers N > 1, open binds N
 * sockets to the one address with SO_REUSEPORT (the first to host and
 * service, so service "0" picks the port; the others to the address the
 * first got), and run serves each on a thread of its own: N - 1 threads
 * it starts, and the caller's. The kernel hands all datagrams from one
 * client address and port to one socket, so each worker keeps a reply
 * cache and a deferred-request table of its own, each with the bounds of
 * the options (cache_entries, cache_bytes, max_deferred are per worker:
 * N times the memory in all), and at-most-once holds as with one socket.
 * (The kernel may move clients between sockets only when the group
 * changes, which it does not once open has returned: a datagram that
 * arrives at a fixed port while open is still binding the later sockets
 * may be queued on the first, and its retransmission hashed to another
 * worker, which runs the handler again.) The handler runs
 * on every worker's thread, concurrently: it must be thread-safe. A token
 * names the worker that handed it out (in its low bits), so
 * udprr_server_reply() and _decline() take it from any thread as before.
 * udprr_server_stop() stops every worker; run returns when every worker
 * has stopped and its thread has been joined. udprr_server_stats() adds
 * up the workers' counters; udprr_server_sockname() gives the shared
 * address. Workers are for run alone: with N > 1, udprr_server_process()
 * returns UDPRR_EINVAL and udprr_server_fd() and
 * udprr_server_timeout_ms() return -1 (so answers given for deferred
 * requests after a stop go out with udprr_server_close()). Only programs
 * of the same user may
 * join a SO_REUSEPORT group on Linux, so another user cannot take a share
 * of the clients; a second program of the same user that binds the port
 * with SO_REUSEPORT can (as with any SO_REUSEPORT server).
 * ------------------------------------------------------------------------ */

typedef struct udprr_server udprr_server;

/* One request, as the handler sees it. Every pointer is valid only during
 * the handler's call. Fields may be appended in later versions. */
typedef struct udprr_request {
    const void *data;            /* the request's bytes */
    size_t len;                  /* how many */
    const struct sockaddr *peer; /* where it came from */
    socklen_t peer_len;
    uint64_t id;                 /* the client's request ID (in
                                    id-at-offset framing, the ID's bytes
                                    read big-endian; 0 in raw framing) */
    unsigned attempt;            /* which transmission this is; 0 when the
                                    framing does not say (raw, id-at-offset) */
    /* Since 0.2. */
    uint64_t token;              /* names this request for an answer given
                                    later (UDPRR_DEFER); 0 when it cannot
                                    be deferred (max_deferred requests are
                                    deferred already, or no memory) */
} udprr_request;

/*
 * The application's handler. Write at most reply_cap bytes (reply_cap is
 * UDPRR_MAX_PAYLOAD native, UDPRR_MAX_SEALED_PAYLOAD on a sealed server,
 * UDPRR_MAX_DATAGRAM in the other framings) to
 * reply, set *reply_len (0 on entry), and return one of:
 *
 *   UDPRR_REPLY (0)   send the *reply_len bytes. In id-at-offset framing
 *                     the library then writes the request's ID into the
 *                     reply at the same offset (when the reply is long
 *                     enough), so a retransmission answered from the cache
 *                     carries the ID too.
 *   UDPRR_DECLINE     refuse the request: the client's request ends at
 *                     once with UDPRR_EREMOTE, and the decline is cached
 *                     like a reply (a retransmission gets the decline
 *                     again, without the handler running).
 *   UDPRR_NO_REPLY    send nothing and remember nothing, as if the request
 *                     had been lost (overload shedding, a test server
 *                     imitating loss): the client retries, and its
 *                     retransmission runs the handler again. Its value is
 *                     one that no error path returns by habit, so that it
 *                     is only ever chosen on purpose.
 *   UDPRR_DEFER       answer later: keep req->token and give it, with the
 *                     answer, to udprr_server_reply() or
 *                     udprr_server_decline(), from any thread, within
 *                     deferred_lifetime_ms. The request's bytes are valid
 *                     only during this call: copy what the work needs.
 *                     Until the answer exists, retransmissions of the
 *                     request do not run the handler again (with the reply
 *                     cache on, as by default: it holds the request as "in
 *                     progress", outside its bounds and lifetime, which
 *                     neither evict nor expire it); they are counted in
 *                     deferred_retransmissions and dropped. The answer is
 *                     sent when the server's thread next runs (run, or the
 *                     event loop's process: a reply from another thread
 *                     wakes it through udprr_server_fd), then cached like
 *                     any other. A request whose answer does not come
 *                     within deferred_lifetime_ms is declined (the client
 *                     gets UDPRR_EREMOTE; in raw and id-at-offset framing,
 *                     which cannot decline, nothing: the client times
 *                     out; counted in deferred_expired) and its token
 *                     forgotten. The token is good only if the handler
 *                     returns UDPRR_DEFER: an answer given through it
 *                     while the handler ran (by the handler, or by a fast
 *                     worker) is discarded if the handler then returns
 *                     anything else. A handler that returns
 *                     UDPRR_DEFER while req->token is 0 (max_deferred
 *                     reached) declines the request (deferred_refused).
 *
 * Every other value declines too, exactly like UDPRR_DECLINE: a handler
 * that fails with `return 1;`, `return -1;` or `return -EIO;` is told to
 * the client within its first round trip, never silently retried until the
 * deadline. A *reply_len above reply_cap declines as well. Raw and
 * id-at-offset framing cannot carry a decline: nothing is sent (it is
 * still cached in id-at-offset framing, so retransmissions get nothing
 * either).
 *
 * (In 0.1, UDPRR_NO_REPLY was 1 and so `return 1;` dropped the request.
 * A program built against 0.1 keeps 0.1's meaning of 1 until it is
 * rebuilt: see udprr_server_run.)
 */
#define UDPRR_REPLY 0
#define UDPRR_DECLINE UDPRR_EREMOTE
#define UDPRR_NO_REPLY 0x4e6f5270 /* "NoRp" */
#define UDPRR_DEFER 0x44664572    /* "DfEr" */

typedef int (*udprr_handler)(void *user, const udprr_request *req,
                             void *reply, size_t reply_cap, size_t *reply_len);

/* The most workers one server may have (udprr_server_opts.workers). */
#define UDPRR_MAX_WORKERS 64

/* Server options; start from udprr_server_opts_init(), as for clients
 * (the size rules are in "Options and ABI" above). */
typedef struct udprr_server_opts {
    size_t size;                 /* the program's sizeof(udprr_server_opts);
                                    set by udprr_server_opts_init() */
    int reply_cache;             /* nonzero: at-most-once. An answer is
                                    remembered with the peer, the ID and a
                                    digest of the request's bytes (the
                                    body; in id-at-offset framing the whole
                                    datagram), and answers only a request
                                    with all three the same: a
                                    retransmission. Default 1 */
    size_t cache_entries;        /* most answers remembered, 1..2^24.
                                    Default 65536 */
    size_t cache_bytes;          /* most bytes they may take, counting a
                                    fixed overhead of UDPRR_CACHE_ENTRY_OVERHEAD
                                    bytes per answer; at least that overhead.
                                    An answer that alone exceeds this is sent
                                    but not cached. Default 64 MiB */
    unsigned cache_lifetime_ms;  /* how long an answer is remembered, >= 1.
                                    Default 30000 */
    int framing;                 /* UDPRR_FRAMING_*. Default native. The
                                    reply cache is off in raw framing */
    size_t id_offset;            /* id-at-offset: where the ID starts */
    unsigned id_len;             /* id-at-offset: its bytes, 1..8 */
    /* Since 0.2: deferred answers (UDPRR_DEFER). A zero means the
     * default. */
    size_t max_deferred;         /* requests deferred at once, at most
                                    1048576. Default 4096 */
    unsigned deferred_lifetime_ms; /* how long an answer may take before
                                    the request is declined. Default
                                    10000 */
    /* Since 0.2: threads (see "Workers" below). A zero means the
     * default. */
    unsigned workers;            /* sockets and threads that serve the
                                    address, 1..UDPRR_MAX_WORKERS.
                                    Default 1 */
    /* Since 0.2: interfaces (docs/network.md). NULL means the default. */
    const char *interface;       /* take requests only from this interface
                                    (SO_BINDTODEVICE), such as "eth1": a
                                    datagram that arrives on another one
                                    is not seen. Read by udprr_server_open
                                    and copied. NULL: every interface */
    /* Since 0.2: hardening. Zero means the default. */
    size_t rcvbuf_bytes;         /* the socket's receive buffer (SO_RCVBUF;
                                    the kernel doubles it for its own
                                    bookkeeping and caps it at
                                    net.core.rmem_max unless the process
                                    may raise that: SO_RCVBUFFORCE is tried
                                    first), at most 1 GiB: how many
                                    datagrams wait while the handler is
                                    busy before the kernel drops them
                                    (stats kernel_drops). Default: the
                                    system's (net.core.rmem_default) */
    unsigned amplification_factor; /* native framing: an answer datagram
                                    larger than this many times its
                                    request's is sent only to a peer that
                                    proved it receives at its address (see
                                    "Amplification" below); 1..1000, or
                                    UDPRR_AMPLIFICATION_OFF. Default 3 */
    /* Since 0.2: the sealed mode (see "Sealed mode" above). */
    const udprr_key *keys;       /* with n_keys > 0: take only requests
                                    sealed with one of these keys (IDs all
                                    different), and seal each answer with
                                    its request's key; native framing
                                    only. Read by open and copied;
                                    udprr_server_set_keys() replaces them */
    size_t n_keys;               /* 0..UDPRR_MAX_KEYS. Default 0: plain
                                    datagrams */
} udprr_server_opts;

/*
 * Amplification. A UDP server answers whatever address a request names as
 * its source, and that address can be forged: a small request with a
 * victim's address could aim a large answer at the victim. So, in native
 * framing, an answer datagram larger than amplification_factor (default
 * 3, as QUIC's rule) times its request datagram goes out only to a peer
 * that has proved it receives at its address. Instead of such an answer
 * the server sends an echo: a 36-byte datagram carrying a cookie bound to
 * the peer's address and port (it changes every 30 s, and a cookie stays
 * good for 30 to 60 s). A libudprr client answers an echo at once by
 * sending the request again with the cookie, and keeps the cookie for its
 * later requests to that server; a request carrying a good cookie gets
 * its whole answer. The handler runs once: the answer waits in the reply
 * cache for the request's return (without the cache the handler runs
 * again). A forger never sees the cookie, so its victim gets 36 bytes per
 * forged request at most. docs/protocol.md gives the datagrams; stats
 * amplification_echoes counts the echoes. The allowance is the server's
 * to set: amplification_factor raises it, UDPRR_AMPLIFICATION_OFF turns
 * the guard off (for peers that cannot answer an echo: libudprr 0.1
 * clients, and any client on a network the operator trusts). Raw and
 * id-at-offset framing have no room for a cookie: their protocols (DNS's
 * truncation, CoAP's Echo option) guard themselves, and the library does
 * not limit their answers.
 */
#define UDPRR_AMPLIFICATION_OFF 0xffffffffu

/* As for clients (see "Options and ABI" above): the macro passes the
 * program's sizeof; the plain symbol serves programs built against 0.1. */
UDPRR_API void udprr_server_opts_init_sized(udprr_server_opts *opts,
                                            size_t size);
UDPRR_API void(udprr_server_opts_init)(udprr_server_opts *opts);
#define udprr_server_opts_init(opts)                                           \
    udprr_server_opts_init_sized((opts), sizeof *(opts))

/*
 * udprr_server_open - binds a UDP socket to host and service.
 *
 * host NULL binds every interface: an IPv6 socket that also takes IPv4
 * where the system allows dual-stack sockets, else an IPv4 one. service
 * "0" picks a free port; read it back with udprr_server_sockname().
 *
 * Every answer leaves from the address the request was sent to
 * (IP_PKTINFO, IPV6_PKTINFO): a server bound to every interface of a host
 * with several addresses answers a client that wrote to its second
 * address from that address, as a connected client requires. For a
 * request sent to a broadcast address or a multicast group the answer
 * leaves from a unicast address of the interface it arrived on instead.
 * Over IPv6 the answer also leaves through the interface the request
 * arrived on (link-local addresses need it); over IPv4 through the one
 * the routes choose.
 *
 * The cache options are checked only when a cache is made: reply_cache on,
 * in a framing that has IDs (not raw). With workers > 1 (see "Workers"
 * above) every socket is bound before open returns, the first one with
 * SO_REUSEPORT too.
 *
 * Returns UDPRR_OK; UDPRR_EINVAL (out or service NULL, an option out of
 * range, workers above UDPRR_MAX_WORKERS, keys NULL with n_keys > 0 or
 * keys with n_keys 0, two
 * keys with one ID, keys with a framing other than native);
 * UDPRR_ENOTSUP (keys, and a library built without the sealed mode);
 * UDPRR_ERESOLVE (no address for
 * host/service, or no interface named opts.interface); UDPRR_ESYS (socket,
 * bind or eventfd failed, or the kernel's random source that keys the
 * cache; errno says why, e.g. EADDRINUSE, or EPERM when SO_BINDTODEVICE
 * needs a privilege the process lacks); UDPRR_ENOMEM. On failure *out is
 * unchanged.
 * Like the client's open, it blocks while getaddrinfo resolves a name.
 */
UDPRR_API int udprr_server_open(udprr_server **out, const char *host,
                                const char *service,
                                const udprr_server_opts *opts);

/*
 * udprr_server_join - joins the multicast group (an IPv4 or IPv6 address,
 * numeric or a name) on interface ("eth1"; NULL: the one the kernel's
 * routes choose), so that requests sent to the group reach the server.
 * The server must be bound to the group's family (a wildcard server takes
 * both where it is dual-stack) and to the port the requests go to. Answers
 * go from the server's unicast address, never from the group. Call it
 * after open, before or while serving, from any thread; a group stays
 * joined until close. A server receives multicast only for the groups it
 * joined itself, never for a group another program on the host joined.
 *
 * Returns UDPRR_OK; UDPRR_EINVAL (s or group NULL, group not a multicast
 * address, or workers > 1: each worker's socket would take its own copy of
 * every multicast request and run the handler once per worker);
 * UDPRR_ERESOLVE (group or interface unknown); UDPRR_ESYS (the kernel
 * refused the membership; errno says why, EADDRINUSE when already joined).
 *
 * Broadcast requests reach a server without any call; with workers > 1
 * every worker takes its own copy of each (the kernel does not spread
 * broadcasts over a SO_REUSEPORT group), so serve broadcasts with one
 * worker.
 */
UDPRR_API int udprr_server_join(udprr_server *s, const char *group,
                                const char *interface);

/*
 * udprr_server_set_keys - replaces a sealed server's keys with keys[0..n)
 * (1..UDPRR_MAX_KEYS of them, IDs all different), for every worker, from
 * any thread, while the server runs: requests sealed with a key no longer
 * in the set are dropped from the next receive on (stats dropped_auth),
 * and an answer whose request's key went away meanwhile (a deferred one)
 * is not sent (send_errors). The keys are copied; the old copies are
 * wiped. To rotate: set {old, new}, move the clients to new, set {new}.
 *
 * Returns UDPRR_OK; UDPRR_EINVAL (s or keys NULL, n out of range, two keys
 * with one ID, or a server opened without keys: a server is sealed or
 * plain for its whole life).
 */
UDPRR_API int udprr_server_set_keys(udprr_server *s, const udprr_key *keys,
                                    size_t n);

/* The bound address, as getsockname(2): *len is the size of addr on entry
 * and the address's size on return. UDPRR_OK, UDPRR_EINVAL, UDPRR_ESYS. */
UDPRR_API int udprr_server_sockname(const udprr_server *s,
                                    struct sockaddr *addr, socklen_t *len);

/*
 * udprr_server_run - serves requests until udprr_server_stop() is called.
 * Returns UDPRR_OK after a stop (at once if stop came first: a stopped
 * server stays stopped); UDPRR_EINVAL (s or h NULL, or called from inside
 * the handler; with workers > 1 also while another run of the handle
 * runs); UDPRR_ESYS if waiting
 * on the socket fails (errno says why; with workers > 1, if a worker's
 * thread cannot be started or any worker's wait fails, every worker is
 * stopped, as by udprr_server_stop(), and run returns the first failure
 * once all have returned). Once run sees the stop, it calls
 * the handler no more (a call already running finishes, and a datagram
 * already being handled when stop came may still reach it); the answer of
 * every request whose handler ran has been handed to the kernel (or
 * counted in send_errors) before run returns. The handler gets
 * *reply_len == 0 on entry.
 *
 * udprr_server_run is a macro over udprr_server_run_v2, which takes the
 * handler results above. Programs built against 0.1's header call a
 * function named udprr_server_run; the library still exports it, and
 * through it a handler's 1 (0.1's UDPRR_NO_REPLY) still sends nothing, so
 * a 0.1 program keeps its behaviour until it is rebuilt against this
 * header. Calling it directly, as (udprr_server_run)(s, h, user), is for
 * that purpose only.
 */
UDPRR_API int udprr_server_run_v2(udprr_server *s, udprr_handler h,
                                  void *user);
UDPRR_API int(udprr_server_run)(udprr_server *s, udprr_handler h, void *user);
#define udprr_server_run(s, h, user) udprr_server_run_v2((s), (h), (user))

/* Makes udprr_server_run() return promptly (every worker's, with
 * workers > 1). Async-signal-safe and
 * thread-safe; NULL is a no-op. It must not be called once
 * udprr_server_close() has begun: a signal handler that stops a server is
 * to be reset (or made to skip the call) before the server is closed.
 * A stopped server stays stopped: run returns at once, and process takes
 * no more requests (it still sends deferred answers and expires tokens).
 * Requests deferred when the stop comes stay deferred: their answers are
 * sent by a later process, or declined by udprr_server_close(). */
UDPRR_API void udprr_server_stop(udprr_server *s);

/*
 * The server in the program's own event loop.
 *
 * udprr_server_fd - a descriptor that is readable when the server has work:
 * a datagram on its socket, or a deferred answer given from another thread
 * (an epoll(7) descriptor watching both; level-triggered). Wait on it with
 * poll(2), epoll or any event library, for reading only; do not read it or
 * close it. The same for the life of the handle; -1 for NULL and with
 * workers > 1 (workers are for run alone). Once a step
 * has seen a stop, it no longer watches the socket (a stopped server takes
 * no datagrams), so a loop may go on waiting on it to send the answers
 * still to come, without spinning.
 *
 * udprr_server_timeout_ms - how long the loop may wait before it calls
 * process if the descriptor stays quiet: -1 when no deferred request is
 * waiting for its answer, else the milliseconds until the next one's
 * lifetime ends, rounded up (0 when it has ended); -1 with workers > 1.
 * Thread-safe.
 *
 * udprr_server_process - does what is ready, without blocking: sends the
 * deferred answers given since the last call, declines the deferred
 * requests whose lifetime has ended, and handles up to 64 datagrams from
 * the socket (a level-triggered wait brings it back for the rest).
 * UDPRR_OK; UDPRR_EINVAL (s or h NULL, or called from inside the handler:
 * run and process do not nest; or workers > 1: workers are for run).
 */
UDPRR_API int udprr_server_fd(const udprr_server *s);
UDPRR_API int udprr_server_timeout_ms(const udprr_server *s);
UDPRR_API int udprr_server_process(udprr_server *s, udprr_handler h,
                                   void *user);

/*
 * udprr_server_reply - gives the answer of the deferred request named by
 * token (see UDPRR_DEFER): reply[0..len) is copied, and sent by the
 * server's thread at its next step (in id-at-offset framing with the
 * request's ID written in, as for an answer given at once).
 * udprr_server_decline - the same with a decline (the client's request
 * ends with UDPRR_EREMOTE; raw and id-at-offset framing send nothing).
 *
 * Either may be called once per token, from any thread, the handler's
 * included (after it returned UDPRR_DEFER, or from inside that call).
 * UDPRR_OK; UDPRR_ENOTPENDING (no deferred request has that token: it was
 * answered already, its lifetime ended, or it was never given; nothing is
 * sent); UDPRR_ETOOBIG (len above what the framing carries:
 * UDPRR_MAX_PAYLOAD native, UDPRR_MAX_SEALED_PAYLOAD sealed,
 * UDPRR_MAX_DATAGRAM otherwise; the token stays
 * valid); UDPRR_EINVAL (s NULL, reply NULL with len > 0); UDPRR_ENOMEM
 * (the token stays valid).
 */
UDPRR_API int udprr_server_reply(udprr_server *s, uint64_t token,
                                 const void *reply, size_t len);
UDPRR_API int udprr_server_decline(udprr_server *s, uint64_t token);

/* Server counters since open, each the sum over the workers; set
 * out->size first, as for clients. Cache
 * entries whose lifetime has ended are removed as later requests arrive,
 * so cache_entries and cache_bytes may include some expired answers. */
struct udprr_server_stats {
    size_t size;
    uint64_t received;          /* datagrams received */
    uint64_t handled;           /* handler calls */
    uint64_t answered;          /* replies and declines sent (any source) */
    uint64_t cache_hits;        /* retransmissions answered from the cache */
    uint64_t declined;          /* handler declines, at once or through
                                   a token (udprr_server_decline) */
    uint64_t not_answered;      /* handler returned UDPRR_NO_REPLY */
    uint64_t dropped_malformed; /* datagrams that failed to decode */
    uint64_t dropped_unexpected; /* well formed, but not a request */
    uint64_t send_errors;       /* answers the socket would not take */
    uint64_t uncached;          /* answers sent but not cached (larger than
                                   the cache's whole budget, or no memory),
                                   and deferred requests the cache could
                                   not hold "in progress": their
                                   retransmissions run the handler again */
    uint64_t cache_entries;     /* answers cached now */
    uint64_t cache_bytes;       /* bytes they take, overhead counted */
    uint64_t cache_evicted;     /* removed early to keep the bounds */
    uint64_t cache_expired;     /* removed at the end of their lifetime */
    /* Since 0.2: deferred answers. */
    uint64_t deferred;          /* handler calls that returned UDPRR_DEFER
                                   with a token */
    uint64_t deferred_pending;  /* of those, waiting for their answer now */
    uint64_t deferred_answered; /* answered through their token (reply or
                                   decline) */
    uint64_t deferred_expired;  /* declined when their lifetime ended (or
                                   by the close) */
    uint64_t deferred_refused;  /* UDPRR_DEFER with no token (max_deferred
                                   reached): declined */
    uint64_t deferred_retransmissions; /* retransmissions that arrived while
                                   their request's answer did not exist
                                   yet: dropped, the handler not run */
    /* Since 0.2: hardening. */
    uint64_t reused_ids;        /* requests whose peer and ID match a
                                   cached answer to other bytes: a reused
                                   ID, not a retransmission (which repeats
                                   the request's bytes exactly), so handled
                                   as a new request, never answered from
                                   the cache */
    uint64_t kernel_drops;      /* datagrams the kernel dropped because the
                                   socket's receive buffer was full (the
                                   server fell behind: see rcvbuf_bytes);
                                   summed over the workers. 0 where the
                                   kernel does not tell (SO_RXQ_OVFL) */
    uint64_t amplification_echoes; /* answers held back from a peer that
                                   had not proved its address: an echo
                                   with a cookie went instead (see
                                   "Amplification") */
    /* Since 0.2: the sealed mode (see "Sealed mode"). */
    uint64_t dropped_auth;      /* datagrams that did not open with any of
                                   the server's keys: dropped before any
                                   other check, never handled or answered
                                   (not in dropped_malformed) */
    uint64_t dropped_clock;     /* sealed requests whose clock was outside
                                   the replay window: replays of old
                                   requests, or a client clock too far
                                   off. Dropped, never answered */
};

/* Fills *out. From any thread, at any time: each counter is read whole
 * (never torn), though counters read together may be a moment apart (one
 * more received than handled, say). UDPRR_OK or UDPRR_EINVAL. */
UDPRR_API int udprr_server_stats(const udprr_server *s,
                                 struct udprr_server_stats *out);

/* Sends the deferred answers already given, declines every request still
 * deferred (the decline is sent in native framing, so that no client
 * waits out its deadline), closes the socket
 * and frees the handle and its cache. Must not be called while
 * udprr_server_run() or _process() runs on it, nor while another thread
 * may still call udprr_server_reply() or _decline(). NULL is a no-op. */
UDPRR_API void udprr_server_close(udprr_server *s);

#ifdef __cplusplus
}
#endif

#endif /* UDPRR_H */
