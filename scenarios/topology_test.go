package scenarios

import (
	"errors"
	"net"
	"os"
	"strings"
	"testing"

	"github.com/podlab/podlab/pcap"
	"github.com/podlab/podlab/topo"
)

// rawTopology is a small raw topology: two namespaces joined by a veth,
// plus a VXLAN device in b.
const rawTopology = `apiVersion: podlab.io/v1alpha1
kind: Topology
metadata:
  name: pair
namespaces:
  - name: a
    routes:
      - {dst: default, via: 10.0.0.2}
  - name: b
    devices:
      - {name: vx0, kind: vxlan, vni: 7, remote: 192.168.0.1, addresses: [10.9.0.2/24]}
links:
  - a: {ns: a, name: eth0, addresses: [10.0.0.1/24]}
    b: {ns: b, name: eth0, addresses: [10.0.0.2/24]}
`

const rawScenario = rawTopology + `---
apiVersion: podlab.io/v1alpha1
kind: Scenario
metadata: {name: pair}
description: a raw pair
captures:
  - {device: b/eth0, promiscuous: true}
steps:
  - serve: {namespace: b, workload: http-echo, port: 8080}
  - name: ping
    capture: [a/eth0]
    probe: {from: ns/a, to: 10.0.0.2, icmp: {}}
    packets:
      - on: a/eth0
        ether: {dst: "mac-of:b/eth0"}
        match: {proto: icmp, src: a, dst: 10.0.0.2, icmp: {type: echo-request}}
  - probe: {from: a, to: ns/b, http: {padding: 1200}, port: 8080}
  - setMAC: {device: b/eth0, copyFrom: a/eth0}
  - setMAC: {device: b/vx0, mac: "0a:58:0a:84:02:2e"}
  - sysctl: {namespace: b, key: net.ipv4.conf.eth0.rp_filter, value: "2"}
  - vxlan: {device: b/vx0, port: 8472, df: set}
  - mtu: {device: a/eth0, mtu: 1450}
  - linkDown: b/eth0
  - linkUp: {device: b/eth0}
  - packets:
      - on: b/eth0
        match: {proto: icmp}
`

