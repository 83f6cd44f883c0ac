package main

import (
	"strings"
	"testing"
	"time"

	"github.com/podlab/podlab/scenarios/lab"
)

func TestHubbleStatusLine(t *testing.T) {
	s := &lab.StatusReport{Flows: 9000, FlowsStored: 4095, FlowsMax: 4095, Uptime: 10 * time.Minute, Metrics: "127.0.0.1:9965"}
	if got, want := hubbleStatusLine(s), "Ok   Current/Max Flows: 4095/4095 (100.00%), Flows/s: 15.00   Metrics: Ok"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	s = &lab.StatusReport{Flows: 538, FlowsStored: 538, FlowsMax: 200000, Uptime: 269 * time.Second}
	if got, want := hubbleStatusLine(s), "Ok   Current/Max Flows: 538/200000 (0.27%), Flows/s: 2.00   Metrics: Disabled"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if got, want := lostList(map[string]uint64{"perf_event_ring_buffer": 3, "observer_events_queue": 1}), "observer_events_queue=1, perf_event_ring_buffer=3"; got != want {
		t.Errorf("lost: got %q, want %q", got, want)
	}
}

func TestEndpointListAsCilium(t *testing.T) {
	eps := []lab.EndpointView{
		{ID: 12, Node: "kind-worker", IP: "10.244.1.7", Identity: 258, Ingress: true, Labels: []string{"k8s:io.kubernetes.pod.namespace=default", "k8s:app=web"}},
		{ID: 3, Node: "kind-worker", IP: "10.244.1.2", Identity: 257, Labels: []string{"k8s:app=client"}},
		{ID: 3, Node: "kind-control-plane", IP: "10.244.0.2", Identity: 256},
	}
	var b strings.Builder
	if err := writeEndpointLists(&b, eps, "kind-worker"); err != nil {
		t.Fatal(err)
	}
	want := "" +
		"ENDPOINT   POLICY (ingress)   POLICY (egress)   IDENTITY   LABELS (source:key[=value])               IPv6   IPv4         STATUS   \n" +
		"           ENFORCEMENT        ENFORCEMENT                                                                                    \n" +
		"3          Disabled           Disabled          257        k8s:app=client                                   10.244.1.2   ready    \n" +
		"12         Enabled            Disabled          258        k8s:app=web                                      10.244.1.7   ready    \n" +
		"                                                           k8s:io.kubernetes.pod.namespace=default                                \n"
	// Cilium's table ends every row with a tab cell; compare without the
	// trailing padding.
	trim := func(s string) string {
		lines := strings.Split(s, "\n")
		for i, l := range lines {
			lines[i] = strings.TrimRight(l, " ")
		}
		return strings.Join(lines, "\n")
	}
	if trim(b.String()) != trim(want) {
		t.Errorf("got:\n%s\nwant:\n%s", b.String(), want)
	}
	b.Reset()
	if err := writeEndpointLists(&b, eps, ""); err != nil {
		t.Fatal(err)
	}
	if out := b.String(); !strings.HasPrefix(out, "kind-control-plane:\nENDPOINT") || !strings.Contains(out, "\n\nkind-worker:\nENDPOINT") || !strings.Contains(out, "no labels") {
		t.Errorf("per-node tables:\n%s", out)
	}
	if err := writeEndpointLists(&b, eps, "kind-worker9"); err == nil {
		t.Error("unknown --node accepted")
	}
}
