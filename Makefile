# SPDX-License-Identifier: MIT
# libudprr - plain GNU make; no autotools, no cmake.
#
#   make                 the shared and static library and udprr.pc
#   make check           every test suite (installs Check/pkg-config if missing)
#   make demo            builds everything and shows the library at work
#   make bench           the resilience benchmark: table, docs/resilience.svg;
#                        then the pipelining benchmark (docs/async-bench.md),
#                        then the raw-socket comparison (docs/performance.md)
#   make fuzz            every libFuzzer target (fuzz/fuzz_*.c, clang) for
#                        FUZZ_SECONDS (60) each, from a copy of its corpus
#                        (fuzz/corpus/*); FUZZ_TARGETS=exchange picks one
#   make install         PREFIX, DESTDIR, LIBDIR, INCLUDEDIR, PKGCONFIGDIR, MANDIR
#   make uninstall       removes exactly what install put there
#   make CC=clang ...    any compiler; objects are rebuilt when CC or flags change
#
# CPPFLAGS, CFLAGS and LDFLAGS are the user's (a distribution's -D_FORTIFY_SOURCE,
# -fstack-protector, -Wl,-z,relro ...): CPPFLAGS and CFLAGS reach every
# compilation, LDFLAGS every link; our own flags are added around them.
#
# Warnings are errors (WERROR=1, the default). WERROR=0 builds without
# -Werror, for a distribution whose newer compiler warns where ours did not:
# `make WERROR=0 all install`. make check (and CI) always builds with -Werror:
# it overrides WERROR=0, for itself and every make it starts, and says so.

PREFIX       ?= /usr/local
LIBDIR       ?= $(PREFIX)/lib
INCLUDEDIR   ?= $(PREFIX)/include
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
MANDIR       ?= $(PREFIX)/share/man

# The version lives once, in the header.
version_part = $(shell sed -n 's/^\#define UDPRR_VERSION_$(1) \([0-9][0-9]*\).*/\1/p' include/udprr.h)
VERSION_MAJOR := $(call version_part,MAJOR)
VERSION_MINOR := $(call version_part,MINOR)
VERSION_PATCH := $(call version_part,PATCH)
VERSION       := $(VERSION_MAJOR).$(VERSION_MINOR).$(VERSION_PATCH)

SONAME     = libudprr.so.$(VERSION_MAJOR)
SHARED_LIB = lib/libudprr.so.$(VERSION)
STATIC_LIB = lib/libudprr.a

# DWARF 4: the valgrind on Debian 12 cannot read the DWARF 5 that clang 14 emits.
CFLAGS ?= -O2 -g -gdwarf-4
WERROR ?= 1
ifeq ($(filter 0 1,$(WERROR)),)
$(error WERROR is 0 or 1, not '$(WERROR)')
endif
ifneq ($(filter check check-unit,$(MAKECMDGOALS)),)
ifeq ($(WERROR),0)
$(info make check builds with -Werror: WERROR=0 is ignored)
endif
override WERROR := 1
# What sub-makes (and the test scripts' makes) inherit through MAKEFLAGS.
MAKEOVERRIDES := $(filter-out WERROR=%,$(MAKEOVERRIDES)) WERROR=1
endif
WARNINGS = -Wall -Wextra $(if $(filter 1,$(WERROR)),-Werror) -Wshadow \
           -Wstrict-prototypes -Wmissing-prototypes -Wpointer-arith \
           -Wformat=2 -Wvla
# Our flags around the user's CPPFLAGS and CFLAGS, never instead of them.
REAL_CFLAGS = -std=c11 -D_GNU_SOURCE $(WARNINGS) -Iinclude $(CPPFLAGS) $(CFLAGS)
LIB_CFLAGS  = $(REAL_CFLAGS) $(SODIUM_CFLAGS) -fPIC -fvisibility=hidden
# Header dependencies: the compiler writes them beside each object or
# program it builds from one C file (build/obj/wire.o -> build/obj/wire.d,
# build/tests/unit_wire -> build/tests/unit_wire.d); they are read back at
# the end of this file, so touching a header rebuilds only what includes it.
DEPFLAGS = -MMD -MP
LIBS_PRIVATE = -pthread

