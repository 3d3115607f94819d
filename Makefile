# hopfield: the two commands a fresh Debian 12 machine needs.
#
#   make run    install missing packages, build (release), start hopfieldd
#   make test   install missing packages, build (dev), run every test, then
#               a bounded run of each fuzzer (make fuzz)
#
# Other targets: build, asan, tsan, tidy, fuzz, format, format-check, bench,
# bench-smoke, capacity, image-smoke, clean. Run as root or with sudo available.
SHELL := /bin/bash
.DEFAULT_GOAL := test

# Debian 12 packages the build and tests need (--no-install-recommends).
# libclang-rt-14-dev: clang's sanitizer and libFuzzer runtimes (only a
# Recommends of clang).
APT_PACKAGES := cmake ninja-build pkg-config g++ clang clang-format clang-tidy \
  libclang-rt-14-dev \
  libabsl-dev libeigen3-dev libhnswlib-dev libgtest-dev libgmock-dev libbenchmark-dev \
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler \
  librocksdb-dev prometheus-cpp-dev prometheus \
  grpc-proto python3-grpcio python3-protobuf python3-yaml zlib1g-dev dataset-fashion-mnist \
  python3-numpy python3-pip python3-venv python3-setuptools python3-wheel openssl

SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
JOBS ?= $(shell nproc)

.PHONY: deps build build-dev run test asan tsan tidy fuzz format format-check \
  bench bench-smoke capacity clean image-smoke

deps:
	@missing=""; \
	for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}\n' "$$p" 2>/dev/null | grep -q "install ok installed" \
	    || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -q && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
	    --no-install-recommends $$missing; \
	fi

build: deps
	cmake --preset release
	cmake --build --preset release -j $(JOBS)

build-dev: deps
	cmake --preset dev
	cmake --build --preset dev -j $(JOBS)

# Serves on 127.0.0.1:50051 until Ctrl-C / SIGTERM, storing banks in
# $(DATA_DIR) (an embedded RocksDB; a restart loads them back), with
# Prometheus metrics at http://$(METRICS_LISTEN)/metrics.
# glibc.malloc.hugetlb=1 backs the large pattern buffers with transparent
# huge pages: ~12% faster retrieval and refresh at 60k x 784
# (bench/README.md).
LISTEN ?= 127.0.0.1:50051
DATA_DIR ?= ./hopfield-data
METRICS_LISTEN ?= 127.0.0.1:9464
run: build
	GLIBC_TUNABLES=glibc.malloc.hugetlb=1 exec build/release/server/hopfieldd \
	  --listen=$(LISTEN) --metrics_listen=$(METRICS_LISTEN) \
	  --data_dir=$(DATA_DIR) --access_log

# Every test: the dev build's (unit, integration, Python), the bounded fuzz
# runs, and the heavy protocol tests (algorithms.md §F 13-14 on
# Fashion-MNIST, §F 15-16 and the search modes) from the release build.
test: build-dev build
	ctest --preset dev -j $(JOBS)
	ctest --preset protocol
	$(MAKE) fuzz

# libFuzzer targets (fuzz/README.md), clang + ASan/UBSan in build/fuzz: each
# replays its seeds and regressions, then fuzzes for FUZZ_SECONDS.
FUZZ_SECONDS ?= 15
fuzz: deps
	cmake --preset fuzz -DHOPFIELD_FUZZ_SECONDS=$(FUZZ_SECONDS)
	cmake --build --preset fuzz -j $(JOBS)
	ctest --preset fuzz -j $(JOBS)

asan: deps
	cmake --workflow --preset asan

tsan: deps
	cmake --workflow --preset tsan

tidy: deps
	cmake --preset tidy
	cmake --build --preset tidy -j $(JOBS)

# Builds the Docker image with podman (debootstrap base when no registry is
# reachable), runs it and checks health and /metrics. Not part of `test`.
image-smoke:
	deploy/podman_smoke.sh

format:
	clang-format -i $$(git ls-files '*.h' '*.cc')

format-check:
	clang-format --dry-run --Werror $$(git ls-files '*.h' '*.cc')

# Benchmarks run under the same malloc tunable as `make run` (huge pages for
# the pattern buffers and the index graph), so they measure what hopfieldd
# serves.
BENCH_ENV := GLIBC_TUNABLES=glibc.malloc.hugetlb=1
bench: build
	$(BENCH_ENV) build/release/bench/retriever_benchmark
	$(BENCH_ENV) build/release/bench/memory_bank_benchmark

bench-smoke: build
	ctest --preset benchmark-smoke

# The capacity experiment (bench/capacity_experiment.cc): writes
# docs/capacity.{csv,md,svg}. CAPACITY_FLAGS narrows it, e.g.
# CAPACITY_FLAGS="--sizes=10,100,1000 --seeds=1".
CAPACITY_FLAGS ?=
capacity: build
	build/release/bench/capacity_experiment --out=docs/capacity.csv $(CAPACITY_FLAGS)
	bench/plot_capacity.py docs/capacity.csv docs/capacity

clean:
	rm -rf build
