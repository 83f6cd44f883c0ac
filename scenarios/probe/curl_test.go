package probe

import (
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseCurl(t *testing.T) {
	tests := []struct {
		args []string
		want CurlRequest
	}{
		{
			args: []string{"curl", "-sS", "--fail", "-o", "/dev/null", "echo-a"},
			want: CurlRequest{HTTP: HTTP{Method: "GET", URL: "echo-a"}, Fail: true, Silent: true, ShowError: true, Output: "/dev/null"},
		},
		{
			args: []string{"-sS", "--fail", "--connect-timeout", "5", "-o", "/dev/null", "echo-a"},
			want: CurlRequest{HTTP: HTTP{Method: "GET", URL: "echo-a", ConnectTimeout: 5 * time.Second}, Fail: true, Silent: true, ShowError: true, Output: "/dev/null"},
		},
		{
			args: []string{"-sSf", "-I", "-m", "2.5", "http://echo-a:8080/public"},
			want: CurlRequest{HTTP: HTTP{Method: "HEAD", URL: "http://echo-a:8080/public", Timeout: 2500 * time.Millisecond}, Fail: true, Silent: true, ShowError: true, Head: true},
		},
		{
			args: []string{"-X", "post", "--max-time=3", "-o/dev/null", "-L", "10.0.0.1/private"},
			want: CurlRequest{HTTP: HTTP{Method: "POST", URL: "10.0.0.1/private", Timeout: 3 * time.Second, FollowRedirects: true, ExpectStatus: AnyStatus}, Output: "/dev/null"},
		},
		{
			args: []string{"-m5", "-H", "Host: echo-a.example", "-H", "X-Test: 1", "-v", "-k", "localhost"},
			want: CurlRequest{HTTP: HTTP{Method: "GET", URL: "localhost", Timeout: 5 * time.Second, Host: "echo-a.example", Header: http.Header{"X-Test": {"1"}}, ExpectStatus: AnyStatus, KeepBody: true, Insecure: true}},
		},
		{
			args: []string{"-sS", "--cacert", "/run/podlab/l/ca.crt", "--resolve", "www.example.com:443:198.18.0.7", "https://www.example.com/"},
			want: CurlRequest{HTTP: HTTP{Method: "GET", URL: "https://www.example.com/", Resolve: map[string][]netip.Addr{"www.example.com:443": {netip.MustParseAddr("198.18.0.7")}}}, Silent: true, ShowError: true, CACert: "/run/podlab/l/ca.crt"},
		},
		{
			args: []string{"-d", "a=1", "--data", "b=2", "echo-a"},
			want: CurlRequest{HTTP: HTTP{Method: "POST", URL: "echo-a", Body: []byte("a=1&b=2"), Header: http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, ExpectStatus: AnyStatus, KeepBody: true}},
		},
	}
	for _, tt := range tests {
		got, err := ParseCurl(tt.args)
		if err != nil {
			t.Errorf("ParseCurl(%q): %v", tt.args, err)
			continue
		}
		w := tt.want
		if w.HTTP.ExpectStatus == 0 && !w.Fail {
			w.HTTP.ExpectStatus = AnyStatus
		}
		if w.Output == "" && !w.Head {
			w.HTTP.KeepBody = true
		}
		if !sameCurl(got, w) {
			t.Errorf("ParseCurl(%q)\n got %+v\nwant %+v", tt.args, got, w)
		}
	}
}

func sameCurl(a, b CurlRequest) bool {
	ah, bh := a.HTTP, b.HTTP
	if len(ah.Header) != len(bh.Header) {
		return false
	}
	for k, v := range ah.Header {
		if !slices.Equal(v, bh.Header[k]) {
			return false
		}
	}
	ah.Header, bh.Header = nil, nil
	if string(ah.Body) != string(bh.Body) {
		return false
	}
	ah.Body, bh.Body = nil, nil
	if fmt.Sprint(ah.Resolve) != fmt.Sprint(bh.Resolve) || ah.Insecure != bh.Insecure || a.CACert != b.CACert {
		return false
	}
	return a.Fail == b.Fail && a.Silent == b.Silent && a.ShowError == b.ShowError && a.Head == b.Head && a.Output == b.Output && ah.Method == bh.Method && ah.URL == bh.URL && ah.Host == bh.Host &&
		ah.ExpectStatus == bh.ExpectStatus && ah.Timeout == bh.Timeout && ah.ConnectTimeout == bh.ConnectTimeout &&
		ah.FollowRedirects == bh.FollowRedirects && ah.KeepBody == bh.KeepBody
}

func TestParseCurlErrors(t *testing.T) {
	tests := map[string][]string{
		"is unknown":         {"--frobnicate", "echo-a"},
		"requires parameter": {"echo-a", "--connect-timeout"},
		"numerical":          {"-m", "soon", "echo-a"},
		"no URL":             {"-sS"},
		"not supported yet":  {"-o", "/tmp/out", "echo-a"},
		"several URLs":       {"echo-a", "echo-b"},
		"bad header":         {"-H", "nocolon", "echo-a"},
	}
	for want, args := range tests {
		_, err := ParseCurl(args)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseCurl(%q) error = %v, want it to mention %q", args, err, want)
		}
	}
}

