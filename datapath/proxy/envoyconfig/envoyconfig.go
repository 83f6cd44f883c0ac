// Package envoyconfig reads CiliumEnvoyConfig and
// CiliumClusterwideEnvoyConfig objects, the subset of Envoy's configuration
// that Cilium's service-mesh demos use, into a model the node's HTTP proxy
// serves (package proxy/httpproxy):
//
//   - spec.services: Services whose traffic the datapath hands to the
//     config's listener (an L7 load-balanced frontend), spec.backendServices:
//     further Services whose endpoints clusters may name;
//   - a Listener with one filter chain holding an HTTP connection manager
//     (rds.route_config_name or an inline route_config, the router filter,
//     use_remote_address / skip_xff_append);
//   - a RouteConfiguration: virtual hosts by domain, routes matching a
//     prefix, an exact path or a safe_regex, sending to one cluster or to
//     weighted_clusters, with prefix_rewrite / regex_rewrite and a
//     retry_policy;
//   - Clusters of type EDS named after a Service ("namespace/name" or
//     "namespace/name:port"), with lb_policy ROUND_ROBIN or RANDOM,
//     connect_timeout and outlier_detection (consecutive failures eject a
//     backend for a while).
//
// Anything else, Envoy resource types or fields, is refused with the
// file, line and field and "not supported yet". Field names are accepted in
// Envoy's JSON spellings, snake_case and lowerCamelCase.
package envoyconfig

import (
	"regexp"
	"time"
)

// Kinds of the objects this package reads.
const (
	KindCiliumEnvoyConfig            = "CiliumEnvoyConfig"
	KindCiliumClusterwideEnvoyConfig = "CiliumClusterwideEnvoyConfig"
)

// Config is one CiliumEnvoyConfig (Namespace set) or
// CiliumClusterwideEnvoyConfig (Namespace empty).
type Config struct {
	Namespace, Name string
	// Services are redirected to a listener of the config.
	Services []ServiceRef
	// BackendServices are Services whose endpoints clusters may use
	// without redirecting their own traffic.
	BackendServices []ServiceRef
	// Listeners in the order written.
	Listeners []*Listener
	// Clusters by name.
	Clusters map[string]*Cluster
}

// Key returns "namespace/name" ("name" for a clusterwide config).
func (c *Config) Key() string {
	if c.Namespace == "" {
		return c.Name
	}
	return c.Namespace + "/" + c.Name
}

// ServiceRef names a Service of spec.services or spec.backendServices.
type ServiceRef struct {
	Namespace, Name string
	// Ports limits the redirect to these service ports (empty: all).
	Ports []uint16
	// Listener is the listener the Service's traffic goes to (services
	// only; the config's first listener when not given).
	Listener string
}

// Listener is an Envoy Listener with an HTTP connection manager.
type Listener struct {
	Name string
	// Routes is the route configuration the connection manager uses.
	Routes *RouteConfig
	// AppendXFF adds the client's address to X-Forwarded-For
	// (use_remote_address without skip_xff_append).
	AppendXFF bool
}

// RouteConfig is an Envoy RouteConfiguration.
type RouteConfig struct {
	Name         string
	VirtualHosts []VirtualHost
}

// VirtualHost groups the routes of a set of domains.
type VirtualHost struct {
	Name string
	// Domains match the Host header: "*", an exact name, "*.suffix"-style
	// (leading wildcard) or "prefix*"-style (trailing wildcard).
	Domains []string
	Routes  []Route
}

// Route is one route of a virtual host: a match and where it sends.
type Route struct {
	// Exactly one of Prefix (HasPrefix), Path or Regex matches.
	Prefix    string
	HasPrefix bool
	Path      string
	Regex     *regexp.Regexp
	// Clusters with their weights (one cluster: weight 1).
	Clusters []WeightedCluster
	// PrefixRewrite replaces the matched prefix (or path) when
	// HasPrefixRewrite.
	PrefixRewrite    string
	HasPrefixRewrite bool
	// RegexRewrite replaces every match in the path with Substitution
	// (Go's ${1} syntax, converted from RE2's \1).
	RegexRewrite *regexp.Regexp
	Substitution string
	// Retry is the retry policy (nil: no retries).
	Retry *RetryPolicy
}

// WeightedCluster is a cluster of weighted_clusters.
type WeightedCluster struct {
	Name   string
	Weight uint32
}

// RetryPolicy retries a request on another backend of the cluster.
type RetryPolicy struct {
	// On lists the retry_on conditions (5xx, gateway-error,
	// connect-failure, reset, retriable-status-codes is not supported).
	On []string
	// NumRetries is the number of retries (Envoy's default 1).
	NumRetries int
	// PerTryTimeout bounds one attempt (0: none).
	PerTryTimeout time.Duration
}

// LB policies of a cluster.
const (
	RoundRobin = "ROUND_ROBIN"
	Random     = "RANDOM"
)

// Cluster is an EDS cluster backed by a Service's endpoints.
type Cluster struct {
	Name string
	// Service is the Service the endpoints come from; Port selects its
	// port by number (PortName by name); both empty: the Service's only
	// port, or the port the client asked for.
	Service        ServiceRef
	Port           uint16
	PortName       string
	LBPolicy       string
	ConnectTimeout time.Duration
	// Outlier is the outlier detection (nil: none).
	Outlier *OutlierDetection
}

// OutlierDetection ejects a backend after consecutive failures.
type OutlierDetection struct {
	// Consecutive5xx counts 5xx answers (and, unless SplitLocalOrigin,
	// connection failures); ConsecutiveLocalOrigin counts connection
	// failures when SplitLocalOrigin is set.
	Consecutive5xx         int
	ConsecutiveLocalOrigin int
	SplitLocalOrigin       bool
	// BaseEjectionTime is how long an ejected backend is skipped.
	BaseEjectionTime time.Duration
}
