// Package monitor reads the events of Cilium's own BPF programs: the
// "monitor" records that bpf_lxc, bpf_overlay and bpf_host write into the
// cilium_events perf event array (one ring per CPU), and turns them into
// podlab's backend-neutral flow.Event, so the flow decoder, the flow store,
// observe, metrics and reports work on a Cilium datapath unchanged.
//
// Record layouts mirror Cilium's bpf/lib/{notify.h,trace.h,drop.h,
// policy_log.h,dbg.h} of the releases podlab loads:
//
//	trace_notify           version 0 (32 B), 1 (48 B, v1.18), 2 (56 B, v1.20)
//	drop_notify            version 0/1 (36 B), 2 (40 B, v1.18), 3 (48 B, v1.20)
//	policy_verdict_notify  version 1: 32 B header (v1.18) or 40 B (v1.20),
//	                       told apart by the sample length
//	debug_msg, debug_capture_msg, capture, trace_sock: counted and skipped
//
// Every header is followed by len_cap bytes of the packet. A record of a
// version (or extension version) this package does not know is refused
// with a *VersionError and counted, never guessed at. CheckBTF compares the
// Go layouts with the structs an object's BTF holds (trace_notify is there
// in v1.20 objects, through the per-CPU .data.aux scratch space), so a
// loader can refuse an object whose records would be misread.
//
// Reader wraps a github.com/cilium/ebpf/perf reader with a wakeup watermark:
// the kernel wakes the reader once a ring holds Watermark bytes instead of
// once per record (a wakeup costs ~9 µs on a small VM, more than the
// datapath's own work per packet), and a flush interval bounds how long a
// record waits in a quiet ring. Lost samples are counted.
//
// The package imports no Cilium Go code.
package monitor
