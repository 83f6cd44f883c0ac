#!/usr/bin/env bash
# build-hubble.sh VERSION OUT: builds the real hubble CLI from the cilium Go
# module at VERSION (fetched through the Go module proxy, built in place in
# the module cache) into OUT. `make hubble-cli` runs it once; OUT is cached.
set -euo pipefail
version=$1
out=$(realpath -m "$2")
dir=$(go mod download -json "github.com/cilium/cilium@$version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
if [ -z "$dir" ] || [ ! -d "$dir/hubble" ]; then
	echo "build-hubble: github.com/cilium/cilium@$version has no hubble/ folder ($dir)" >&2
	exit 1
fi
mkdir -p "$(dirname "$out")"
start=$(date +%s)
(cd "$dir" && GOFLAGS=-mod=readonly go build -trimpath -buildvcs=false \
	-ldflags "-s -w -X github.com/cilium/cilium/hubble/pkg.Version=${version#v}" \
	-o "$out.tmp" ./hubble)
mv "$out.tmp" "$out"
echo "build-hubble: $out ($(du -h "$out" | cut -f1)) built in $(( $(date +%s) - start )) s"
