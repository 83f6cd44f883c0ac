package scenarios

import (
	"net/netip"

	"github.com/podlab/podlab/topo"
)

// The cluster DNS every lab runs, as kind does: Deployment
// kube-system/coredns (labels k8s-app: kube-dns) behind Service
// kube-system/kube-dns at the 10th address of the service subnet
// (10.96.0.10 by default).
const (
	ClusterDNSNamespace  = "kube-system"
	ClusterDNSService    = "kube-dns"
	ClusterDNSDeployment = "coredns"
	// ClusterDomain is the cluster's DNS suffix.
	ClusterDomain = "cluster.local"
)

// ClusterDNSIP is the ClusterIP of kube-system/kube-dns with the default
// service subnet.
var ClusterDNSIP = topo.DefaultDNSIP

// ServiceRange is the cluster's service subnet: networking.serviceSubnet
// of its kind config, or DefaultServiceCIDR. A nil cluster has the default.
func (c *Cluster) ServiceRange() netip.Prefix {
	if c != nil && c.ServiceSubnet.IsValid() {
		return c.ServiceSubnet
	}
	return DefaultServiceCIDR
}

// DNSIP is the ClusterIP of kube-system/kube-dns: the 10th address of the
// service range, as kubeadm sets it.
func (c *Cluster) DNSIP() netip.Addr { return topo.DNSIPOf(c.ServiceRange()) }

// KubernetesIP is the ClusterIP of default/kubernetes: the first address
// of the service range.
func (c *Cluster) KubernetesIP() netip.Addr { return topo.ServiceIPOf(c.ServiceRange(), 1) }

// ControlPlaneLabel is the label (and taint key) of control-plane nodes.
const ControlPlaneLabel = "node-role.kubernetes.io/control-plane"

// ClusterDNSObjects returns DNSObjects of the default cluster.
func ClusterDNSObjects() (*Deployment, *Service) { return (*Cluster)(nil).DNSObjects() }

// DNSObjects returns the built-in DNS Deployment and Service, which every
// lab creates before the scenario's own objects. They run on the
// control-plane node (tolerating its taint), as in a fresh kind cluster;
// the Service has the cluster's DNSIP.
func (c *Cluster) DNSObjects() (*Deployment, *Service) {
	src := Source{File: "(built-in cluster DNS)"}
	labels := map[string]string{"k8s-app": "kube-dns"}
	dep := &Deployment{
		Meta:     ObjectMeta{Name: ClusterDNSDeployment, Namespace: ClusterDNSNamespace, Labels: labels},
		Replicas: 1,
		Selector: LabelSelector{MatchLabels: labels},
		Template: PodTemplate{
			Labels: labels,
			Spec: PodSpec{
				NodeSelector: map[string]string{ControlPlaneLabel: ""},
				Tolerations:  []Toleration{{Key: ControlPlaneLabel, Operator: "Exists", Effect: "NoSchedule"}},
				Containers: []Container{{
					Name:     "coredns",
					Image:    "registry.k8s.io/coredns/coredns:v1.11.1",
					Workload: Workload{Name: WorkloadDNS, Ports: defaultWorkloadPorts(WorkloadDNS)},
					Ports:    defaultWorkloadPorts(WorkloadDNS),
				}},
			},
		},
		Source: src,
	}
	svc := &Service{
		Meta:                  ObjectMeta{Name: ClusterDNSService, Namespace: ClusterDNSNamespace, Labels: labels},
		Type:                  ServiceClusterIP,
		ClusterIP:             c.DNSIP(),
		Selector:              labels,
		ExternalTrafficPolicy: "Cluster",
		Ports: []ServicePort{
			{Name: "dns", Protocol: "UDP", Port: 53, TargetPort: IntOrString{Str: "dns"}},
			{Name: "dns-tcp", Protocol: "TCP", Port: 53, TargetPort: IntOrString{Str: "dns-tcp"}},
		},
		Source: src,
	}
	return dep, svc
}
