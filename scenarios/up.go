package scenarios

import (
	"fmt"
	"os"
	"strings"
)

// UpOptions is what `podlab up` asks of its lab.
type UpOptions struct {
	// Datapath is bpf, cilium or none.
	Datapath string
	// ClusterFile is a kind Cluster config; "" means a control-plane node
	// and Workers workers.
	ClusterFile string
	Workers     int
	// DemoPodsPerWorker sizes the demo Deployment (at least one worker's
	// worth when the cluster has no worker).
	DemoPodsPerWorker int
}

// DemoImage is the image of the demo Deployment's pods: the json-mock HTTP
// echo, which the lab's built-in HTTP echo workload plays.
const DemoImage = "docker.io/cilium/json-mock:1.0"

// UpScenario returns the scenario behind `podlab up`: the cluster (the
// kind Cluster file, or Workers workers), the datapath, and a Deployment of
// demo pods spread over the workers. Run with Keep, it builds the same lab
// and workloads as `podlab run` (cluster DNS, world hosts) and accepts
// `podlab apply`. Errors in the cluster file name its file and line.
func UpScenario(o UpOptions) (*Scenario, error) {
	var b strings.Builder
	workers := o.Workers
	name := "up.yaml"
	if o.ClusterFile != "" {
		data, err := os.ReadFile(o.ClusterFile)
		if err != nil {
			return nil, fmt.Errorf("load cluster: %w", err)
		}
		c, err := Parse("up", File{Name: o.ClusterFile, Data: data})
		if err != nil {
			return nil, err
		}
		workers = 0
		for _, n := range c.Cluster.Nodes {
			if n.Role == "worker" {
				workers++
			}
		}
		name = o.ClusterFile
		b.Write(data)
		b.WriteString("\n---\n")
	}
	fmt.Fprintf(&b, "apiVersion: podlab.io/v1alpha1\nkind: Scenario\nmetadata: {name: up}\nsettings: {datapath: %s", o.Datapath)
	if o.ClusterFile == "" {
		fmt.Fprintf(&b, ", workers: %d", o.Workers)
	}
	b.WriteString("}\n")
	if replicas := max(workers, 1) * o.DemoPodsPerWorker; replicas > 0 {
		fmt.Fprintf(&b, `---
apiVersion: apps/v1
kind: Deployment
metadata: {name: demo, namespace: default}
spec:
  replicas: %d
  selector: {matchLabels: {app: demo}}
  template:
    metadata: {labels: {app: demo}}
    spec:
      containers:
      - {name: echo, image: %s, ports: [{containerPort: 80}]}
`, replicas, DemoImage)
	}
	return Parse("up", File{Name: name, Data: []byte(b.String())})
}
