package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/postern-mta/postern/bench/internal/sinkproc"
	"github.com/postern-mta/postern/bench/internal/stats"
)

// sinkName is the sink's host name in its certificate, next to its
// address: the engine's relay route names 127.0.0.1, so PKIX checks the
// IP address SAN (RFC 5280 section 4.2.1.6).
const sinkName = "sink.bench.test"

// tlsFiles are PEM files made at start: a throwaway CA, and the sink's
// certificate chain and key issued by it.
type tlsFiles struct{ ca, cert, key string }

// makeTLSFiles makes a CA and a sink certificate for 127.0.0.1 and
// sinkName, valid for a day, in dir.
func makeTLSFiles(dir string) (tlsFiles, error) {
	f := tlsFiles{ca: filepath.Join(dir, "ca.pem"), cert: filepath.Join(dir, "sink.pem"), key: filepath.Join(dir, "sink.key")}
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return f, fmt.Errorf("CA key: %w", err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "postern e2e benchmark CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return f, fmt.Errorf("CA certificate: %w", err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return f, fmt.Errorf("CA certificate: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return f, fmt.Errorf("sink key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: sinkName},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames: []string{sinkName}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return f, fmt.Errorf("sink certificate: %w", err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return f, fmt.Errorf("sink key: %w", err)
	}
	for _, w := range []struct {
		path, typ string
		mode      os.FileMode
		ders      [][]byte
	}{
		{f.ca, "CERTIFICATE", 0o644, [][]byte{caDER}},
		{f.cert, "CERTIFICATE", 0o644, [][]byte{der, caDER}},
		{f.key, "PRIVATE KEY", 0o600, [][]byte{kder}},
	} {
		var b []byte
		for _, d := range w.ders {
			b = append(b, pem.EncodeToMemory(&pem.Block{Type: w.typ, Bytes: d})...)
		}
		if err := os.WriteFile(w.path, b, w.mode); err != nil {
			return f, err
		}
	}
	return f, nil
}

// loadPool reads a PEM file of CA certificates.
func loadPool(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s: no certificate", file)
	}
	return pool, nil
}

// The contenders of -tls. All but engCheck deliver into the STARTTLS sink,
// which offers STARTTLS to everyone; the plaintext ones do not use it.
const (
	engPlain = "engine"
	engTLS   = "engine STARTTLS"
	pfPlain  = "postfix"
	pfTLS    = "postfix STARTTLS"
	engCheck = "engine smtp-sink"
)

// tlsContenders are the measurements of -tls: the engine and Postfix each
// with and without STARTTLS into the same STARTTLS sink, and the engine's
// plaintext into smtp-sink as a check that the STARTTLS sink is not the
// bottleneck.
func tlsContenders(cfg config, tools map[string]string, tmp, self string) ([]contender, error) {
	files, err := makeTLSFiles(tmp)
	if err != nil {
		return nil, err
	}
	sp := tlsSinkSpec(self, files.cert, files.key)
	cs := []contender{
		{engPlain, func(ctx context.Context, _ int) (sample, error) {
			return measureEngine(ctx, cfg, sp, tmp, self, "-starttls", "disable")
		}},
		{engTLS, func(ctx context.Context, _ int) (sample, error) {
			return measureEngine(ctx, cfg, sp, tmp, self, "-starttls", "require", "-cafile", files.ca)
		}},
		{engCheck, func(ctx context.Context, _ int) (sample, error) {
			return measureEngine(ctx, cfg, sinkproc.SmtpSink(tools["smtp-sink"]), tmp, self)
		}},
	}
	if !cfg.skipPostfix {
		cs = append(cs,
			contender{pfPlain, func(ctx context.Context, r int) (sample, error) {
				return measurePostfix(ctx, cfg, tools, tmp, r, sp, "")
			}},
			contender{pfTLS, func(ctx context.Context, r int) (sample, error) {
				return measurePostfix(ctx, cfg, tools, tmp, r, sp, files.ca)
			}})
	}
	return cs, nil
}

// printTLSTable prints the -tls table and the two targets of the issue.
func printTLSTable(cfg config, cs []contender, results map[string][]sample) {
	fmt.Println("| contender | sink | msg/s, median (range) | sessions | TLS handshakes full / resumed | CPU ms per 1000 msgs | sink CPU ms per 1000 msgs |")
	fmt.Println("|---|---|---|---|---|---|---|")
	for _, c := range cs {
		ss := results[c.name]
		rs := rates(ss, cfg.n)
		var sess, full, res, cpu, scpu []float64
		for _, s := range ss {
			sess = append(sess, float64(s.Sessions))
			full = append(full, float64(s.Full))
			res = append(res, float64(s.Resumed))
			cpu = append(cpu, float64(s.cpu.Milliseconds())*1000/float64(cfg.n))
			scpu = append(scpu, float64(s.sinkCPU.Milliseconds())*1000/float64(cfg.n))
		}
		sinkKind := "STARTTLS sink"
		if c.name == engCheck {
			sinkKind = "smtp-sink"
		}
		fmt.Printf("| %s | %s | %.0f (%.0f–%.0f) | %s | %s / %s | %s | %s |\n", c.name, sinkKind, stats.Median(rs), slices.Min(rs), slices.Max(rs),
			stats.RangeText(sess, "%.0f"), stats.RangeText(full, "%.0f"), stats.RangeText(res, "%.0f"), stats.RangeText(cpu, "%.0f"), stats.RangeText(scpu, "%.0f"))
	}
	fmt.Println()
	compare(cfg, results, engTLS, engPlain, 0.7, true)
	compare(cfg, results, engTLS, pfTLS, 10, false)
}

// compare prints a's rate over b's against the target: of the medians
// (what the target is judged on), of every run (the contenders of a run
// ran back to back, under the same load), and from the CPU per message,
// which a busy machine moves much less than the rate (b's CPU over a's:
// the rate ratio if both were CPU-bound).
func compare(cfg config, results map[string][]sample, a, b string, target float64, percent bool) {
	ra, rb := results[a], results[b]
	if len(ra) == 0 || len(rb) == 0 {
		return
	}
	f := func(x float64) string { return fmt.Sprintf("%.1f×", x) }
	tf := fmt.Sprintf("%.0f×", target)
	if percent {
		f = func(x float64) string { return fmt.Sprintf("%.0f %%", 100*x) }
		tf = f(target)
	}
	ratio := stats.Median(rates(ra, cfg.n)) / stats.Median(rates(rb, cfg.n))
	var per []string
	for i := range min(len(ra), len(rb)) {
		per = append(per, f(ra[i].rate(cfg.n)/rb[i].rate(cfg.n)))
	}
	var ca, cb []float64
	for _, s := range ra {
		ca = append(ca, s.cpu.Seconds())
	}
	for _, s := range rb {
		cb = append(cb, s.cpu.Seconds())
	}
	fmt.Printf("%s / %s: %s of the median rates (target ≥ %s: %s); per run %s; from CPU per message %s\n",
		a, b, f(ratio), tf, met(ratio >= target), strings.Join(per, ", "), f(stats.Median(cb)/stats.Median(ca)))
}

func met(ok bool) string {
	if ok {
		return "met"
	}
	return "not met"
}