func TestTopologyScenario(t *testing.T) {
	s, err := Parse("pair", File{Name: "pair.yaml", Data: []byte(rawScenario)})
	if err != nil {
		t.Fatalf("%v", err)
	}
	if s.Topology == nil || s.Topology.Metadata.Name != "pair" {
		t.Fatalf("topology not decoded: %+v", s.Topology)
	}
	if len(s.Cluster.Nodes) != 0 || len(s.PodInstances(NewNameGenerator(1))) != 0 {
		t.Errorf("a raw scenario has no nodes and no pods; got %d nodes", len(s.Cluster.Nodes))
	}
	if s.Settings.Datapath != DatapathNone {
		t.Errorf("datapath = %q, want none", s.Settings.Datapath)
	}
	if c := s.Captures[0]; c.Kind != DeviceRaw || c.Namespace != "b" || c.Name != "eth0" || c.Promiscuous == nil || !*c.Promiscuous {
		t.Errorf("capture = %+v", c)
	}
	st := s.Steps
	if sv := st[0].Serve; sv == nil || sv.Namespace != "b" || sv.Workload != "http-echo" || len(sv.Ports) != 1 || sv.Ports[0] != 8080 {
		t.Errorf("serve = %+v", st[0].Serve)
	}
	p := st[1].Probes[0]
	if p.From.Kind != PeerNetns || p.From.Name != "a" || p.To.Kind != PeerIP {
		t.Errorf("probe peers = %+v → %+v", p.From, p.To)
	}
	if c := st[1].Captures[0]; c.Kind != DeviceRaw || c.Promiscuous != nil {
		t.Errorf("step capture = %+v", c)
	}
	if e := st[1].Packets[0].Ether; e == nil || e.Dst != "mac-of:b/eth0" {
		t.Errorf("ether = %+v", e)
	}
	if p := st[2].Probes[0]; p.From.Kind != PeerNetns || p.To.Kind != PeerNetns || p.HTTP.Padding != 1200 {
		t.Errorf("bare namespace peers = %+v → %+v (%+v)", p.From, p.To, p.HTTP)
	}
	if a, ok := s.NamespaceAddress("b"); !ok || a.String() != "10.9.0.2" {
		t.Errorf("NamespaceAddress(b) = %v %v, want the first device address 10.9.0.2", a, ok)
	}
	if f := st[3].Fault; f.Kind != FaultSetMAC || f.CopyFrom.Kind != DeviceRaw || f.CopyFrom.Namespace != "a" {
		t.Errorf("setMAC copyFrom = %+v", f)
	}
	if f := st[4].Fault; f.MAC.String() != "0a:58:0a:84:02:2e" {
		t.Errorf("setMAC mac = %+v", f)
	}
	if f := st[5].Fault; f.Kind != FaultSysctl || f.Namespace != "b" || f.Key != "net.ipv4.conf.eth0.rp_filter" || f.Value != "2" {
		t.Errorf("sysctl = %+v", f)
	}
	if f := st[6].Fault; f.Kind != FaultVXLAN || f.VXLAN.Port != 8472 || f.VXLAN.DF != DFSet {
		t.Errorf("vxlan = %+v %+v", f, f.VXLAN)
	}
	if f := st[7].Fault; f.Kind != FaultMTU || f.Device.Kind != DeviceRaw || f.MTU != 1450 {
		t.Errorf("mtu = %+v", f)
	}
	if f := st[8].Fault; f.Kind != FaultLinkDown || f.Device.Kind != DeviceRaw {
		t.Errorf("linkDown = %+v", f)
	}
	for i, want := range []string{"serve http-echo in b", "ping", "http a → ns/b expect success", "setMAC b/eth0 = MAC of a/eth0",
		"setMAC b/vx0 = 0a:58:0a:84:02:2e", "sysctl net.ipv4.conf.eth0.rp_filter in b = 2", "vxlan b/vx0 port 8472, df set", "mtu a/eth0 1450"} {
		if st[i].Name != want {
			t.Errorf("step %d name = %q, want %q", i, st[i].Name, want)
		}
	}
}

