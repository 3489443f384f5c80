package policies

import (
	"crypto/tls"
	"fmt"
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
	return fmt.Sprintf("%d/%s", r.Count, r.Period)
}

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
		n, err := strconv.ParseInt(s[:i], 10, 32)
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
	return time.Duration(days)*24*time.Hour + d, nil
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
