package identity

import (
	"net/netip"
	"testing"
)

func TestLabelsCanonical(t *testing.T) {
	tests := []struct {
		in   string
		want string
	}{
		{"k8s:io.kubernetes.pod.namespace=default,k8s:app=echo-a", "k8s:app=echo-a,k8s:io.kubernetes.pod.namespace=default"},
		{"app=x", "unspec:app=x"},
		{"reserved:host", "reserved:host"},
		{"k8s:a=1,k8s:a=2", "k8s:a=2"},         // last wins
		{"k8s:a=1,any:a=1", "any:a=1,k8s:a=1"}, // same key, sources sorted
		{"cidr:10.0.0.0/8,reserved:world", "cidr:10.0.0.0/8,reserved:world"},
		{"", ""},
	}
	for _, tt := range tests {
		ls, err := ParseLabels(tt.in)
		if err != nil {
			t.Fatalf("ParseLabels(%q): %v", tt.in, err)
		}
		if got := ls.String(); got != tt.want {
			t.Errorf("ParseLabels(%q) = %q, want %q", tt.in, got, tt.want)
		}
		again, err := ParseLabels(ls.String())
		if err != nil || !again.Equal(ls) {
			t.Errorf("round trip of %q: %v %v", tt.in, again, err)
		}
	}
	for _, bad := range []string{"k8s:", ":x", "a,,b"} {
		if _, err := ParseLabels(bad); err == nil {
			t.Errorf("ParseLabels(%q): no error", bad)
		}
	}
}

func TestK8sLabels(t *testing.T) {
	ls := K8sLabels("default", map[string]string{"name": "echo-a"}, map[string]string{"team": "a"}, "echo")
	want := "k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name=default," +
		"k8s:io.cilium.k8s.namespace.labels.team=a," +
		"k8s:io.cilium.k8s.policy.cluster=default," +
		"k8s:io.cilium.k8s.policy.serviceaccount=echo," +
		"k8s:io.kubernetes.pod.namespace=default," +
		"k8s:name=echo-a"
	if ls.String() != want {
		t.Errorf("K8sLabels:\n got %s\nwant %s", ls, want)
	}
	if v, ok := ls.Lookup(SourceAny, "name"); !ok || v != "echo-a" {
		t.Errorf("Lookup(any, name) = %q %v", v, ok)
	}
	if _, ok := ls.Lookup(SourceReserved, "name"); ok {
		t.Errorf("Lookup(reserved, name) found a k8s label")
	}
	noSA := K8sLabels("kube-system", map[string]string{"k8s-app": "kube-dns"}, nil, "")
	if _, ok := noSA.Lookup(SourceK8s, ServiceAccountKey); ok {
		t.Errorf("service account label without a service account: %s", noSA)
	}
}

func TestAllocator(t *testing.T) {
	a := NewAllocator()
	echo := K8sLabels("default", map[string]string{"name": "echo-a"}, nil, "")
	client := K8sLabels("default", map[string]string{"name": "pod-to-a"}, nil, "")

	id1, err := a.Allocate(echo)
	if err != nil || id1 != MinUser {
		t.Fatalf("first identity = %d, %v; want %d", id1, err, MinUser)
	}
	id2, _ := a.Allocate(echo)
	if id2 != id1 || a.References(id1) != 2 {
		t.Fatalf("same labels: %d (refs %d), want %d with 2 refs", id2, a.References(id1), id1)
	}
	id3, _ := a.Allocate(client)
	if id3 != MinUser+1 {
		t.Fatalf("second label set = %d, want %d", id3, MinUser+1)
	}
	if got, ok := a.LookupLabels(client); !ok || got != id3 {
		t.Errorf("LookupLabels = %d %v", got, ok)
	}
	if idn, ok := a.Lookup(id1); !ok || !idn.Labels.Equal(echo) {
		t.Errorf("Lookup(%d) = %v %v", id1, idn, ok)
	}

	// Reference counting: released only by the last Release.
	if last, err := a.Release(id1); err != nil || last {
		t.Fatalf("first release: last=%v err=%v", last, err)
	}
	if last, err := a.Release(id1); err != nil || !last {
		t.Fatalf("second release: last=%v err=%v", last, err)
	}
	if _, ok := a.Lookup(id1); ok {
		t.Errorf("identity %d still known after its last release", id1)
	}
	if _, err := a.Release(id1); err == nil {
		t.Errorf("release of a released identity: no error")
	}

	// A new label set does not take the number echo-a had; echo-a gets it back.
	other, _ := a.Allocate(K8sLabels("default", map[string]string{"name": "other"}, nil, ""))
	if other == id1 {
		t.Errorf("new label set reused the released number %d", id1)
	}
	back, _ := a.Allocate(echo)
	if back != id1 {
		t.Errorf("returning label set got %d, want its old %d", back, id1)
	}

	// Reserved.
	if id, _ := a.Allocate(Labels{{Source: SourceReserved, Key: "host"}}); id != Host {
		t.Errorf("reserved:host = %d", id)
	}
	if last, err := a.Release(World); last || err != nil {
		t.Errorf("release of world: %v %v", last, err)
	}
	if _, err := a.Allocate(nil); err == nil {
		t.Errorf("empty label set: no error")
	}
}

