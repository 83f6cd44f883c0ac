package cilium

import "github.com/cilium/ebpf"

// ResolveTailCalls puts every program declared with Cilium's
// __declare_tail(N) (section "<type>/tail", BTF tag tail:cilium_calls/N)
// into slot N of the spec's cilium_calls program array. Specs without
// cilium_calls are left alone. Other loaders of Cilium objects (the BPF
// unit test runner, datapath/cilium/bpftest) share this step.
func ResolveTailCalls(spec *ebpf.CollectionSpec) error { return resolveTailCalls(spec) }

// SizeAuxData sizes Cilium's per-CPU .data.aux area for this machine and
// sets _aux_stride and _aux_max_off; without it the programs index past
// their area. Specs without .data.aux are left alone.
func SizeAuxData(spec *ebpf.CollectionSpec) error { return sizeAuxData(spec) }
