// Package labca is a lab's own certificate authority: generated when the lab
// comes up, it signs the certificates of the emulated internet's HTTPS hosts
// (one per name or address, on demand) and is what podlab's probes and
// `podlab exec` trust, so `curl https://1.1.1.1` inside a lab verifies as it
// does on the real internet without anything leaving the lab.
//
// The private key only lives in the process that runs the lab; the
// certificate is written to the lab's state folder (FileName) for `podlab
// exec`.
package labca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"
)

// FileName is the CA certificate's file name in a lab's state folder
// (/run/podlab/<lab>/ca.crt).
const FileName = "ca.crt"

// validity bounds every certificate the CA issues (and the CA itself).
const validity = 30 * 24 * time.Hour

// CA is a lab's certificate authority. It is safe for concurrent use.
type CA struct {
	cert    *x509.Certificate
	certPEM []byte
	key     *ecdsa.PrivateKey
	pool    *x509.CertPool

	mu     sync.Mutex
	leaves map[string]*tls.Certificate
}

// New generates a CA for lab (an ECDSA P-256 key and a self-signed
// certificate named "podlab lab <lab> CA").
func New(lab string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("lab CA: generate key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "podlab lab " + lab + " CA", Organization: []string{"podlab"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("lab CA: self-sign: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("lab CA: parse: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &CA{
		cert: cert, key: key, pool: pool,
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		leaves:  map[string]*tls.Certificate{},
	}, nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	if err != nil {
		return big.NewInt(time.Now().UnixNano())
	}
	return n
}

// CertPEM returns the CA certificate in PEM.
func (ca *CA) CertPEM() []byte { return ca.certPEM }

// Pool returns a pool holding only the CA certificate.
func (ca *CA) Pool() *x509.CertPool { return ca.pool }

// WriteFile writes the CA certificate (PEM) to path.
func (ca *CA) WriteFile(path string) error {
	if err := os.WriteFile(path, ca.certPEM, 0o644); err != nil {
		return fmt.Errorf("lab CA: %w", err)
	}
	return nil
}

// Leaf returns a server certificate for name, which is a DNS name or an IP
// address; certificates are cached per name. The certificate also carries
// ip as an IP SAN when it is valid (the address the client connected to).
func (ca *CA) Leaf(name string, ip netip.Addr) (*tls.Certificate, error) {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	if name == "" && !ip.IsValid() {
		return nil, errors.New("lab CA: a certificate needs a name or an address")
	}
	key := name + "|" + ip.String()
	ca.mu.Lock()
	defer ca.mu.Unlock()
	if c := ca.leaves[key]; c != nil {
		return c, nil
	}
	lk, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("lab CA: generate key for %s: %w", key, err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(validity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if a, err := netip.ParseAddr(name); err == nil {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.IP(a.AsSlice()))
		tmpl.Subject.CommonName = a.String()
	} else if name != "" {
		tmpl.DNSNames = []string{name}
		tmpl.Subject.CommonName = name
	}
	if ip.IsValid() && (len(tmpl.IPAddresses) == 0 || !tmpl.IPAddresses[0].Equal(ip.AsSlice())) {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.IP(ip.Unmap().AsSlice()))
		if tmpl.Subject.CommonName == "" {
			tmpl.Subject.CommonName = ip.String()
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &lk.PublicKey, ca.key)
	if err != nil {
		return nil, fmt.Errorf("lab CA: sign %s: %w", key, err)
	}
	c := &tls.Certificate{Certificate: [][]byte{der, ca.cert.Raw}, PrivateKey: lk}
	ca.leaves[key] = c
	return c, nil
}

// ServerConfig returns a TLS server configuration that presents, for each
// connection, a certificate for the name the client asked for (SNI) and
// the local address it connected to, as a public web server would.
func (ca *CA) ServerConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"http/1.1"},
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			var local netip.Addr
			if hello.Conn != nil {
				if ta, ok := hello.Conn.LocalAddr().(*net.TCPAddr); ok {
					local = ta.AddrPort().Addr().Unmap()
				}
			}
			return ca.Leaf(hello.ServerName, local)
		},
	}
}