# The sealed mode (udprr.h, "Sealed mode") needs libsodium, found with
# pkg-config when the library is compiled (Debian libsodium-dev; make check,
# make demo and make bench install it when missing, a bare make names it
# and stops). SODIUM=no builds the library without it: udprr_sealed_supported()
# is then 0 and every open that asks for a key fails with UDPRR_ENOTSUP.
SODIUM ?= yes
ifeq ($(filter yes no,$(SODIUM)),)
$(error SODIUM is yes or no, not '$(SODIUM)')
endif
ifeq ($(SODIUM),yes)
# Evaluated by the shell when a recipe runs: after `sodium` has made sure.
SODIUM_CFLAGS = -DUDPRR_HAVE_SODIUM $$(pkg-config --cflags libsodium)
SODIUM_LIBS   = $$(pkg-config --libs libsodium)
PC_REQUIRES_PRIVATE = libsodium
endif
# What a program linking the static library needs besides it.
LINK_PRIVATE = $(LIBS_PRIVATE) $(SODIUM_LIBS)

LIB_SRCS = $(sort $(wildcard lib/*.c))
LIB_OBJS = $(patsubst lib/%.c,build/obj/%.o,$(LIB_SRCS))
LIB_HDRS = include/udprr.h $(wildcard lib/*.h)

# unit_*: pure cores; net_*: real sockets on loopback.
# Every fuzz target fuzz/fuzz_NAME.c has a seed corpus fuzz/corpus/NAME,
# replayed by a suite of its own, unit_fuzz_replay_NAME, built from
# tests/unit_fuzz_replay.c (see "fuzzing" below).
FUZZ_SRCS  = $(sort $(wildcard fuzz/fuzz_*.c))
FUZZ_NAMES = $(patsubst fuzz/fuzz_%.c,%,$(FUZZ_SRCS))
UNIT_SRCS = $(filter-out tests/unit_fuzz_replay.c,\
                $(sort $(wildcard tests/unit_*.c tests/net_*.c)))
UNIT_BINS = $(patsubst tests/%.c,build/tests/%,$(UNIT_SRCS)) \
            $(FUZZ_NAMES:%=build/tests/unit_fuzz_replay_%)
# The impairment relay (tools/relay/, docs/relay.md): a tool of its own,
# not part of libudprr, linked only into what uses it: its own suite, the
# suites that put it between a client and a server, the benchmark and
# build/udprr-relay. Every other suite links nothing of it.
RELAY_SRCS = tools/relay/impair.c tools/relay/relay.c
RELAY_SUITES = unit_relay net_exchange net_framing net_resilience net_async \
               net_deferred net_workers net_sealed
# The fixture the net_* suites and the benchmark share, without Check
# (tests/fixture.h): a server on a thread, and (fixture_relay.c, only with
# the relay) the relay in front of it.
NET_SUITES = $(patsubst tests/%.c,%,$(wildcard tests/net_*.c))
FIXTURE_SRCS = tests/fixture.c
FIXTURE_RELAY_SRCS = tests/fixture_relay.c

SAN_FLAGS = -fsanitize=address,undefined -fno-sanitize-recover=all \
            -fno-omit-frame-pointer
SAN_BINS  = $(patsubst tests/%.c,build/asan/%,$(UNIT_SRCS)) \
            $(FUZZ_NAMES:%=build/asan/unit_fuzz_replay_%)

CHECK_CFLAGS = $(shell pkg-config --cflags check 2>/dev/null)
CHECK_LIBS   = $(shell pkg-config --libs check 2>/dev/null)

.PHONY: all check check-unit demo tools \
        examples bench fuzz install uninstall clean deps deps-libuv sodium FORCE

all: $(SHARED_LIB) lib/libudprr.so.$(VERSION_MAJOR) lib/libudprr.so \
     $(STATIC_LIB) udprr.pc

# Objects depend on the exact compiler and flags, so `make CC=clang` after a
# gcc build rebuilds instead of linking stale objects. build/flags gets a
# rule only when the flags differ from those it holds, so an unchanged build
# is up to date even for make -n. The flags reach the shell through the
# environment, so make -n prints each only where it is used.
BUILD_FLAGS = $(CC) $(LIB_CFLAGS) $(SAN_FLAGS) $(LDFLAGS)
ifneq ($(strip $(BUILD_FLAGS)),$(strip $(shell cat build/flags 2>/dev/null)))
build/flags: export UDPRR_BUILD_FLAGS = $(BUILD_FLAGS)
build/flags: FORCE
	@mkdir -p build
	@printf '%s\n' "$$UDPRR_BUILD_FLAGS" > $@
endif

build/obj/%.o: lib/%.c build/flags
	@mkdir -p $(@D)
	$(CC) $(LIB_CFLAGS) $(DEPFLAGS) -Ilib -c $< -o $@

# libsodium is there before the sealed mode is compiled, or the build stops
# and names it; the goals that set everything up install it.
SODIUM_INSTALL = $(filter demo check bench fuzz,$(MAKECMDGOALS))
sodium:
ifeq ($(SODIUM),yes)
ifneq ($(SODIUM_INSTALL),)
	@sh tests/ensure-deps.sh pkg-config libsodium-dev
endif
	@pkg-config --exists libsodium 2>/dev/null || { \
	    echo "libudprr's sealed mode needs libsodium, which pkg-config does not find:" \
	         "install it (Debian: apt-get install pkg-config libsodium-dev)," \
	         "or build without the sealed mode: make SODIUM=no" >&2; exit 1; }
endif
# Every object's compile line asks pkg-config for libsodium's flags.
$(LIB_OBJS): | sodium

$(SHARED_LIB): $(LIB_OBJS)
	$(CC) -shared -Wl,-soname,$(SONAME) $(CFLAGS) $(LDFLAGS) -o $@ $(LIB_OBJS) \
	    $(LINK_PRIVATE)

lib/libudprr.so.$(VERSION_MAJOR) lib/libudprr.so: $(SHARED_LIB)
	ln -sf $(notdir $(SHARED_LIB)) $@

$(STATIC_LIB): $(LIB_OBJS)
	rm -f $@
	$(AR) rcs $@ $(LIB_OBJS)

# Regenerated whenever the install paths change, so `make install PREFIX=...`
# installs a udprr.pc that names the prefix it was installed under. libdir
# and includedir are written relative to ${prefix} when they lie under
# PREFIX (the default), in full only when LIBDIR or INCLUDEDIR is elsewhere.
pc_prefix = $(patsubst %/,%,$(PREFIX))
pc_dir    = $(if $(filter $(pc_prefix)/%,$(1)),$${prefix}/$(patsubst /%,%,$(patsubst \
                $(pc_prefix)/%,%,$(1))),$(1))
PC_VARS   = $(PREFIX) $(call pc_dir,$(LIBDIR)) $(call pc_dir,$(INCLUDEDIR)) $(VERSION) \
            $(PC_REQUIRES_PRIVATE)
ifneq ($(strip $(PC_VARS)),$(strip $(shell cat build/pcvars 2>/dev/null)))
build/pcvars: FORCE
	@mkdir -p build
	@echo '$(PC_VARS)' > $@
endif

udprr.pc: udprr.pc.in build/pcvars
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@LIBDIR@|$(call pc_dir,$(LIBDIR))|g' \
	    -e 's|@INCLUDEDIR@|$(call pc_dir,$(INCLUDEDIR))|g' -e 's|@VERSION@|$(VERSION)|g' \
	    -e 's|@LIBS_PRIVATE@|$(LIBS_PRIVATE)|g' \
	    -e 's|@REQUIRES_PRIVATE@|$(PC_REQUIRES_PRIVATE)|g' $< > $@

# --- tests -------------------------------------------------------------------

deps:
	@sh tests/ensure-deps.sh

# Unit tests reach the internals (udprr__*) through the static library.
# The test support is compiled once; each suite links the part of it that
# its own prerequisites (the lines after the rule) name.
RELAY_OBJS = $(patsubst tools/relay/%.c,build/obj/relay_%.o,$(RELAY_SRCS))
FIXTURE_OBJS = $(patsubst tests/%.c,build/obj/test_%.o,$(FIXTURE_SRCS))
FIXTURE_RELAY_OBJS = $(patsubst tests/%.c,build/obj/test_%.o,$(FIXTURE_RELAY_SRCS))
SUPPORT_OBJS = $(FIXTURE_OBJS) $(FIXTURE_RELAY_OBJS) $(RELAY_OBJS)

build/obj/relay_%.o: tools/relay/%.c build/flags
	@mkdir -p $(@D)
	$(CC) $(REAL_CFLAGS) $(DEPFLAGS) -pthread -c $< -o $@

build/obj/test_%.o: tests/%.c build/flags
	@mkdir -p $(@D)
	$(CC) $(REAL_CFLAGS) $(DEPFLAGS) -pthread -Ilib -Itools/relay -c $< -o $@

build/tests/%: tests/%.c $(STATIC_LIB) | deps
	@mkdir -p $(@D)
	$(CC) $(REAL_CFLAGS) $(DEPFLAGS) -pthread -Ilib -Itools/relay $(CHECK_CFLAGS) $< \
	    $(filter $(SUPPORT_OBJS),$^) $(LDFLAGS) $(STATIC_LIB) $(CHECK_LIBS) \
	    $(LINK_PRIVATE) -o $@
$(NET_SUITES:%=build/tests/%): $(FIXTURE_OBJS)
$(RELAY_SUITES:%=build/tests/%): $(RELAY_OBJS)

# A fuzz target's replay suite: tests/unit_fuzz_replay.c with the target's
# source included (FUZZ_SOURCE) and its corpus named (FUZZ_NAME).
FUZZ_REPLAY_FLAGS = -DFUZZ_NAME='"$*"' -DFUZZ_SOURCE='"../fuzz/fuzz_$*.c"'
build/tests/unit_fuzz_replay_%: tests/unit_fuzz_replay.c fuzz/fuzz_%.c \
                                $(STATIC_LIB) | deps
	@mkdir -p $(@D)
	$(CC) $(REAL_CFLAGS) $(DEPFLAGS) $(FUZZ_REPLAY_FLAGS) -pthread -Ilib -Itools/relay \
	    $(CHECK_CFLAGS) $< $(LDFLAGS) $(STATIC_LIB) $(CHECK_LIBS) \
	    $(LINK_PRIVATE) -o $@
$(patsubst %,build/tests/%,$(filter $(RELAY_SUITES),$(NET_SUITES))): \
    $(FIXTURE_RELAY_OBJS)

# The same suites built with ASan and UBSan. The library and the test
# support are compiled once with the sanitizers, then linked into each
# suite that needs them, as above.
SAN_LIB_OBJS = $(patsubst lib/%.c,build/asan/obj/%.o,$(LIB_SRCS))
$(SAN_LIB_OBJS): | sodium
SAN_RELAY_OBJS = $(patsubst build/obj/%,build/asan/obj/%,$(RELAY_OBJS))
SAN_FIXTURE_OBJS = $(patsubst build/obj/%,build/asan/obj/%,$(FIXTURE_OBJS))
SAN_FIXTURE_RELAY_OBJS = $(patsubst build/obj/%,build/asan/obj/%,$(FIXTURE_RELAY_OBJS))
SAN_SUPPORT_OBJS = $(SAN_FIXTURE_OBJS) $(SAN_FIXTURE_RELAY_OBJS) $(SAN_RELAY_OBJS)
# Made by pattern rules only, so make would delete them as intermediate
# files after each build and compile them again the next time.
.SECONDARY: $(SUPPORT_OBJS) $(SAN_SUPPORT_OBJS) $(SAN_LIB_OBJS)

build/asan/obj/%.o: lib/%.c build/flags
	@mkdir -p $(@D)
	$(CC) $(REAL_CFLAGS) $(SODIUM_CFLAGS) $(SAN_FLAGS) $(DEPFLAGS) -Ilib -c $< -o $@

build/asan/obj/relay_%.o: tools/relay/%.c build/flags
	@mkdir -p $(@D)
	$(CC) $(REAL_CFLAGS) $(SAN_FLAGS) $(DEPFLAGS) -pthread -c $< -o $@

build/asan/obj/test_%.o: tests/%.c build/flags
	@mkdir -p $(@D)
	$(CC) $(REAL_CFLAGS) $(SAN_FLAGS) $(DEPFLAGS) -pthread -Ilib -Itools/relay -c $< -o $@

build/asan/%: tests/%.c $(SAN_LIB_OBJS) | deps
	@mkdir -p $(@D)
	$(CC) $(REAL_CFLAGS) $(SAN_FLAGS) $(DEPFLAGS) -pthread -Ilib -Itools/relay \
	    $(CHECK_CFLAGS) $< $(filter $(SAN_SUPPORT_OBJS),$^) $(SAN_LIB_OBJS) \
	    $(LDFLAGS) $(CHECK_LIBS) $(LINK_PRIVATE) -o $@
$(NET_SUITES:%=build/asan/%): $(SAN_FIXTURE_OBJS)
$(RELAY_SUITES:%=build/asan/%): $(SAN_RELAY_OBJS)

build/asan/unit_fuzz_replay_%: tests/unit_fuzz_replay.c fuzz/fuzz_%.c \
                               $(SAN_LIB_OBJS) | deps
	@mkdir -p $(@D)
	$(CC) $(REAL_CFLAGS) $(SAN_FLAGS) $(DEPFLAGS) $(FUZZ_REPLAY_FLAGS) \
	    -pthread -Ilib -Itools/relay $(CHECK_CFLAGS) $< $(SAN_LIB_OBJS) $(LDFLAGS) \
	    $(CHECK_LIBS) $(LINK_PRIVATE) -o $@
$(patsubst %,build/asan/%,$(filter $(RELAY_SUITES),$(NET_SUITES))): \
    $(SAN_FIXTURE_RELAY_OBJS)

# The impairment relay as a program of its own (docs/relay.md): the relay
# sources alone, without Check or libudprr. A tool: `make tools`, `make
# demo` and `make check` build it; `make all` (the library) does not.
build/udprr-relay: build/obj/relay_udprr-relay.o $(RELAY_OBJS)
	$(CC) $(CFLAGS) -pthread $(LDFLAGS) $^ -o $@

tools: build/udprr-relay

# Every stage runs even when an earlier one failed, so one run shows all that
# is wrong; the closing "N passed, N failed" line counts every suite run.
# tests/netns-test.sh needs root (network namespaces): elsewhere it says
# why and counts as skipped, never as passed. build/tests/netns_driver is
# its small server and client, built by the test rule above (no suite);
# so is build/tests/flood, the flood tests/flood-test.sh runs once (a load:
# neither under valgrind nor with the sanitizers).
check: deps
	@$(MAKE) --no-print-directory -j2 all $(UNIT_BINS) $(SAN_BINS) examples \
	    build/udprr-relay build/tests/netns_driver build/tests/peer_driver build/tests/flood
	@rm -f build/tally; st=0; \
	sh tests/run-suites.sh $(UNIT_BINS) || st=1; \
	sh tests/run-suites.sh $(SAN_BINS) || st=1; \
	sh tests/run-suites.sh --valgrind $(UNIT_BINS) || st=1; \
	sh tests/install-test.sh || st=1; \
	sh tests/abi-test.sh || st=1; \
	sh tests/man-test.sh || st=1; \
	sh tests/demo-test.sh || st=1; \
	sh tests/interop-test.sh || st=1; \
	sh tests/peers-test.sh || st=1; \
	sh tests/async-examples-test.sh || st=1; \
	sh tests/deferred-examples-test.sh || st=1; \
	sh tests/netns-test.sh || st=1; \
	sh tests/failover-examples-test.sh || st=1; \
	sh tests/sealed-examples-test.sh || st=1; \
	sh tests/flood-test.sh || st=1; \
	sh tests/nosodium-test.sh || st=1; \
	sh tests/protocol-peer-test.sh || st=1; \
	sh tests/guide-test.sh || st=1; \
	sh tests/run-suites.sh --summary || st=1; \
	exit $$st

check-unit: all $(UNIT_BINS)
	@sh tests/run-suites.sh $(UNIT_BINS)

# --- demo, examples, bench ---------------------------------------------------

# The examples are built the way a user builds them: from an installed
# tree (staged under build/stage), with nothing but pkg-config's flags.
STAGE      = $(CURDIR)/build/stage
STAGE_PC   = PKG_CONFIG_SYSROOT_DIR=$(STAGE) PKG_CONFIG_PATH=$(STAGE)/usr/lib/pkgconfig
EXAMPLE_SRCS = $(sort $(wildcard examples/*.c))
EXAMPLES     = $(patsubst examples/%.c,build/examples/%,$(EXAMPLE_SRCS))

build/stage/.stamp: $(SHARED_LIB) $(STATIC_LIB) udprr.pc include/udprr.h udprr.pc.in
	@sh tests/ensure-deps.sh pkg-config
	@$(MAKE) --no-print-directory -s install DESTDIR=$(STAGE) PREFIX=/usr
	@$(MAKE) --no-print-directory -s udprr.pc
	@touch $@

build/examples/%: examples/%.c build/stage/.stamp
	@mkdir -p $(@D)
	$(CC) -std=c11 $(WARNINGS) $(DEPFLAGS) $(CPPFLAGS) $(CFLAGS) $< $(LDFLAGS) \
	    $$($(STAGE_PC) pkg-config --cflags --libs udprr) $(EXAMPLE_LIBS) \
	    -Wl,-rpath,$(STAGE)/usr/lib -o $@

# uv_client drives the handle from a libuv loop, so it links libuv too
# (Debian libuv1-dev, installed when missing): found by the system's
# pkg-config, not the staged tree's.
build/examples/uv_client: EXAMPLE_LIBS = $$(pkg-config --cflags --libs libuv)
build/examples/uv_client: | deps-libuv

# deferred_server runs its own worker threads.
build/examples/deferred_server: EXAMPLE_LIBS = -pthread

deps-libuv:
	@sh tests/ensure-deps.sh libuv1-dev

examples: all $(EXAMPLES)

# The examples' client and server through the impairment relay: seeded
# loss of requests and replies, the reply cache at work (examples/demo.sh).
demo: examples build/udprr-relay
	@sh examples/demo.sh build/examples build/udprr-relay

# The resilience benchmark (docs/resilience.md): the adaptive and the fixed
# retry policy through the impairment relay on loopback. A measurement, not
# a test: it prints its table and target checks and exits 0 whatever they
# say. Linked like the socket suites, against the static library, with the
# Check-free fixture (tests/fixture.h) and the relay, without Check.
BENCH_DATA = build/bench/resilience.dat

BENCH_OBJS = $(FIXTURE_OBJS) $(FIXTURE_RELAY_OBJS) $(RELAY_OBJS)
build/bench/resilience: bench/resilience.c $(BENCH_OBJS) $(STATIC_LIB) build/flags
	@mkdir -p $(@D)
	$(CC) $(REAL_CFLAGS) $(DEPFLAGS) -pthread -Itests -Itools/relay $< \
	    $(BENCH_OBJS) $(LDFLAGS) $(STATIC_LIB) $(LINK_PRIVATE) -o $@

# The pipelining benchmark (docs/async-bench.md): requests per second of the
# blocking client and of the asynchronous one at max_window 1, 16 and 64,
# against one echo server on loopback. It checks every reply, and exits
# nonzero (failing `make bench`) only when a reply is wrong or missing or it
# could not measure. ASYNC_BENCH_ARGS passes -n COUNT, -r ROUNDS, -s BYTES.
ASYNC_BENCH_ARGS ?=
build/bench/async: bench/async.c $(FIXTURE_OBJS) $(STATIC_LIB) build/flags
	@mkdir -p $(@D)
	$(CC) $(REAL_CFLAGS) $(DEPFLAGS) -pthread -Itests $< \
	    $(FIXTURE_OBJS) $(LDFLAGS) $(STATIC_LIB) $(LINK_PRIVATE) -o $@

# The raw-socket comparison (docs/performance.md): libudprr's servers and
# clients against a raw recvmmsg/sendmmsg echo server, a naive one and a
# raw load generator, all built into the program; servers in processes of
# their own on CPU 1, the load on CPU 0. About 50 s at the defaults. Exits
# nonzero only when a reply is wrong or it could not measure.
# PERF_BENCH_ARGS passes -r ROUNDS, -t SECONDS per cell; STRACE=1 adds a
# pass that counts the servers' system calls per request.
PERF_BENCH_ARGS ?=
PERF_DATA = build/bench/perf.dat
build/bench/perf: bench/perf.c $(FIXTURE_OBJS) $(STATIC_LIB) build/flags
	@mkdir -p $(@D)
	$(CC) $(REAL_CFLAGS) $(DEPFLAGS) -pthread -Itests $< $(FIXTURE_OBJS) \
	    $(LDFLAGS) $(STATIC_LIB) $(LINK_PRIVATE) -o $@

bench: all build/bench/resilience build/bench/async build/bench/perf
	@sh tests/ensure-deps.sh gnuplot-nox || \
	    echo "bench: no gnuplot: the table is printed, docs/resilience.svg is not redrawn"
	build/bench/resilience $(BENCH_DATA)
	@if command -v gnuplot >/dev/null 2>&1; then \
	    gnuplot -e "datafile='$(BENCH_DATA)'; outfile='docs/resilience.svg'" \
	        bench/resilience.gp && echo "plot: docs/resilience.svg"; fi
	build/bench/async $(ASYNC_BENCH_ARGS)
	build/bench/perf $(PERF_BENCH_ARGS) $(PERF_DATA)
	@if command -v gnuplot >/dev/null 2>&1; then \
	    gnuplot -e "datafile='$(PERF_DATA)'; outfile='docs/performance.svg'" \
	        bench/perf.gp && echo "plot: docs/performance.svg"; fi

# --- fuzzing -----------------------------------------------------------------
# Every fuzz/fuzz_NAME.c is a libFuzzer target with its seed corpus in
# fuzz/corpus/NAME: a new target needs no change here. `make fuzz` builds
# each with clang (-fsanitize=fuzzer,address,undefined; any finding of
# UBSan stops the run too) as build/fuzz/fuzz_NAME and runs it for
# FUZZ_SECONDS (inputs up to FUZZ_MAX_LEN bytes), one target after the
# other, each from a copy of its corpus (build/fuzz/corpus-NAME: the tree is
# not written; what it finds new stays there). FUZZ_TARGETS picks some:
# `make fuzz FUZZ_TARGETS=exchange`. A crash or a broken invariant leaves
# its input as build/fuzz/NAME-crash-* (copy it into fuzz/corpus/NAME so
# make check replays it), the other targets still run, and make fuzz
# fails. make check replays every corpus without a fuzzing engine
# (unit_fuzz_replay_NAME, above).
FUZZ_SECONDS ?= 60
FUZZ_MAX_LEN ?= 4096
FUZZ_CC      ?= clang
FUZZ_TARGETS ?= $(FUZZ_NAMES)
FUZZ_BINS     = $(FUZZ_NAMES:%=build/fuzz/fuzz_%)

build/fuzz/fuzz_%: fuzz/fuzz_%.c $(LIB_SRCS) $(LIB_HDRS)
	@mkdir -p $(@D)
	$(FUZZ_CC) -g -O1 -fsanitize=fuzzer,address,undefined \
	    -fno-sanitize-recover=all -D_GNU_SOURCE -Iinclude -Ilib $(CPPFLAGS) \
	    $(SODIUM_CFLAGS) $< $(LIB_SRCS) $(LDFLAGS) -pthread $(SODIUM_LIBS) -o $@

$(FUZZ_BINS): | sodium
fuzz: $(FUZZ_TARGETS:%=build/fuzz/fuzz_%)
	@st=0; for n in $(FUZZ_TARGETS); do \
	    c=build/fuzz/corpus-$$n; rm -rf $$c && mkdir -p $$c && \
	    if [ -d fuzz/corpus/$$n ]; then cp -R fuzz/corpus/$$n/. $$c/; fi; \
	    echo "== fuzz_$$n: $(FUZZ_SECONDS) s from fuzz/corpus/$$n"; \
	    ./build/fuzz/fuzz_$$n -max_total_time=$(FUZZ_SECONDS) \
	        -max_len=$(FUZZ_MAX_LEN) -artifact_prefix=build/fuzz/$$n- \
	        $$c || { st=1; echo "== fuzz_$$n: FOUND something: build/fuzz/$$n-*"; }; \
	done; exit $$st

# --- install -----------------------------------------------------------------

# Man pages: the real pages of docs/man go to man<section>; the alias pages
# listed in docs/man/aliases ("ALIAS PAGE" lines) are made as symlinks to
# them, in the same section.
MAN_PAGES   = $(wildcard docs/man/*.[1-9])
MAN_ALIASES := $(shell awk '$$1 ~ /\.[1-9]$$/ && NF == 2 { print $$1 ":" $$2 }' docs/man/aliases)
MAN_FILES   = $(notdir $(MAN_PAGES)) $(foreach a,$(MAN_ALIASES),$(firstword $(subst :, ,$(a))))
MAN_SECTIONS = $(sort $(subst .,,$(suffix $(MAN_FILES))))

install: all
	install -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCLUDEDIR) \
	    $(DESTDIR)$(PKGCONFIGDIR) \
	    $(addprefix $(DESTDIR)$(MANDIR)/man,$(MAN_SECTIONS))
	install -m 644 include/udprr.h $(DESTDIR)$(INCLUDEDIR)/udprr.h
	install -m 755 $(SHARED_LIB) $(DESTDIR)$(LIBDIR)/
	ln -sf $(notdir $(SHARED_LIB)) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/libudprr.so
	install -m 644 $(STATIC_LIB) $(DESTDIR)$(LIBDIR)/
	install -m 644 udprr.pc $(DESTDIR)$(PKGCONFIGDIR)/udprr.pc
	for p in $(MAN_PAGES); do \
	    install -m 644 $$p $(DESTDIR)$(MANDIR)/man$${p##*.}/ || exit 1; \
	done
	for a in $(MAN_ALIASES); do \
	    l=$${a%%:*}; \
	    ln -sf $${a#*:} $(DESTDIR)$(MANDIR)/man$${l##*.}/$$l || exit 1; \
	done

uninstall:
	rm -f $(DESTDIR)$(INCLUDEDIR)/udprr.h \
	    $(DESTDIR)$(LIBDIR)/$(notdir $(SHARED_LIB)) \
	    $(DESTDIR)$(LIBDIR)/$(SONAME) $(DESTDIR)$(LIBDIR)/libudprr.so \
	    $(DESTDIR)$(LIBDIR)/libudprr.a $(DESTDIR)$(PKGCONFIGDIR)/udprr.pc \
	    $(foreach f,$(MAN_FILES),$(DESTDIR)$(MANDIR)/man$(subst .,,$(suffix $(f)))/$(f))

clean:
	rm -rf build lib/*.so lib/*.so.* lib/*.a udprr.pc

FORCE:

# The generated header dependencies (see DEPFLAGS); none before a first build.
-include $(wildcard build/*/*.d build/*/*/*.d)
