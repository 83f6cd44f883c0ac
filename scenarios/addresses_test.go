package scenarios

import (
	"net/netip"
	"strings"
	"testing"
)

func TestServiceAddresses(t *testing.T) {
	s, err := Builtin("nodeport")
	if err != nil {
		t.Fatal(err)
	}
	a := NewServiceAddresses(nil)
	_, dns := ClusterDNSObjects()
	if got, err := a.Assign(dns); err != nil || got.ClusterIP != ClusterDNSIP {
		t.Fatalf("dns %v %v", got, err)
	}
	web, err := a.Assign(s.Services[0])
	if err != nil {
		t.Fatal(err)
	}
	if !DefaultServiceCIDR.Contains(web.ClusterIP) || web.ClusterIP == ClusterDNSIP || web.NodePorts[0] != 30080 {
		t.Errorf("web %+v", web)
	}
	// Same Service, same answer; a fresh allocator gives the same address.
	again, _ := a.Assign(s.Services[0])
	other, _ := NewServiceAddresses(nil).Assign(s.Services[0])
	if again.ClusterIP != web.ClusterIP || other.ClusterIP != web.ClusterIP {
		t.Errorf("not stable: %v %v %v", web, again, other)
	}
	local, err := a.Assign(s.Services[1])
	if err != nil || local.NodePorts[0] != 30081 || local.ClusterIP == web.ClusterIP {
		t.Errorf("web-local %+v %v", local, err)
	}
	// A conflicting explicit node port is refused and leaves nothing behind.
	clash := *s.Services[1]
	clash.Meta.Name = "clash"
	clash.Ports = []ServicePort{{Port: 80, Protocol: "TCP", NodePort: 30080}}
	if _, err := a.Assign(&clash); err == nil || !strings.Contains(err.Error(), "node port 30080/TCP is taken by Service/default/web") {
		t.Errorf("got %v", err)
	}
	// Allocated node ports are in range; headless Services get no IP.
	auto := clash
	auto.Meta.Name = "auto"
	auto.Ports = []ServicePort{{Port: 80, Protocol: "TCP"}}
	got, err := a.Assign(&auto)
	if err != nil || got.NodePorts[0] < NodePortMin || got.NodePorts[0] > NodePortMax {
		t.Errorf("auto %+v %v", got, err)
	}
	headless := Service{Meta: ObjectMeta{Name: "h", Namespace: "default"}, Headless: true, Ports: []ServicePort{{Port: 1}}}
	if got, _ := a.Assign(&headless); got.ClusterIP.IsValid() {
		t.Errorf("headless got %v", got.ClusterIP)
	}
	// Explicit ClusterIPs are honoured, and collisions reported.
	fixed := Service{Meta: ObjectMeta{Name: "f", Namespace: "default"}, ClusterIP: netip.MustParseAddr("10.96.0.10")}
	if _, err := a.Assign(&fixed); err == nil || !strings.Contains(err.Error(), "taken by Service/kube-system/kube-dns") {
		t.Errorf("got %v", err)
	}
	a.Release(s.Services[0].Ref())
	fixed.ClusterIP = web.ClusterIP
	if got, err := a.Assign(&fixed); err != nil || got.ClusterIP != web.ClusterIP {
		t.Errorf("after release: %v %v", got, err)
	}
}
