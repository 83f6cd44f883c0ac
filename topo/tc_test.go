package topo

import (
	"net/netip"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/vishvananda/netlink"
)

var _ = Describe("tc mirred", func() {
	const lab = "traw6"
	var (
		a, b *Namespace
		h    *netlink.Handle
	)

	BeforeEach(func() {
		requireRoot()
		var err error
		a, err = CreateNamespace(lab, "a")
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func() { Expect(DeleteNamespace(a.Name)).To(Succeed()) })
		b, err = CreateNamespace(lab, "b")
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func() { Expect(DeleteNamespace(b.Name)).To(Succeed()) })
		h, err = a.Handle()
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(h.Close)
		// a: eth0 (10.0.0.1) <-> b: eth0 (10.0.0.2), and a spare pair
		// a: tap0 <-> b: tap0 to mirror into.
		_, err = AddVeth(h, VethEnd{Name: "eth0"}, VethEnd{Name: "eth0"}, b)
		Expect(err).NotTo(HaveOccurred())
		_, err = AddVeth(h, VethEnd{Name: "tap0"}, VethEnd{Name: "tap0"}, b)
		Expect(err).NotTo(HaveOccurred())
		hb, err := b.Handle()
		Expect(err).NotTo(HaveOccurred())
		defer hb.Close()
		for _, x := range []struct {
			h    *netlink.Handle
			addr string
		}{{h, "10.0.0.1/24"}, {hb, "10.0.0.2/24"}} {
			l := linkOf(x.h, "eth0")
			Expect(AddAddr(x.h, l.Attrs().Index, netip.MustParsePrefix(x.addr))).To(Succeed())
			Expect(LinkSetUp(x.h, "eth0", true)).To(Succeed())
			Expect(LinkSetUp(x.h, "tap0", true)).To(Succeed())
		}
	})

	It("adds, lists and deletes mirred rules on both hooks", func() {
		Expect(AddMirred(h, Mirred{Dev: "eth0", Hook: HookEgress, Mode: MirredMirror, To: "tap0"})).To(Succeed())
		Expect(AddMirred(h, Mirred{Dev: "eth0", Hook: HookIngress, Mode: MirredMirror, To: "tap0", ToHook: HookEgress})).To(Succeed())
		ms, err := ListMirred(h, "eth0")
		Expect(err).NotTo(HaveOccurred())
		Expect(ms).To(HaveLen(2))
		Expect(ms[0]).To(matchMirred(Mirred{Dev: "eth0", Hook: HookIngress, Mode: MirredMirror, To: "tap0", ToHook: HookEgress, Priority: 2}))
		Expect(ms[1]).To(matchMirred(Mirred{Dev: "eth0", Hook: HookEgress, Mode: MirredMirror, To: "tap0", ToHook: HookEgress, Priority: 1}))

		// An explicit priority already used on the other hook is refused.
		err = AddMirred(h, Mirred{Dev: "eth0", Hook: HookIngress, Mode: MirredRedirect, To: "tap0", Priority: 1})
		Expect(err).To(MatchError(ContainSubstring("other hook")))

		Expect(DeleteMirred(h, ms[0])).To(Succeed())
		ms, err = ListMirred(h, "eth0")
		Expect(err).NotTo(HaveOccurred())
		Expect(ms).To(HaveLen(1))
		Expect(ms[0].Hook).To(Equal(HookEgress))

		Expect(DeleteClsact(h, "eth0")).To(Succeed())
		ms, err = ListMirred(h, "eth0")
		Expect(err).NotTo(HaveOccurred())
		Expect(ms).To(BeEmpty())
		Expect(DeleteClsact(h, "eth0")).To(Succeed(), "deleting twice is not an error")
	})

	It("mirrors real traffic without disturbing it", func() {
		Expect(AddMirred(h, Mirred{Dev: "eth0", Hook: HookEgress, Mode: MirredMirror, To: "tap0"})).To(Succeed())
		tap, err := openTap(b, "tap0")
		Expect(err).NotTo(HaveOccurred())
		defer tap.Close()
		// The original still gets its answer (mirror passes it on)...
		Expect(Ping(a, netip.MustParseAddr("10.0.0.2"), 2*time.Second)).To(Succeed())
		// ...and the copy came out of tap0 into b's tap0.
		_, ok := tap.findEcho(2*time.Second, func(e echo) bool {
			return !e.reply && e.dst.String() == "10.0.0.2" && e.src.String() == "10.0.0.1"
		})
		Expect(ok).To(BeTrue(), "mirrored echo request seen on b/tap0")
		ms, err := ListMirred(h, "eth0")
		Expect(err).NotTo(HaveOccurred())
		Expect(ms).To(HaveLen(1))
		Expect(ms[0].Packets).To(BeNumerically(">", 0))
	})

	It("redirects real traffic away from its path", func() {
		// The ARP request would be redirected as well: give a a static
		// neighbour so the echo request itself goes out.
		hb, err := b.Handle()
		Expect(err).NotTo(HaveOccurred())
		peerMAC := linkOf(hb, "eth0").Attrs().HardwareAddr
		hb.Close()
		Expect(AddNeigh(h, linkOf(h, "eth0").Attrs().Index, netip.MustParseAddr("10.0.0.2"), peerMAC)).To(Succeed())
		Expect(AddMirred(h, Mirred{Dev: "eth0", Hook: HookEgress, Mode: MirredRedirect, To: "tap0"})).To(Succeed())
		tap, err := openTap(b, "tap0")
		Expect(err).NotTo(HaveOccurred())
		defer tap.Close()
		Expect(Ping(a, netip.MustParseAddr("10.0.0.2"), 300*time.Millisecond)).NotTo(Succeed(), "redirected away: b's eth0 never sees it")
		_, ok := tap.findEcho(2*time.Second, func(e echo) bool {
			return !e.reply && e.dst.String() == "10.0.0.2"
		})
		Expect(ok).To(BeTrue(), "redirected echo request seen on b/tap0")
	})

	It("rejects unknown hooks, modes and devices", func() {
		Expect(AddMirred(h, Mirred{Dev: "eth0", Hook: "sideways", Mode: MirredMirror, To: "tap0"})).To(MatchError(ContainSubstring("unknown tc hook")))
		Expect(AddMirred(h, Mirred{Dev: "eth0", Hook: HookIngress, Mode: "copy", To: "tap0"})).To(MatchError(ContainSubstring("unknown mirred action")))
		Expect(AddMirred(h, Mirred{Dev: "eth0", Hook: HookIngress, Mode: MirredMirror, To: "nope"})).To(MatchError(ContainSubstring("find target")))
		Expect(DeleteMirred(h, Mirred{Dev: "eth0", Hook: HookIngress})).To(MatchError(ContainSubstring("priority required")))
	})
})
