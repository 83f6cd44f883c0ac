# podlab build targets. `make test` is what CI runs (as root).
GO      ?= go
BIN     ?= ./podlab
PKGS    ?= ./...
# Extra `go test` flags; .ci/run passes -json to count skipped tests.
TESTFLAGS ?=

.PHONY: build generate generate-check test vet demo bench bpftest clean hubble-cli hubble-metrics

# The real hubble CLI, built once from the cilium Go module at the pinned
# release and cached; the e2e suite runs it against a lab's Hubble socket.
HUBBLE_VERSION ?= v1.20.2
HUBBLE ?= $(HOME)/.cache/podlab/hubble-$(HUBBLE_VERSION)
export PODLAB_HUBBLE := $(HUBBLE)

hubble-cli: $(HUBBLE)

$(HUBBLE):
	./tools/build-hubble.sh $(HUBBLE_VERSION) $@

# Hubble's own metric handlers (tools/hubble-metrics, a module of its own
# requiring the cilium module at the pinned release, so the main module
# never links Cilium's pkg/ tree): the reports and CLI tests feed them a
# run's flows.jsonl and compare with podlab's metrics.prom. Rebuilt on
# every `make test` from Go's build cache (a warm build only links).
HUBBLE_METRICS ?= $(HOME)/.cache/podlab/hubble-metrics-$(HUBBLE_VERSION)
export PODLAB_HUBBLE_METRICS := $(HUBBLE_METRICS)

hubble-metrics:
	./tools/build-hubble-metrics.sh $(HUBBLE_METRICS)

build:
	$(GO) build -o $(BIN) ./cmd/podlab

# Rebuild the BPF objects and their Go bindings with clang-16 (bpf2go).
generate:
	$(GO) generate ./datapath/...

# Fail when the committed BPF objects/bindings differ from a fresh build
# of the committed C sources (needs clang-16; CI installs it).
generate-check: generate
	git diff --exit-code -- 'datapath/*_bpfel.go' 'datapath/*_bpfel.o'

# BPF_CHECK=0 skips generate-check (no clang on this machine).
BPF_CHECK ?= 1

vet:
	$(GO) vet $(PKGS)

# Packages run one at a time: the CLI suite exercises `podlab clean`, which
# (by design) removes namespaces of labs no live process owns, and the
# library suites build labs without the CLI's ownership lock.
test: vet build hubble-cli hubble-metrics
	@if [ "$(BPF_CHECK)" = 1 ]; then $(MAKE) --no-print-directory generate-check; fi
	$(GO) test -p 1 -count=1 -timeout 20m $(TESTFLAGS) $(PKGS)

# Cilium's own BPF unit tests (bpf/tests of the pinned release) with
# podlab's runner: objects compiled with clang-19 into ~/.cache/podlab/cilium
# (a second run compiles nothing), JUnit next to the other artifacts.
BPFTEST_JUNIT ?= $(if $(PODLAB_ARTIFACTS),$(PODLAB_ARTIFACTS)/bpftest-junit.xml,bpftest-junit.xml)
# BPFTEST_RUN narrows the run to test objects matching a regular expression
# (empty: all of them).
BPFTEST_RUN ?=
bpftest: build
	$(BIN) bpftest --parallel 2 $(if $(BPFTEST_RUN),--run '$(BPFTEST_RUN)') --junit $(BPFTEST_JUNIT)

# The main job on the built-in default lab.
demo: build
	$(BIN) run

bench: build
	$(GO) test -run '^$$' -bench . -benchtime 3x ./topo/...
	$(BIN) bench topo

# Remove leftovers of dead labs (as root, with the binary built from this
# tree), then the build outputs.
clean: build
	@if [ "$$(id -u)" = 0 ]; then $(BIN) clean; else echo "not root: labs not cleaned (run make clean as root)"; fi
	rm -f $(BIN) *.test
