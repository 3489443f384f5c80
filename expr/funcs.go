package expr

import (
	"net/netip"
	"strings"
)

// Library holds what the functions consult: the policy's named lists and
// local domains. It is built once per policy and read-only afterwards, so one
// Library serves any number of goroutines.
type Library struct {
	lists        map[string]map[string]struct{}
	localDomains map[string]struct{}
	limits       Limits
}

// NewLibrary returns a library over the given named lists and local
// domains. Entries are compared case-insensitively, so they are stored
// lower-cased.
func NewLibrary(lists map[string][]string, localDomains []string) *Library {
	l := &Library{
		lists:        make(map[string]map[string]struct{}, len(lists)),
		localDomains: make(map[string]struct{}, len(localDomains)),
		limits:       Limits{}.withDefaults(),
	}
	for name, entries := range lists {
		set := make(map[string]struct{}, len(entries))
		for _, e := range entries {
			set[normDomain(e)] = struct{}{}
		}
		l.lists[name] = set
	}
	for _, d := range localDomains {
		l.localDomains[normDomain(d)] = struct{}{}
	}
	return l
}

// WithLimits sets the bounds of the expressions the library compiles
// (zero fields take their defaults, and each is clamped to its ceiling) and
// returns l. Call it before compiling.
func (l *Library) WithLimits(lim Limits) *Library {
	l.limits = lim.withDefaults()
	return l
}

// Limits returns the bounds in force.
func (l *Library) Limits() Limits { return l.limits }

// HasList reports whether a list called name exists.
func (l *Library) HasList(name string) bool {
	_, ok := l.lists[name]
	return ok
}

// Hooks are an embedding MTA's answers to is_local_domain and
// is_local_address. A nil hook keeps the library's default: the policy's
// local-domains for domains, false for addresses.
type Hooks struct {
	IsLocalDomain  func(domain string) bool
	IsLocalAddress func(address string) bool
}

// Funcs returns the function library bound to l and hooks, ready to be put
// in an [Env]. It allocates; call it once and copy the result.
func (l *Library) Funcs(h Hooks) Funcs {
	f := Funcs{
		IsLocalDomain:  l.isLocalDomain,
		IsLocalAddress: func(string) bool { return false },
		InList:         l.inList,
		EmailPart:      emailPart,
		IsIPInCIDR:     isIPInCIDR,
		IsIPv4:         isIPv4,
		IsIPv6:         isIPv6,
		DomainMatches:  domainMatches,
	}
	if h.IsLocalDomain != nil {
		f.IsLocalDomain = func(d string) bool { return h.IsLocalDomain(normDomain(d)) }
	}
	if h.IsLocalAddress != nil {
		f.IsLocalAddress = h.IsLocalAddress
	}
	return f
}

func (l *Library) isLocalDomain(d string) bool {
	_, ok := l.localDomains[normDomain(d)]
	return ok
}

func (l *Library) inList(name, value string) bool {
	_, ok := l.lists[name][normDomain(value)]
	return ok
}

// normDomain lower-cases s and drops one trailing dot.
func normDomain(s string) string {
	s = strings.TrimSuffix(s, ".")
	return lowerASCII(s)
}

func emailPart(addr, part string) string {
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return ""
	}
	switch part {
	case "local":
		return addr[:at]
	case "domain":
		return normDomain(addr[at+1:])
	}
	return ""
}

// parsePrefix accepts "ip/bits" or a bare IP (one address).
func parsePrefix(s string) (netip.Prefix, error) {
	if strings.IndexByte(s, '/') < 0 {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return p.Masked(), nil
}

func isIPInCIDR(ip, cidr string) bool {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return false
	}
	p, err := parsePrefix(cidr)
	if err != nil {
		return false
	}
	if p.Addr().Is4() {
		a = a.Unmap()
	}
	return p.Contains(a)
}

func isIPv4(ip string) bool {
	a, err := netip.ParseAddr(ip)
	return err == nil && a.Unmap().Is4()
}

func isIPv6(ip string) bool {
	a, err := netip.ParseAddr(ip)
	return err == nil && a.Is6() && !a.Is4In6()
}

func domainMatches(domain, pattern string) bool {
	domain, pattern = normDomain(domain), normDomain(pattern)
	if rest, ok := strings.CutPrefix(pattern, "*."); ok {
		return len(domain) > len(rest)+1 && strings.HasSuffix(domain, rest) && domain[len(domain)-len(rest)-1] == '.'
	}
	return domain == pattern
}

// validPattern reports whether p is a domain or "*." followed by a domain.
func validPattern(p string) bool {
	p = strings.TrimPrefix(p, "*.")
	return IsHostname(p)
}

// IsHostname reports whether s is a syntactically valid DNS host name
// (RFC 1123 labels: letters, digits, hyphens, underscores tolerated; no
// empty label; at most 253 characters). A single trailing dot is allowed.
func IsHostname(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}
