package cilium

import (
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
)

// Cilium's agent marks packets the node itself sends with MARK_MAGIC_HOST
// (an iptables rule in the OUTPUT chain: --set-xmark 0xc00/0xf00), which is
// how Cilium's programs tell the host identity from the world:
// cil_to_container on a pod's lxc (per-endpoint routes: the node's packets
// to its pods), cil_from_host on cilium_host and cil_to_netdev on eth0
// read it. A lab node has no iptables; the same mark is set by a small tcx
// program placed before Cilium's on the egress hooks of those devices:
// packets with no ingress device were sent by the node itself.
const (
	markMagicHost     = 0x0c00
	markMagicHostMask = 0x0f00
	// markProxyMask selects the magic bits the agent's rule tests for the
	// proxy's marks: 0xa00 covers PROXY_INGRESS and PROXY_EGRESS (0xb00),
	// 0x800 SKIP_TPROXY and PROXY_EGRESS_EPID (0x900).
	markProxyMask         = 0x0e00
	markMagicProxyIngress = 0x0a00
	markMagicSkipTProxy   = 0x0800

	skbMarkOff           = 8  // offsetof(struct __sk_buff, mark)
	skbIngressIfindexOff = 36 // offsetof(struct __sk_buff, ingress_ifindex)
	tcxNext              = -1 // TCX_NEXT / TC_ACT_UNSPEC: run the next program
)

// hostMarkSpec is the program that sets MARK_MAGIC_HOST on packets the node
// sends.
func hostMarkSpec() *ebpf.ProgramSpec {
	return &ebpf.ProgramSpec{
		Name:    "podlab_hostmark",
		Type:    ebpf.SchedCLS,
		License: "Dual BSD/GPL",
		Instructions: asm.Instructions{
			asm.LoadMem(asm.R2, asm.R1, skbIngressIfindexOff, asm.Word),
			asm.JNE.Imm(asm.R2, 0, "out"),
			asm.LoadMem(asm.R2, asm.R1, skbMarkOff, asm.Word),
			// The agent's OUTPUT rule leaves the proxy's marks alone
			// (! --mark 0xa00/0xe00, ! --mark 0x800/0xe00): the L7
			// proxy's sockets carry PROXY_INGRESS/EGRESS and the source
			// identity, which cil_from_host reads.
			asm.Mov.Reg32(asm.R3, asm.R2),
			asm.And.Imm32(asm.R3, markProxyMask),
			asm.JEq.Imm32(asm.R3, markMagicProxyIngress, "out"),
			asm.JEq.Imm32(asm.R3, markMagicSkipTProxy, "out"),
			asm.And.Imm32(asm.R2, ^int32(markMagicHostMask)),
			asm.Or.Imm32(asm.R2, markMagicHost),
			asm.StoreMem(asm.R1, skbMarkOff, asm.R2, asm.Word),
			asm.Mov.Imm(asm.R0, tcxNext).WithSymbol("out"),
			asm.Return(),
		},
	}
}

// loadHostMark loads the host-mark program once per node.
func loadHostMark() (*ebpf.Program, error) {
	p, err := ebpf.NewProgram(hostMarkSpec())
	if err != nil {
		return nil, fmt.Errorf("load podlab_hostmark: %w", err)
	}
	return p, nil
}
