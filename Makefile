# memtop build: BPF object -> skeleton -> memtop, test workloads and unit
# tests, all out of tree under build/ (build/asan/ for the sanitizer build).
# `make V=1` shows the full commands.

VERSION    := 0.1.0
PREFIX     ?= /usr/local
DESTDIR    ?=
BUILD      ?= build
CC         ?= gcc
CXX        ?= g++
CLANG      ?= clang
BPFTOOL    ?= $(shell command -v bpftool 2>/dev/null || echo /usr/sbin/bpftool)
ARCH       := x86
VMLINUX    := vmlinux/x86_64/vmlinux.h

ifeq ($(V),1)
Q :=
msg :=
else
Q := @
msg = @printf '  %-8s %s\n' "$(1)" "$(2)";
endif

PKGS       := libbpf libdw ncursesw capstone
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
WARN       := -Wall -Wextra -Wshadow -Wstrict-prototypes -Werror
SAN        ?=
OPTFLAGS   ?= -O2 -g
ALL_CFLAGS := $(OPTFLAGS) -std=gnu11 $(WARN) $(SAN) -MMD -MP -I$(BUILD) -Ibpf \
	      -Iuser -DMEMTOP_VERSION='"$(VERSION)"' $(PKG_CFLAGS) $(CFLAGS)
LDLIBS     += $(PKG_LIBS) -lelf -lz -lstdc++ -lm
LDFLAGS    += $(SAN)

BPF_CFLAGS := -g -O2 -target bpf -mcpu=v3 -D__TARGET_ARCH_$(ARCH) -I$(dir $(VMLINUX)) \
	      -Ibpf -Wall -Werror

