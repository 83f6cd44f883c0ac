package controlplane

import (
	"fmt"
	"net/netip"
	"time"
)

// ObserveDNS records a DNS answer (name resolved to addrs, valid for ttl)
// for toFQDNs policy. When a policy selects name and an address is new,
// the address's CIDR identity is pushed to every node's ipcache and the
// endpoints' policies are recompiled before ObserveDNS returns: a DNS
// proxy calls it before it releases the answer to the client, so the
// client's first packet to the address already meets the new policy. The
// addresses are forgotten again when their TTL runs out.
func (cp *ControlPlane) ObserveDNS(name string, addrs []netip.Addr, ttl time.Duration) error {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	if cp.closed {
		return fmt.Errorf("observe DNS answer for %s: control plane closed", name)
	}
	changed, err := cp.repo.ObserveDNS(name, addrs, ttl, time.Now())
	if err != nil {
		return err
	}
	if !changed {
		return nil
	}
	err = cp.recomputeLocked()
	cp.scheduleDNSExpiryLocked()
	return err
}

// forgetIdentityLabels drops the cached label strings of identities (the
// fqdn: labels of learned addresses follow DNS answers and policies).
func (cp *ControlPlane) forgetIdentityLabels() {
	cp.index.mu.Lock()
	if cp.index.idLabels != nil {
		cp.index.idLabels = map[uint32][]string{}
	}
	cp.index.mu.Unlock()
}

// SelectsFQDN reports whether a toFQDNs rule selects name.
func (cp *ControlPlane) SelectsFQDN(name string) bool { return cp.repo.SelectsFQDN(name) }

// scheduleDNSExpiryLocked arms the timer for the next address to expire.
func (cp *ControlPlane) scheduleDNSExpiryLocked() {
	next := cp.repo.NextDNSExpiry()
	if next.IsZero() {
		return
	}
	d := max(time.Until(next), 0)
	if cp.dnsTimer == nil {
		cp.dnsTimer = time.AfterFunc(d, cp.expireDNS)
		return
	}
	cp.dnsTimer.Reset(d)
}

// expireDNS removes the addresses whose TTL ran out and recompiles.
func (cp *ControlPlane) expireDNS() {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	if cp.closed {
		return
	}
	changed, err := cp.repo.ExpireDNS(time.Now())
	if err != nil {
		cp.log.Warn("expire DNS answers", "err", err)
	}
	if changed {
		if err := cp.recomputeLocked(); err != nil {
			cp.log.Warn("recompute after DNS expiry", "err", err)
		}
	}
	cp.scheduleDNSExpiryLocked()
}
