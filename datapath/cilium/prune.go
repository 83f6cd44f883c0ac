package cilium

import (
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
)

// pruneTailCalls drops the tail calls no loaded program can reach, so the
// verifier does not check them for every endpoint (Cilium's agent prunes
// unreachable tail calls too). Reachability follows the constant slots the
// programs pass to bpf_tail_call on cilium_calls, starting from the entry
// programs (every program that is not a tail call). When a program indexes
// cilium_calls with a value that is not a constant, nothing is pruned. It
// runs after resolveTailCalls and returns the names it dropped.
func pruneTailCalls(spec *ebpf.CollectionSpec) []string {
	calls := spec.Maps[mapCalls]
	if calls == nil {
		return nil
	}
	bySlot := map[uint32]string{}
	for _, kv := range calls.Contents {
		slot, ok1 := kv.Key.(uint32)
		name, ok2 := kv.Value.(string)
		if !ok1 || !ok2 {
			return nil
		}
		bySlot[slot] = name
	}
	reached := map[string]bool{}
	var queue []string
	for name, p := range spec.Programs {
		if !strings.HasSuffix(p.SectionName, "/tail") {
			reached[name] = true
			queue = append(queue, name)
		}
	}
	for len(queue) > 0 {
		name := queue[0]
		queue = queue[1:]
		slots, ok := tailCallSlots(spec.Programs[name].Instructions)
		if !ok {
			return nil
		}
		for _, s := range slots {
			if t, ok := bySlot[s]; ok && !reached[t] {
				reached[t] = true
				queue = append(queue, t)
			}
		}
	}
	var dropped []string
	kept := calls.Contents[:0]
	for _, kv := range calls.Contents {
		if name := kv.Value.(string); !reached[name] {
			dropped = append(dropped, name)
			delete(spec.Programs, name)
			continue
		}
		kept = append(kept, kv)
	}
	calls.Contents = kept
	return dropped
}

// tailCallSlots returns the cilium_calls slots a program's tail calls use.
// Cilium's tail_call_static loads the map into R2 and the slot into R3 as
// an immediate right before the call; ok is false when a tail call on
// cilium_calls has a slot that is not such a constant.
func tailCallSlots(insns asm.Instructions) (slots []uint32, ok bool) {
	for i, in := range insns {
		if !in.IsBuiltinCall() || asm.BuiltinFunc(in.Constant) != asm.FnTailCall {
			continue
		}
		mapRef, slot, haveSlot, slotKnown := "", uint32(0), false, false
		for j := i - 1; j >= 0 && j >= i-8 && (mapRef == "" || !haveSlot); j-- {
			b := insns[j]
			if b.OpCode.JumpOp() != asm.InvalidJumpOp {
				break // a branch or call between: not a straight-line sequence
			}
			switch b.Dst {
			case asm.R2:
				if mapRef == "" {
					mapRef = b.Reference()
				}
			case asm.R3:
				if !haveSlot {
					haveSlot = true
					if b.OpCode.Class().IsALU() && b.OpCode.ALUOp() == asm.Mov && b.OpCode.Source() == asm.ImmSource {
						slot, slotKnown = uint32(b.Constant), true
					}
				}
			}
			if b.Symbol() != "" {
				break // a jump target: what precedes it may not run
			}
		}
		if mapRef != mapCalls {
			if mapRef == "" {
				return nil, false // cannot tell which map
			}
			continue // another program array (cilium_call_policy, ...)
		}
		if !slotKnown {
			return nil, false
		}
		slots = append(slots, slot)
	}
	return slots, true
}
