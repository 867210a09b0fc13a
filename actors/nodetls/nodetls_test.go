package nodetls

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// newTestCA returns a CA valid for an hour.
func newTestCA(t *testing.T, name string) *CA {
	t.Helper()
	ca, err := NewCA(name, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// nodeConfig issues a certificate for id from ca and builds its Config.
func nodeConfig(t *testing.T, ca *CA, id uint64) *tls.Config {
	t.Helper()
	certPEM, keyPEM, err := ca.Issue(id, []string{"127.0.0.1", "localhost"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := Config(ca.CertPEM, certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// handshakeResult is what each side of a test handshake saw.
type handshakeResult struct {
	serverID, clientID   uint64
	serverErr, clientErr error
}

// handshake runs a TLS handshake over real TCP on 127.0.0.1. Under TLS 1.3
// the client finishes its handshake before the server has checked the
// client's certificate, so the server writes one byte after verifying and
// the client reads it: a refused client certificate shows up as a client
// read error.
func handshake(t *testing.T, server, client *tls.Config) handshakeResult {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", server)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	deadline := time.Now().Add(5 * time.Second)
	var res handshakeResult
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			res.serverErr = err
			return
		}
		defer c.Close()
		tc := c.(*tls.Conn)
		tc.SetDeadline(deadline)
		if res.serverErr = tc.Handshake(); res.serverErr != nil {
			return
		}
		if res.clientID, res.serverErr = PeerID(tc.ConnectionState()); res.serverErr != nil {
			return
		}
		_, res.serverErr = tc.Write([]byte{'x'})
	}()
	d := &tls.Dialer{NetDialer: &net.Dialer{Deadline: deadline}, Config: client}
	c, err := d.Dial("tcp", ln.Addr().String())
	if err != nil {
		res.clientErr = err
	} else {
		tc := c.(*tls.Conn)
		tc.SetDeadline(deadline)
		var b [1]byte
		if _, err := tc.Read(b[:]); err != nil {
			res.clientErr = err
		} else {
			res.serverID, res.clientErr = PeerID(tc.ConnectionState())
		}
		c.Close()
	}
	<-done
	return res
}

func TestTLSHandshakeBetweenNodes(t *testing.T) {
	ca := newTestCA(t, "parley test CA")
	n1, n2 := nodeConfig(t, ca, 1), nodeConfig(t, ca, 2)
	res := handshake(t, n2, ForPeer(n1, 2))
	if res.serverErr != nil || res.clientErr != nil {
		t.Fatalf("handshake: server %v, client %v", res.serverErr, res.clientErr)
	}
	if res.clientID != 1 || res.serverID != 2 {
		t.Fatalf("server saw client %d (want 1), client saw server %d (want 2)", res.clientID, res.serverID)
	}
	if n1.ServerName != "" {
		t.Fatal("ForPeer changed the original config")
	}
	if n1.MinVersion != tls.VersionTLS13 || n1.ClientAuth != tls.RequireAndVerifyClientCert {
		t.Fatalf("config: min version %x, client auth %v", n1.MinVersion, n1.ClientAuth)
	}
}

func TestTLSRefusesOtherCA(t *testing.T) {
	ca, other := newTestCA(t, "cluster"), newTestCA(t, "intruder")
	good, bad := nodeConfig(t, ca, 1), nodeConfig(t, other, 2)

	// Intruder dials a cluster node: the intruder does not trust the node's
	// certificate, and the node would not trust the intruder's.
	res := handshake(t, good, ForPeer(bad, 1))
	if !isVerifyError(res.clientErr) || res.serverErr == nil {
		t.Fatalf("intruder dialing: server %v, client %v", res.serverErr, res.clientErr)
	}

	// Even an intruder that trusts the cluster CA (so its own handshake
	// completes) and forces its certificate on the node (Go's client would
	// otherwise send none, its issuer not being one the node asks for) is
	// refused by the node for its certificate.
	trusting := bad.Clone()
	trusting.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		return &bad.Certificates[0], nil
	}
	trusting.RootCAs = x509.NewCertPool()
	trusting.RootCAs.AppendCertsFromPEM(ca.CertPEM)
	res = handshake(t, good, ForPeer(trusting, 1))
	if !isVerifyError(res.serverErr) || res.clientErr == nil || res.clientID != 0 {
		t.Fatalf("trusting intruder dialing: server %v (saw %d), client %v", res.serverErr, res.clientID, res.clientErr)
	}

	// A cluster node dials an intruder's listener: refused by the node.
	res = handshake(t, bad, ForPeer(good, 2))
	if !isVerifyError(res.clientErr) {
		t.Fatal("cluster node accepted an intruder's server certificate")
	}
}

func TestTLSRefusesClientWithoutCert(t *testing.T) {
	ca := newTestCA(t, "cluster")
	server := nodeConfig(t, ca, 1)
	anon := ForPeer(server, 1)
	anon.Certificates = nil
	res := handshake(t, server, anon)
	if res.serverErr == nil || !strings.Contains(res.serverErr.Error(), "didn't provide a certificate") || res.clientErr == nil {
		t.Fatalf("client without certificate: server %v, client %v", res.serverErr, res.clientErr)
	}
}

func TestTLSForPeerRefusesWrongNode(t *testing.T) {
	ca := newTestCA(t, "cluster")
	n1, n2 := nodeConfig(t, ca, 1), nodeConfig(t, ca, 2)
	// Node 1 meant to reach node 3 but the address is node 2's.
	res := handshake(t, n2, ForPeer(n1, 3))
	var hostErr x509.HostnameError
	if res.clientErr == nil || !errors.As(res.clientErr, &hostErr) {
		t.Fatalf("dialing node 2 as node 3: client error %v", res.clientErr)
	}
}

func TestTLSParseNodeName(t *testing.T) {
	for _, id := range []uint64{1, 7, 10, 1 << 63, ^uint64(0)} {
		got, err := ParseNodeName(NodeName(id))
		if err != nil || got != id {
			t.Fatalf("ParseNodeName(NodeName(%d)) = %d, %v", id, got, err)
		}
	}
	if NodeName(42) != "parley-node-42" {
		t.Fatalf("NodeName(42) = %q", NodeName(42))
	}
	for _, tc := range []struct{ in, want string }{
		{"", "empty node name"},
		{"parley-node", "does not start with"},
		{"Parley-node-1", "does not start with"},
		{"node-1", "does not start with"},
		{" parley-node-1", "does not start with"},
		{"parley-node-", "has no id"},
		{"parley-node-0", "node id 0 is reserved"},
		{"parley-node-01", "leading zero"},
		{"parley-node-00", "leading zero"},
		{"parley-node-+1", "non-digit at offset 0"},
		{"parley-node--1", "non-digit at offset 0"},
		{"parley-node-1a", "non-digit at offset 1"},
		{"parley-node-1 ", "non-digit at offset 1"},
		{"parley-node-1_000", "non-digit at offset 1"},
		{"parley-node-0x10", "non-digit at offset 1"},
		{"parley-node-١", "non-digit at offset 0"},
		{"parley-node-18446744073709551616", "overflows uint64"},
		{"parley-node-99999999999999999999999", "overflows uint64"},
	} {
		id, err := ParseNodeName(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseNodeName(%q) = %d, %v; want error containing %q", tc.in, id, err, tc.want)
		}
	}
}

func TestTLSLoadConfigFromFiles(t *testing.T) {
	dir := t.TempDir()
	path := func(name string) string { return filepath.Join(dir, name) }
	ca := newTestCA(t, "cluster")
	if err := ca.WriteFiles(path("ca.pem"), path("ca.key")); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path("ca.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("CA key file: %v, %v", fi, err)
	}
	loaded, err := LoadCA(path("ca.pem"), path("ca.key"))
	if err != nil {
		t.Fatal(err)
	}
	if !loaded.Cert.Equal(ca.Cert) {
		t.Fatal("loaded CA certificate differs")
	}
	// The loaded CA issues certificates that verify under the original.
	for _, id := range []uint64{1, 2} {
		certPEM, keyPEM, err := loaded.Issue(id, []string{"10.0.0.1", "node.example"}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		writeTestFile(t, path(NodeName(id)+".pem"), certPEM)
		writeTestFile(t, path(NodeName(id)+".key"), keyPEM)
	}
	load := func(id uint64) *tls.Config {
		cfg, err := LoadConfig(path("ca.pem"), path(NodeName(id)+".pem"), path(NodeName(id)+".key"))
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	n1, n2 := load(1), load(2)
	leaf := n1.Certificates[0].Leaf
	if len(leaf.IPAddresses) != 1 || !leaf.IPAddresses[0].Equal(net.ParseIP("10.0.0.1")) ||
		len(leaf.DNSNames) != 2 || leaf.DNSNames[0] != "parley-node-1" || leaf.DNSNames[1] != "node.example" {
		t.Fatalf("SANs: IPs %v, DNS %v", leaf.IPAddresses, leaf.DNSNames)
	}
	res := handshake(t, n1, ForPeer(n2, 1))
	if res.serverErr != nil || res.clientErr != nil || res.clientID != 2 || res.serverID != 1 {
		t.Fatalf("handshake with loaded configs: %+v", res)
	}

	// Mismatched inputs fail with the file named or the cause given.
	if _, err := LoadConfig(path("missing.pem"), path("parley-node-1.pem"), path("parley-node-1.key")); err == nil {
		t.Fatal("missing CA file accepted")
	}
	if _, err := LoadConfig(path("ca.pem"), path("parley-node-1.pem"), path("parley-node-2.key")); err == nil {
		t.Fatal("certificate with another node's key accepted")
	}
	other := newTestCA(t, "other")
	writeTestFile(t, path("other.pem"), other.CertPEM)
	if _, err := LoadConfig(path("other.pem"), path("parley-node-1.pem"), path("parley-node-1.key")); err == nil {
		t.Fatal("node certificate from another CA accepted")
	}
	if _, err := LoadCA(path("ca.pem"), path("parley-node-1.key")); err == nil {
		t.Fatal("CA loaded with a node key")
	}
	if _, err := LoadCA(path("parley-node-1.pem"), path("parley-node-1.key")); err == nil {
		t.Fatal("node certificate loaded as a CA")
	}
}

func TestTLSIssueRefusesIDZero(t *testing.T) {
	if _, _, err := newTestCA(t, "cluster").Issue(0, nil, time.Hour); err == nil {
		t.Fatal("issued a certificate for node 0")
	}
}

// isVerifyError reports whether err is a refused certificate.
func isVerifyError(err error) bool {
	var verr *tls.CertificateVerificationError
	return errors.As(err, &verr)
}

func writeTestFile(t *testing.T, name string, data []byte) {
	t.Helper()
	if err := os.WriteFile(name, data, 0o600); err != nil {
		t.Fatal(err)
	}
}
