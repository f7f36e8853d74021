# jailmail - build, run, test.
#
#   make run      build and start the daemon in the foreground on the embedded
#                 configuration (127.0.0.1:2525, jail and queue under ./run)
#   make check    everything CI runs: gcc and clang builds, unit tests,
#                 integration tests in a private network namespace, the same
#                 under ASan+UBSan, fuzz smoke runs, clang-format
#   make install  PREFIX=/usr DESTDIR=...
#   make fuzz     build the libFuzzer targets (clang)
#   make bench    the benchmark against Postfix (bench/README.md)

PREFIX ?= /usr/local
DESTDIR ?=
BUILD ?= build
CC ?= gcc
SAN ?=
RUN_DIR ?= $(CURDIR)/run
PYTHON ?= /usr/bin/python3

PKGS := libevent_core libevent_openssl libevent_pthreads libcares openssl libcdb
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS = $(shell pkg-config --libs $(PKGS) 2>/dev/null)

WARN := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wformat=2 -Wno-format-nonliteral
CFLAGS ?= -O2 -g
ALL_CFLAGS = -std=c17 -D_GNU_SOURCE -D_FORTIFY_SOURCE=2 -fstack-protector-strong -fPIE $(WARN) \
	$(CFLAGS) $(SAN) $(PKG_CFLAGS) -DJM_BUILTIN_DIR='"$(RUN_DIR)"' -MMD -MP
LDFLAGS ?=
ALL_LDFLAGS = -pie -Wl,-z,relro,-z,now $(SAN) $(LDFLAGS)
LIBS = $(PKG_LIBS) -ldb -lcrypt -lpthread

SRCS := $(wildcard src/*.c)
OBJS := $(SRCS:src/%.c=$(BUILD)/obj/%.o)
LIB_OBJS := $(filter-out $(BUILD)/obj/main.o,$(OBJS))
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)
FUZZ_SRCS := $(wildcard fuzz/fuzz_*.c)
NAMES := sendmail mailq newaliases makemap

.PHONY: all run check install fuzz bench deps deps-check unit integration \
	check-asan check-clang check-format fuzz-smoke clean

all: $(BUILD)/jailmail $(NAMES:%=$(BUILD)/%)

$(BUILD)/obj/%.o: src/%.c | $(BUILD)/obj
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(BUILD)/jailmail: $(OBJS)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS)

$(NAMES:%=$(BUILD)/%): $(BUILD)/jailmail
	ln -sf jailmail $@

$(BUILD)/obj $(BUILD)/tests:
	mkdir -p $@

$(BUILD)/tests/%: tests/unit/%.c $(LIB_OBJS) | $(BUILD)/tests
	$(CC) $(ALL_CFLAGS) -Isrc $(shell pkg-config --cflags cmocka) -o $@ $< $(LIB_OBJS) \
		$(ALL_LDFLAGS) $(LIBS) $(shell pkg-config --libs cmocka)

-include $(OBJS:.o=.d)

deps:
	@scripts/install-deps build

deps-check:
	@scripts/install-deps check

run: deps
	$(MAKE) all
	mkdir -p $(RUN_DIR)
	@if [ "$$(id -u)" = 0 ] && ! id jailmail >/dev/null 2>&1; then \
		echo "creating the run-as user jailmail"; \
		useradd -r -g mail -s /usr/sbin/nologin -d /nonexistent jailmail; fi
	$(BUILD)/sendmail -bD -q15m -C @builtin

unit: $(UNIT_BINS)
	@set -e; for t in $(UNIT_BINS); do echo "== $$t"; $$t; done

integration: all
	JAILMAIL_BUILD=$(CURDIR)/$(BUILD) tests/run-integration

# The whole suite again with AddressSanitizer and UndefinedBehaviorSanitizer.
# The daemon's workers run chrooted, where LeakSanitizer cannot read /proc;
# leaks are looked for by the unit tests, the daemon is checked for memory
# errors and undefined behaviour (the harness fails a test on any report).
ASAN_FLAGS = SAN='-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer' \
	CFLAGS='-O1 -g'
check-asan:
	$(MAKE) BUILD=build-asan CC=clang $(ASAN_FLAGS) unit
	ASAN_OPTIONS=detect_leaks=0:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
		$(MAKE) BUILD=build-asan CC=clang $(ASAN_FLAGS) integration

check-clang:
	$(MAKE) BUILD=build-clang CC=clang all

check-format:
	@clang-format --dry-run --Werror src/*.c src/*.h tests/unit/*.c fuzz/*.c

fuzz: deps-check
	$(MAKE) -f fuzz/Makefile

fuzz-smoke: fuzz
	$(MAKE) -f fuzz/Makefile smoke

check: deps-check
	$(MAKE) all
	$(MAKE) check-clang
	$(MAKE) check-format
	$(MAKE) unit
	$(MAKE) integration
	$(MAKE) check-asan
	$(MAKE) fuzz-smoke

bench:
	@scripts/install-deps bench
	$(MAKE) all
	bench/run

install: all
	install -d $(DESTDIR)$(PREFIX)/sbin $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man5 \
		$(DESTDIR)$(PREFIX)/share/man/man8
	install -m 0755 $(BUILD)/jailmail $(DESTDIR)$(PREFIX)/sbin/jailmail
	for n in sendmail makemap newaliases; do ln -sf jailmail $(DESTDIR)$(PREFIX)/sbin/$$n; done
	ln -sf ../sbin/jailmail $(DESTDIR)$(PREFIX)/bin/mailq
	for m in docs/*.5; do [ -f "$$m" ] && install -m 0644 $$m $(DESTDIR)$(PREFIX)/share/man/man5/; done; true
	for m in docs/*.8; do [ -f "$$m" ] && install -m 0644 $$m $(DESTDIR)$(PREFIX)/share/man/man8/; done; true

clean:
	rm -rf build build-asan build-clang build-fuzz
