package dane

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// RFC 8460 section 4.3 result types of a failed verification.
const (
	typeValidation   = "validation-failure"
	typeHostMismatch = "certificate-host-mismatch"
	typeExpired      = "certificate-expired"
)

// Error is a DANE verification failure.
type Error struct {
	// Type is the RFC 8460 (TLS-RPT) result type: "validation-failure",
	// "certificate-host-mismatch" or "certificate-expired".
	Type string
	// Msg says what failed: the records tried and why each did not
	// authenticate the server.
	Msg string
}

// Error returns "dane: " and the message.
func (e *Error) Error() string { return "dane: " + e.Msg }

// TLSResultType returns Type; the transport reports it (TLSResultTyper).
func (e *Error) TLSResultType() string { return e.Type }

// Verifier matches a TLS server's presented chain against the usable TLSA
// records of a host. It is never changed after [NewVerifier], so one
// Verifier may serve concurrent connections.
type Verifier struct {
	recs  []prepared
	names []string
	now   func() time.Time
}

// prepared is a usable record with what can be worked out before any
// connection.
type prepared struct {
	Record
	// cert is the anchor of a DANE-TA Cert Full ("2 0 0") record, which
	// then needs not be in the server's chain (RFC 7671 section 5.2.2).
	cert *x509.Certificate
	// key is the anchor's public key of a DANE-TA SPKI Full ("2 1 0")
	// record (RFC 7671 section 5.2.3); nil when x509 does not know the
	// algorithm, and then the record can only match an anchor the server
	// sends.
	key crypto.PublicKey
}

// NewVerifier keeps the usable records of records (an error when there is
// none: the caller then knows DANE is not active). names are the reference
// identifiers for DANE-TA name checks (RFC 7672 section 3.2.2): names[0] is
// the TLSA base domain (also the SNI name the caller sends, section 8.1),
// further names are the other acceptable identifiers (the original MX host
// name before CNAME expansion, and the next-hop domain). Names are compared
// case-insensitively without a trailing dot. now may be nil (time.Now); it
// is used for DANE-TA validity checks only.
//
// Empty names are dropped. With no name left, DANE-TA records can never
// authenticate a server (fail closed) while DANE-EE records still can.
func NewVerifier(records []Record, names []string, now func() time.Time) (*Verifier, error) {
	v := &Verifier{now: now}
	if v.now == nil {
		v.now = time.Now
	}
	var format []string
	var args []any
	for _, r := range records {
		if err := r.Usable(); err != nil {
			format = append(format, "%s: %w")
			args = append(args, r.short(), err)
			continue
		}
		v.recs = append(v.recs, prepare(r))
	}
	for _, n := range names {
		if n = normName(n); n != "" && !slices.Contains(v.names, n) {
			v.names = append(v.names, n)
		}
	}
	v.recs = strongestDigests(v.recs)
	if len(v.recs) == 0 {
		if len(records) == 0 {
			return nil, errors.New("dane: no TLSA records")
		}
		return nil, fmt.Errorf("dane: none of the %d TLSA records is usable: "+strings.Join(format, "; "),
			append([]any{len(records)}, args...)...)
	}
	return v, nil
}

// strongestDigests applies digest algorithm agility (RFC 7671 section
// 9): for each usage and selector, when records with SHA-512 are present
// the SHA-256 ones are ignored, so that a zone can retire a digest it no
// longer trusts by publishing a stronger one beside it. Full (0) records
// are not digests and are always kept. OpenSSL, whose DANE code Postfix
// uses, does the same.
func strongestDigests(recs []prepared) []prepared {
	type pair struct{ usage, selector uint8 }
	sha512 := map[pair]bool{}
	for _, r := range recs {
		if r.MatchingType == MatchSHA512 {
			sha512[pair{r.Usage, r.Selector}] = true
		}
	}
	if len(sha512) == 0 {
		return recs
	}
	return slices.DeleteFunc(recs, func(r prepared) bool {
		return r.MatchingType == MatchSHA256 && sha512[pair{r.Usage, r.Selector}]
	})
}

