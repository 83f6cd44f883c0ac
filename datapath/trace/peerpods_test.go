package trace

import (
	"context"
	"net"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/podlab/podlab/topo"
)

// rawLab brings up a raw topology as lab and returns it with its state.
func rawLab(lab, file string) (*topo.Raw, *Lab) {
	r, err := topo.LoadRaw(lab, file, nil)
	Expect(err).NotTo(HaveOccurred())
	return upRaw(r)
}

// upRaw brings r up (removed again at the end of the spec), quiets IPv6
// and waits for every link's carrier.
func upRaw(r *topo.Raw) (*topo.Raw, *Lab) {
	lab := r.Lab()
	claim(lab)
	DeferCleanup(func() {
		Expect(r.Down()).To(Succeed())
		left, _ := topo.ListNamespaces(lab)
		Expect(left).To(BeEmpty())
	})
	Expect(r.Up(context.Background())).To(Succeed())
	for _, n := range r.Namespaces() {
		// No background IPv6 (router and listener solicitations): the
		// before/after snapshots then only move with what the test does.
		Expect(topo.SetSysctl(n, "net.ipv6.conf.all.disable_ipv6", "1")).To(Succeed())
	}
	s := &topo.LabState{Name: lab, Kind: "topology", Namespaces: map[string]string{}}
	for short, ns := range r.Namespaces() {
		s.Namespaces[short] = ns.Name
	}
	l, err := OpenState(s)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(l.Close)
	waitCarrier(l)
	return r, l
}

// claim takes the lab's lock for the spec, as a lab's owner does, so that
// a `podlab clean` running meanwhile (other suites call topo.Clean) sees a
// live lab and leaves its namespaces and pins alone.
func claim(lab string) {
	l, err := topo.ClaimLab(lab)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(l.Release)
}

// waitCarrier waits until every administratively up link of the lab has
// its carrier: fresh veths (and bridges over them) come up asynchronously.
func waitCarrier(l *Lab) {
	Eventually(func() []string {
		var down []string
		for _, sp := range l.spaces {
			links, err := sp.h.LinkList()
			Expect(err).NotTo(HaveOccurred())
			for _, ln := range links {
				if ln.Attrs().Flags&net.FlagUp == 0 {
					continue
				}
				if up, _ := linkUp(ln); !up {
					down = append(down, sp.label+"/"+ln.Attrs().Name)
				}
			}
		}
		return down
	}, 5*time.Second, 10*time.Millisecond).Should(BeEmpty())
}

var _ = Describe("the peer-pods lab", func() {
	It("names the MAC mismatch, and finds no anomaly once vxlan0 has eth0's MAC", func() {
		needRoot()
		r, l := rawLab("ttrpp", "../../topo/testdata/peer-pods.yaml")
		before := labSnapshot(l)
		res, err := Run(l, Options{From: "worker", To: "10.132.2.46"})
		Expect(err).NotTo(HaveOccurred())
		Expect(labSnapshot(l)).To(Equal(before), "trace changed the lab")
		rep, err := Live(context.Background(), l, res, 300*time.Millisecond)
		Expect(err).NotTo(HaveOccurred())
		res.Live = rep
		GinkgoWriter.Print(res.Format())
		Expect(rep.Answered).To(BeFalse())
		Expect(rep.LastSeen).To(Equal("podns/vxlan0"))
		Expect(rep.Seen).To(ContainElement(DeviceSeen{Device: "worker/br-ex", Requests: 1}))
		Expect(res.Anomaly).To(ContainSubstring("neighbour entry for 10.132.2.46 on ovn-k8s-mp0"))
		Expect(res.Anomaly).To(ContainSubstring("0a:58:0a:84:02:2e"))
		Expect(res.Anomaly).To(ContainSubstring("vxlan0 in podns"))
		Expect(res.Anomaly).To(ContainSubstring("7e:e5:f7:e6:f5:1a"))

		podns, _ := r.Namespace("podns")
		h, err := podns.Handle()
		Expect(err).NotTo(HaveOccurred())
		defer h.Close()
		mac, _ := net.ParseMAC("0a:58:0a:84:02:2e")
		Expect(topo.LinkSetMAC(h, "vxlan0", mac)).To(Succeed())
		res, err = Run(l, Options{From: "worker", To: "10.132.2.46"})
		Expect(err).NotTo(HaveOccurred())
		rep, err = Live(context.Background(), l, res, 2*time.Second)
		Expect(err).NotTo(HaveOccurred())
		res.Live = rep
		GinkgoWriter.Print(res.Format())
		Expect(rep.Answered).To(BeTrue())
		Expect(rep.Seen).To(ContainElement(DeviceSeen{Device: "podns/vxlan0", Requests: 1, Replies: 1}))
		Expect(res.Anomaly).To(BeEmpty())
		Expect(res.Reached).To(ContainSubstring("10.132.2.46 in podns (vxlan0)"))
		worker, _ := r.Namespace("worker")
		Expect(topo.Ping(worker, mustAddr("10.132.2.46"), 2*time.Second)).To(Succeed())
	})
})
