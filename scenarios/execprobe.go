package scenarios

import (
	"fmt"
	"net"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/podlab/podlab/scenarios/probe"
)

// Check is what a container probe tests from inside its pod: an HTTP
// request (curl exec probes, httpGet probes) or a TCP connect (tcpSocket
// probes) to Host:Port.
type Check struct {
	// Protocol is "HTTP" or "TCP".
	Protocol string
	// Method is GET, HEAD (curl -I) or the method given with -X.
	Method string
	// Host is the target as written: a Service name, a DNS name, an IP, or
	// "localhost" for the pod itself.
	Host string
	Port int
	// Path starts with "/" and keeps the query.
	Path string
	// FailOnHTTPError is curl's --fail: an HTTP status >= 400 is a failure.
	FailOnHTTPError bool
	// FollowRedirects is curl's -L.
	FollowRedirects bool
	// ExpectSuccess is false for the negated form ("! curl ..."): the probe
	// passes when the request fails.
	ExpectSuccess bool
	// ConnectTimeout is --connect-timeout, MaxTime is -m/--max-time (0: none).
	ConnectTimeout time.Duration
	MaxTime        time.Duration
	// TLS is an https:// URL.
	TLS bool
	// Curl holds an exec probe's curl arguments (without "curl"), joined
	// with NUL bytes so Check stays comparable; the runner runs exactly
	// that command, as curl would (see CurlArgs).
	Curl string
}

// String renders the check as a short sentence ("GET echo-a:80/ succeeds").
func (c Check) String() string {
	verb := "succeeds"
	if !c.ExpectSuccess {
		verb = "fails"
	}
	if c.Protocol == "TCP" {
		return fmt.Sprintf("TCP connect to %s %s", net.JoinHostPort(c.Host, strconv.Itoa(c.Port)), verb)
	}
	scheme := "http"
	if c.TLS {
		scheme = "https"
	}
	return fmt.Sprintf("%s %s://%s%s %s", c.Method, scheme, net.JoinHostPort(c.Host, strconv.Itoa(c.Port)), c.Path, verb)
}

// shells are the shells whose "-c SCRIPT" form podlab reads.
var shells = map[string]bool{"sh": true, "ash": true, "bash": true, "dash": true}

// ParseExecProbe translates an exec probe command into a Check. It accepts
// curl commands (every option probe.ParseCurl reads: -sS --fail -o
// /dev/null --connect-timeout -m -I -X -H -L -k --resolve --cacert, http
// and https URLs), directly or through a shell
// (sh|ash|bash -c "curl ..."), and the negated shell form
// (ash -c "! curl ..."), which expects the request to fail. Anything else
// is an error saying what podlab understands.
func ParseExecProbe(command []string) (Check, error) {
	if len(command) == 0 {
		return Check{}, fmt.Errorf("empty exec command")
	}
	args := command
	negated := false
	if shells[path.Base(command[0])] {
		if len(command) != 3 || command[1] != "-c" {
			return Check{}, fmt.Errorf("not supported yet: shell command %q (podlab reads `sh -c \"[!] curl ...\"`)", strings.Join(command, " "))
		}
		words, err := shellWords(command[2])
		if err != nil {
			return Check{}, fmt.Errorf("shell script %q: %w", command[2], err)
		}
		if len(words) > 0 && words[0] == "!" {
			negated = true
			words = words[1:]
		}
		args = words
	}
	if len(args) == 0 || path.Base(args[0]) != "curl" {
		return Check{}, fmt.Errorf("not supported yet: exec command %q (podlab translates curl probes: curl -sS --fail -o /dev/null [--connect-timeout N] [-I] [-m N] TARGET, optionally as sh -c \"! curl ...\")", strings.Join(command, " "))
	}
	c, err := parseCurl(args[1:])
	if err != nil {
		return Check{}, err
	}
	c.ExpectSuccess = !negated
	return c, nil
}

func parseCurl(args []string) (Check, error) {
	cr, err := probe.ParseCurl(args)
	if err != nil {
		return Check{}, err
	}
	host, port, p, tls, err := probe.SplitURL(cr.HTTP.URL)
	if err != nil {
		return Check{}, err
	}
	if strings.Contains(host, ":") {
		return Check{}, fmt.Errorf("not supported yet: IPv6 address in URL %q", cr.HTTP.URL)
	}
	c := Check{
		Protocol: "HTTP", Method: cr.HTTP.Method, Host: host, Port: int(port), Path: p, TLS: tls,
		FailOnHTTPError: cr.Fail, FollowRedirects: cr.HTTP.FollowRedirects,
		ConnectTimeout: cr.HTTP.ConnectTimeout, MaxTime: cr.HTTP.Timeout,
		Curl: strings.Join(args, "\x00"),
	}
	return c, nil
}

// CurlArgs returns the curl arguments (without "curl") of a check read
// from an exec probe, nil for httpGet and tcpSocket probes.
func (c Check) CurlArgs() []string {
	if c.Curl == "" {
		return nil
	}
	return strings.Split(c.Curl, "\x00")
}

// shellWords splits a simple shell script into words, honouring single and
// double quotes and backslashes. Operators (; | & > < $ `) are refused: only
// a single command (optionally negated with "!") is understood.
func shellWords(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case ch == '\'':
			end := strings.IndexByte(s[i+1:], '\'')
			if end < 0 {
				return nil, fmt.Errorf("unterminated single quote")
			}
			cur.WriteString(s[i+1 : i+1+end])
			i += end + 1
			inWord = true
		case ch == '"':
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) {
					i++
				} else if s[i] == '$' || s[i] == '`' {
					return nil, fmt.Errorf("not supported yet: shell expansion (%q)", s[i:])
				}
				cur.WriteByte(s[i])
			}
			if i >= len(s) {
				return nil, fmt.Errorf("unterminated double quote")
			}
			inWord = true
		case ch == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
			inWord = true
		case ch == ' ' || ch == '\t' || ch == '\n':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case strings.IndexByte(";|&<>$`()", ch) >= 0:
			return nil, fmt.Errorf("not supported yet: shell operator %q; podlab reads a single [!] curl command", string(ch))
		default:
			cur.WriteByte(ch)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}
