package policies

import (
	"crypto/tls"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// TLSMode is the value of tls.starttls, tls.dane and tls.mta-sts.
type TLSMode string

// The TLS modes, from weakest to strictest.
const (
	TLSDisable  TLSMode = "disable"
	TLSOptional TLSMode = "optional"
	TLSRequire  TLSMode = "require"
)

// Lookup is the value of ip-strategy.lookup: which address families are
// resolved, in which order.
type Lookup string

// The lookup strategies.
const (
	IPv4Only     Lookup = "ipv4_only"
	IPv6Only     Lookup = "ipv6_only"
	IPv4ThenIPv6 Lookup = "ipv4_then_ipv6"
	IPv6ThenIPv4 Lookup = "ipv6_then_ipv4"
)

// TLSVersion is the value of tls.min-version ("1.0" ... "1.3").
type TLSVersion string

// Uint16 returns the crypto/tls constant for v (tls.VersionTLS12 for "1.2").
func (v TLSVersion) Uint16() uint16 {
	switch v {
	case "1.0":
		return tls.VersionTLS10
	case "1.1":
		return tls.VersionTLS11
	case "1.3":
		return tls.VersionTLS13
	}
	return tls.VersionTLS12
}

// RouteType is the type of a route.
type RouteType string

// The route types.
const (
	RouteMX    RouteType = "mx"
	RouteLocal RouteType = "local"
	RouteRelay RouteType = "relay"
)

// Rate is a number of events per period, written "100/1m".
type Rate struct {
	Count  int
	Period time.Duration
}

// String renders r as "COUNT/PERIOD" with Go's duration format.
func (r Rate) String() string {
	if r.Count == 0 {
		return ""
	}
	return strconv.Itoa(r.Count) + "/" + r.Period.String()
}

// MarshalText writes r as String does ("600/1m0s"), so that a Rate in
// JSON reads as the policy wrote it.
func (r Rate) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// ParseRate parses "COUNT/DURATION" ("100/1m", "5/1s", "1000/1d"). A missing
// number before the unit means 1 ("10/m" is "10/1m").
func ParseRate(s string) (Rate, error) {
	c, p, ok := strings.Cut(strings.TrimSpace(s), "/")
	if !ok {
		return Rate{}, fmt.Errorf("%q is not a rate: write COUNT/DURATION, like 100/1m", s)
	}
	n, err := strconv.Atoi(strings.TrimSpace(c))
	if err != nil || n <= 0 {
		return Rate{}, fmt.Errorf("%q is not a rate: the count must be a positive integer", s)
	}
	p = strings.TrimSpace(p)
	if p != "" && (p[0] < '0' || p[0] > '9') {
		p = "1" + p
	}
	d, err := ParseDuration(p)
	if err != nil || d <= 0 {
		return Rate{}, fmt.Errorf("%q is not a rate: the period must be a positive duration like 1s, 1m, 1h", s)
	}
	return Rate{Count: n, Period: d}, nil
}

// ParseDuration parses Go duration syntax ("90s", "1h30m") extended with
// days ("1d", "2d12h"). Negative durations are refused.
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	orig := s
	var days int64
	if i := strings.IndexByte(s, 'd'); i >= 0 {
		n, err := strconv.ParseInt(s[:i], 10, 64)
		if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange || err == nil && n > maxDays {
			return 0, errDurationRange(orig)
		}
		if err != nil || n < 0 {
			return 0, fmt.Errorf("%q is not a duration: write it like 90s, 5m, 1h30m or 2d", orig)
		}
		days, s = n, s[i+1:]
	}
	var d time.Duration
	if s != "" {
		var err error
		d, err = time.ParseDuration(s)
		if err != nil || d < 0 {
			return 0, fmt.Errorf("%q is not a duration: write it like 90s, 5m, 1h30m or 2d", orig)
		}
	} else if days == 0 && orig != "0d" {
		if orig == "0" {
			return 0, nil
		}
		return 0, fmt.Errorf("%q is not a duration: write it like 90s, 5m, 1h30m or 2d", orig)
	}
	total := time.Duration(days) * 24 * time.Hour
	if d > math.MaxInt64-total {
		return 0, errDurationRange(orig)
	}
	return total + d, nil
}

// maxDays is the most days a time.Duration holds (about 292 years).
const maxDays = int64(math.MaxInt64 / int64(24*time.Hour))

func errDurationRange(s string) error {
	return fmt.Errorf("%q is too large: a duration is at most %dd", s, maxDays)
}

// Size units, for sizes written with a suffix ("16KiB", "10MB").
var sizeUnits = []struct {
	suffix string
	n      int64
}{
	{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30},
	{"kb", 1000}, {"mb", 1000 * 1000}, {"gb", 1000 * 1000 * 1000},
	{"b", 1},
}

// ParseSize parses a size: a number of bytes, optionally with a suffix
// B, KB, MB, GB (powers of 1000) or KiB, MiB, GiB (powers of 1024), in
// any case ("16KiB", "10MB", "512").
func ParseSize(s string) (int64, error) {
	orig := s
	s = strings.TrimSpace(s)
	mult := int64(1)
	lower := strings.ToLower(s)
	for _, u := range sizeUnits {
		if strings.HasSuffix(lower, u.suffix) {
			mult, s = u.n, strings.TrimSpace(s[:len(s)-len(u.suffix)])
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	switch {
	case err == nil && n >= 0 && n <= math.MaxInt64/mult:
		return n * mult, nil
	case err == nil && n >= 0, err != nil && errors.Is(err, strconv.ErrRange):
		return 0, fmt.Errorf("%q is too large", orig)
	}
	return 0, fmt.Errorf("%q is not a size: write it like 512, 16KiB, 10MB or 1GiB", orig)
}

// FormatSize writes n the way policies write sizes: with the largest
// binary unit that divides it ("16KiB"), else in bytes.
func FormatSize(n int64) string {
	for _, u := range []struct {
		suffix string
		n      int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n > 0 && n%u.n == 0 {
			return strconv.FormatInt(n/u.n, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}

// FormatDuration writes d the way policies write it: whole days as "Nd",
// otherwise Go's format without zero tails ("5m", "1h30m", "90ms").
func FormatDuration(d time.Duration) string {
	if d > 0 && d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	}
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// parseIP parses an IP address in any standard form and returns it
// canonical (IPv4-mapped addresses become IPv4).
func parseIP(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(strings.TrimSpace(s))
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("%q is not an IP address", s)
	}
	return a.Unmap(), nil
}
