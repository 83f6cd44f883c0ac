package flow

import (
	"fmt"
	"net/http"
	"sort"
	"strings"
)

// L7FlowType says whether an L7 flow is a request or a response (Hubble's
// L7FlowType).
type L7FlowType string

// L7 flow types.
const (
	L7Request  L7FlowType = "REQUEST"
	L7Response L7FlowType = "RESPONSE"
)

// Layer7 is the L7 part of a flow (Hubble's Layer7): one HTTP request or
// response the node's proxy handled.
type Layer7 struct {
	Type L7FlowType `json:"type,omitempty"`
	// LatencyNs is the time from request to response (responses only).
	LatencyNs uint64 `json:"latency_ns,omitempty,string"`
	HTTP      *HTTP  `json:"http,omitempty"`
	DNS       *L7DNS `json:"dns,omitempty"`
}

// L7DNS is a DNS query or answer the DNS proxy handled (Hubble's DNS
// message).
type L7DNS struct {
	// Query is the name asked for, with its trailing dot.
	Query string `json:"query,omitempty"`
	// IPs are the A/AAAA answers, TTL their lowest TTL.
	IPs    []string `json:"ips,omitempty"`
	TTL    uint32   `json:"ttl,omitempty"`
	CNAMEs []string `json:"cnames,omitempty"`
	// ObservationSource is "proxy".
	ObservationSource string   `json:"observation_source,omitempty"`
	Rcode             uint32   `json:"rcode,omitempty"`
	QTypes            []string `json:"qtypes,omitempty"`
	RRTypes           []string `json:"rrtypes,omitempty"`
}

// HTTP is an HTTP request or response (Hubble's HTTP message).
type HTTP struct {
	Code     uint32       `json:"code,omitempty"`
	Method   string       `json:"method,omitempty"`
	URL      string       `json:"url,omitempty"`
	Protocol string       `json:"protocol,omitempty"`
	Headers  []HTTPHeader `json:"headers,omitempty"`
}

// HTTPHeader is one header of an HTTP flow.
type HTTPHeader struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// HTTPHeaders flattens h into sorted key/value pairs.
func HTTPHeaders(h http.Header) []HTTPHeader {
	var out []HTTPHeader
	for k, vs := range h {
		for _, v := range vs {
			out = append(out, HTTPHeader{Key: k, Value: v})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Key != out[j].Key {
			return out[i].Key < out[j].Key
		}
		return out[i].Value < out[j].Value
	})
	return out
}

// L7Summary is the one-line text Hubble prints for an HTTP flow:
// "HTTP/1.1 GET http://host/path" for a request, "HTTP/1.1 200 5ms (GET
// http://host/path)" for a response.
func L7Summary(l *Layer7) string {
	if l != nil && l.DNS != nil {
		d := l.DNS
		if l.Type == L7Response {
			return fmt.Sprintf("DNS Answer %q TTL: %d (Proxy %s %s) %s", strings.Join(d.IPs, ","), d.TTL, d.Query, strings.Join(d.QTypes, ","), RcodeText(d.Rcode))
		}
		return fmt.Sprintf("DNS Query %s %s", d.Query, strings.Join(d.QTypes, ","))
	}
	if l == nil || l.HTTP == nil {
		return ""
	}
	h := l.HTTP
	if l.Type == L7Response {
		return fmt.Sprintf("%s %d %dms (%s %s)", h.Protocol, h.Code, l.LatencyNs/1_000_000, h.Method, h.URL)
	}
	return fmt.Sprintf("%s %s %s", h.Protocol, h.Method, h.URL)
}
