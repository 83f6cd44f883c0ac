package controlplane

import (
	"context"
	"os"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/podlab/podlab/topo"
)

// upLab brings up a lab of a control-plane node and two workers named lab,
// with a control plane of opts. Its teardown (control plane, cluster, and
// the check that no namespace and no BPF pin of the lab is left) is a
// DeferCleanup of the calling node, so it runs on failure too.
func upLab(ctx context.Context, lab string, opts Options) (*topo.Cluster, *ControlPlane) {
	cp := New(lab, opts)
	c, err := topo.NewCluster(topo.ClusterConfig{Lab: lab, Nodes: topo.DefaultNodes(2), Hooks: []topo.ClusterHook{cp}})
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() {
		Expect(cp.Close()).To(Succeed())
		Expect(c.Down()).To(Succeed())
		left, _ := topo.ListNamespaces(lab)
		Expect(left).To(BeEmpty())
		_, err := os.Stat(topo.BPFDir(lab))
		Expect(os.IsNotExist(err)).To(BeTrue(), "BPF pins left in %s", topo.BPFDir(lab))
	})
	Expect(c.Up(ctx, nil)).To(Succeed())
	return c, cp
}
