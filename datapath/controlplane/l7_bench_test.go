package controlplane

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/podlab/podlab/datapath/policy"
	"github.com/podlab/podlab/datapath/proxy/envoyconfig"
	"github.com/podlab/podlab/internal/e2e"
	"github.com/podlab/podlab/topo"
)

// BenchmarkL7Proxy measures HTTP/1.1 requests on one kept-alive connection
// from a pod on kind-worker to a pod on kind-worker2, with an L4 rule (the
// datapath only) and with an L7 rule on the same port (every request
// through the proxies: the server's node proxy at ingress) and to a
// ClusterIP a CiliumEnvoyConfig load-balances (l7lb: the client's node
// proxy routes every request to the server), in the same run; it reports
// requests/s and the p50/p99 latency of one request:
//
//	go test ./datapath/controlplane -run '^$' -bench L7Proxy -benchtime 20000x
func BenchmarkL7Proxy(b *testing.B) {
	e2e.Require(b, e2e.Root, e2e.BPFFS)
	const lab = "l7bench"
	ctx := context.Background()
	cp := New(lab, Options{Attach: "netlink", MonitorAggregation: true})
	c, err := topo.NewCluster(topo.ClusterConfig{Lab: lab, Nodes: topo.DefaultNodes(2), Hooks: []topo.ClusterHook{cp}})
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		_ = cp.Close()
		_ = c.Down()
	}()
	if err := c.Up(ctx, nil); err != nil {
		b.Fatal(err)
	}
	src, err := c.AddPod(ctx, topo.PodSpec{Namespace: "default", Name: "client", Node: "kind-worker", Labels: map[string]string{"app": "client"}})
	if err != nil {
		b.Fatal(err)
	}
	dst, err := c.AddPod(ctx, topo.PodSpec{Namespace: "default", Name: "server", Node: "kind-worker2", Labels: map[string]string{"app": "server"}})
	if err != nil {
		b.Fatal(err)
	}
	if err := c.WaitLinksUp(ctx, []*topo.Pod{src, dst}, 5*time.Second); err != nil {
		b.Fatal(err)
	}
	var l net.Listener
	if err := topo.Do(dst.NS, func() error {
		var err error
		l, err = net.Listen("tcp4", ":80")
		return err
	}); err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok")
	})}
	go srv.Serve(l)
	defer srv.Close()

	rules := map[string]string{
		"l4":   "",
		"l7lb": "",
		"l7": `
      rules:
        http: [{method: GET, path: "/api/.*"}]`,
	}
	// l7lb: the same requests to a ClusterIP that a CiliumEnvoyConfig
	// load-balances (the client's node proxy routes each request).
	clusterIP := netip.MustParseAddr("10.96.200.1")
	if err := cp.UpsertService(Service{Namespace: "default", Name: "server", ClusterIP: clusterIP,
		Ports: []ServicePort{{Name: "http", Proto: 6, Port: 80, Backends: []Backend{{IP: dst.IP, Port: 80, Node: dst.Node.Name}}}}}); err != nil {
		b.Fatal(err)
	}
	cec, err := lbConfig("bench", "server", "[{match: {prefix: /}, route: {cluster: default/server}}]")
	if err != nil {
		b.Fatal(err)
	}
	for _, mode := range []string{"l4", "l7", "l7lb"} {
		b.Run(mode, func(b *testing.B) {
			target := netip.AddrPortFrom(dst.IP, 80)
			if mode == "l7lb" {
				if err := cp.SetEnvoyConfig(cec); err != nil {
					b.Fatal(err)
				}
				defer cp.DeleteEnvoyConfig(cec.Key())
				target = netip.AddrPortFrom(clusterIP, 80)
			}
			ps, err := policy.Parse("bench.yaml", []byte(fmt.Sprintf(`apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: server}
spec:
  endpointSelector: {matchLabels: {app: server}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts:
    - ports: [{port: "80", protocol: TCP}]%s
`, rules[mode])))
			if err != nil {
				b.Fatal(err)
			}
			if err := cp.ApplyPolicy(ps[0]); err != nil {
				b.Fatal(err)
			}
			var conn net.Conn
			if err := topo.Do(src.NS, func() error {
				var err error
				conn, err = net.DialTimeout("tcp4", target.String(), 2*time.Second)
				return err
			}); err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			br := bufio.NewReader(conn)
			req := []byte("GET /api/v1 HTTP/1.1\r\nHost: server\r\n\r\n")
			lat := make([]time.Duration, 0, b.N)
			do := func() {
				t0 := time.Now()
				if _, err := conn.Write(req); err != nil {
					b.Fatal(err)
				}
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					b.Fatalf("status %d", resp.StatusCode)
				}
				lat = append(lat, time.Since(t0))
			}
			do() // warm up: the proxy's upstream connection
			lat = lat[:0]
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				do()
			}
			el := time.Since(start)
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(float64(b.N)/el.Seconds(), "req/s")
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
		})
	}
}

// lbConfig returns a CiliumEnvoyConfig (namespace default) that redirects
// Service svc to one Envoy listener with the given routes (a YAML flow
// list) and the EDS cluster default/<svc>.
func lbConfig(name, svc, routes string) (*envoyconfig.Config, error) {
	text := fmt.Sprintf(`services: [{name: %[1]s}]
resources:
- "@type": type.googleapis.com/envoy.config.listener.v3.Listener
  name: lb
  filter_chains:
  - filters:
    - name: envoy.filters.network.http_connection_manager
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
        route_config:
          virtual_hosts:
          - {name: all, domains: ["*"], routes: %[2]s}
        http_filters: [{name: envoy.filters.http.router}]
- {"@type": type.googleapis.com/envoy.config.cluster.v3.Cluster, name: default/%[1]s, type: EDS}
`, svc, routes)
	var spec yaml.Node
	if err := yaml.Unmarshal([]byte(text), &spec); err != nil {
		return nil, err
	}
	return envoyconfig.DecodeSpec(name+".yaml", "default", name, spec.Content[0])
}
