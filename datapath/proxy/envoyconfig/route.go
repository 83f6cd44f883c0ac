package envoyconfig

import (
	"strings"
)

// Match returns the route a request takes, as Envoy picks it: the first
// virtual host whose domains match the Host header (exact names first,
// then the longest leading wildcard, the longest trailing wildcard, "*"),
// then its first route whose match holds for the request target (prefix
// on the whole target; path and safe_regex on the path without the query).
// ok is false when no route matches (Envoy answers 404).
func (rc *RouteConfig) Match(host, target string) (*Route, bool) {
	vh := rc.virtualHost(strings.ToLower(host))
	if vh == nil {
		return nil, false
	}
	path, _, _ := strings.Cut(target, "?")
	for i := range vh.Routes {
		r := &vh.Routes[i]
		switch {
		case r.HasPrefix && strings.HasPrefix(target, r.Prefix),
			r.Path != "" && path == r.Path,
			r.Regex != nil && r.Regex.MatchString(path):
			return r, true
		}
	}
	return nil, false
}

// virtualHost applies Envoy's domain search order.
func (rc *RouteConfig) virtualHost(host string) *VirtualHost {
	var best *VirtualHost
	bestRank, bestLen := 0, -1
	for i := range rc.VirtualHosts {
		vh := &rc.VirtualHosts[i]
		for _, d := range vh.Domains {
			d = strings.ToLower(d)
			rank, n := 0, len(d)
			switch {
			case d == host:
				return vh
			case d == "*":
				rank, n = 1, 0
			case strings.HasPrefix(d, "*") && strings.HasSuffix(host, d[1:]) && len(host) > len(d)-1:
				rank = 3
			case strings.HasSuffix(d, "*") && strings.HasPrefix(host, d[:len(d)-1]) && len(host) > len(d)-1:
				rank = 2
			default:
				continue
			}
			if rank > bestRank || rank == bestRank && n > bestLen {
				best, bestRank, bestLen = vh, rank, n
			}
		}
	}
	return best
}

// Rewrite returns the request target the route forwards: prefix_rewrite
// replaces the matched prefix (or the whole path of a path match),
// regex_rewrite substitutes every match in the path; the query is kept.
func (r *Route) Rewrite(target string) string {
	path, query, hasQuery := strings.Cut(target, "?")
	switch {
	case r.HasPrefixRewrite && r.HasPrefix:
		return r.PrefixRewrite + strings.TrimPrefix(target, r.Prefix)
	case r.HasPrefixRewrite:
		path = r.PrefixRewrite
	case r.RegexRewrite != nil:
		path = r.RegexRewrite.ReplaceAllString(path, r.Substitution)
	default:
		return target
	}
	if hasQuery {
		return path + "?" + query
	}
	return path
}

// PickCluster returns the cluster a request goes to given a uniformly
// random number: weighted_clusters share requests in proportion to their
// weights.
func (r *Route) PickCluster(random uint64) string {
	var total uint64
	for _, c := range r.Clusters {
		total += uint64(c.Weight)
	}
	if total == 0 {
		return ""
	}
	x := random % total
	for _, c := range r.Clusters {
		if x < uint64(c.Weight) {
			return c.Name
		}
		x -= uint64(c.Weight)
	}
	return r.Clusters[len(r.Clusters)-1].Name
}

// Retries reports whether a failed attempt is retried under p: status is
// the upstream's answer (0 when the connection failed or was reset before
// an answer; connectFailed tells which).
func (p *RetryPolicy) Retries(status int, connectFailed bool) bool {
	if p == nil {
		return false
	}
	for _, c := range p.On {
		switch c {
		case "5xx":
			if status >= 500 || status == 0 {
				return true
			}
		case "gateway-error":
			if status == 502 || status == 503 || status == 504 || connectFailed {
				return true
			}
		case "connect-failure":
			if connectFailed {
				return true
			}
		case "reset":
			if status == 0 && !connectFailed {
				return true
			}
		}
	}
	return false
}
