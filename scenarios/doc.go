// Package scenarios reads podlab scenarios: Kubernetes manifests (Namespace,
// Pod, Deployment, Service, NetworkPolicy, CiliumNetworkPolicy,
// CiliumClusterwideNetworkPolicy), an optional kind Cluster document and an
// optional podlab Scenario document holding the steps (apply, delete, scale,
// wait, probes, captures, packet/flow/metric assertions, faults, sleep).
//
// Loading decodes every document through yaml.v3 nodes, so each problem is
// reported with its file, line and field path, and validates every
// reference before anything is created (hard rule 5 of DESIGN.md). The
// package also holds the pure-data parts the runner needs: the mapping of
// container images to built-in workloads, the translation of curl exec
// probes into probe expectations, a small deterministic scheduler that
// places pods on nodes, and the resolution of Services to their endpoints.
//
// The scenario library (library/*.yaml, and library/<name>/ folders) is
// embedded; Builtin and BuiltinNames give access to it. The step format is
// documented, with comments, in library/connectivity-check/scenario.yaml.
// Executing a scenario on a lab is scenarios/run's job.
//
// A scenario may instead run on a raw topology: a podlab.io/v1alpha1
// Topology document (package topo's format, decoded with
// topo.ParseSpecNode so its errors keep file, line and field) replaces the
// cluster. Probes then run from its namespaces (from: ns/NAME) to
// addresses, captures and packet assertions name NAMESPACE/DEVICE (with
// {device, promiscuous} for promiscuous captures and ether: {src, dst}
// filters on MACs or mac-of:NAMESPACE/DEVICE), and the steps setMAC,
// sysctl, vxlan (port, outer DF), mtu, linkDown/linkUp and serve (a
// built-in workload in a namespace) reproduce and fix bugs; see topology.go
// and the library's peer-pods and bug-* scenarios.
package scenarios
