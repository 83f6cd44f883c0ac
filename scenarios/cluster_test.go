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
	s, err := Parse("c", File{Name: "c.yaml", Data: []byte(fourNodes + "networking:\n  podSubnet: 10.120.0.0/16\n  serviceSubnet: 10.96.0.0/12\n  kubeProxyMode: none\n  ipFamily: ipv4\n  disableDefaultCNI: true\n")})
	if err != nil {
		t.Fatal(err)
	}
	if s.Cluster.PodSubnet != netip.MustParsePrefix("10.120.0.0/16") || len(s.Cluster.NodeSpecs()) != 4 {
		t.Errorf("cluster %+v", s.Cluster)
	}
}

func TestClusterNetworkingRefused(t *testing.T) {
	for _, tc := range []struct{ field, want string }{
		{"  podSubnet: 10.100.0.0/25", "c.yaml:9: networking.podSubnet: 10.100.0.0/25 is too small"},
		{"  podSubnet: 10.100.0.0/23", "c.yaml:9: networking.podSubnet: pod subnet 10.100.0.0/23: room for 2 nodes' /24s, the cluster has 4"},
		{"  podSubnet: fd00::/48", "c.yaml:9: networking.podSubnet: invalid IPv4 prefix"},
		{"  serviceSubnet: 10.0.0.0/8", "c.yaml:9: networking.serviceSubnet: 10.0.0.0/8 is too large"},
		{"  serviceSubnet: 10.200.0.0/29", "c.yaml:9: networking.serviceSubnet: 10.200.0.0/29 is too small"},
		{"  serviceSubnet: 10.244.128.0/20", "c.yaml:9: networking.serviceSubnet: 10.244.128.0/20 overlaps the pod subnet 10.244.0.0/16"},
		{"  serviceSubnet: 172.18.0.0/20", "c.yaml:9: networking.serviceSubnet: 172.18.0.0/20 overlaps the node network"},
		{"  serviceSubnet: fd00::/108", "c.yaml:9: networking.serviceSubnet: invalid IPv4 prefix"},
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

const customService = `
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector:
    app: web
  ports:
  - port: 80
`

func TestClusterServiceSubnetHonoured(t *testing.T) {
	s, err := Parse("c", File{Name: "c.yaml", Data: []byte(fourNodes + "networking:\n  serviceSubnet: 10.200.0.0/16\n" + customService)})
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Cluster.DNSIP(); got != netip.MustParseAddr("10.200.0.10") {
		t.Errorf("DNS IP %s, want 10.200.0.10", got)
	}
	if _, svc := s.Cluster.DNSObjects(); svc.ClusterIP != netip.MustParseAddr("10.200.0.10") {
		t.Errorf("kube-dns ClusterIP %s", svc.ClusterIP)
	}
	a := NewServiceAddresses(s.Cluster)
	for _, o := range s.Objects {
		if svc, ok := o.(*Service); ok {
			got, err := a.Assign(svc)
			if err != nil || !netip.MustParsePrefix("10.200.0.0/16").Contains(got.ClusterIP) || got.ClusterIP == s.Cluster.DNSIP() {
				t.Errorf("ClusterIP of %s: %v, %v", svc.Ref(), got.ClusterIP, err)
			}
		}
	}
}

func TestClusterIPOutsideServiceSubnetRefused(t *testing.T) {
	data := fourNodes + "networking:\n  serviceSubnet: 10.200.0.0/16\n" + strings.Replace(customService, "spec:\n", "spec:\n  clusterIP: 10.96.0.50\n", 1)
	_, err := Parse("c", File{Name: "c.yaml", Data: []byte(data)})
	if err == nil || !strings.Contains(err.Error(), "c.yaml:17: spec.clusterIP: 10.96.0.50 is outside the service range 10.200.0.0/16") {
		t.Errorf("got %v", err)
	}
	// The same address is fine with the default range.
	if _, err := Parse("c", File{Name: "c.yaml", Data: []byte(strings.Replace(data, "  serviceSubnet: 10.200.0.0/16\n", "", 1))}); err != nil {
		t.Errorf("default range: %v", err)
	}
}
