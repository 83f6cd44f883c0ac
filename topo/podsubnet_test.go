package topo

import (
	"net/netip"
	"strings"
	"testing"
)

func TestClusterPodSubnet(t *testing.T) {
	c, err := NewCluster(ClusterConfig{Lab: "enps", Nodes: DefaultNodes(2), PodSubnet: netip.MustParsePrefix("10.100.0.0/16")})
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"10.100.0.0/24", "10.100.1.0/24", "10.100.2.0/24"} {
		if got := c.Nodes[i].PodCIDR.String(); got != want {
			t.Errorf("node %d: %s, want %s", i, got, want)
		}
	}
	c, err = NewCluster(ClusterConfig{Lab: "enps", Nodes: DefaultNodes(1)})
	if err != nil || c.Nodes[1].PodCIDR != netip.MustParsePrefix("10.244.1.0/24") {
		t.Errorf("default: %v %v", err, c)
	}
	_, err = NewCluster(ClusterConfig{Lab: "enps", Nodes: DefaultNodes(2), PodSubnet: netip.MustParsePrefix("10.100.0.0/23")})
	if err == nil || !strings.Contains(err.Error(), "room for 2 nodes") {
		t.Errorf("small subnet: %v", err)
	}
}
