package httpproxy

import (
	"bufio"
	"bytes"
	"net/http"
	"strings"
	"testing"

	"github.com/podlab/podlab/datapath/policy"
)

func TestForwardedUnchanged(t *testing.T) {
	in := "POST /v1/request-landing HTTP/1.1\r\nHost: deathstar\r\nx-MiXeD-Case: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n" +
		"GET /next HTTP/1.1\r\nHost: deathstar\r\nContent-Length: 3\r\n\r\nabc"
	br := bufio.NewReader(strings.NewReader(in))
	var out bytes.Buffer
	for i := 0; i < 2; i++ {
		head, req, err := readHead(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		out.Write(head)
		if err := copyBody(&out, br, req.Header, req.ContentLength, req.TransferEncoding, false); err != nil {
			t.Fatal(err)
		}
	}
	if out.String() != in {
		t.Errorf("forwarded\n%q\nwant\n%q", out.String(), in)
	}
}

func TestCollectSides(t *testing.T) {
	l7 := &policy.L7Rules{HTTP: []policy.HTTPRule{{Method: "GET", Path: "/public"}}}
	pol := policy.EndpointPolicy{IngressEnforced: true, Entries: []policy.Entry{
		{Direction: policy.Ingress, Identity: 1000, Proto: policy.ProtoTCP, PortLo: 80, PortHi: 80, L7: l7},
		{Direction: policy.Ingress, Identity: 2000, Proto: policy.ProtoTCP, PortLo: 80, PortHi: 80},
	}}
	get := &policy.HTTPRequest{Method: "GET", Path: "/public", Header: http.Header{}}
	priv := &policy.HTTPRequest{Method: "GET", Path: "/private", Header: http.Header{}}

	s := collect(pol, policy.Ingress, 1000, 80)
	if ok, _ := s.allows(get); !ok {
		t.Error("identity 1000: GET /public denied")
	}
	if ok, _ := s.allows(priv); ok {
		t.Error("identity 1000: GET /private allowed")
	}
	// An L4-only allow for the peer: the proxy lets everything through.
	s = collect(pol, policy.Ingress, 2000, 80)
	if ok, _ := s.allows(priv); !ok {
		t.Error("identity 2000 (L4 allow): GET /private denied")
	}
	// Another port or a direction that is not enforced: no L7 rules.
	if s = collect(pol, policy.Ingress, 1000, 81); s.applies() {
		t.Error("port 81 has no L7 rules")
	}
	if s = collect(pol, policy.Egress, 1000, 80); s.applies() {
		t.Error("egress is not enforced")
	}
}

func TestDeniedAnswer(t *testing.T) {
	var b bytes.Buffer
	req, _ := http.NewRequest("PUT", "http://deathstar/v1/exhaust-port", nil)
	if err := writeDenied(&b, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(&b), req)
	if err != nil {
		t.Fatal(err)
	}
	var body bytes.Buffer
	_, _ = body.ReadFrom(resp.Body)
	if resp.StatusCode != 403 || body.String() != "Access denied\r\n" {
		t.Errorf("got %d %q", resp.StatusCode, body.String())
	}
}
