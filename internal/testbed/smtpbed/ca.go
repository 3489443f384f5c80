package smtpbed

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// CA is a throwaway certificate authority made for one test.
type CA struct {
	// Pool holds the CA certificate; use it as the client's RootCAs.
	Pool *x509.CertPool
	// CertFile is the CA certificate in PEM, in the test's temp dir.
	CertFile string

	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	dir  string
}

// Leaf is a server certificate issued by a [CA].
type Leaf struct {
	// Cert is ready for tls.Config.Certificates (leaf + CA chain).
	Cert tls.Certificate
	// CertFile (full chain) and KeyFile are PEM files in the test's temp
	// dir, for servers that read files.
	CertFile, KeyFile string
}

var serial atomic.Int64

// NewCA makes a CA valid for a day.
func NewCA(t testing.TB) *CA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serial.Add(1)),
		Subject:               pkix.Name{CommonName: "Postern Testbed CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	ca := &CA{Pool: x509.NewCertPool(), cert: cert, key: key, dir: t.TempDir()}
	ca.Pool.AddCert(cert)
	ca.CertFile = filepath.Join(ca.dir, "ca.crt")
	writePEM(t, ca.CertFile, "CERTIFICATE", der)
	return ca
}

// Issue makes a server certificate for names (DNS names or IP literals),
// valid from an hour ago for a day.
func (ca *CA) Issue(t testing.TB, names ...string) *Leaf {
	t.Helper()
	return ca.IssueValid(t, time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour), names...)
}

// IssueValid is [CA.Issue] with a chosen validity period (to make expired
// certificates).
func (ca *CA) IssueValid(t testing.TB, notBefore, notAfter time.Time, names ...string) *Leaf {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial.Add(1)),
		Subject:      pkix.Name{CommonName: names[0]},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	leaf := &Leaf{
		Cert:     tls.Certificate{Certificate: [][]byte{der, ca.cert.Raw}, PrivateKey: key},
		CertFile: filepath.Join(ca.dir, names[0]+".crt"),
		KeyFile:  filepath.Join(ca.dir, names[0]+".key"),
	}
	writePEM(t, leaf.CertFile, "CERTIFICATE", der, ca.cert.Raw)
	writePEM(t, leaf.KeyFile, "PRIVATE KEY", kder)
	return leaf
}

func writePEM(t testing.TB, path, typ string, ders ...[]byte) {
	t.Helper()
	var out []byte
	for _, d := range ders {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: d})...)
	}
	// World-readable: servers may drop privileges before reading.
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
}
