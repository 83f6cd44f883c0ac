package datapath

// The BPF objects are built from ../bpf with Debian's clang-16; the generated
// Go files and .o objects are committed so that `go build` needs no clang.
//
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -cc clang-16 -target bpfel -go-package datapath -type drop_reason -type obs_point -type event_type fromContainer ../bpf/from_container.c -- -O2 -g -Wall -I/usr/include/x86_64-linux-gnu
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -cc clang-16 -target bpfel -go-package datapath fromOverlay ../bpf/from_overlay.c -- -O2 -g -Wall -I/usr/include/x86_64-linux-gnu
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -cc clang-16 -target bpfel -go-package datapath toContainer ../bpf/to_container.c -- -O2 -g -Wall -I/usr/include/x86_64-linux-gnu
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -cc clang-16 -target bpfel -go-package datapath tunnelProbe ../bpf/tunnel_probe.c -- -O2 -g -Wall -I/usr/include/x86_64-linux-gnu
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -cc clang-16 -target bpfel -go-package datapath fromNetdev ../bpf/from_netdev.c -- -O2 -g -Wall -I/usr/include/x86_64-linux-gnu
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -cc clang-16 -target bpfel -go-package datapath fromHost ../bpf/from_host.c -- -O2 -g -Wall -I/usr/include/x86_64-linux-gnu
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -cc clang-16 -target bpfel -go-package datapath lbBench ../bpf/lb_bench.c -- -O2 -g -Wall -I/usr/include/x86_64-linux-gnu
