// Package bpftest runs Cilium's own BPF unit tests (bpf/tests/*.c of a
// Cilium source tree) under BPF_PROG_TEST_RUN with a runner of podlab's own
// on cilium/ebpf.
//
// A test object is one compiled bpf/tests/<name>.c. It holds one or more
// tests; a test is a set of programs in sections
// "<type>/test/<test>/pktgen", ".../setup" and ".../check" (only check is
// mandatory). The runner loads the object's collection (maps unpinned,
// Cilium's tail calls placed in cilium_calls by their declared slot, the
// per-CPU .data.aux map sized), then for each test runs pktgen, setup and
// check in that order, the packet and context each program leaves being the
// input of the next; setup's return code is prepended to the packet check
// sees. Check programs write their verdicts as a protobuf SuiteResult into
// suite_result_map (see trf.go); the runner decodes it into subtests with
// their log lines.
//
// Programs run on a thread inside a fresh unnamed network namespace
// (topo.DoIsolated): no device is created, no packet leaves, nothing is
// pinned.
package bpftest
