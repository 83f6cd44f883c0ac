#!/usr/bin/env bash
# build-hubble-metrics.sh OUT: builds tools/hubble-metrics (Hubble's own
# metric handlers fed a flows.jsonl, a Go module of its own that requires
# the cilium module at the pinned release) into OUT. Go's build cache keeps
# it cheap: a cold build compiles ~1,100 packages once, a warm one only
# links (seconds), so `make test` runs this every time and never uses a
# stale binary.
set -euo pipefail
out=$(realpath -m "$1")
cd "$(dirname "$0")/hubble-metrics"
mkdir -p "$(dirname "$out")"
start=$(date +%s)
GOFLAGS=-mod=readonly go build -trimpath -buildvcs=false -o "$out.tmp" .
mv "$out.tmp" "$out"
echo "build-hubble-metrics: $out built in $(( $(date +%s) - start )) s"
