package main

import (
	"context"
	"fmt"
	"os"
	"sort"

	"github.com/cilium/ebpf"
	"github.com/podlab/podlab/datapath/cilium/source"
)

func main() {
	ctx := context.Background()
	t, err := source.Resolve(ctx, "", "")
	if err != nil {
		panic(err)
	}
	file := os.Args[1]
	obj, err := t.Compile(ctx, source.CompileRequest{File: file, Defines: map[string]string{
		"ENABLE_IPV4": "1", "ENABLE_ROUTING": "1", "TUNNEL_MODE": "1", "ENCAP_IFINDEX": "4",
		"ENABLE_NODEPORT": "1", "POLICY_VERDICT_NOTIFY": "1", "MONITOR_AGGREGATION": "3", "SKIP_DEBUG": "1",
	}})
	if err != nil {
		panic(err)
	}
	fmt.Println(obj)
	spec, err := ebpf.LoadCollectionSpec(obj)
	if err != nil {
		panic(err)
	}
	var names []string
	for n := range spec.Maps {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		m := spec.Maps[n]
		fmt.Printf("MAP %-36s %-14s k=%d v=%d max=%d flags=%#x pin=%d\n", n, m.Type, m.KeySize, m.ValueSize, m.MaxEntries, m.Flags, m.Pinning)
	}
	names = nil
	for n := range spec.Programs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		p := spec.Programs[n]
		fmt.Printf("PROG %-40s %s\n", n, p.SectionName)
	}
	names = nil
	for n := range spec.Variables {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		v := spec.Variables[n]
		fmt.Printf("VAR %-40s %s size=%d const=%v\n", n, v.SectionName, v.Size(), v.Constant())
	}
}
