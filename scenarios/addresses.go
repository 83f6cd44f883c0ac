package scenarios

import (
	"fmt"
	"hash/fnv"
	"net/netip"
)

// NodePortRange is the default Kubernetes node port range.
const (
	NodePortMin = 30000
	NodePortMax = 32767
)

// KubernetesServiceIP is the ClusterIP of default/kubernetes with the
// default service subnet, kept free.
var KubernetesServiceIP = netip.MustParseAddr("10.96.0.1")

// ServiceAddress is what a Service was given: its ClusterIP (invalid for
// headless Services) and, per port, its node port (0 unless NodePort).
type ServiceAddress struct {
	ClusterIP netip.Addr
	NodePorts []int
}

// ServiceAddresses hands out ClusterIPs from the cluster's service range
// and node ports from NodePortMin..NodePortMax. Addresses a Service asks
// for are honoured; the others are derived from a hash of namespace/name
// (moving on when taken), so a Service keeps its address from run to run
// whatever other Services exist. The range's first address (kubernetes)
// and its 10th (kube-dns) are reserved. It is not safe for concurrent use.
type ServiceAddresses struct {
	subnet netip.Prefix
	ips    map[netip.Addr]ObjectRef
	ports  map[string]ObjectRef // "30080/TCP"
	given  map[ObjectRef]ServiceAddress
}

// NewServiceAddresses returns an allocator for the service range of
// cluster c (nil: the default range) with the reserved addresses taken.
func NewServiceAddresses(c *Cluster) *ServiceAddresses {
	a := &ServiceAddresses{subnet: c.ServiceRange(), ips: map[netip.Addr]ObjectRef{}, ports: map[string]ObjectRef{}, given: map[ObjectRef]ServiceAddress{}}
	a.ips[c.KubernetesIP()] = ObjectRef{Kind: KindService, Namespace: DefaultNamespace, Name: "kubernetes"}
	a.ips[c.DNSIP()] = ObjectRef{Kind: KindService, Namespace: ClusterDNSNamespace, Name: ClusterDNSService}
	return a
}

func hash32(s string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(s))
	return h.Sum32()
}

// Assign gives svc its addresses. Assigning a Service again returns what it
// has (an updated Service keeps its addresses); call Release first to
// re-assign.
func (a *ServiceAddresses) Assign(svc *Service) (ServiceAddress, error) {
	ref := svc.Ref()
	if got, ok := a.given[ref]; ok {
		return got, nil
	}
	var out ServiceAddress
	switch {
	case svc.Headless:
	case svc.ClusterIP.IsValid():
		if owner, taken := a.ips[svc.ClusterIP]; taken && owner != ref {
			return out, fmt.Errorf("service %s: clusterIP %s is taken by %s", ref, svc.ClusterIP, owner)
		}
		out.ClusterIP = svc.ClusterIP
	default:
		bits := 32 - a.subnet.Bits()
		size := uint32(1) << bits
		base := a.subnet.Masked().Addr().As4()
		start := hash32(ref.String()) % size
		for i := uint32(0); i < size; i++ {
			off := (start + i) % size
			if off == 0 || off == size-1 {
				continue
			}
			b := base
			v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]) + off
			ip := netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
			if _, taken := a.ips[ip]; !taken {
				out.ClusterIP = ip
				break
			}
		}
		if !out.ClusterIP.IsValid() {
			return out, fmt.Errorf("service %s: no free ClusterIP in %s", ref, a.subnet)
		}
	}
	out.NodePorts = make([]int, len(svc.Ports))
	var taken []string
	if svc.Type.HasNodePorts() {
		for i, p := range svc.Ports {
			port := p.NodePort
			if port != 0 {
				key := fmt.Sprintf("%d/%s", port, p.Protocol)
				if owner, ok := a.ports[key]; ok && owner != ref {
					a.releasePorts(taken)
					return ServiceAddress{}, fmt.Errorf("service %s: node port %s is taken by %s", ref, key, owner)
				}
			} else {
				span := NodePortMax - NodePortMin + 1
				start := int(hash32(fmt.Sprintf("%s:%d/%s", ref, p.Port, p.Protocol)) % uint32(span))
				for j := 0; j < span; j++ {
					cand := NodePortMin + (start+j)%span
					if _, ok := a.ports[fmt.Sprintf("%d/%s", cand, p.Protocol)]; !ok {
						port = cand
						break
					}
				}
				if port == 0 {
					a.releasePorts(taken)
					return ServiceAddress{}, fmt.Errorf("service %s: no free node port", ref)
				}
			}
			key := fmt.Sprintf("%d/%s", port, p.Protocol)
			a.ports[key] = ref
			taken = append(taken, key)
			out.NodePorts[i] = port
		}
	}
	if out.ClusterIP.IsValid() {
		a.ips[out.ClusterIP] = ref
	}
	a.given[ref] = out
	return out, nil
}

func (a *ServiceAddresses) releasePorts(keys []string) {
	for _, k := range keys {
		delete(a.ports, k)
	}
}

// Release frees a Service's addresses.
func (a *ServiceAddresses) Release(ref ObjectRef) {
	got, ok := a.given[ref]
	if !ok {
		return
	}
	delete(a.given, ref)
	if got.ClusterIP.IsValid() && a.ips[got.ClusterIP] == ref {
		delete(a.ips, got.ClusterIP)
	}
	for k, owner := range a.ports {
		if owner == ref {
			delete(a.ports, k)
		}
	}
}
