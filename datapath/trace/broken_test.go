package trace

import (
	"os"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/podlab/podlab/topo"
)

// routed is a client a and a server b on two subnets joined by a router r:
// a0 10.0.1.1/24 -- r0 10.0.1.254/24 (r) r1 10.0.2.254/24 -- b0 10.0.2.1/24.
// Each test edits it (the %s markers) into one broken variant.
const routed = `apiVersion: podlab.io/v1alpha1
kind: Topology
metadata: {name: routed}
namespaces:
  - name: a
    routes:
%[1]s
  - name: r
    sysctls:
      net.ipv4.ip_forward: "1"
%[2]s
  - name: b
%[3]s
links:
  - a: {ns: a, name: a0, addresses: [10.0.1.1/24]}
    b: {ns: r, name: r0, addresses: [10.0.1.254/24]}
  - a: {ns: r, name: r1, addresses: [10.0.2.254/24]%[4]s}
    b: {ns: b, name: b0, addresses: [10.0.2.1/24]%[5]s}
%[6]s
`

const (
	aDefault = "      - {dst: default, via: 10.0.1.254}"
	bDefault = "    routes:\n      - {dst: default, via: 10.0.2.254}"
)

// upYAML writes doc to a file and brings it up as lab.
func upYAML(lab, doc string) (*topo.Raw, *Lab) {
	f := filepath.Join(GinkgoT().TempDir(), lab+".yaml")
	Expect(os.WriteFile(f, []byte(doc), 0o600)).To(Succeed())
	return rawLab(lab, f)
}

func mustTrace(l *Lab, o Options) *Result {
	res, err := Run(l, o)
	Expect(err).NotTo(HaveOccurred())
	GinkgoWriter.Print(res.Format())
	return res
}

func ns(r *topo.Raw, short string) *topo.Namespace {
	n, ok := r.Namespace(short)
	Expect(ok).To(BeTrue(), short)
	return n
}

var _ = Describe("hand-made broken topologies", func() {
	BeforeEach(needRoot)

	It("finds nothing wrong on the healthy routed lab, and pings agree", func() {
		r, l := upYAML("ttrok", strings.TrimSpace(sprintf(routed, aDefault, "", bDefault, "", "", "")))
		res := mustTrace(l, Options{From: "a", To: "b"})
		Expect(res.Anomaly).To(BeEmpty())
		Expect(res.Reached).To(ContainSubstring("10.0.2.1 in b (b0), and the reply comes back to a"))
		Expect(topo.Ping(ns(r, "a"), mustAddr("10.0.2.1"), 2*time.Second)).To(Succeed())
	})

	It("names a missing route on the reply path", func() {
		r, l := upYAML("ttrnr", sprintf(routed, aDefault, "", "", "", "", ""))
		res := mustTrace(l, Options{From: "a", To: "10.0.2.1"})
		Expect(res.Anomaly).To(Equal("the request reaches 10.0.2.1 in b (b0), but the reply is lost: b has no route to 10.0.1.1 (network is unreachable)"))
		Expect(topo.Ping(ns(r, "a"), mustAddr("10.0.2.1"), 300*time.Millisecond)).NotTo(Succeed())
	})

	It("names a missing route at the source", func() {
		_, l := upYAML("ttrns", sprintf(routed, "      - {dst: 10.0.9.0/24, via: 10.0.1.254}", "", bDefault, "", "", ""))
		res := mustTrace(l, Options{From: "a", To: "10.0.2.1", Proto: "tcp", DPort: 443})
		Expect(res.Anomaly).To(HavePrefix("a has no route to 10.0.2.1"))
	})

	It("names a link that is down", func() {
		r, l := upYAML("ttrld", sprintf(routed, aDefault, "", bDefault, "", "", ""))
		setDown(r, "b", "b0")
		res := mustTrace(l, Options{From: "a", To: "b"})
		Expect(res.Anomaly).To(Equal("the route for 10.0.2.1 in r leaves by r1, which has no carrier: its veth peer b0 in b is administratively down"))
		Expect(topo.Ping(ns(r, "a"), mustAddr("10.0.2.1"), 300*time.Millisecond)).NotTo(Succeed())
	})

	It("names a router link that is administratively down", func() {
		r, l := upYAML("ttrla", sprintf(routed, aDefault, "", bDefault, "", "", ""))
		setDown(r, "r", "r1")
		res := mustTrace(l, Options{From: "a", To: "10.0.2.1"})
		Expect(res.Anomaly).To(ContainSubstring("r has no route to 10.0.2.1"))
		Expect(res.Anomaly).To(ContainSubstring("r1, which holds 10.0.2.254/24, is administratively down"))
	})

	It("names an MTU too small for the packet", func() {
		r, l := upYAML("ttrmtu", sprintf(routed, aDefault, "", bDefault, ", mtu: 1280", ", mtu: 1280", ""))
		res := mustTrace(l, Options{From: "a", To: "10.0.2.1", Size: 1400})
		Expect(res.Anomaly).To(Equal("the packet is 1400 bytes but r1 in r has MTU 1280 and DF is set: the kernel drops it (and answers ICMP fragmentation needed)"))
		// Small packets pass.
		res = mustTrace(l, Options{From: "a", To: "10.0.2.1", Size: 1200})
		Expect(res.Anomaly).To(BeEmpty())
		Expect(topo.Ping(ns(r, "a"), mustAddr("10.0.2.1"), 2*time.Second)).To(Succeed())
	})
})

func setDown(r *topo.Raw, short, dev string) {
	h, err := ns(r, short).Handle()
	Expect(err).NotTo(HaveOccurred())
	defer h.Close()
	Expect(topo.LinkSetUp(h, dev, false)).To(Succeed())
}

func sprintf(format string, args ...any) string {
	return strings.TrimSpace(fmtSprintf(format, args...))
}