func TestAllocatorCIDR(t *testing.T) {
	a := NewAllocator()
	p := netip.MustParsePrefix("20.1.1.1/32")
	id, err := a.AllocateCIDR(p)
	if err != nil || id != LocalScope|1 || !id.IsLocal() {
		t.Fatalf("AllocateCIDR = %#x, %v", id, err)
	}
	if id2, _ := a.AllocateCIDR(netip.MustParsePrefix("20.1.1.1/32")); id2 != id {
		t.Errorf("same prefix: %d != %d", id2, id)
	}
	if w, _ := a.AllocateCIDR(netip.MustParsePrefix("0.0.0.0/0")); w != World {
		t.Errorf("0.0.0.0/0 = %d, want world", w)
	}
	if _, err := a.AllocateCIDR(netip.MustParsePrefix("fd00::/8")); err == nil {
		t.Errorf("IPv6 prefix: no error")
	}
	idn, ok := a.Lookup(id)
	if !ok || idn.Prefix != p || idn.Labels.String() != "cidr:20.1.1.1/32,reserved:world" {
		t.Errorf("Lookup = %+v", idn)
	}
	tab := a.Snapshot()
	if got, ok := tab.Lookup(id); !ok || !got.IsCIDR() {
		t.Errorf("snapshot lacks the CIDR identity: %+v", got)
	}
	if len(tab.All()) != 8 {
		t.Errorf("snapshot has %d identities, want 7 reserved + 1", len(tab.All()))
	}
	_, _ = a.ReleaseCIDR(p)
	if last, err := a.ReleaseCIDR(p); !last || err != nil {
		t.Errorf("last ReleaseCIDR: %v %v", last, err)
	}
	if _, ok := a.Lookup(id); ok {
		t.Errorf("CIDR identity survived its release")
	}
}

func TestTableSorted(t *testing.T) {
	a := NewAllocator()
	_, _ = a.AllocateCIDR(netip.MustParsePrefix("10.0.0.0/8"))
	_, _ = a.Allocate(K8sLabels("a", nil, nil, ""))
	ids := a.Snapshot().All()
	for i := 1; i < len(ids); i++ {
		if ids[i-1].ID >= ids[i].ID {
			t.Fatalf("table not sorted at %d: %d then %d", i, ids[i-1].ID, ids[i].ID)
		}
	}
	if ids[0].ID != Host || ids[len(ids)-1].ID != LocalScope|1 {
		t.Errorf("table = %v", ids)
	}
}

func TestReservedNames(t *testing.T) {
	want := map[ID]string{1: "host", 2: "world", 3: "unmanaged", 4: "health", 5: "init", 6: "remote-node", 7: "kube-apiserver"}
	for id, n := range want {
		if ReservedName(id) != n {
			t.Errorf("ReservedName(%d) = %q, want %q", id, ReservedName(id), n)
		}
	}
}

func BenchmarkAllocate(b *testing.B) {
	a := NewAllocator()
	ls := K8sLabels("default", map[string]string{"app": "x"}, nil, "")
	for b.Loop() {
		id, _ := a.Allocate(ls)
		_, _ = a.Release(id)
	}
}
