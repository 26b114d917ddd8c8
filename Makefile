# Thin wrapper over meson so that the quick start is two commands:
#   make demo   build, then serve examples/serve.json on 127.0.0.1:8000
#   make test   build, then run the whole test suite
#   make autoscale   the autoscaling demo (examples/autoscale/README.md)
# Both install missing Debian packages first (scripts/deps.sh).
BUILD ?= build
SERVE := $(BUILD)/serve/serve

.PHONY: all deps build demo test autoscale clean

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

autoscale: build
	BUILD=$(abspath $(BUILD)) examples/autoscale/run.sh

clean:
	rm -rf $(BUILD)
