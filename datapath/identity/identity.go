// Package identity allocates numeric security identities from label sets,
// with Cilium's reserved numbers.
package identity

// ID is a numeric security identity, carried in the VXLAN VNI (24 bits).
type ID uint32

// Reserved identities, numbered as Cilium numbers them.
const (
	Unknown       ID = 0
	Host          ID = 1
	World         ID = 2
	Unmanaged     ID = 3
	Health        ID = 4
	Init          ID = 5
	RemoteNode    ID = 6
	KubeAPIServer ID = 7
	// MinUser is the first identity allocated for workload label sets.
	MinUser ID = 256
	// Max is the largest identity a 24-bit VNI can carry.
	Max ID = 1<<24 - 1
)
