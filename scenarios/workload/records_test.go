package workload

import (
	"net/netip"
	"slices"
	"testing"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/podlab/podlab/topo"
)

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

func TestRecordsLookup(t *testing.T) {
	r := NewRecords("")
	r.SetService("default", "echo-a", netip.MustParseAddr("10.96.0.20"))
	r.SetService("kube-system", "kube-dns", netip.MustParseAddr("10.96.0.10"))
	r.SetHeadlessService("default", "echo-headless", addrs("10.244.1.5", "10.244.2.7"))
	r.SetHeadlessService("default", "empty-headless", nil)
	r.AddWorldHosts(DefaultWorldHosts())

	tests := []struct {
		name  string
		qtype dnsmessage.Type
		rcode dnsmessage.RCode
		want  []netip.Addr
		auth  bool
	}{
		{"echo-a.default.svc.cluster.local", dnsmessage.TypeA, dnsmessage.RCodeSuccess, addrs("10.96.0.20"), true},
		{"ECHO-A.Default.SVC.cluster.local.", dnsmessage.TypeA, dnsmessage.RCodeSuccess, addrs("10.96.0.20"), true},
		{"echo-a.default.svc.cluster.local", dnsmessage.TypeAAAA, dnsmessage.RCodeSuccess, nil, true},
		{"echo-a.default.svc.cluster.local", dnsmessage.TypeTXT, dnsmessage.RCodeSuccess, nil, true},
		{"kube-dns.kube-system.svc.cluster.local", dnsmessage.TypeA, dnsmessage.RCodeSuccess, addrs("10.96.0.10"), true},
		{"echo-headless.default.svc.cluster.local", dnsmessage.TypeA, dnsmessage.RCodeSuccess, addrs("10.244.1.5", "10.244.2.7"), true},
		{"empty-headless.default.svc.cluster.local", dnsmessage.TypeA, dnsmessage.RCodeSuccess, nil, true},
		{"echo-a.other.svc.cluster.local", dnsmessage.TypeA, dnsmessage.RCodeNameError, nil, true},
		{"nosuch.default.svc.cluster.local", dnsmessage.TypeA, dnsmessage.RCodeNameError, nil, true},
		{"x.echo-a.default.svc.cluster.local", dnsmessage.TypeA, dnsmessage.RCodeNameError, nil, true},
		{"default.svc.cluster.local", dnsmessage.TypeA, dnsmessage.RCodeSuccess, nil, true},
		{"nons.svc.cluster.local", dnsmessage.TypeA, dnsmessage.RCodeNameError, nil, true},
		{"svc.cluster.local", dnsmessage.TypeA, dnsmessage.RCodeSuccess, nil, true},
		{"cluster.local", dnsmessage.TypeSOA, dnsmessage.RCodeSuccess, nil, true},
		{"echo-a.cluster.local", dnsmessage.TypeA, dnsmessage.RCodeNameError, nil, true},
		{"10-244-1-5.default.pod.cluster.local", dnsmessage.TypeA, dnsmessage.RCodeNameError, nil, true},
		{"one.one.one.one", dnsmessage.TypeA, dnsmessage.RCodeSuccess, addrs("1.1.1.1"), false},
		{"One.One.One.One.", dnsmessage.TypeA, dnsmessage.RCodeSuccess, addrs("1.1.1.1"), false},
		{"one.one.one.one", dnsmessage.TypeAAAA, dnsmessage.RCodeSuccess, nil, false},
		{"example.com", dnsmessage.TypeA, dnsmessage.RCodeSuccess, []netip.Addr{topo.WorldHosts["example.com"]}, false},
		{"echo-a", dnsmessage.TypeA, dnsmessage.RCodeNameError, nil, false},
		{"nosuch.example.org", dnsmessage.TypeA, dnsmessage.RCodeNameError, nil, false},
		// search-path expansions of a world name do not exist
		{"one.one.one.one.default.svc.cluster.local", dnsmessage.TypeA, dnsmessage.RCodeNameError, nil, true},
	}
	for _, tt := range tests {
		a := r.Lookup(tt.name, tt.qtype)
		if a.RCode != tt.rcode || !slices.Equal(a.Addrs, tt.want) || a.Authoritative != tt.auth {
			t.Errorf("Lookup(%q, %v) = %v %v auth=%v, want %v %v auth=%v", tt.name, tt.qtype, a.RCode, a.Addrs, a.Authoritative, tt.rcode, tt.want, tt.auth)
		}
	}
}