// PoolKey identifies what the verifier accepts (its usable records and
// names), so that a pooled connection verified by one verifier is reused
// only for deliveries whose verifier would accept it too.
func (v *Verifier) PoolKey() string {
	h := sha256.New()
	for _, r := range v.recs {
		fmt.Fprintf(h, "%d %d %d %x\n", r.Usage, r.Selector, r.MatchingType, r.Data)
	}
	for _, n := range v.names {
		fmt.Fprintf(h, "%s\n", n)
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// prepare copies r (the caller may reuse its Data) and parses the anchor
// of a DANE-TA Full record.
func prepare(r Record) prepared {
	p := prepared{Record: Record{Usage: r.Usage, Selector: r.Selector, MatchingType: r.MatchingType, Data: bytes.Clone(r.Data)}}
	if p.Usage != DANETA || p.MatchingType != MatchFull {
		return p
	}
	// Usable has parsed the certificate already. The key may be of an
	// algorithm x509 does not know, or not a valid key of its algorithm:
	// key stays nil (x509 may return a typed nil beside its error).
	if p.Selector == SelectorCert {
		if c, err := x509.ParseCertificate(p.Data); err == nil {
			p.cert = c
		}
	} else if k, err := x509.ParsePKIXPublicKey(p.Data); err == nil {
		p.key = k
	}
	return p
}

// Names returns the reference identifiers, normalised (lower case, no
// trailing dot).
func (v *Verifier) Names() []string { return slices.Clone(v.names) }

// Records returns the usable records, in the order given (for logs and the
// dry-run).
func (v *Verifier) Records() []Record {
	out := make([]Record, len(v.recs))
	for i, p := range v.recs {
		out[i] = p.Record
		out[i].Data = bytes.Clone(p.Data)
	}
	return out
}

// VerifyConnection implements the transport's Verifier interface. One
// matching record suffices (RFC 6698 section 2.1, RFC 7671 section 5): see
// the package documentation for what DANE-EE and DANE-TA records check.
func (v *Verifier) VerifyConnection(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return &Error{Type: typeValidation, Msg: "the server sent no certificate"}
	}
	c := &chain{certs: cs.PeerCertificates}
	// DANE-EE first: it is cheap and a match settles it.
	for _, r := range v.recs {
		if r.Usage == DANEEE && c.matches(0, r.Record) {
			return nil
		}
	}
	var fails []*Error
	for _, r := range v.recs {
		if r.Usage != DANETA {
			continue
		}
		e := v.verifyTA(c, r)
		if e == nil {
			return nil
		}
		fails = append(fails, e)
	}
	return v.failure(c, fails)
}

// failure sums up why no record authenticated the server. The type is
// the most specific one found: a DANE-TA record that matched an anchor
// tells more than a record that matched nothing.
func (v *Verifier) failure(c *chain, taFails []*Error) *Error {
	leaf := c.certs[0]
	var parts []string
	var ee []string
	for _, r := range v.recs {
		if r.Usage == DANEEE {
			ee = append(ee, r.short())
		}
	}
	if len(ee) > 0 {
		parts = append(parts, "DANE-EE "+strings.Join(ee, ", ")+" does not match")
	}
	typ, rank := typeValidation, 0
	for _, e := range taFails {
		parts = append(parts, e.Msg)
		if r := typeRank(e.Type); r > rank {
			typ, rank = e.Type, r
		}
	}
	spkiSum := sha256.Sum256(leaf.RawSubjectPublicKeyInfo)
	return &Error{Type: typ, Msg: fmt.Sprintf("no TLSA record authenticates the server certificate (%s, \"3 1 1 %x\", %d certificates sent): %s",
		describe(leaf), spkiSum, len(c.certs), strings.Join(parts, "; "))}
}

func typeRank(t string) int {
	switch t {
	case typeHostMismatch:
		return 3
	case typeExpired:
		return 2
	}
	return 0
}

// verifyTA checks one DANE-TA record (RFC 7672 section 3.1.2): some
// anchor it designates must issue the server certificate, through the
// certificates the server sent, and the server certificate must carry one
// of the reference identifiers.
//
// The server certificate itself (chain position 0) is never taken as the
// anchor, as in OpenSSL (whose DANE code Postfix uses): a DANE-TA record
// names the issuer of the server certificate, and a record for the server
// certificate itself is DANE-EE's job. Accepting it would add nothing a
// "3 x x" record cannot say. A "2 1 0" key that signed a self-signed
// server certificate is the exception (see the package documentation).
func (v *Verifier) verifyTA(c *chain, r prepared) *Error {
	var best *Error
	try := func(anchor *x509.Certificate, where string) bool {
		e := v.chainTo(c, anchor, r, where)
		if e == nil {
			return true
		}
		if best == nil || typeRank(e.Type) > typeRank(best.Type) {
			best = e
		}
		return false
	}
	for i := 1; i < len(c.certs); i++ {
		if c.matches(i, r.Record) && try(c.certs[i], fmt.Sprintf("certificate %d sent (%s)", i+1, describe(c.certs[i]))) {
			return nil
		}
	}
	// A "2 0 0" anchor the server did not send (one it did send was tried
	// above, or is the server certificate).
	if r.cert != nil && !c.sent(r.cert) && try(r.cert, fmt.Sprintf("the certificate it carries (%s)", describe(r.cert))) {
		return nil
	}
	if r.key != nil {
		for i, cert := range c.certs {
			// A CA sent with the key itself is the anchor, tried above.
			// The server certificate may be signed by the key even when
			// it carries it (self-signed): RFC 7671 section 5.2.3 asks
			// for the top certificate sent to be signed by the key.
			if (i > 0 && bytes.Equal(cert.RawSubjectPublicKeyInfo, r.Data)) || !signedBy(cert, r.key) {
				continue
			}
			if i > 0 && (!cert.BasicConstraintsValid || !cert.IsCA) {
				// x509 does not check the CA flag of a root, and cert
				// stands in for one below: it must be a CA to issue.
				e := &Error{Type: typeValidation, Msg: fmt.Sprintf("DANE-TA %s: its key signs certificate %d sent (%s), which is not a CA", r.short(), i+1, describe(cert))}
				if best == nil {
					best = e
				}
				continue
			}
			// The anchor is a bare key: the certificate it signed is the
			// top of the chain x509 checks.
			if try(cert, fmt.Sprintf("a key that signs certificate %d sent (%s)", i+1, describe(cert))) {
				return nil
			}
		}
	}
	if best == nil {
		best = &Error{Type: typeValidation, Msg: fmt.Sprintf("DANE-TA %s matches no certificate sent", r.short())}
	}
	return best
}

// signedBy reports whether key signed cert. SHA-1 signatures are refused,
// as x509 refuses them in chains.
func signedBy(cert *x509.Certificate, key crypto.PublicKey) bool {
	switch cert.SignatureAlgorithm {
	case x509.SHA1WithRSA, x509.ECDSAWithSHA1, x509.DSAWithSHA1:
		return false
	}
	issuer := &x509.Certificate{PublicKey: key}
	return issuer.CheckSignature(cert.SignatureAlgorithm, cert.RawTBSCertificate, cert.Signature) == nil
}

// chainTo checks that the server certificate chains to anchor through the
// certificates sent, at v.now, and carries a reference identifier.
func (v *Verifier) chainTo(c *chain, anchor *x509.Certificate, r prepared, where string) *Error {
	roots := x509.NewCertPool()
	roots.AddCert(anchor)
	opts := x509.VerifyOptions{
		Roots:         roots,
		Intermediates: c.intermediates(),
		CurrentTime:   v.now(),
		// SMTP server certificates often lack serverAuth; DANE says
		// nothing of key usage.
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}
	leaf := c.certs[0]
	_, err := leaf.Verify(opts)
	prefix := fmt.Sprintf("DANE-TA %s designates %s", r.short(), where)
	switch {
	case err != nil && !datesOnly(c, anchor, opts):
		return &Error{Type: typeValidation, Msg: fmt.Sprintf("%s, but the server certificate does not chain to it: %v", prefix, err)}
	case !v.nameMatches(leaf):
		want := strings.Join(v.names, " or ")
		if want == "" {
			want = "a reference identifier (none was given)"
		}
		return &Error{Type: typeHostMismatch, Msg: fmt.Sprintf("%s, but the server certificate (%s) is not for %s", prefix, describeNames(leaf), want)}
	case err != nil:
		return &Error{Type: typeExpired, Msg: fmt.Sprintf("%s, but %s: %v", prefix, outOfDate(c, anchor, opts.CurrentTime), err)}
	}
	return nil
}

// datesOnly reports whether the chain verification in opts, which failed,
// would pass at a time when every certificate involved is valid: then the
// failure was only about dates (certificate-expired).
func datesOnly(c *chain, anchor *x509.Certificate, opts x509.VerifyOptions) bool {
	from, until := anchor.NotBefore, anchor.NotAfter
	for _, cert := range c.certs {
		if cert.NotBefore.After(from) {
			from = cert.NotBefore
		}
		if cert.NotAfter.Before(until) {
			until = cert.NotAfter
		}
	}
	if from.After(until) {
		return false
	}
	opts.CurrentTime = from
	_, err := c.certs[0].Verify(opts)
	return err == nil
}

// outOfDate names the certificates of the chain (sent, and the anchor)
// that are not valid at now.
func outOfDate(c *chain, anchor *x509.Certificate, now time.Time) string {
	var out []string
	for _, cert := range append(slices.Clip(c.certs), anchor) {
		if now.Before(cert.NotBefore) || now.After(cert.NotAfter) {
			s := fmt.Sprintf("%s is valid from %s to %s", describe(cert), cert.NotBefore.UTC().Format(time.RFC3339), cert.NotAfter.UTC().Format(time.RFC3339))
			if !slices.Contains(out, s) {
				out = append(out, s)
			}
		}
	}
	if len(out) == 0 {
		return "the chain is not valid now"
	}
	return strings.Join(out, ", ")
}

// nameMatches reports whether cert is for one of the reference
// identifiers (RFC 7672 section 3.2.3): its DNS subjectAltNames, or, only
// when it has none, its subject common names. crypto/x509 no longer looks
// at the common name at all (since Go 1.15), so this is done here.
func (v *Verifier) nameMatches(cert *x509.Certificate) bool {
	ids := cert.DNSNames
	if len(ids) == 0 {
		ids = commonNames(cert)
	}
	for _, id := range ids {
		for _, n := range v.names {
			if matchName(id, n) {
				return true
			}
		}
	}
	return false
}

var oidCommonName = asn1.ObjectIdentifier{2, 5, 4, 3}

// commonNames returns every CN of cert's subject (pkix.Name keeps only the
// last one).
func commonNames(cert *x509.Certificate) []string {
	var out []string
	for _, atv := range cert.Subject.Names {
		if s, ok := atv.Value.(string); ok && atv.Type.Equal(oidCommonName) {
			out = append(out, s)
		}
	}
	return out
}

// matchName matches a presented identifier against a normalised reference
// name: equal ignoring ASCII case and a trailing dot, or a wildcard "*" as
// the whole leftmost label standing for exactly one label. A wildcard
// needs two labels after it ("*.example.com", not "*.com").
func matchName(pattern, name string) bool {
	if name == "" || strings.Contains(name, "*") {
		return false
	}
	p := normName(pattern)
	if p == name {
		return true
	}
	parent, ok := strings.CutPrefix(p, "*.")
	if !ok || !strings.Contains(parent, ".") {
		return false
	}
	label, rest, ok := strings.Cut(name, ".")
	return ok && label != "" && rest == parent
}

// normName lowers ASCII letters (only: DNS names compare ASCII
// case-insensitively, RFC 4343) and drops one trailing dot.
func normName(s string) string {
	s = strings.TrimSuffix(s, ".")
	return strings.Map(func(r rune) rune {
		if 'A' <= r && r <= 'Z' {
			return r + 'a' - 'A'
		}
		return r
	}, s)
}

// describe names a certificate in messages.
func describe(cert *x509.Certificate) string {
	if s := cert.Subject.String(); s != "" {
		return s
	}
	return "empty subject"
}

// describeNames lists the identifiers of cert that nameMatches looks at.
func describeNames(cert *x509.Certificate) string {
	if len(cert.DNSNames) > 0 {
		return "DNS names " + strings.Join(cert.DNSNames, ", ")
	}
	if cn := commonNames(cert); len(cn) > 0 {
		return "no DNS name, CN " + strings.Join(cn, ", ")
	}
	return "no DNS name nor CN"
}

// chain is the server's chain during one verification, with the digests
// computed so far.
type chain struct {
	certs []*x509.Certificate
	sums  [][4][]byte // [cert][selector*2 + matching type - 1]
	inter *x509.CertPool
}

// matches reports whether certs[i] matches r by selector and matching type.
func (c *chain) matches(i int, r Record) bool {
	cert := c.certs[i]
	sel := cert.Raw
	if r.Selector == SelectorSPKI {
		sel = cert.RawSubjectPublicKeyInfo
	}
	if r.MatchingType == MatchFull {
		return bytes.Equal(sel, r.Data)
	}
	if c.sums == nil {
		c.sums = make([][4][]byte, len(c.certs))
	}
	k := int(r.Selector)*2 + int(r.MatchingType) - 1
	sum := c.sums[i][k]
	if sum == nil {
		if r.MatchingType == MatchSHA256 {
			s := sha256.Sum256(sel)
			sum = s[:]
		} else {
			s := sha512.Sum512(sel)
			sum = s[:]
		}
		c.sums[i][k] = sum
	}
	return bytes.Equal(sum, r.Data)
}

// sent reports whether cert is one of the certificates sent.
func (c *chain) sent(cert *x509.Certificate) bool {
	return slices.ContainsFunc(c.certs, func(x *x509.Certificate) bool { return bytes.Equal(x.Raw, cert.Raw) })
}

// intermediates returns the certificates sent after the server's own.
func (c *chain) intermediates() *x509.CertPool {
	if c.inter == nil {
		c.inter = x509.NewCertPool()
		for _, cert := range c.certs[1:] {
			c.inter.AddCert(cert)
		}
	}
	return c.inter
}
