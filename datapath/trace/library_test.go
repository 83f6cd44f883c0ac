package trace

import (
	"bytes"
	"errors"
	"io"
	"os"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
	"gopkg.in/yaml.v3"

	"github.com/podlab/podlab/topo"
)

// libraryLab brings up the Topology document of a scenario of the bug
// library (scenarios/library) as lab: the broken state as shipped.
func libraryLab(lab, file string) (*topo.Raw, *Lab) {
	data, err := os.ReadFile(file)
	Expect(err).NotTo(HaveOccurred())
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var spec *topo.Spec
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		Expect(err).NotTo(HaveOccurred())
		var head struct{ Kind string }
		Expect(doc.Decode(&head)).To(Succeed())
		if head.Kind == topo.SpecKind {
			spec, err = topo.ParseSpecNode(file, &doc)
			Expect(err).NotTo(HaveOccurred())
		}
	}
	Expect(spec).NotTo(BeNil(), "no Topology document in %s", file)
	r, err := topo.NewRaw(lab, spec, nil)
	Expect(err).NotTo(HaveOccurred())
	return upRaw(r)
}

// setDF changes a VXLAN device's DF policy as the scenario's vxlan step
// does (a changelink with IFLA_VXLAN_DF; the spec has no field for it).
func setDF(r *topo.Raw, short, dev string, df uint8) {
	Expect(topo.Do(ns(r, short), func() error {
		l, err := netlink.LinkByName(dev)
		if err != nil {
			return err
		}
		req := nl.NewNetlinkRequest(unix.RTM_NEWLINK, unix.NLM_F_ACK)
		msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
		msg.Index = int32(l.Attrs().Index)
		req.AddData(msg)
		info := nl.NewRtAttr(unix.IFLA_LINKINFO, nil)
		info.AddRtAttr(nl.IFLA_INFO_KIND, nl.NonZeroTerminated("vxlan"))
		data := info.AddRtAttr(nl.IFLA_INFO_DATA, nil)
		data.AddRtAttr(unix.IFLA_VXLAN_DF, nl.Uint8Attr(df))
		req.AddData(info)
		_, err = req.Execute(unix.NETLINK_ROUTE, 0)
		return err
	})).To(Succeed())
}

var _ = Describe("the bug library (scenarios/library), as shipped and fixed", func() {
	BeforeEach(needRoot)

	It("bug-rp-filter: names strict rp_filter on gw-b for the reply", func() {
		r, l := libraryLab("ttrlrp", "../../scenarios/library/bug-rp-filter.yaml")
		res := mustTrace(l, Options{From: "client", To: "10.0.2.2"})
		Expect(res.Anomaly).To(Equal("the request reaches 10.0.2.2 in server (eth-a), but the reply is lost: strict reverse-path filtering (rp_filter=1) in gw drops the packet from 10.0.2.2 arriving on gw-b: the route back to 10.0.2.2 leaves by gw-a"))
		Expect(topo.SetSysctl(ns(r, "gw"), "net.ipv4.conf.gw-b.rp_filter", "2")).To(Succeed())
		res = mustTrace(l, Options{From: "client", To: "10.0.2.2"})
		Expect(res.Anomaly).To(BeEmpty())
		Expect(topo.Ping(ns(r, "client"), mustAddr("10.0.2.2"), 2*time.Second)).To(Succeed())
	})

	It("bug-vxlan-port: names the closed port (4789 vs 8472)", func() {
		_, l := libraryLab("ttrlvp", "../../scenarios/library/bug-vxlan-port.yaml")
		res := mustTrace(l, Options{From: "node-a", To: "10.10.0.2"})
		Expect(res.Anomaly).To(Equal("the VXLAN packet reaches node-b on UDP port 4789, but nothing listens there (vxlan0 in node-b uses UDP 8472): the kernel answers ICMP port unreachable"))
	})

	It("bug-vxlan-mtu: names the DF-marked outer packet too big for the underlay, and passes at MTU 1450", func() {
		r, l := libraryLab("ttrlmtu", "../../scenarios/library/bug-vxlan-mtu.yaml")
		// Without DF on the outer header a full-sized frame is fragmented
		// and arrives.
		res := mustTrace(l, Options{From: "server", To: "10.244.2.10", Size: 1500, NoReply: true})
		Expect(res.Anomaly).To(BeEmpty())
		Expect(res.Format()).To(ContainSubstring("the 1550-byte packet exceeds eth0's MTU 1500; DF is not set: fragmented"))
		setDF(r, "node-a", "vxlan0", dfSet)
		setDF(r, "node-b", "vxlan0", dfSet)
		res = mustTrace(l, Options{From: "server", To: "10.244.2.10", Size: 1500, NoReply: true})
		Expect(res.Anomaly).To(Equal("the VXLAN packet is 1550 bytes (a 1500-byte frame plus 50 bytes of headers) but eth0 in node-b has MTU 1500, and vxlan0 sets DF on its outer header (df set): the kernel drops it, and its ICMP fragmentation-needed goes to node-b itself, not to the sender of the inner packet"))
		// Small packets pass.
		res = mustTrace(l, Options{From: "client", To: "10.244.2.20"})
		Expect(res.Anomaly).To(BeEmpty())
		// The fix: pods at 1450 send at most 1450-byte packets.
		for _, pod := range []string{"client", "server"} {
			h, err := ns(r, pod).Handle()
			Expect(err).NotTo(HaveOccurred())
			Expect(topo.LinkSetMTU(h, "eth0", 1450)).To(Succeed())
			h.Close()
		}
		res = mustTrace(l, Options{From: "server", To: "10.244.2.10", Size: 1450})
		Expect(res.Anomaly).To(BeEmpty())
	})

	It("peer-pods: names the MAC mismatch", func() {
		_, l := libraryLab("ttrlpp", "../../scenarios/library/peer-pods.yaml")
		res := mustTrace(l, Options{From: "worker", To: "10.132.2.46"})
		Expect(res.Anomaly).To(ContainSubstring("the neighbour entry for 10.132.2.46 on ovn-k8s-mp0 in worker says 0a:58:0a:84:02:2e, but the frame is delivered to vxlan0 in podns"))
	})
})