// Every malformed raw scenario is rejected by Parse with file, line and
// field; Parse itself never creates anything (no namespace appears).
func TestTopologyScenarioErrors(t *testing.T) {
	scenario := func(steps string) string {
		return rawTopology + "---\napiVersion: podlab.io/v1alpha1\nkind: Scenario\nmetadata: {name: pair}\nsteps:\n" + steps
	}
	// The topology takes 14 lines, the separator and the Scenario header
	// 5 more: the first step is on line 20.
	cases := []struct {
		name, doc string
		want      []string
	}{
		{"unknown source namespace", scenario("  - probe: {from: ns/c, to: 10.0.0.2, icmp: {}}\n"),
			[]string{"x.yaml:20: steps[0].probe.from: unknown namespace \"c\""}},
		{"typo in a namespace", scenario("  - probe: {from: ns/aa, to: 10.0.0.2, icmp: {}}\n"),
			[]string{"steps[0].probe.from: unknown namespace \"aa\"; did you mean \"a\"?"}},
		{"unknown device", scenario("  - capture: [b/eth1]\n    probe: {from: ns/a, to: 10.0.0.2, icmp: {}}\n"),
			[]string{"x.yaml:20: steps[0].capture[0]: namespace b has no device \"eth1\"; did you mean \"eth0\"?"}},
		{"unknown namespace in a device", scenario("  - linkDown: z/eth0\n"),
			[]string{"x.yaml:20: steps[0].linkDown: unknown namespace \"z\" in z/eth0"}},
		{"pod device", scenario("  - capture: [pod:default/x/eth0]\n    probe: {from: ns/a, to: 10.0.0.2, icmp: {}}\n"),
			[]string{"names a pod; a raw topology lab has none"}},
		{"sysctl outside net", scenario("  - sysctl: {namespace: a, key: kernel.panic, value: \"1\"}\n"),
			[]string{"x.yaml:20: steps[0].sysctl.key: sysctl \"kernel.panic\" is not under net.*"}},
		{"sysctl on a device of another namespace", scenario("  - sysctl: {namespace: a, key: net.ipv4.conf.vx0.rp_filter, value: \"1\"}\n"),
			[]string{"steps[0].sysctl.key: sysctl \"net.ipv4.conf.vx0.rp_filter\" names device \"vx0\", which namespace a does not have"}},
		{"sysctl in an unknown namespace", scenario("  - sysctl: {namespace: q, key: net.ipv4.ip_forward, value: \"1\"}\n"),
			[]string{"steps[0].sysctl.namespace: unknown namespace \"q\""}},
		{"vxlan on a veth", scenario("  - vxlan: {device: a/eth0, port: 4789}\n"),
			[]string{"steps[0].vxlan.device: a/eth0 is a veth device; steps[0].vxlan needs a vxlan device"}},
		{"vxlan with nothing to change", scenario("  - vxlan: {device: b/vx0}\n"),
			[]string{"steps[0].vxlan: a vxlan step changes port and/or df"}},
		{"bad df", scenario("  - vxlan: {device: b/vx0, df: maybe}\n"),
			[]string{"steps[0].vxlan.df: df must be unset, set or inherit"}},
		{"bad MAC", scenario("  - setMAC: {device: b/eth0, mac: 01:00:5e:00:00:01}\n"),
			[]string{"steps[0].setMAC.mac: bad MAC address \"01:00:5e:00:00:01\": multicast bit set"}},
		{"setMAC without a MAC", scenario("  - setMAC: {device: b/eth0}\n"),
			[]string{"steps[0].setMAC: expected mac: MAC or copyFrom: NAMESPACE/DEVICE"}},
		{"copyFrom an unknown device", scenario("  - setMAC: {device: b/eth0, copyFrom: a/eth9}\n"),
			[]string{"steps[0].setMAC.copyFrom: namespace a has no device \"eth9\""}},
		{"serve an unknown workload", scenario("  - serve: {namespace: b, workload: nginx}\n"),
			[]string{"steps[0].serve.workload: workload must be http-echo, tcp-echo or udp-echo; got \"nginx\""}},
		{"serve on a foreign address", scenario("  - serve: {namespace: b, workload: tcp-echo, address: 10.0.0.1}\n"),
			[]string{"steps[0].serve.address: namespace b has no address 10.0.0.1 in the topology"}},
		{"flow in a raw lab", scenario("  - flow: {from: a, to: b}\n"),
			[]string{"x.yaml:20: steps[0].flow: a raw topology lab has no datapath, so it records no flows and no metrics"}},
		{"metric in a raw lab", scenario("  - metric: {name: hubble_flows_processed_total, value: 1}\n"),
			[]string{"steps[0].metric: a raw topology lab has no datapath"}},
		{"wait in a raw lab", scenario("  - wait: ready\n"),
			[]string{"steps[0].wait: wait needs a cluster"}},
		{"dns probe in a raw lab", scenario("  - probe: {from: ns/a, dns: {name: x.example}}\n"),
			[]string{"steps[0]: a raw topology lab has no DNS"}},
		{"probe from an address", scenario("  - probe: {from: 10.0.0.1, to: 10.0.0.2, icmp: {}}\n"),
			[]string{"steps[0].probe.from: a probe in a raw topology lab runs from a namespace (ns/NAME), not 10.0.0.1"}},
		{"probe to a pod", scenario("  - probe: {from: ns/a, to: pod/x, icmp: {}}\n"),
			[]string{"steps[0].probe.to: a raw topology lab is probed at an IP address or ns/NAME"}},
		{"unknown name in a match", scenario("  - capture: [a/eth0]\n    probe: {from: ns/a, to: 10.0.0.2, icmp: {}}\n    packets:\n      - {on: a/eth0, match: {src: echo-a}}\n"),
			[]string{"packet match names \"echo-a\", which is no address, CIDR or namespace of the topology"}},
		{"mac-of an unknown device", scenario("  - capture: [a/eth0]\n    probe: {from: ns/a, to: 10.0.0.2, icmp: {}}\n    packets:\n      - {on: a/eth0, ether: {dst: \"mac-of:b/nope\"}, match: {proto: icmp}}\n"),
			[]string{"steps[0].packets[0].ether: namespace b has no device \"nope\""}},
		{"bad ether MAC", scenario("  - capture: [a/eth0]\n    probe: {from: ns/a, to: 10.0.0.2, icmp: {}}\n    packets:\n      - {on: a/eth0, ether: {src: zz}, match: {proto: icmp}}\n"),
			[]string{"steps[0].packets[0].ether.src: bad MAC address \"zz\""}},
		{"uncaptured raw device", scenario("  - capture: [a/eth0]\n    probe: {from: ns/a, to: 10.0.0.2, icmp: {}}\n    packets:\n      - {on: b/eth0, match: {proto: icmp}}\n"),
			[]string{"steps[0].packets[0].on: b/eth0 is not captured"}},
		{"capture mapping without device", scenario("  - capture: [{promiscuous: true}]\n    probe: {from: ns/a, to: 10.0.0.2, icmp: {}}\n"),
			[]string{"steps[0].capture[0].device: required field is missing"}},
		{"bpf datapath", strings.Replace(scenario("  - probe: {from: ns/a, to: 10.0.0.2, icmp: {}}\n"), "metadata: {name: pair}\nsteps:", "metadata: {name: pair}\nsettings: {datapath: bpf}\nsteps:", 1),
			[]string{"settings.datapath: a raw topology lab has no datapath"}},
		{"Kubernetes objects", "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, image: nginx}]}\n---\n" + scenario("  - probe: {from: ns/a, to: 10.0.0.2, icmp: {}}\n"),
			[]string{"x.yaml:1: kind: Pod/default/p needs a cluster; a scenario with a Topology document (x.yaml:6) holds no Kubernetes objects"}},
		{"two topologies", rawTopology + "---\n" + scenario("  - probe: {from: ns/a, to: 10.0.0.2, icmp: {}}\n"),
			[]string{"x.yaml:16: kind: a scenario holds one Topology document (the first is at x.yaml:1)"}},
		{"broken topology", strings.Replace(scenario("  - probe: {from: ns/a, to: 10.0.0.2, icmp: {}}\n"), "    b: {ns: b, name: eth0", "    b: {ns: bb, name: eth0", 1),
			[]string{"x.yaml:14: links[0].b.ns: unknown namespace \"bb\""}},
		{"topology typo", strings.Replace(rawScenario, "    routes:\n      - {dst: default", "    rutes:\n      - {dst: default", 1),
			[]string{"x.yaml:7: namespaces[0].rutes: unknown field (did you mean \"routes\"?)"}},
		{"raw step in a cluster scenario", "apiVersion: podlab.io/v1alpha1\nkind: Scenario\nmetadata: {name: c}\nsteps:\n  - setMAC: {device: kind-worker/eth0, mac: \"02:00:00:00:00:01\"}\n",
			[]string{"x.yaml:5: steps[0].setMAC: not supported yet: setMAC in a cluster scenario"}},
		{"mac-of in a cluster scenario", "apiVersion: podlab.io/v1alpha1\nkind: Scenario\nmetadata: {name: c}\ncaptures: [kind-worker/eth0]\nsteps:\n  - packets:\n      - {on: kind-worker/eth0, ether: {dst: \"mac-of:x/eth0\"}, match: {proto: icmp}}\n",
			[]string{"not supported yet: mac-of:x/eth0 in a cluster scenario"}},
	}
	before, _ := topo.ListNamespaces("")
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, err := Parse("x", File{Name: "x.yaml", Data: []byte(c.doc)})
			if err == nil {
				t.Fatalf("accepted: %+v", s.Steps)
			}
			var list ErrorList
			if !errors.As(err, &list) {
				t.Fatalf("error is not an ErrorList: %v", err)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not contain %q:\n%v", w, err)
				}
			}
			for _, d := range list {
				if d.File == "" || (d.Line == 0 && c.name != "bpf datapath") {
					t.Errorf("diagnostic without file/line: %s", d)
				}
			}
		})
	}
	after, _ := topo.ListNamespaces("")
	if len(after) > len(before) {
		t.Errorf("parsing created namespaces: %v -> %v", before, after)
	}
}

