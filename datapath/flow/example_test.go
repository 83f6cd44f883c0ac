package flow_test

import (
	"fmt"
	"net"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/podlab/podlab/datapath/flow"
)

// A drop event from the datapath becomes a Hubble-shaped flow; a store
// keeps it and a filter selects it.
func Example() {
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: net.IP{10, 244, 1, 17}, DstIP: net.IP{10, 244, 2, 31}}
	tcp := &layers.TCP{SrcPort: 44785, DstPort: 80, SYN: true}
	_ = tcp.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	_ = gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth, ip, tcp)

	dec := flow.NewDecoder(nil) // no resolver: identities only
	f, err := dec.Decode(&flow.Event{
		Type: flow.EventDrop, Time: time.Unix(0, 0), Node: "kind-worker", Interface: "lxc3f2a",
		DropReason: 133, Direction: flow.Egress, SrcIdentity: 30582, DstIdentity: 4711, Data: buf.Bytes(),
	})
	if err != nil {
		panic(err)
	}
	store := flow.NewStore(1000)
	store.Add(f)
	filter, _ := flow.ParseFilter(flow.FilterFlags{Verdict: []string{"DROPPED"}, Port: []string{"80"}})
	for _, f := range store.Last(10, filter.Match) {
		fmt.Println(f.Verdict, f.DropReasonDesc, f.DropReasonDesc.Text(), f.IP.Source, "->", f.IP.Destination, f.Summary)
	}
	// Output:
	// DROPPED POLICY_DENIED Policy denied 10.244.1.17 -> 10.244.2.31 TCP Flags: SYN
}
