package dane_test

// Certificates made for the tests with crypto/x509, and an independent
// computation of TLSA association data.

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/postern-mta/postern/transport/dane"
)

// cert is a certificate with its private key.
type cert struct {
	*x509.Certificate
	key *ecdsa.PrivateKey
}

// spec describes a certificate to make. Zero dates mean "valid from an
// hour ago for a day".
type spec struct {
	cn        string
	dns       []string
	ca        bool
	notBefore time.Time
	notAfter  time.Time
	eku       []x509.ExtKeyUsage
}

var serial atomic.Int64

// mint makes a certificate from s, signed by parent (self-signed when
// parent is nil).
func mint(t testing.TB, s spec, parent *cert) *cert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	nb, na := s.notBefore, s.notAfter
	if nb.IsZero() {
		nb = time.Now().Add(-time.Hour)
	}
	if na.IsZero() {
		na = time.Now().Add(24 * time.Hour)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial.Add(1)),
		Subject:      pkix.Name{CommonName: s.cn},
		DNSNames:     s.dns,
		NotBefore:    nb,
		NotAfter:     na,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  s.eku,
	}
	if s.ca {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	}
	signer, signerKey := tmpl, key
	if parent != nil {
		signer, signerKey = parent.Certificate, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &cert{c, key}
}

// pkiSet is the certificates most tests use. Unless said otherwise, leaves
// are for mx.example.test.
type pkiSet struct {
	root, inter, other *cert // CAs: root issued inter; other is unrelated
	leaf               *cert // issued by root
	interLeaf          *cert // issued by inter
	self               *cert // self-signed leaf
	expired, notYet    *cert // issued by root, outside their dates
	wrongName          *cert // issued by root, for other.example.net only
	wildcard           *cert // issued by root, for *.example.test
	cnOnly             *cert // issued by root, no SAN, CN mx.example.test
	sanOverCN          *cert // issued by root, SAN other.example.net, CN mx.example.test
	nextHop            *cert // issued by root, for example.test only
	clientOnly         *cert // issued by root, extended key usage clientAuth only
	expiredInter       *cert // CA issued by root, expired
	expiredInterLeaf   *cert // issued by expiredInter
	notCA              *cert // issued by root, not a CA, yet it issued notCALeaf
	notCALeaf          *cert
	expiredRoot        *cert // self-signed CA, expired
	expiredRootLeaf    *cert // issued by expiredRoot (while it was valid)
	otherLeaf          *cert // issued by other
}

const mxName = "mx.example.test"

func newPKI(t testing.TB) *pkiSet {
	t.Helper()
	hourAgo, day := time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour)
	leafSpec := func(dns ...string) spec { return spec{cn: mxName, dns: dns} }
	p := &pkiSet{}
	p.root = mint(t, spec{cn: "Test Root CA", ca: true}, nil)
	p.inter = mint(t, spec{cn: "Test Intermediate CA", ca: true}, p.root)
	p.other = mint(t, spec{cn: "Other CA", ca: true}, nil)
	p.leaf = mint(t, leafSpec(mxName), p.root)
	p.interLeaf = mint(t, leafSpec(mxName), p.inter)
	p.self = mint(t, leafSpec(mxName), nil)
	p.expired = mint(t, spec{cn: mxName, dns: []string{mxName}, notBefore: hourAgo.Add(-48 * time.Hour), notAfter: hourAgo}, p.root)
	p.notYet = mint(t, spec{cn: mxName, dns: []string{mxName}, notBefore: day, notAfter: day.Add(24 * time.Hour)}, p.root)
	p.wrongName = mint(t, spec{cn: "other.example.net", dns: []string{"other.example.net"}}, p.root)
	p.wildcard = mint(t, spec{cn: "*.example.test", dns: []string{"*.example.test"}}, p.root)
	p.cnOnly = mint(t, spec{cn: mxName}, p.root)
	p.sanOverCN = mint(t, spec{cn: mxName, dns: []string{"other.example.net"}}, p.root)
	p.nextHop = mint(t, spec{cn: "example.test", dns: []string{"example.test"}}, p.root)
	p.clientOnly = mint(t, spec{cn: mxName, dns: []string{mxName}, eku: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, p.root)
	p.expiredInter = mint(t, spec{cn: "Expired Intermediate CA", ca: true, notBefore: hourAgo.Add(-48 * time.Hour), notAfter: hourAgo}, p.root)
	p.expiredInterLeaf = mint(t, spec{cn: mxName, dns: []string{mxName}, notBefore: hourAgo.Add(-47 * time.Hour)}, p.expiredInter)
	p.notCA = mint(t, spec{cn: "Not A CA", dns: []string{"notca.example.test"}}, p.root)
	p.notCALeaf = mint(t, leafSpec(mxName), p.notCA)
	p.expiredRoot = mint(t, spec{cn: "Expired Root CA", ca: true, notBefore: hourAgo.Add(-48 * time.Hour), notAfter: hourAgo}, nil)
	p.expiredRootLeaf = mint(t, spec{cn: mxName, dns: []string{mxName}, notBefore: hourAgo.Add(-47 * time.Hour)}, p.expiredRoot)
	p.otherLeaf = mint(t, leafSpec(mxName), p.other)
	return p
}

// state is the connection state of a server that sent certs.
func state(certs ...*cert) tls.ConnectionState {
	var cs tls.ConnectionState
	for _, c := range certs {
		cs.PeerCertificates = append(cs.PeerCertificates, c.Certificate)
	}
	return cs
}

// assoc computes the association data of c for selector s and matching
// type m on its own, without the package's code.
func assoc(c *x509.Certificate, s, m uint8) []byte {
	content := c.Raw
	if s == 1 {
		content = c.RawSubjectPublicKeyInfo
	}
	switch m {
	case 1:
		h := sha256.New()
		h.Write(content)
		return h.Sum(nil)
	case 2:
		h := sha512.New()
		h.Write(content)
		return h.Sum(nil)
	}
	return append([]byte(nil), content...)
}

// rec is the record of usage u, selector s and matching type m for c.
func rec(u, s, m uint8, c *cert) dane.Record {
	return dane.Record{Usage: u, Selector: s, MatchingType: m, Data: assoc(c.Certificate, s, m)}
}

// writeChain writes certs (in order) and the first one's key as PEM files
// in dir, for a server that reads files.
func writeChain(t testing.TB, dir, name string, certs ...*cert) (certFile, keyFile string) {
	t.Helper()
	var chain []byte
	for _, c := range certs {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(certs[0].key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	// World-readable: servers may drop privileges before reading.
	if err := os.WriteFile(certFile, chain, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o644); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}