// The library's raw scenarios parse and tell their story.
func TestLibraryTopologyScenarios(t *testing.T) {
	for _, name := range []string{"peer-pods", "bug-vxlan-mtu", "bug-vxlan-port", "bug-rp-filter"} {
		s, err := Builtin(name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if s.Topology == nil {
			t.Errorf("%s: no Topology", name)
		}
		if len(s.Description) < 200 {
			t.Errorf("%s: description too short to tell the story", name)
		}
	}
	s, _ := Builtin("peer-pods")
	if !strings.Contains(s.Description, "stands in for OVN's ARP responder") {
		t.Errorf("peer-pods must say the permanent neighbour stands in for OVN's ARP responder")
	}
	if _, err := os.Stat("library/peer-pods.yaml"); err != nil {
		t.Errorf("peer-pods is not a library file: %v", err)
	}
}

// macResolver resolves mac-of: names from a table.
type macResolver struct {
	pcap.StaticResolver
	macs map[string]net.HardwareAddr
}

func (m macResolver) MACOf(dev string) (net.HardwareAddr, error) {
	if mac, ok := m.macs[dev]; ok {
		return mac, nil
	}
	return nil, errors.New("no such device")
}

func TestEtherFilter(t *testing.T) {
	eth0, _ := net.ParseMAC("0a:58:0a:84:02:2e")
	vx0, _ := net.ParseMAC("7e:e5:f7:e6:f5:1a")
	frame := func(dst, src net.HardwareAddr) pcap.Packet {
		data := append(append(append([]byte{}, dst...), src...), 0x08, 0x06)
		return pcap.Packet{Data: append(data, make([]byte, 28)...)}
	}
	rec := pcap.NewRecording("podns/vxlan0", "x.pcapng", []pcap.Packet{frame(eth0, vx0), frame(vx0, eth0), frame(eth0, eth0), {Data: []byte{1, 2}}})
	r := macResolver{macs: map[string]net.HardwareAddr{"pod/eth0": eth0}}
	for _, c := range []struct {
		e    EtherMatch
		want int
	}{
		{EtherMatch{Dst: "mac-of:pod/eth0"}, 2},
		{EtherMatch{Dst: "mac-of:pod/eth0", Src: "7e:e5:f7:e6:f5:1a"}, 1},
		{EtherMatch{Src: "mac-of:pod/eth0"}, 2},
		{EtherMatch{Dst: "02:00:00:00:00:01"}, 0},
	} {
		got, err := c.e.Filter(rec, r)
		if err != nil {
			t.Fatalf("%s: %v", c.e.String(), err)
		}
		if n := len(got.Packets()); n != c.want {
			t.Errorf("%s kept %d frames, want %d", c.e.String(), n, c.want)
		}
		if got.Path() != "x.pcapng" || !strings.Contains(got.Interface(), "podns/vxlan0") {
			t.Errorf("filtered source lost its name or file: %q %q", got.Interface(), got.Path())
		}
	}
	if _, err := (&EtherMatch{Dst: "mac-of:pod/eth9"}).Filter(rec, r); err == nil {
		t.Error("unknown device accepted")
	}
	if _, err := (&EtherMatch{Dst: "mac-of:pod/eth0"}).Filter(rec, pcap.StaticResolver{}); err == nil || !strings.Contains(err.Error(), "cannot tell device MACs") {
		t.Errorf("a resolver without MACs: %v", err)
	}
}
