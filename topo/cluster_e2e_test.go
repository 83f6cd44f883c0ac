package topo

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

// tcpEcho starts a TCP listener in ns on port and answers each connection
// with the bytes it receives.
func tcpEcho(ns *Namespace, port int) (net.Listener, error) {
	var l net.Listener
	err := Do(ns, func() error {
		var err error
		l, err = net.Listen("tcp4", fmt.Sprintf(":%d", port))
		return err
	})
	if err != nil {
		return nil, err
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 64)
				n, _ := c.Read(buf)
				_, _ = c.Write(buf[:n])
			}()
		}
	}()
	return l, nil
}

func tcpRoundTrip(from *Namespace, to netip.Addr, port int) error {
	var c net.Conn
	err := Do(from, func() error {
		var err error
		c, err = net.DialTimeout("tcp4", netip.AddrPortFrom(to, uint16(port)).String(), 2*time.Second)
		return err
	})
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("ping")); err != nil {
		return err
	}
	buf := make([]byte, 4)
	if _, err := c.Read(buf); err != nil {
		return err
	}
	if string(buf) != "ping" {
		return fmt.Errorf("echo returned %q", buf)
	}
	return nil
}

var _ = Describe("Cluster with --datapath=none", Ordered, func() {
	var c *Cluster
	ctx := context.Background()

	BeforeAll(func() {
		requireRoot()
		var err error
		c, err = NewCluster(ClusterConfig{Lab: "tclu", Nodes: DefaultNodes(2)})
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func() {
			Expect(c.Down()).To(Succeed())
			left, _ := ListNamespaces("tclu")
			Expect(left).To(BeEmpty())
		})
		Expect(c.Up(ctx, nil)).To(Succeed())
		for _, n := range c.Nodes {
			for i := range 2 {
				_, err := c.AddPod(ctx, PodSpec{Namespace: "default", Name: fmt.Sprintf("p-%s-%d", n.Name, i), Node: n.Name})
				Expect(err).NotTo(HaveOccurred())
			}
		}
	})

	It("gives every pod a /32 from its node's CIDR", func() {
		for _, p := range c.Pods() {
			Expect(p.Node.PodCIDR.Contains(p.IP)).To(BeTrue(), p.Key())
			Expect(len(p.HostVeth)).To(BeNumerically("<=", MaxIfName))
		}
	})

	It("gives pod eth0 no IPv6 address, so pods send no IPv6 of their own", func() {
		for _, p := range c.Pods() {
			Expect(Do(p.NS, func() error {
				addrs, err := netlink.AddrList(&netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: p.Ifindex}}, netlink.FAMILY_V6)
				if err != nil {
					return err
				}
				if len(addrs) > 0 {
					return fmt.Errorf("eth0 has IPv6 addresses %v", addrs)
				}
				return nil
			})).To(Succeed(), p.Key())
		}
	})

	It("connects every pod to every other pod over TCP, intra- and cross-node", func() {
		pods := c.Pods()
		Expect(pods).To(HaveLen(6))
		for _, dst := range pods {
			l, err := tcpEcho(dst.NS, 7000)
			Expect(err).NotTo(HaveOccurred())
			for _, src := range pods {
				if src == dst {
					continue
				}
				Expect(tcpRoundTrip(src.NS, dst.IP, 7000)).To(Succeed(), "%s -> %s", src.Key(), dst.Key())
			}
			l.Close()
		}
	})

	It("answers ICMP echo between every pair of pods", func() {
		pods := c.Pods()
		for _, dst := range pods {
			for _, src := range pods {
				if src == dst {
					continue
				}
				Expect(Ping(src.NS, dst.IP, time.Second)).To(Succeed(), "%s -> %s", src.Key(), dst.Key())
			}
		}
	})

	It("reaches the world's hosts from a pod", func() {
		p := c.Pods()[0]
		Expect(Ping(p.NS, WorldHosts["one.one.one.one"], time.Second)).To(Succeed())
	})

	It("deletes a pod and frees its address", func() {
		p := c.Pods()[0]
		used, _, _ := c.IPAMStatus(p.Node.Name)
		Expect(c.DeletePod(ctx, p.Namespace, p.Name)).To(Succeed())
		after, _, _ := c.IPAMStatus(p.Node.Name)
		Expect(after).To(Equal(used - 1))
		Expect(p.NS.Path()).NotTo(BeAnExistingFile())
	})

	It("gives AddPods' pods their addresses in spec order, whatever order the workers run in", func() {
		node := c.Nodes[2]
		var specs []PodSpec
		for i := range 12 {
			specs = append(specs, PodSpec{Namespace: "order", Name: fmt.Sprintf("o-%02d", i), Node: node.Name})
		}
		pods, err := c.AddPods(ctx, specs, 6)
		Expect(err).NotTo(HaveOccurred())
		Expect(pods).To(HaveLen(12))
		for i := 1; i < len(pods); i++ {
			Expect(pods[i].IP.Less(pods[i-1].IP)).To(BeFalse(), "%s %s after %s %s", pods[i].Name, pods[i].IP, pods[i-1].Name, pods[i-1].IP)
			Expect(pods[i].EndpointID).To(BeNumerically(">", pods[i-1].EndpointID))
		}
	})
})
