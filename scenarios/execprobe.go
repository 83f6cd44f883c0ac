package scenarios

import (
	"fmt"
	"net"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"
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
	return fmt.Sprintf("%s http://%s%s %s", c.Method, net.JoinHostPort(c.Host, strconv.Itoa(c.Port)), c.Path, verb)
}

// shells are the shells whose "-c SCRIPT" form podlab reads.
var shells = map[string]bool{"sh": true, "ash": true, "bash": true, "dash": true}

// ParseExecProbe translates an exec probe command into a Check. It accepts
// curl commands (curl -sS --fail -o /dev/null [--connect-timeout N] [-I]
// [-m N] [-X METHOD] [-L] TARGET), directly or through a shell
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

// curlBool are curl's flags without argument that do not change what is
// checked (output, verbosity, TLS, address family).
var curlBool = map[string]bool{
	"-s": true, "--silent": true, "-S": true, "--show-error": true,
	"-v": true, "--verbose": true, "-k": true, "--insecure": true,
	"-4": true, "--ipv4": true, "-q": true, "--disable": true, "-N": true, "--no-buffer": true,
}

func parseCurl(args []string) (Check, error) {
	c := Check{Protocol: "HTTP", Method: "GET"}
	var targets []string
	seconds := func(flag, v string) (time.Duration, error) {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f <= 0 || f > 3600 {
			return 0, fmt.Errorf("curl %s %q: expected a number of seconds", flag, v)
		}
		return time.Duration(f * float64(time.Second)), nil
	}
	// option applies one option; value is its argument when it takes one.
	takesArg := map[string]bool{"-o": true, "--output": true, "--connect-timeout": true, "-m": true, "--max-time": true, "-X": true, "--request": true}
	option := func(flag, value string) error {
		var err error
		switch flag {
		case "-f", "--fail", "--fail-with-body":
			c.FailOnHTTPError = true
		case "-I", "--head":
			c.Method = "HEAD"
		case "-L", "--location":
			c.FollowRedirects = true
		case "-o", "--output":
			// The body goes wherever; it does not change the check.
		case "--connect-timeout":
			c.ConnectTimeout, err = seconds(flag, value)
		case "-m", "--max-time":
			c.MaxTime, err = seconds(flag, value)
		case "-X", "--request":
			m := strings.ToUpper(value)
			switch m {
			case "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS":
				c.Method = m
			default:
				err = fmt.Errorf("curl %s %q: unknown HTTP method", flag, value)
			}
		default:
			if !curlBool[flag] {
				err = fmt.Errorf("not supported yet: curl option %s", flag)
			}
		}
		return err
	}
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case strings.HasPrefix(a, "--"):
			flag, value, hasValue := strings.Cut(a, "=")
			if takesArg[flag] && !hasValue {
				if i+1 >= len(args) {
					return Check{}, fmt.Errorf("curl %s needs an argument", flag)
				}
				i++
				value = args[i]
			}
			if err := option(flag, value); err != nil {
				return Check{}, err
			}
		case strings.HasPrefix(a, "-") && len(a) > 1:
			// Short options may be combined: -sSf, -so /dev/null, -m5.
			for j := 1; j < len(a); j++ {
				flag := "-" + string(a[j])
				if takesArg[flag] {
					value := a[j+1:]
					if value == "" {
						if i+1 >= len(args) {
							return Check{}, fmt.Errorf("curl %s needs an argument", flag)
						}
						i++
						value = args[i]
					}
					if err := option(flag, value); err != nil {
						return Check{}, err
					}
					break
				}
				if err := option(flag, ""); err != nil {
					return Check{}, err
				}
			}
		default:
			targets = append(targets, a)
		}
	}
	switch len(targets) {
	case 0:
		return Check{}, fmt.Errorf("curl command has no URL")
	case 1:
	default:
		return Check{}, fmt.Errorf("not supported yet: curl with several URLs (%s)", strings.Join(targets, " "))
	}
	host, port, p, err := parseTarget(targets[0])
	if err != nil {
		return Check{}, err
	}
	c.Host, c.Port, c.Path = host, port, p
	return c, nil
}

// parseTarget splits a curl URL (echo-a, echo-a:8080/public,
// http://10.0.0.1/x) into host, port and path.
func parseTarget(target string) (host string, port int, p string, err error) {
	raw := target
	if !strings.Contains(raw, "://") {
		raw = "http://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", 0, "", fmt.Errorf("curl URL %q: %w", target, err)
	}
	if u.Scheme != "http" {
		return "", 0, "", fmt.Errorf("not supported yet: %s URLs (%q); podlab's workloads speak plain HTTP", u.Scheme, target)
	}
	if u.User != nil {
		return "", 0, "", fmt.Errorf("not supported yet: credentials in URL %q", target)
	}
	host = u.Hostname()
	if host == "" {
		return "", 0, "", fmt.Errorf("curl URL %q has no host", target)
	}
	if strings.Contains(host, ":") {
		return "", 0, "", fmt.Errorf("not supported yet: IPv6 address in URL %q", target)
	}
	port = 80
	if ps := u.Port(); ps != "" {
		port, err = strconv.Atoi(ps)
		if err != nil || port < 1 || port > 65535 {
			return "", 0, "", fmt.Errorf("curl URL %q: bad port %q", target, ps)
		}
	}
	p = u.EscapedPath()
	if p == "" {
		p = "/"
	}
	if u.RawQuery != "" {
		p += "?" + u.RawQuery
	}
	return host, port, p, nil
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