func TestCurlBadInput(t *testing.T) {
	r := Curl(t.Context(), nil, []string{"curl", "--nope", "x"}, DNSConfig{})
	if r.ExitCode != CurlBadOption || r.Outcome != Error {
		t.Errorf("bad option: exit %d outcome %s", r.ExitCode, r.Outcome)
	}
	// No namespace: refused before any socket is opened.
	r = Curl(t.Context(), nil, []string{"curl", "10.0.0.1"}, DNSConfig{})
	if r.Outcome != Error || !strings.Contains(r.Reason, "namespace") {
		t.Errorf("nil namespace: %s", r)
	}
}

func TestParseURL(t *testing.T) {
	tests := []struct {
		in         string
		host       string
		port       uint16
		path, hdr  string
		code       int
		wantErrSub string
	}{
		{in: "echo-a", host: "echo-a", port: 80, path: "/", hdr: "echo-a"},
		{in: "echo-a:8080/public?x=1", host: "echo-a", port: 8080, path: "/public?x=1", hdr: "echo-a:8080"},
		{in: "http://10.0.0.1/private", host: "10.0.0.1", port: 80, path: "/private", hdr: "10.0.0.1"},
		{in: "HTTP://[fd00::1]:81/", host: "fd00::1", port: 81, path: "/", hdr: "[fd00::1]:81"},
		{in: "https://echo-a", host: "echo-a", port: 443, path: "/", hdr: "echo-a"},
		{in: "https://1.1.1.1:8443/x", host: "1.1.1.1", port: 8443, path: "/x", hdr: "1.1.1.1:8443"},
		{in: "ftp://echo-a", code: 1, wantErrSub: "not supported"},
		{in: "", code: 3, wantErrSub: "no URL"},
		{in: "http://echo-a:99999/", code: 3, wantErrSub: "bad port"},
	}
	for _, tt := range tests {
		got, code, err := parseURL(tt.in)
		if tt.wantErrSub != "" {
			if err == nil || code != tt.code || !strings.Contains(err.Error(), tt.wantErrSub) {
				t.Errorf("parseURL(%q) = %v, code %d, err %v", tt.in, got, code, err)
			}
			continue
		}
		if err != nil || got.host != tt.host || got.port != tt.port || got.path != tt.path || got.hostHeader() != tt.hdr {
			t.Errorf("parseURL(%q) = %+v (host header %q), %v", tt.in, got, got.hostHeader(), err)
		}
	}
}

func TestWriteOut(t *testing.T) {
	r := Result{
		Outcome: Success, HTTPStatus: 200, BodySize: 42, Target: "echo-a",
		ResolveDuration: time.Millisecond, ConnectDuration: 2 * time.Millisecond, Duration: 5 * time.Millisecond,
	}
	r.Remote = mustAP("10.0.2.2:80")
	r.Local = mustAP("10.0.1.2:40000")
	got := writeOut(`%{http_code} %{remote_ip}:%{remote_port} from %{local_ip}:%{local_port} %{size_download}B %{time_connect} 100%% %{nope}\n`, r)
	want := "200 10.0.2.2:80 from 10.0.1.2:40000 42B 0.003000 100% \n"
	if got != want {
		t.Errorf("writeOut = %q, want %q", got, want)
	}
	if got := writeOut("%{http_code}|%{exitcode}", Result{Outcome: Timeout, ExitCode: 28, BodySize: -1}); got != "000|28" {
		t.Errorf("failed transfer: %q", got)
	}
	cr, err := ParseCurl([]string{"-s", "-o", "/dev/null", "-w", "%{http_code}", "echo-a"})
	if err != nil || cr.WriteOut != "%{http_code}" {
		t.Errorf("-w: %+v %v", cr, err)
	}
}
