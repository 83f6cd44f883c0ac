package scenarios

import (
	"fmt"
	"strings"

	"github.com/podlab/podlab/scenarios/workload"
)

// Built-in workloads: what runs in a pod in place of its container image
// (the names of scenarios/workload's kinds).
const (
	// WorkloadHTTPEcho answers every HTTP request with JSON describing it
	// (stands in for cilium/json-mock), on port 80 or the container's ports.
	WorkloadHTTPEcho = string(workload.KindHTTPEcho)
	// WorkloadClient runs nothing; probes are sent from it (curl, alpine,
	// busybox, netshoot images).
	WorkloadClient = string(workload.KindClient)
	// WorkloadTCPEcho echoes TCP streams.
	WorkloadTCPEcho = string(workload.KindTCPEcho)
	// WorkloadUDPEcho echoes UDP datagrams.
	WorkloadUDPEcho = string(workload.KindUDPEcho)
	// WorkloadDNS is the cluster DNS server (and a world DNS when asked).
	WorkloadDNS = string(workload.KindDNS)
	// WorkloadDeathstar is the cilium/starwars deathstar API.
	WorkloadDeathstar = string(workload.KindDeathstar)
	// WorkloadHelloworld is Istio's helloworld sample (port 5000).
	WorkloadHelloworld = string(workload.KindHelloworld)
)

// WorkloadAnnotation on a pod (or a Deployment's pod template) chooses the
// built-in workload explicitly.
const WorkloadAnnotation = "podlab.io/workload"

// BuiltinWorkloads lists the built-in workload names.
func BuiltinWorkloads() []string {
	return []string{WorkloadHTTPEcho, WorkloadClient, WorkloadTCPEcho, WorkloadUDPEcho, WorkloadDNS, WorkloadDeathstar, WorkloadHelloworld}
}

// Workload is the built-in program a container runs and the ports it
// listens on.
type Workload struct {
	Name  string
	Ports []ContainerPort
}

// defaultWorkloadPorts are the listening ports of a workload whose container
// declares none.
func defaultWorkloadPorts(name string) []ContainerPort {
	switch name {
	case WorkloadHTTPEcho, WorkloadDeathstar:
		return []ContainerPort{{Name: "http", ContainerPort: 80, Protocol: "TCP"}}
	case WorkloadHelloworld:
		return []ContainerPort{{Name: "http", ContainerPort: 5000, Protocol: "TCP"}}
	case WorkloadTCPEcho:
		return []ContainerPort{{Name: "echo", ContainerPort: 7, Protocol: "TCP"}}
	case WorkloadUDPEcho:
		return []ContainerPort{{Name: "echo", ContainerPort: 7, Protocol: "UDP"}}
	case WorkloadDNS:
		return []ContainerPort{{Name: "dns", ContainerPort: 53, Protocol: "UDP"}, {Name: "dns-tcp", ContainerPort: 53, Protocol: "TCP"}}
	}
	return nil
}

// WorkloadForImage returns the built-in workload standing in for a
// container image (the mapping is scenarios/workload's: cilium/json-mock →
// http-echo; curl, alpine, busybox, nicolaka/netshoot → client; coredns →
// dns), or an error listing the built-ins.
func WorkloadForImage(image string) (string, error) {
	k, err := workload.KindForImage(image)
	if err != nil {
		return "", err
	}
	return string(k), nil
}

// workloadByName checks an annotation value.
func workloadByName(name string) error {
	if !contains(BuiltinWorkloads(), name) {
		return fmt.Errorf("unknown workload %q; built-in workloads: %s", name, strings.Join(BuiltinWorkloads(), ", "))
	}
	return nil
}
