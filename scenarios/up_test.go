package scenarios

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestUpScenario(t *testing.T) {
	s, err := UpScenario(UpOptions{Datapath: "bpf", Workers: 2, DemoPodsPerWorker: 3})
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Cluster.Nodes) != 3 || s.Settings.Datapath != "bpf" {
		t.Errorf("cluster %+v, settings %+v", s.Cluster, s.Settings)
	}
	var demo *Deployment
	for _, o := range s.Objects {
		if d, ok := o.(*Deployment); ok && d.Meta.Name == "demo" {
			demo = d
		}
	}
	if demo == nil || demo.Replicas != 6 {
		t.Fatalf("demo deployment %+v", demo)
	}
	f := filepath.Join(t.TempDir(), "kind.yaml")
	if err := os.WriteFile(f, []byte(fourNodes+"networking:\n  podSubnet: 10.100.0.0/16\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err = UpScenario(UpOptions{Datapath: "none", ClusterFile: f, Workers: 9, DemoPodsPerWorker: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Cluster.Nodes) != 4 || s.Cluster.PodSubnet.String() != "10.100.0.0/16" {
		t.Errorf("cluster %+v", s.Cluster)
	}
	if err := os.WriteFile(f, []byte(fourNodes+"networking:\n  kubeProxyMode: ipvs\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := UpScenario(UpOptions{Datapath: "bpf", ClusterFile: f}); err == nil || !strings.Contains(err.Error(), f+":9: networking.kubeProxyMode") {
		t.Errorf("bad cluster file: %v", err)
	}
}
