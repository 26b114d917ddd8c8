# Thin wrapper over meson so that the quick start is two commands:
#   make demo   build, then serve examples/serve.json on 127.0.0.1:8000
#   make test   build, then run the whole test suite
#   make autoscale   the autoscaling demo (examples/autoscale/README.md)
#   make test-asan   the whole suite again, built with ASan and UBSan
#   make fuzz   the libFuzzer targets, FUZZ_SECONDS (30) each (docs/reliability.md)
# Both install missing Debian packages first (scripts/deps.sh).
BUILD ?= build
SERVE := $(BUILD)/serve/serve

.PHONY: all deps build demo test test-asan fuzz autoscale clean

all: build

deps:
	@scripts/deps.sh

build: deps
	@[ -f $(BUILD)/build.ninja ] || meson setup $(BUILD)
	ninja -C $(BUILD)

demo: build
	$(SERVE) run examples/serve.json

test: build
	meson test -C $(BUILD) --print-errorlogs

# Every binary, plugin and replica is instrumented (b_lundef=false lets the
# plugins leave the sanitizer runtime to the executable that loads them).
# A report from any process fails the run (tests/sanitize.sh).
ASAN_BUILD ?= build-asan
test-asan: deps
	@[ -f $(ASAN_BUILD)/build.ninja ] || meson setup $(ASAN_BUILD) \
		-Db_sanitize=address,undefined -Db_lundef=false
	ninja -C $(ASAN_BUILD)
	tests/sanitize.sh $(ASAN_BUILD)

# clang's libFuzzer with ASan and UBSan; only the fuzz targets and the
# libraries they use are built. The seed corpus in fuzz/corpus is only read.
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 30
fuzz: deps
	@[ -f $(FUZZ_BUILD)/build.ninja ] || CC=clang meson setup $(FUZZ_BUILD) \
		-Dfuzz=true -Dtests=false -Db_sanitize=address,undefined -Db_lundef=false
	ninja -C $(FUZZ_BUILD) fuzz
	FUZZ_SECONDS=$(FUZZ_SECONDS) fuzz/run.sh $(FUZZ_BUILD)

autoscale: build
	BUILD=$(abspath $(BUILD)) examples/autoscale/run.sh

clean:
	rm -rf $(BUILD)
