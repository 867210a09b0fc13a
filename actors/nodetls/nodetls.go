// Package nodetls gives cluster nodes an identity and authenticates them to
// each other with mutual TLS.
//
// A cluster has one certificate authority (an ECDSA P-256 self-signed CA).
// Each node holds a certificate issued by it whose CommonName and DNS SAN are
// NodeName(id), so the node id travels in the certificate: a node learns who
// dialed it from the verified client certificate (PeerID), and a dialer
// checks it reached the node it meant by verifying the server name
// (ForPeer). No other credential is exchanged.
package nodetls

import (
	"crypto"
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
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// namePrefix starts every node name; the decimal node id follows.
const namePrefix = "parley-node-"

// clockSkew backdates NotBefore so a node whose clock is slightly behind the
// issuer's still accepts a freshly issued certificate.
const clockSkew = time.Hour

// CA is a cluster certificate authority.
type CA struct {
	// Cert is the CA certificate.
	Cert *x509.Certificate
	// Key is the CA private key.
	Key crypto.Signer
	// CertPEM is Cert in PEM form: what nodes are given to verify peers.
	CertPEM []byte
}

// NewCA creates a self-signed ECDSA P-256 CA named name, valid for validFor.
func NewCA(name string, validFor time.Duration) (*CA, error) {
	if validFor <= 0 {
		return nil, fmt.Errorf("nodetls: CA validity %v is not positive", validFor)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("nodetls: generate CA key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(validFor),
		IsCA:                  true,
		BasicConstraintsValid: true,
		// The CA signs node certificates only, never intermediates.
		MaxPathLenZero: true,
		KeyUsage:       x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("nodetls: create CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("nodetls: parse CA certificate: %w", err)
	}
	return &CA{Cert: cert, Key: key, CertPEM: encodePEM("CERTIFICATE", der)}, nil
}

// LoadCA reads a CA written by WriteFiles. It checks that the certificate is
// a CA and that the key belongs to it, so a mixed-up pair fails here rather
// than as unverifiable node certificates later.
func LoadCA(certFile, keyFile string) (*CA, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("nodetls: read CA certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("nodetls: read CA key: %w", err)
	}
	cert, err := parseCertPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("nodetls: CA certificate %s: %w", certFile, err)
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("nodetls: %s is not a CA certificate", certFile)
	}
	key, err := parseKeyPEM(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("nodetls: CA key %s: %w", keyFile, err)
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("nodetls: key %s does not match CA certificate %s", keyFile, certFile)
	}
	return &CA{Cert: cert, Key: key, CertPEM: certPEM}, nil
}

// WriteFiles writes the CA certificate and key as PEM. The key file is
// created with mode 0600; both are written to a temporary file and renamed,
// so a crash never leaves a truncated key behind.
func (ca *CA) WriteFiles(certFile, keyFile string) error {
	keyDER, err := x509.MarshalPKCS8PrivateKey(ca.Key)
	if err != nil {
		return fmt.Errorf("nodetls: marshal CA key: %w", err)
	}
	if err := writeFileAtomic(keyFile, encodePEM("PRIVATE KEY", keyDER), 0o600); err != nil {
		return fmt.Errorf("nodetls: write CA key: %w", err)
	}
	if err := writeFileAtomic(certFile, ca.CertPEM, 0o644); err != nil {
		return fmt.Errorf("nodetls: write CA certificate: %w", err)
	}
	return nil
}

// Issue creates a key and a certificate for node id, valid for validFor.
// The certificate's CommonName and first DNS SAN are NodeName(id); each of
// hosts is added as an IP SAN if it parses as an IP, else as a DNS SAN. It
// serves both as server and as client certificate, since a node accepts and
// dials with the same one.
func (ca *CA) Issue(id uint64, hosts []string, validFor time.Duration) (certPEM, keyPEM []byte, err error) {
	if id == 0 {
		return nil, nil, errors.New("nodetls: node id 0 is reserved")
	}
	if validFor <= 0 {
		return nil, nil, fmt.Errorf("nodetls: certificate validity %v is not positive", validFor)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("nodetls: generate key for node %d: %w", id, err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	name := NodeName(id)
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name},
		NotBefore:    now.Add(-clockSkew),
		NotAfter:     now.Add(validFor),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" && !slices.Contains(tmpl.DNSNames, h) {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("nodetls: issue certificate for node %d: %w", id, err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("nodetls: marshal key for node %d: %w", id, err)
	}
	return encodePEM("CERTIFICATE", der), encodePEM("PRIVATE KEY", keyDER), nil
}

// NodeName is the certificate name of node id: "parley-node-<id>".
func NodeName(id uint64) string {
	return namePrefix + strconv.FormatUint(id, 10)
}

// ParseNodeName returns the id in a name made by NodeName. Only the
// canonical form is accepted (no sign, no leading zero, id > 0), so that
// NodeName(ParseNodeName(n)) == n and one node cannot have two names.
func ParseNodeName(cn string) (uint64, error) {
	if cn == "" {
		return 0, errors.New("nodetls: empty node name")
	}
	digits, ok := strings.CutPrefix(cn, namePrefix)
	if !ok {
		return 0, fmt.Errorf("nodetls: node name %q does not start with %q", cn, namePrefix)
	}
	if digits == "" {
		return 0, fmt.Errorf("nodetls: node name %q has no id after %q", cn, namePrefix)
	}
	for i := 0; i < len(digits); i++ {
		if digits[i] < '0' || digits[i] > '9' {
			return 0, fmt.Errorf("nodetls: node name %q: id %q has a non-digit at offset %d", cn, digits, i)
		}
	}
	if digits == "0" {
		return 0, fmt.Errorf("nodetls: node name %q: node id 0 is reserved", cn)
	}
	if digits[0] == '0' {
		return 0, fmt.Errorf("nodetls: node name %q: id %q has a leading zero", cn, digits)
	}
	id, err := strconv.ParseUint(digits, 10, 64)
	if err != nil {
		// Only a range error is left once the digits are checked.
		return 0, fmt.Errorf("nodetls: node name %q: id %q overflows uint64", cn, digits)
	}
	return id, nil
}

// Config builds the one tls.Config a node uses both to accept and to dial:
// TLS 1.3 at least, presenting certPEM/keyPEM, and requiring a peer
// certificate verified against caPEM in both directions. It checks that the
// node's own certificate chains to caPEM and carries a node name, so a
// misconfigured node fails at start rather than at its first handshake.
func Config(caPEM, certPEM, keyPEM []byte) (*tls.Config, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("nodetls: CA PEM holds no certificate")
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("nodetls: node certificate and key: %w", err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("nodetls: parse node certificate: %w", err)
	}
	if _, err := leafID(leaf); err != nil {
		return nil, err
	}
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots:     pool,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}); err != nil {
		return nil, fmt.Errorf("nodetls: node certificate %s is not valid under the CA: %w", leaf.Subject.CommonName, err)
	}
	pair.Leaf = leaf
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{pair},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
		RootCAs:      pool,
	}, nil
}

