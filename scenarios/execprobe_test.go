package scenarios

import (
	"strings"
	"testing"
	"time"
)

func TestParseExecProbe(t *testing.T) {
	cases := []struct {
		cmd  []string
		want Check
	}{
		{
			[]string{"curl", "-sS", "--fail", "-o", "/dev/null", "localhost"},
			Check{Protocol: "HTTP", Method: "GET", Host: "localhost", Port: 80, Path: "/", FailOnHTTPError: true, ExpectSuccess: true},
		},
		{
			[]string{"curl", "-sS", "--fail", "-o", "/dev/null", "echo-a"},
			Check{Protocol: "HTTP", Method: "GET", Host: "echo-a", Port: 80, Path: "/", FailOnHTTPError: true, ExpectSuccess: true},
		},
		{
			[]string{"ash", "-c", "! curl -sS --fail --connect-timeout 5 -o /dev/null echo-a"},
			Check{Protocol: "HTTP", Method: "GET", Host: "echo-a", Port: 80, Path: "/", FailOnHTTPError: true, ConnectTimeout: 5 * time.Second},
		},
		{
			[]string{"curl", "-sS", "--fail", "--connect-timeout", "5", "-o", "/dev/null", "echo-a:8080/public"},
			Check{Protocol: "HTTP", Method: "GET", Host: "echo-a", Port: 8080, Path: "/public", FailOnHTTPError: true, ExpectSuccess: true, ConnectTimeout: 5 * time.Second},
		},
		{
			[]string{"/bin/sh", "-c", "! curl -sS --fail -o /dev/null -I -m 3 http://10.96.0.20:81/x?y=1"},
			Check{Protocol: "HTTP", Method: "HEAD", Host: "10.96.0.20", Port: 81, Path: "/x?y=1", FailOnHTTPError: true, MaxTime: 3 * time.Second},
		},
		{
			// Combined short options, an option glued to its value, --opt=value.
			[]string{"curl", "-sSfo", "/dev/null", "-m2", "--connect-timeout=1.5", "-L", "echo-b.other.svc.cluster.local/private"},
			Check{Protocol: "HTTP", Method: "GET", Host: "echo-b.other.svc.cluster.local", Port: 80, Path: "/private", FailOnHTTPError: true, FollowRedirects: true, ExpectSuccess: true, MaxTime: 2 * time.Second, ConnectTimeout: 1500 * time.Millisecond},
		},
		{
			// Without --fail an HTTP error status still counts as success.
			[]string{"curl", "-s", "-X", "post", "web"},
			Check{Protocol: "HTTP", Method: "POST", Host: "web", Port: 80, Path: "/", ExpectSuccess: true},
		},
		{
			[]string{"curl", "-sSk", "--fail", "--connect-timeout", "5", "-o", "/dev/null", "-H", "X-A: b", "https://1.1.1.1"},
			Check{Protocol: "HTTP", Method: "GET", Host: "1.1.1.1", Port: 443, Path: "/", TLS: true, FailOnHTTPError: true, ExpectSuccess: true, ConnectTimeout: 5 * time.Second},
		},
		{
			[]string{"bash", "-c", "curl -sS --fail 'echo-a:8080/with space'"},
			Check{Protocol: "HTTP", Method: "GET", Host: "echo-a", Port: 8080, Path: "/with%20space", FailOnHTTPError: true, ExpectSuccess: true},
		},
	}
	for _, c := range cases {
		got, err := ParseExecProbe(c.cmd)
		if err != nil {
			t.Errorf("%q: %v", c.cmd, err)
			continue
		}
		if got.Curl == "" || len(got.CurlArgs()) == 0 {
			t.Errorf("%q: curl arguments not kept", c.cmd)
		}
		got.Curl = ""
		if got != c.want {
			t.Errorf("%q:\n got %+v\nwant %+v", c.cmd, got, c.want)
		}
	}
}

func TestParseExecProbeErrors(t *testing.T) {
	cases := []struct {
		cmd  []string
		want string
	}{
		{nil, "empty exec command"},
		{[]string{"wget", "-q", "echo-a"}, "not supported yet: exec command"},
		{[]string{"cat", "/tmp/healthy"}, "podlab translates curl probes"},
		{[]string{"sh", "-c", "curl echo-a && echo ok"}, "not supported yet: shell operator"},
		{[]string{"sh", "-c", "curl $TARGET"}, "shell operator"},
		{[]string{"sh", "-x", "curl echo-a"}, "not supported yet: shell command"},
		{[]string{"curl", "-sS", "--fail"}, "no URL"},
		{[]string{"curl", "a", "b"}, "several URLs"},
		{[]string{"curl", "-H", "nocolon", "echo-a"}, "bad header"},
		{[]string{"curl", "ftp://echo-a"}, "not supported"},
		{[]string{"curl", "--resolve", "echo-a:80", "echo-a"}, "not HOST:PORT:ADDRESS"},
		{[]string{"curl", "--bogus", "echo-a"}, "option --bogus: is unknown"},
		{[]string{"curl", "--connect-timeout", "soon", "echo-a"}, "expected a proper numerical parameter"},
		{[]string{"curl", "-o"}, "requires parameter"},
		{[]string{"curl", "echo-a:99999"}, "bad port"},
		{[]string{"sh", "-c", "! curl 'unterminated"}, "unterminated single quote"},
	}
	for _, c := range cases {
		_, err := ParseExecProbe(c.cmd)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: got %v, want an error containing %q", c.cmd, err, c.want)
		}
	}
}

func TestCheckString(t *testing.T) {
	c := Check{Protocol: "HTTP", Method: "GET", Host: "echo-a", Port: 80, Path: "/"}
	if got, want := c.String(), "GET http://echo-a:80/ fails"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	c = Check{Protocol: "TCP", Host: "localhost", Port: 5432, ExpectSuccess: true}
	if got, want := c.String(), "TCP connect to localhost:5432 succeeds"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
