package controlplane

import (
	"errors"
	"net/netip"
)

// Service is a Kubernetes Service as the datapath load-balances it.
type Service struct {
	Namespace, Name string
	// Type is ClusterIP or NodePort.
	Type      string
	ClusterIP netip.Addr
	Ports     []ServicePort
	// ExternalTrafficPolicyLocal sends NodePort traffic only to backends
	// on the node that received it.
	ExternalTrafficPolicyLocal bool
}

// ServicePort is one frontend port of a Service and its backends.
type ServicePort struct {
	Name     string
	Proto    uint8 // 6 TCP, 17 UDP
	Port     uint16
	NodePort uint16
	Backends []Backend
}

// Backend is one endpoint behind a service port.
type Backend struct {
	IP   netip.Addr
	Port uint16
	Node string
}

// ErrServicesNotSupported is returned while the BPF datapath has no
// service load-balancing.
var ErrServicesNotSupported = errors.New("not supported yet: service load-balancing in the BPF datapath")

// UpsertService programs a service's frontends and backends on every node.
func (cp *ControlPlane) UpsertService(s Service) error { return ErrServicesNotSupported }

// DeleteService removes a service from every node.
func (cp *ControlPlane) DeleteService(namespace, name string) error { return ErrServicesNotSupported }