// LoadConfig is Config with the three PEM inputs read from files.
func LoadConfig(caFile, certFile, keyFile string) (*tls.Config, error) {
	var pems [3][]byte
	for i, f := range []string{caFile, certFile, keyFile} {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("nodetls: %w", err)
		}
		pems[i] = b
	}
	return Config(pems[0], pems[1], pems[2])
}

// PeerID returns the node id of the peer of a completed handshake, from its
// verified certificate. It refuses a connection state without a verified
// chain (for example one from a config that skips verification), so an id
// is never taken from an unverified certificate.
func PeerID(cs tls.ConnectionState) (uint64, error) {
	if !cs.HandshakeComplete {
		return 0, errors.New("nodetls: handshake not complete")
	}
	if len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return 0, errors.New("nodetls: peer certificate not verified")
	}
	return leafID(cs.VerifiedChains[0][0])
}

// ForPeer returns a copy of cfg whose ServerName is NodeName(id), so that a
// dial succeeds only if the server's certificate names node id.
func ForPeer(cfg *tls.Config, id uint64) *tls.Config {
	c := cfg.Clone()
	c.ServerName = NodeName(id)
	return c
}

// leafID reads the node id of a node certificate. The CommonName must also
// be a DNS SAN: ForPeer verifies the SAN and PeerID reports the CommonName,
// and the two must never name different nodes.
func leafID(cert *x509.Certificate) (uint64, error) {
	cn := cert.Subject.CommonName
	id, err := ParseNodeName(cn)
	if err != nil {
		return 0, err
	}
	if !slices.Contains(cert.DNSNames, cn) {
		return 0, fmt.Errorf("nodetls: certificate of %s lacks the DNS SAN %s", cn, cn)
	}
	return id, nil
}

// newSerial returns a random 128-bit serial number, as RFC 5280 suggests
// for serials that must not collide across independent issuers.
func newSerial() (*big.Int, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("nodetls: serial number: %w", err)
	}
	return serial, nil
}

func encodePEM(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func parseCertPEM(b []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("no CERTIFICATE PEM block")
	}
	return x509.ParseCertificate(block.Bytes)
}

func parseKeyPEM(b []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, errors.New("no PRIVATE KEY PEM block")
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, err
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("key of type %T cannot sign", key)
	}
	return signer, nil
}

// writeFileAtomic writes data to a temporary file next to name with mode
// perm, syncs it and renames it over name.
func writeFileAtomic(name string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // fails harmlessly once renamed
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, name)
}