USER_SRCS  := $(wildcard user/*.c)
LIB_SRCS   := $(filter-out user/main.c,$(USER_SRCS))
LIB_OBJS   := $(patsubst user/%.c,$(BUILD)/user/%.o,$(LIB_SRCS))
MAIN_OBJ   := $(BUILD)/user/main.o
SKEL       := $(BUILD)/memtop.skel.h

UNIT_SRCS  := $(wildcard tests/unit/test_*.c)
UNIT_BINS  := $(patsubst tests/unit/%.c,$(BUILD)/tests/unit/%,$(UNIT_SRCS))

WL_CFLAGS  := -g -O0 -fno-omit-frame-pointer -fno-inline -fno-builtin -pthread
WL_C       := $(wildcard tests/workloads/*.c)
WL_CXX     := $(wildcard tests/workloads/*.cc)
WL_BINS    := $(patsubst tests/workloads/%.c,$(BUILD)/tests/workloads/%,$(WL_C)) \
	      $(patsubst tests/workloads/%.cc,$(BUILD)/tests/workloads/%,$(WL_CXX))

BENCH_SRCS := $(wildcard tools/bench/*.c)
BENCH_BINS := $(patsubst tools/bench/%.c,$(BUILD)/bench/%,$(BENCH_SRCS))

.PHONY: all clean test unit-test integration-test asan install uninstall \
	run vmlinux workloads deps bench format tui-test reliability-test fuzz \
	system-test python-test

all: $(BUILD)/memtop workloads

$(BUILD)/memtop.bpf.o: bpf/memtop.bpf.c bpf/memtop.h bpf/python.bpf.h bpf/mmap.bpf.h $(VMLINUX) | $(BUILD)
	$(call msg,BPF,$@)
	$(Q)$(CLANG) $(BPF_CFLAGS) -c $< -o $@

$(SKEL): $(BUILD)/memtop.bpf.o
	$(call msg,GEN-SKEL,$@)
	$(Q)$(BPFTOOL) gen skeleton $< name memtop_bpf > $@.tmp && mv $@.tmp $@

$(BUILD)/user/%.o: user/%.c $(SKEL) | $(BUILD)/user
	$(call msg,CC,$@)
	$(Q)$(CC) $(ALL_CFLAGS) -c $< -o $@

$(BUILD)/memtop: $(MAIN_OBJ) $(LIB_OBJS)
	$(call msg,LINK,$@)
	$(Q)$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

$(BUILD)/tests/unit/%: tests/unit/%.c $(LIB_OBJS) | $(BUILD)/tests/unit
	$(call msg,CC,$@)
	$(Q)$(CC) $(ALL_CFLAGS) $< $(LIB_OBJS) $(LDFLAGS) $(LDLIBS) -o $@

workloads: $(WL_BINS)

$(BUILD)/tests/workloads/%: tests/workloads/%.c | $(BUILD)/tests/workloads
	$(call msg,CC,$@)
	$(Q)$(CC) $(WL_CFLAGS) $(WL_EXTRA_$*) $< -o $@ $(WL_LIBS_$*)

$(BUILD)/tests/workloads/%: tests/workloads/%.cc | $(BUILD)/tests/workloads
	$(call msg,CXX,$@)
	$(Q)$(CXX) $(WL_CFLAGS) $(WL_EXTRA_$*) $< -o $@ $(WL_LIBS_$*)

# Workloads that need special linking.
WL_EXTRA_gt_static := -static
WL_LIBS_gt_jemalloc := -ljemalloc

$(BUILD)/bench/%: tools/bench/%.c | $(BUILD)/bench
	$(call msg,CC,$@)
	$(Q)$(CC) -O2 -g -fno-omit-frame-pointer -pthread $< -o $@

$(BUILD) $(BUILD)/user $(BUILD)/tests/unit $(BUILD)/tests/workloads $(BUILD)/bench:
	$(Q)mkdir -p $@

# Install the build dependencies (Debian 12), build, and run memtop.
deps:
	$(Q)./tools/install-deps

# `make run` works on a fresh machine: dependencies first, then a fresh make
# (pkg-config is evaluated when the Makefile is read).
run: deps
	$(Q)$(MAKE) --no-print-directory $(BUILD)/memtop
	$(Q)$(BUILD)/memtop $(ARGS)

unit-test: $(UNIT_BINS) workloads
	$(Q)for t in $(UNIT_BINS); do echo "== $$t"; $$t || exit 1; done

TEST_ENV := MEMTOP=$(abspath $(BUILD)/memtop) WORKLOADS=$(abspath $(BUILD)/tests/workloads)

integration-test: $(BUILD)/memtop workloads
	$(Q)$(TEST_ENV) python3 tests/integration.py $(TESTS)

tui-test: $(BUILD)/memtop workloads
	$(Q)$(TEST_ENV) python3 tests/test_tui.py
	$(Q)$(TEST_ENV) python3 tests/test_plot.py

# Bad input, faults and security cases (issue 6); root for the BPF ones.
reliability-test: $(BUILD)/memtop workloads
	$(Q)$(TEST_ENV) python3 tests/test_reliability.py

# System-wide mode, -- COMMAND, -f, -u/--comm, --sample (issue 4).
system-test: $(BUILD)/memtop workloads
	$(Q)$(TEST_ENV) python3 tests/test_system.py

# A leaking Python server vs its own tracemalloc, Python frames (issue 7).
python-test: $(BUILD)/memtop
	$(Q)$(TEST_ENV) python3 tests/test_python.py

test: deps
	$(Q)$(MAKE) --no-print-directory unit-test integration-test tui-test \
		reliability-test system-test python-test

# The whole suite under ASan+UBSan, in its own build tree.
asan:
	$(Q)$(MAKE) BUILD=build/asan SAN="-fsanitize=address,undefined -fno-omit-frame-pointer" \
		OPTFLAGS="-O1 -g" unit-test integration-test tui-test reliability-test \
		system-test python-test

# libFuzzer targets (clang, ASan+UBSan), FUZZ_TIME seconds each.
FUZZ_TIME ?= 20
fuzz:
	$(Q)BUILD=$(BUILD) CLANG=$(CLANG) FUZZ_TIME=$(FUZZ_TIME) tests/fuzz/run

bench: $(BUILD)/memtop $(BENCH_BINS)
	$(Q)MEMTOP=$(abspath $(BUILD)/memtop) BENCH_DIR=$(abspath $(BUILD)/bench) tools/bench/run

vmlinux:
	$(Q)mkdir -p $(dir $(VMLINUX))
	$(Q)$(BPFTOOL) btf dump file /sys/kernel/btf/vmlinux format c > $(VMLINUX)

install: $(BUILD)/memtop
	install -d $(DESTDIR)$(PREFIX)/sbin $(DESTDIR)$(PREFIX)/share/man/man8
	install -m 0755 $(BUILD)/memtop $(DESTDIR)$(PREFIX)/sbin/memtop
	install -m 0644 memtop.8 $(DESTDIR)$(PREFIX)/share/man/man8/memtop.8

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/sbin/memtop $(DESTDIR)$(PREFIX)/share/man/man8/memtop.8

format:
	clang-format -i user/*.c user/*.h bpf/*.c bpf/*.h tests/unit/*.c

clean:
	rm -rf $(BUILD)

-include $(wildcard $(BUILD)/user/*.d $(BUILD)/tests/unit/*.d)
