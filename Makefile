# The README's two commands, `make run` and `make test`, plus the sanitizer suites and benchmarks.
JOBS ?= $(shell nproc)
CTEST_ARGS ?=
COMPARE_ARGS ?=

.PHONY: run demo test test-asan test-tsan test-systemd soak bench compare perf-build fuzz fuzz-ci \
	deb deps configure-% build-% format clean

deps:
	@scripts/install-deps.sh

configure-%: deps
	@cmake --preset $* >/dev/null

build-%: configure-%
	@cmake --build --preset $* -j $(JOBS)

# The daemon with the development config: loopback ports, admin socket at build/reactord.sock.
# Builds only the two programs it needs (and what they link), not the tests and benchmarks.
run: configure-release
	@cmake --build --preset release -j $(JOBS) --target reactord reactorctl
	./build/release/daemon/reactord --config config/reactord.toml

# The seed's two examples on the fiber runtime.
demo: configure-release
	@cmake --build --preset release -j $(JOBS) --target seed_demo
	./build/release/examples/seed_demo

test: build-debug
	cd build/debug && ctest --output-on-failure -j $(JOBS) $(CTEST_ARGS)

test-asan: build-asan
	cd build/asan && ctest --output-on-failure -j $(JOBS) $(CTEST_ARGS)

# Debian's libspdlog is not built with TSan: see tests/tsan.supp.
test-tsan: build-tsan
	cd build/tsan && TSAN_OPTIONS="suppressions=$(CURDIR)/tests/tsan.supp $(TSAN_OPTIONS)" \
	  ctest --output-on-failure -j $(JOBS) $(CTEST_ARGS)

# The Debian packages reactord and libreactor-dev (debian/), built from a copy of the tree's files
# (tracked and untracked, not ignored) in build/deb/src: dpkg-buildpackage leaves its results in
# the parent directory, here build/deb/. Then lintian, which must report no error.
deb:
	@scripts/install-deps.sh --package
	@rm -rf build/deb && mkdir -p build/deb/src
	@git ls-files --cached --others --exclude-standard | \
	  while read -r f; do if [ -e "$$f" ]; then echo "$$f"; fi; done | \
	  tar -T - -cf - | tar -xf - -C build/deb/src
	cd build/deb/src && nice dpkg-buildpackage -b -us -uc -j$(JOBS) >../build.log 2>&1 || \
	  { tail -n 40 ../build.log; exit 1; }
	lintian --fail-on error build/deb/*.changes
	@ls build/deb/*.deb

# The packages under a real systemd, booted in a container (tests/systemd/run.sh; root).
test-systemd: deb
	tests/systemd/run.sh build/deb

# libFuzzer targets (fuzz/, clang 14): each for 60 s, keeping a growing corpus in build/fuzz;
# fuzz-ci, as CI does: each for 20 s from a copy of its committed seed corpus fuzz/corpus/,
# with a fixed random seed (scripts/fuzz.sh).
fuzz: build-fuzz
	scripts/fuzz.sh 60

fuzz-ci: build-fuzz
	scripts/fuzz.sh 20 --ci

# Not in CI (docs/reliability.md): ten minutes of mixed load, 200 s on each backend, then the
# full 200,000 connect/echo/close cycles on each. SOAK_PRESET=asan or tsan runs them under a
# sanitizer (where the ordinary suites churn fewer cycles); SOAK_SECONDS is per backend.
SOAK_PRESET ?= debug
SOAK_SECONDS ?= 200
soak: build-$(SOAK_PRESET)
	cd build/$(SOAK_PRESET)/tests && \
	  TSAN_OPTIONS="suppressions=$(CURDIR)/tests/tsan.supp $(TSAN_OPTIONS)" \
	  REACTORD_SOAK_SECONDS=$(SOAK_SECONDS) ./soak_test && \
	  TSAN_OPTIONS="suppressions=$(CURDIR)/tests/tsan.supp $(TSAN_OPTIONS)" \
	  REACTORD_CHURN_CYCLES=200000 ./reliability_test --gtest_filter='*Churn*'

# Every benchmark program, peer and the load generator built in release, none run (CI does this, so
# the benchmarks cannot rot unseen): the perf preset, which fails when a peer's library is missing.
perf-build:
	@scripts/install-deps.sh --bench
	@cmake --preset perf >/dev/null
	@cmake --build --preset perf -j $(JOBS)

bench:
	@scripts/install-deps.sh --bench
	@cmake --preset release >/dev/null
	@cmake --build --preset release -j $(JOBS)
	perf/run-micro.sh build/release
	perf/compare.py --build-dir build/release --no-build $(COMPARE_ARGS)

# The comparison alone: reactord against raw epoll, libuv, Asio, redis-server and nginx
# (perf/compare.py, over 17 minutes: 1,028 s before the spin, SQPOLL, extra-thread rows and system-call counts were added; COMPARE_ARGS=--quick for a short check). `make bench` runs it too.
compare:
	@scripts/install-deps.sh --bench
	@cmake --preset release >/dev/null
	@cmake --build --preset release -j $(JOBS)
	perf/compare.py --build-dir build/release --no-build $(COMPARE_ARGS)

format:
	git ls-files '*.cc' '*.h' | xargs clang-format -i

clean:
	rm -rf build
