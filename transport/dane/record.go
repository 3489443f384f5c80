package dane

import (
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Certificate usages (RFC 6698 section 2.1.1, names from RFC 7218).
const (
	PKIXTA uint8 = 0 // PKIX-TA: CA constraint; unusable for SMTP
	PKIXEE uint8 = 1 // PKIX-EE: service certificate constraint; unusable for SMTP
	DANETA uint8 = 2 // DANE-TA: trust anchor assertion
	DANEEE uint8 = 3 // DANE-EE: domain-issued certificate
)

// Selectors (RFC 6698 section 2.1.2).
const (
	SelectorCert uint8 = 0 // the whole certificate, DER
	SelectorSPKI uint8 = 1 // the SubjectPublicKeyInfo, DER
)

// Matching types (RFC 6698 section 2.1.3).
const (
	MatchFull   uint8 = 0 // the selected content itself
	MatchSHA256 uint8 = 1 // its SHA-256 digest
	MatchSHA512 uint8 = 2 // its SHA-512 digest
)

// maxData is the largest certificate association data a TLSA record can
// carry: RDATA is at most 65535 bytes, 3 of them for the numbers.
const maxData = 65535 - 3

// Record is one TLSA record (RFC 6698 section 2.1).
type Record struct {
	Usage, Selector, MatchingType uint8
	Data                          []byte // certificate association data
}

// Usable reports why r cannot be used for SMTP (RFC 7672 section 3.1.3,
// RFC 7671 section 4.1), or nil: usable records are usage DANE-TA(2) or
// DANE-EE(3), selector 0 or 1, matching type 0, 1 or 2, and data of the
// right length for the matching type (32 bytes for SHA-256, 64 for
// SHA-512, non-empty for Full; a Full selector-0 record must parse as a
// certificate and a Full selector-1 record as a SubjectPublicKeyInfo).
// PKIX-TA(0)/PKIX-EE(1) are unusable for SMTP (RFC 7672 section 3.1.3).
func (r Record) Usable() error {
	switch r.Usage {
	case DANETA, DANEEE:
	case PKIXTA, PKIXEE:
		// SMTP has no agreed set of public CAs to check these against.
		return fmt.Errorf("usage %d (%s) is not usable for SMTP (RFC 7672 section 3.1.3)", r.Usage, usageName(r.Usage))
	default:
		return fmt.Errorf("unknown usage %d", r.Usage)
	}
	if r.Selector != SelectorCert && r.Selector != SelectorSPKI {
		return fmt.Errorf("unknown selector %d", r.Selector)
	}
	switch r.MatchingType {
	case MatchSHA256:
		if len(r.Data) != sha256.Size {
			return fmt.Errorf("SHA-256 data must be %d bytes, is %d", sha256.Size, len(r.Data))
		}
	case MatchSHA512:
		if len(r.Data) != sha512.Size {
			return fmt.Errorf("SHA-512 data must be %d bytes, is %d", sha512.Size, len(r.Data))
		}
	case MatchFull:
		return r.checkFull()
	default:
		return fmt.Errorf("unknown matching type %d", r.MatchingType)
	}
	return nil
}

// checkFull checks that the data of a Full(0) record is what its selector
// says.
func (r Record) checkFull() error {
	if len(r.Data) == 0 {
		return errors.New("no certificate association data")
	}
	if r.Selector == SelectorCert {
		if _, err := x509.ParseCertificate(r.Data); err != nil {
			return fmt.Errorf("data is not a certificate: %w", err)
		}
		return nil
	}
	if err := checkSPKI(r.Data); err != nil {
		return fmt.Errorf("data is not a SubjectPublicKeyInfo: %w", err)
	}
	return nil
}

// spki is the ASN.1 structure of a SubjectPublicKeyInfo (RFC 5280 section
// 4.1).
type spki struct {
	Algorithm pkix.AlgorithmIdentifier
	PublicKey asn1.BitString
}

// checkSPKI checks the structure only: a key of an algorithm crypto/x509
// does not know can still be matched byte for byte against a certificate.
func checkSPKI(der []byte) error {
	var s spki
	rest, err := asn1.Unmarshal(der, &s)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return fmt.Errorf("%d bytes after the structure", len(rest))
	}
	return nil
}

func usageName(u uint8) string {
	switch u {
	case PKIXTA:
		return "PKIX-TA"
	case PKIXEE:
		return "PKIX-EE"
	case DANETA:
		return "DANE-TA"
	case DANEEE:
		return "DANE-EE"
	}
	return "usage " + strconv.Itoa(int(u))
}

// String is the presentation form "3 1 1 <lower-case hex>", with the whole
// data (a record without data prints as the three numbers only).
func (r Record) String() string {
	s := fmt.Sprintf("%d %d %d", r.Usage, r.Selector, r.MatchingType)
	if len(r.Data) > 0 {
		s += " " + hex.EncodeToString(r.Data)
	}
	return s
}

// short is the presentation form with the data cut to its first 8 bytes,
// for error messages.
func (r Record) short() string {
	if len(r.Data) <= 8 {
		return r.String()
	}
	return fmt.Sprintf("%d %d %d %x…", r.Usage, r.Selector, r.MatchingType, r.Data[:8])
}

// ParseRecord parses the presentation form "U S M HEX" (whitespace-separated,
// hex may contain spaces or be split in several fields as zone files allow,
// case-insensitive). For tests, the CLI and fuzzing.
//
// The three numbers are decimal 0-255; mnemonics (RFC 7218) and the
// parentheses of multi-line zone file entries are not accepted. The data
// must be non-empty, of an even number of hex digits, and fit in a TLSA
// record (65532 bytes). The record need not be usable: see [Record.Usable].
func ParseRecord(s string) (Record, error) {
	f := strings.Fields(s)
	if len(f) < 4 {
		return Record{}, fmt.Errorf("dane: TLSA record %q: want \"usage selector matching-type hex-data\"", clip(s))
	}
	var n [3]uint8
	for i, what := range []string{"usage", "selector", "matching type"} {
		v, err := strconv.ParseUint(f[i], 10, 8)
		if err != nil {
			return Record{}, fmt.Errorf("dane: TLSA record %q: %s %q is not a number from 0 to 255: %w", clip(s), what, clip(f[i]), err)
		}
		n[i] = uint8(v)
	}
	data, err := hex.DecodeString(strings.Join(f[3:], ""))
	if err != nil {
		return Record{}, fmt.Errorf("dane: TLSA record %q: certificate association data: %w", clip(s), err)
	}
	if len(data) > maxData {
		return Record{}, fmt.Errorf("dane: TLSA record %q: %d bytes of data, more than a TLSA record holds (%d)", clip(s), len(data), maxData)
	}
	return Record{Usage: n[0], Selector: n[1], MatchingType: n[2], Data: data}, nil
}

// clip shortens s for an error message.
func clip(s string) string {
	if len(s) <= 80 {
		return s
	}
	return s[:80] + "…"
}
