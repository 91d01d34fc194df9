# The two commands of the README, and the steps behind them.
#   make demo   run the node on the sample studies (the main job)
#   make test   install what is needed, build, and run every test
# SPDX-License-Identifier: GPL-3.0-or-later
BUILD_DIR ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: deps configure build test demo bench format clean

deps:
	./scripts/install-deps.sh

configure:
	cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=Release -DUNIBIOMED_WERROR=ON $(CMAKE_FLAGS)

build: configure
	cmake --build $(BUILD_DIR) -j $(JOBS)

test: deps build
	./scripts/run-tests.sh $(BUILD_DIR)

demo: deps build
	./scripts/demo.sh $(BUILD_DIR)

bench: deps build
	./scripts/bench.sh $(BUILD_DIR)

format:
	git ls-files '*.cpp' '*.h' | xargs clang-format -i

clean:
	rm -rf $(BUILD_DIR)
