package scenarios

import (
	"net/netip"
	"strings"
	"testing"
)

const fourNodes = `kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
nodes:
- role: control-plane
- role: worker
- role: worker
- role: worker
`

func TestClusterNetworkingHonoured(t *testing.T) {
	s, err := Parse("c", File{Name: "c.yaml", Data: []byte(fourNodes + "networking:\n  podSubnet: 10.100.0.0/16\n  serviceSubnet: 10.96.0.0/12\n  kubeProxyMode: none\n  ipFamily: ipv4\n  disableDefaultCNI: true\n")})
	if err != nil {
		t.Fatal(err)
	}
	if s.Cluster.PodSubnet != netip.MustParsePrefix("10.100.0.0/16") || len(s.Cluster.NodeSpecs()) != 4 {
		t.Errorf("cluster %+v", s.Cluster)
	}
}

func TestClusterNetworkingRefused(t *testing.T) {
	for _, tc := range []struct{ field, want string }{
		{"  podSubnet: 10.100.0.0/25", "c.yaml:9: networking.podSubnet: 10.100.0.0/25 is too small"},
		{"  podSubnet: 10.100.0.0/23", "c.yaml:9: networking.podSubnet: pod subnet 10.100.0.0/23: room for 2 nodes' /24s, the cluster has 4"},
		{"  podSubnet: fd00::/48", "c.yaml:9: networking.podSubnet: invalid IPv4 prefix"},
		{"  serviceSubnet: 10.200.0.0/16", "c.yaml:9: networking.serviceSubnet: not supported yet: serviceSubnet 10.200.0.0/16"},
		{"  ipFamily: ipv6", "c.yaml:9: networking.ipFamily: not supported yet: ipFamily ipv6"},
		{"  ipFamily: dual", "c.yaml:9: networking.ipFamily: not supported yet: ipFamily dual"},
		{"  kubeProxyMode: iptables", "c.yaml:9: networking.kubeProxyMode: not supported: kubeProxyMode iptables"},
	} {
		_, err := Parse("c", File{Name: "c.yaml", Data: []byte(fourNodes + "networking:\n" + tc.field + "\n")})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want %q", tc.field, err, tc.want)
		}
	}
}