func TestRecordsUpdates(t *testing.T) {
	r := NewRecords("example.internal.")
	if r.Domain() != "example.internal" {
		t.Fatalf("Domain() = %q", r.Domain())
	}
	name := r.ServiceName("prod", "web")
	if name != "web.prod.svc.example.internal" {
		t.Fatalf("ServiceName = %q", name)
	}
	if a := r.Lookup(name, dnsmessage.TypeA); a.RCode != dnsmessage.RCodeNameError {
		t.Fatalf("before SetService: %v", a.RCode)
	}
	r.SetService("prod", "web", netip.MustParseAddr("10.96.1.1"))
	if a := r.Lookup(name, dnsmessage.TypeA); !slices.Equal(a.Addrs, addrs("10.96.1.1")) {
		t.Fatalf("after SetService: %v", a.Addrs)
	}
	// A service turning headless answers with its pods.
	r.SetHeadlessService("prod", "web", addrs("10.244.0.9"))
	if a := r.Lookup(name, dnsmessage.TypeA); !slices.Equal(a.Addrs, addrs("10.244.0.9")) {
		t.Fatalf("after SetHeadlessService: %v", a.Addrs)
	}
	if a := r.Lookup("prod.svc.example.internal", dnsmessage.TypeA); a.RCode != dnsmessage.RCodeSuccess {
		t.Fatalf("namespace with a service: %v", a.RCode)
	}
	r.DeleteService("prod", "web")
	r.DeleteService("prod", "web") // idempotent
	if a := r.Lookup(name, dnsmessage.TypeA); a.RCode != dnsmessage.RCodeNameError {
		t.Fatalf("after DeleteService: %v", a.RCode)
	}
	if a := r.Lookup("prod.svc.example.internal", dnsmessage.TypeA); a.RCode != dnsmessage.RCodeNameError {
		t.Fatalf("namespace without services: %v", a.RCode)
	}
	// Answers are copies: mutating one does not change the table.
	r.SetWorldHost("w.test", addrs("192.0.2.1")...)
	a := r.Lookup("w.test", dnsmessage.TypeA)
	a.Addrs[0] = netip.MustParseAddr("192.0.2.99")
	if b := r.Lookup("w.test", dnsmessage.TypeA); b.Addrs[0] != netip.MustParseAddr("192.0.2.1") {
		t.Fatalf("table mutated through an answer: %v", b.Addrs)
	}
	r.SetWorldHost("w.test")
	if a := r.Lookup("w.test", dnsmessage.TypeA); a.RCode != dnsmessage.RCodeNameError {
		t.Fatalf("after removing world host: %v", a.RCode)
	}
}

func TestRecordsPods(t *testing.T) {
	r := NewRecords("")
	r.SetPodRecords(true)
	if a := r.Lookup("10-244-1-5.default.pod.cluster.local", dnsmessage.TypeA); !slices.Equal(a.Addrs, addrs("10.244.1.5")) {
		t.Fatalf("pod record: %v %v", a.RCode, a.Addrs)
	}
	for _, bad := range []string{"10-244-1.default.pod.cluster.local", "a-b-c-d.default.pod.cluster.local", "10-244-1-500.default.pod.cluster.local"} {
		if a := r.Lookup(bad, dnsmessage.TypeA); a.RCode != dnsmessage.RCodeNameError {
			t.Errorf("%s: %v, want NXDOMAIN", bad, a.RCode)
		}
	}
	if a := r.Lookup("default.pod.cluster.local", dnsmessage.TypeA); a.RCode != dnsmessage.RCodeSuccess {
		t.Errorf("pod namespace: %v", a.RCode)
	}
}

func TestKindForImage(t *testing.T) {
	tests := map[string]Kind{
		"docker.io/cilium/json-mock:1.0":       KindHTTPEcho,
		"cilium/json-mock@sha256:abc":          KindHTTPEcho,
		"docker.io/byrnedo/alpine-curl:0.1.8":  KindClient,
		"curlimages/curl":                      KindClient,
		"busybox":                              KindClient,
		"registry.k8s.io/coredns/coredns:v1.1": KindDNS,
		"localhost:5000/nginx":                 KindHTTPEcho,
	}
	for img, want := range tests {
		got, err := KindForImage(img)
		if err != nil || got != want {
			t.Errorf("KindForImage(%q) = %q, %v; want %q", img, got, err, want)
		}
	}
	if _, err := KindForImage("quay.io/acme/secret-sauce:2"); err == nil {
		t.Error("unknown image accepted")
	}
	if k, err := ParseKind("dns"); err != nil || k != KindDNS {
		t.Errorf("ParseKind(dns) = %q, %v", k, err)
	}
	if _, err := ParseKind("mystery"); err == nil {
		t.Error("ParseKind accepted an unknown workload")
	}
}

func TestStatusFor(t *testing.T) {
	for path, want := range map[string]int{"/": 200, "/public": 200, "/private": 200, "/status/404": 404, "/status/503/": 503, "/status/abc": 200, "/status/42": 200} {
		if got := statusFor(path); got != want {
			t.Errorf("statusFor(%q) = %d, want %d", path, got, want)
		}
	}
}
