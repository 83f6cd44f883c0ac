package scenarios

import (
	"fmt"
	"strings"
)

// Built-in workloads: what runs in a pod in place of its container image.
const (
	// WorkloadHTTPEcho answers every HTTP request with JSON describing it
	// (stands in for cilium/json-mock), on port 80 or the container's ports.
	WorkloadHTTPEcho = "http-echo"
	// WorkloadClient runs nothing; probes are sent from it (curl, alpine,
	// busybox, netshoot images).
	WorkloadClient = "client"
	// WorkloadTCPEcho echoes TCP streams.
	WorkloadTCPEcho = "tcp-echo"
	// WorkloadUDPEcho echoes UDP datagrams.
	WorkloadUDPEcho = "udp-echo"
	// WorkloadDNS is the cluster DNS server (and a world DNS when asked).
	WorkloadDNS = "dns"
)

// WorkloadAnnotation on a pod (or a Deployment's pod template) chooses the
// built-in workload explicitly.
const WorkloadAnnotation = "podlab.io/workload"

// BuiltinWorkloads lists the built-in workload names.
func BuiltinWorkloads() []string {
	return []string{WorkloadHTTPEcho, WorkloadClient, WorkloadTCPEcho, WorkloadUDPEcho, WorkloadDNS}
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
	case WorkloadHTTPEcho:
		return []ContainerPort{{Name: "http", ContainerPort: 80, Protocol: "TCP"}}
	case WorkloadTCPEcho:
		return []ContainerPort{{Name: "echo", ContainerPort: 7, Protocol: "TCP"}}
	case WorkloadUDPEcho:
		return []ContainerPort{{Name: "echo", ContainerPort: 7, Protocol: "UDP"}}
	case WorkloadDNS:
		return []ContainerPort{{Name: "dns", ContainerPort: 53, Protocol: "UDP"}, {Name: "dns-tcp", ContainerPort: 53, Protocol: "TCP"}}
	}
	return nil
}

// imageRepository strips the registry host, the tag and the digest from an
// image reference: "docker.io/cilium/json-mock:1.0" → "cilium/json-mock".
func imageRepository(image string) string {
	ref := image
	if i := strings.IndexByte(ref, '@'); i >= 0 {
		ref = ref[:i]
	}
	parts := strings.Split(ref, "/")
	if len(parts) > 1 && (strings.ContainsAny(parts[0], ".:") || parts[0] == "localhost") {
		parts = parts[1:]
	}
	last := parts[len(parts)-1]
	if i := strings.IndexByte(last, ':'); i >= 0 {
		parts[len(parts)-1] = last[:i]
	}
	repo := strings.Join(parts, "/")
	return strings.TrimPrefix(repo, "library/")
}

// WorkloadForImage returns the built-in workload standing in for a
// container image, or an error listing the built-ins.
func WorkloadForImage(image string) (string, error) {
	repo := imageRepository(image)
	last := repo[strings.LastIndexByte(repo, '/')+1:]
	switch {
	case repo == "cilium/json-mock", repo == "hashicorp/http-echo", last == "nginx", last == "httpd":
		return WorkloadHTTPEcho, nil
	case last == "curl", last == "alpine-curl", last == "alpine", last == "busybox", last == "netshoot":
		return WorkloadClient, nil
	case last == "coredns":
		return WorkloadDNS, nil
	}
	return "", fmt.Errorf("unknown image %q; built-in workloads: %s (cilium/json-mock → http-echo; curl, alpine, busybox, nicolaka/netshoot → client; coredns → dns), or choose one with the pod annotation %s",
		image, strings.Join(BuiltinWorkloads(), ", "), WorkloadAnnotation)
}

// workloadByName checks an annotation value.
func workloadByName(name string) error {
	for _, w := range BuiltinWorkloads() {
		if w == name {
			return nil
		}
	}
	return fmt.Errorf("unknown workload %q; built-in workloads: %s", name, strings.Join(BuiltinWorkloads(), ", "))
}
