package controlplane

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"
)

// Without nodes nothing is programmed, but the control plane keeps what a
// Service asks for and shows it as `kubectl get services` would.
func TestServiceStatuses(t *testing.T) {
	cp := New("tstatus", Options{})
	defer cp.Close()
	lb := Service{Namespace: "default", Name: "web", Type: "LoadBalancer", ClusterIP: netip.MustParseAddr("10.96.0.20"),
		Ports:           []ServicePort{{Proto: 6, Port: 80, NodePort: 30080}},
		LoadBalancerIPs: []netip.Addr{netip.MustParseAddr("172.18.255.200")},
		ExternalIPs:     []netip.Addr{netip.MustParseAddr("172.18.255.100")},
		Announce:        []L2Announcement{{IP: netip.MustParseAddr("172.18.255.200"), Nodes: []string{"kind-worker"}}}}
	pending := Service{Namespace: "default", Name: "taken", Type: "LoadBalancer", ClusterIP: netip.MustParseAddr("10.96.0.21"),
		Ports: []ServicePort{{Proto: 17, Port: 53, NodePort: 30053}}, PendingReason: "172.18.255.200 is already used by Service/default/web"}
	plain := Service{Namespace: "default", Name: "plain", ClusterIP: netip.MustParseAddr("10.96.0.22"), Ports: []ServicePort{{Proto: 6, Port: 80}}}
	for _, s := range []Service{lb, pending, plain} {
		if err := cp.UpsertService(s); err != nil {
			t.Fatal(err)
		}
	}
	bad := lb
	bad.Name, bad.Announce = "bad", []L2Announcement{{IP: netip.MustParseAddr("172.18.255.9")}}
	if err := cp.UpsertService(bad); err == nil || !strings.Contains(err.Error(), "neither a LoadBalancer nor an external IP") {
		t.Fatalf("announcing a foreign address: %v", err)
	}
	var b bytes.Buffer
	if err := WriteServiceStatuses(&b, cp.ServiceStatuses()); err != nil {
		t.Fatal(err)
	}
	want := `NAMESPACE   NAME    TYPE           CLUSTER-IP   EXTERNAL-IP                     PORT(S)        L2 ANNOUNCER
default     taken   LoadBalancer   10.96.0.21   <pending>                       53:30053/UDP   -
default     web     LoadBalancer   10.96.0.20   172.18.255.200,172.18.255.100   80:30080/TCP   172.18.255.200 -
default/taken is <pending>: 172.18.255.200 is already used by Service/default/web
`
	if got := b.String(); got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
	rows, err := cp.ServiceTable()
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, r := range rows {
		types = append(types, r.Frontend+" "+r.Type)
	}
	got := strings.Join(types, "\n")
	for _, w := range []string{"172.18.255.200:80/TCP LoadBalancer", "172.18.255.100:80/TCP ExternalIPs", "0.0.0.0:30080/TCP NodePort"} {
		if !strings.Contains(got, w) {
			t.Errorf("service table lacks %q:\n%s", w, got)
		}
	}
	// Nothing with external addresses: nothing written.
	b.Reset()
	if err := WriteServiceStatuses(&b, []ServiceStatus{{Name: "plain", Type: "ClusterIP"}}); err != nil || b.Len() != 0 {
		t.Fatalf("plain services only: %q %v", b.String(), err)
	}
}
