package policies

import (
	"errors"
	"fmt"
	"net/mail"
	"net/netip"
	"regexp"
	"strconv"
	"strings"

	"github.com/postern-mta/postern/expr"
	"go.yaml.in/yaml/v3"
)

// listenerKeys are the keys of a relay listener, in the order they are
// printed.
var listenerKeys = []string{"name", "address", "mode", "tls", "proxy-protocol", "max-connections", "max-connections-per-ip"}

// maxListeners bounds relay.listeners (each is a socket and a goroutine).
const maxListeners = 100

var (
	listenerModeKind = enumKind(ModeSMTP, ModeSubmission, ModeSubmissions)
	connectionsKind  = intKind(1, 100000)
)

// decodeListeners reads relay.listeners.
func decodeListeners(d *decoder, s *Set, n *yaml.Node) {
	const setting = "relay.listeners"
	r := &s.relay
	switch {
	case n.Kind != yaml.SequenceNode:
		d.errorf(n, setting, "expected a list of listeners (- name: mta, address: 127.0.0.1:10025), found a %s", nodeKind(n))
		return
	case len(n.Content) == 0:
		d.errorf(n, setting, "empty: the relay needs at least one listener")
		return
	case len(n.Content) > maxListeners:
		d.errorf(n, setting, "%d listeners: the relay has at most %d", len(n.Content), maxListeners)
		return
	}
	r.recordAt(d, setting, n)
	r.Listeners = nil
	names := map[string]int{}            // name -> line
	addrs := map[netip.AddrPort]string{} // address -> listener
	for i, item := range n.Content {
		item = d.resolve(item)
		path := fmt.Sprintf("%s[%d]", setting, i)
		if item.Kind != yaml.MappingNode {
			d.errorf(item, path, "expected a listener (name: ..., address: ...), found a %s", nodeKind(item))
			continue
		}
		l := Listener{Mode: ModeSMTP, MaxConnections: defaultMaxConnections, MaxConnectionsPerIP: defaultMaxConnectionsPerIP,
			At: d.pos(item), path: path}
		r.recordAt(d, path, item)
		var nameN, addrN *yaml.Node
		for _, p := range d.pairs(item, path) {
			k, v := p[0], p[1]
			kp := path + "." + k.Value
			r.recordAt(d, kp, v)
			switch k.Value {
			case "name":
				nameN = v
				l.Name = v.Value
			case "address":
				addrN = v
				if a, err := parseListenAddress(v); err != nil {
					d.errorf(v, kp, "%v", err)
				} else {
					l.Address = a
				}
			case "mode":
				if m, err := listenerModeKind.parse(v); err != nil {
					d.errorf(v, kp, "%v", err)
				} else {
					l.Mode = m
				}
			case "tls":
				l.TLS = decodeListenerTLS(d, r, v, kp)
			case "proxy-protocol":
				l.ProxyProtocol = decodeProxyProtocol(d, r, v, kp)
			case "max-connections", "max-connections-per-ip":
				c, err := connectionsKind.parse(v)
				switch {
				case err != nil:
					d.errorf(v, kp, "%v", err)
				case k.Value == "max-connections":
					l.MaxConnections = c
				default:
					l.MaxConnectionsPerIP = c
				}
			default:
				d.unknownKey(k, path, listenerKeys)
			}
		}
		switch {
		case nameN == nil:
			d.errorf(item, path+".name", "missing: every listener needs a name (it appears in logs and metrics, and in the listener variable)")
		case nameN.Kind != yaml.ScalarNode || !nameRE.MatchString(l.Name):
			d.errorf(nameN, path+".name", "%q is not a valid listener name (letters, digits, _ . -)", l.Name)
		case names[l.Name] > 0:
			d.errorf(nameN, path+".name", "duplicate listener name %q (first at line %d)", l.Name, names[l.Name])
		default:
			names[l.Name] = nameN.Line
		}
		if addrN == nil {
			d.errorf(item, path+".address", "missing: the IP address and port to listen on (127.0.0.1:10025, \"[::1]:10025\")")
		} else if other, dup := addrs[l.Address]; dup && l.Address.IsValid() && l.Address.Port() != 0 {
			d.errorf(addrN, path+".address", "listener %q listens on %s already", other, l.Address)
		} else if l.Address.IsValid() {
			addrs[l.Address] = l.Name
		}
		r.Listeners = append(r.Listeners, l)
	}
}

// parseListenAddress reads IP:PORT (an IPv6 address in brackets).
func parseListenAddress(n *yaml.Node) (netip.AddrPort, error) {
	s, err := scalarText(n)
	if err != nil {
		return netip.AddrPort{}, err
	}
	a, err := netip.ParseAddrPort(s)
	if err != nil {
		host, _, cut := strings.Cut(s, ":")
		switch {
		case !strings.Contains(s, ":"):
			return netip.AddrPort{}, fmt.Errorf("%q has no port: write IP:PORT, like 127.0.0.1:10025 or \"[::1]:10025\"", s)
		case cut && !strings.HasPrefix(s, "[") && strings.Count(s, ":") > 1:
			return netip.AddrPort{}, fmt.Errorf("%q: an IPv6 address goes in brackets: \"[::1]:10025\"", s)
		case cut && host != "" && !strings.HasPrefix(s, "[") && !strings.ContainsAny(host[:1], "0123456789"):
			return netip.AddrPort{}, fmt.Errorf("%q: the address must be an IP address (a host name is not resolved): write 127.0.0.1:10025, or 0.0.0.0:25 for every IPv4 address", s)
		}
		return netip.AddrPort{}, fmt.Errorf("%q is not IP:PORT (127.0.0.1:10025, \"[::1]:10025\")", s)
	}
	if a.Addr().Zone() != "" {
		return netip.AddrPort{}, fmt.Errorf("%q: an address with a zone (%%%s) is not supported", s, a.Addr().Zone())
	}
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port()), nil
}

// decodeListenerTLS reads a listener's tls: {cert, key}.
func decodeListenerTLS(d *decoder, r *Relay, n *yaml.Node, setting string) *ListenerTLS {
	t := &ListenerTLS{}
	var cert, key *yaml.Node
	bad := false
	for _, p := range d.pairs(n, setting) {
		k, v := p[0], p[1]
		kp := setting + "." + k.Value
		r.recordAt(d, kp, v)
		switch k.Value {
		case "cert", "key":
			if k.Value == "cert" {
				cert = v
			} else {
				key = v
			}
			if v.Kind != yaml.ScalarNode || v.Value == "" || v.Tag == "!!null" {
				d.errorf(v, kp, "expected the path of a PEM file")
				bad = true
			} else if k.Value == "cert" {
				t.Cert = d.path(v.Value)
			} else {
				t.Key = d.path(v.Value)
			}
		default:
			d.unknownKey(k, setting, []string{"cert", "key"})
		}
	}
	if n.Kind != yaml.MappingNode || bad {
		return nil
	}
	if !d.both(n, setting, "cert", cert, "key", key, "tls needs both cert and key (PEM files; the daemon reads them at start and on reload)") {
		return nil
	}
	return t
}

// decodeProxyProtocol reads a listener's proxy-protocol: {trusted: [...]}.
func decodeProxyProtocol(d *decoder, r *Relay, n *yaml.Node, setting string) *ProxyProtocol {
	pp := &ProxyProtocol{}
	var trusted *yaml.Node
	bad := false
	for _, p := range d.pairs(n, setting) {
		k, v := p[0], p[1]
		switch k.Value {
		case "trusted":
			trusted = v
			var entries []prefixEntry
			entries, bad = decodePrefixes(d, r, v, setting+".trusted")
			pp.Trusted = nil
			for _, e := range entries {
				pp.Trusted = append(pp.Trusted, e.prefix)
			}
		default:
			d.unknownKey(k, setting, []string{"trusted"})
		}
	}
	if n.Kind != yaml.MappingNode {
		return nil
	}
	switch {
	case trusted == nil:
		d.errorf(n, setting+".trusted", "missing: the load balancers' addresses, whose PROXY header gives the client's address (trusted: [192.0.2.10/32])")
		return nil
	case len(pp.Trusted) == 0 && !bad:
		d.errorf(trusted, setting+".trusted", "empty: no peer could connect; list the load balancers' addresses")
		return nil
	case len(pp.Trusted) == 0:
		return nil
	}
	return pp
}

// decodeNetworks reads relay.networks.
func decodeNetworks(d *decoder, s *Set, n *yaml.Node) {
	r := &s.relay
	r.recordAt(d, "relay.networks", n)
	r.networks, _ = decodePrefixes(d, r, n, "relay.networks")
	r.Networks = nil
	for _, e := range r.networks {
		r.Networks = append(r.Networks, e.prefix)
	}
}

// prefixEntry is a prefix of a list, as written and where.
type prefixEntry struct {
	prefix netip.Prefix
	text   string // as written
	path   string // "relay.networks[1]"
}

// decodePrefixes reads a prefix or a list of them, recording where each
// is (setting[i]). It returns the good ones, and whether some were not
// good (and reported).
func decodePrefixes(d *decoder, r *Relay, n *yaml.Node, setting string) (out []prefixEntry, bad bool) {
	for _, it := range d.stringItems(n, setting) {
		path := fmt.Sprintf("%s[%d]", setting, it.index)
		if n.Kind != yaml.SequenceNode {
			path = setting
		}
		p, err := parsePrefixText(it.value)
		if err != nil {
			d.errorf(it.at, path, "%v", err)
			bad = true
			continue
		}
		r.recordAt(d, path, it.at)
		out = append(out, prefixEntry{prefix: p, text: it.value, path: path})
	}
	return out, bad
}

// parsePrefixText reads an IP prefix (192.0.2.0/24) or a single address.
// Bits set past the prefix length are refused (10.1.0.0/8 is a typo for
// something); an IPv4-mapped prefix becomes the IPv4 prefix it stands for.
func parsePrefixText(s string) (netip.Prefix, error) {
	t := strings.TrimSpace(s)
	var p netip.Prefix
	if strings.Contains(t, "/") {
		var err error
		if p, err = netip.ParsePrefix(t); err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not an IP prefix: write it like 192.0.2.0/24 or 2001:db8::/32", s)
		}
		if m := p.Masked(); m != p {
			return netip.Prefix{}, fmt.Errorf("%q has bits set past the prefix length: write %s", s, m)
		}
	} else {
		a, err := netip.ParseAddr(t)
		if err != nil || a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("%q is not an IP prefix or address: write it like 192.0.2.0/24, 2001:db8::/32 or 192.0.2.1", s)
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p, nil
}

// prefixesNode writes a list of prefixes.
func prefixesNode(ps []netip.Prefix) *yaml.Node {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return flowList(s)
}

// recordAt remembers where the relay setting at path is written.
func (r *Relay) recordAt(d *decoder, path string, n *yaml.Node) {
	if r.at == nil {
		r.at = map[string]Pos{}
	}
	r.at[path] = d.pos(n)
}

// listenersNode writes relay.listeners.
func listenersNode(s *Set) *yaml.Node {
	seq := &yaml.Node{Kind: yaml.SequenceNode}
	for _, l := range s.relay.Listeners {
		m := &yaml.Node{Kind: yaml.MappingNode}
		add := func(k string, v *yaml.Node) { m.Content = append(m.Content, scalar(k), v) }
		add("name", strNode(l.Name))
		add("address", strNode(l.Address.String()))
		add("mode", strNode(string(l.Mode)))
		if l.TLS != nil {
			add("tls", &yaml.Node{Kind: yaml.MappingNode, Style: yaml.FlowStyle, Content: []*yaml.Node{
				scalar("cert"), strNode(l.TLS.Cert), scalar("key"), strNode(l.TLS.Key)}})
		}
		if l.ProxyProtocol != nil {
			add("proxy-protocol", &yaml.Node{Kind: yaml.MappingNode, Style: yaml.FlowStyle, Content: []*yaml.Node{
				scalar("trusted"), prefixesNode(l.ProxyProtocol.Trusted)}})
		}
		add("max-connections", itoaNode(l.MaxConnections))
		add("max-connections-per-ip", itoaNode(l.MaxConnectionsPerIP))
		seq.Content = append(seq.Content, m)
	}
	return seq
}

// storeUsersFile resolves the users file from the policy's directory.
func storeUsersFile(d *decoder, s *Set, _ *yaml.Node, path string) error {
	s.relay.Auth.UsersFile = ""
	if path != "" {
		s.relay.Auth.UsersFile = d.path(path)
	}
	return nil
}

// mechanisms are the SASL mechanisms the relay can offer.
var mechanisms = []string{"plain", "login"}

var mechanismsKind = stringListKind("list of SASL mechanisms: plain, login", func(m string) error {
	for _, x := range mechanisms {
		if m == x {
			return nil
		}
	}
	if near := suggest(strings.ToLower(m), mechanisms); near != "" {
		return fmt.Errorf("%q is not a mechanism the relay offers (plain, login): did you mean %q?", m, near)
	}
	return fmt.Errorf("%q is not a mechanism the relay offers (plain, login)", m)
})

// storeMechanisms refuses an empty list: AUTH would be offered with no
// way to use it.
func storeMechanisms(_ *decoder, s *Set, n *yaml.Node, v []string) error {
	if len(v) == 0 {
		if n.Kind == yaml.SequenceNode && len(n.Content) == 0 || n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
			return errors.New("empty: list at least one of plain, login")
		}
		return nil // the items are wrong, and said so
	}
	s.relay.Auth.Mechanisms = v
	return nil
}

// messageSizeKind is relay.limits.message-size, printed in bytes as
// Postfix writes its message_size_limit.
var messageSizeKind = func() *kind[int64] {
	k := *sizeKind[int64](1024, 1<<31)
	k.format = func(v int64) *yaml.Node {
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: strconv.FormatInt(v, 10)}
	}
	k.text = func(v int64) string { return strconv.FormatInt(v, 10) }
	return &k
}()

var bareNewlineKind = enumKind(BareNewlineNormalize, BareNewlineReject)

// percentRE is the number of a percentage.
var percentRE = regexp.MustCompile(`^[0-9]+(\.[0-9]+)?$`)

// ParseFreeSpace reads relay.queue.min-free-space: a percentage below
// 100 ("5%", "2.5%") or a size ("2GiB", "0").
func ParseFreeSpace(s string) (FreeSpace, error) {
	t := strings.TrimSpace(s)
	if num, ok := strings.CutSuffix(t, "%"); ok {
		num = strings.TrimSpace(num)
		p, err := strconv.ParseFloat(num, 64)
		if !percentRE.MatchString(num) || err != nil {
			return FreeSpace{}, fmt.Errorf("%q is not a percentage: write it like 5%% or 2.5%%", s)
		}
		if p >= 100 {
			return FreeSpace{}, fmt.Errorf("%q is out of range: a percentage below 100%%", s)
		}
		return FreeSpace{Percent: p}, nil
	}
	n, err := ParseSize(t)
	if err != nil {
		return FreeSpace{}, fmt.Errorf("%q is not a percentage or a size: write it like 5%%, 2GiB or 500MB", s)
	}
	return FreeSpace{Size: n}, nil
}

var freeSpaceKind = &kind[FreeSpace]{
	name: "percentage (5%) or size (2GiB)",
	parse: func(n *yaml.Node) (FreeSpace, error) {
		s, err := scalarText(n)
		if err != nil {
			return FreeSpace{}, err
		}
		return ParseFreeSpace(s)
	},
	format: func(f FreeSpace) *yaml.Node { return strNode(f.String()) },
	text:   FreeSpace.String,
}

// dsnFromKind is relay.dsn.from: an address, with {hostname} standing
// for the host name.
var dsnFromKind = scalarKind("address ({hostname} is replaced by hostname)", checkDSNFrom, strNode)

func checkDSNFrom(s string) (string, error) {
	t := strings.ReplaceAll(s, "{hostname}", "mta.example.org")
	if strings.ContainsAny(t, "{}") {
		return "", fmt.Errorf("%q: only {hostname} is replaced (write MAILER-DAEMON@{hostname} or an address)", s)
	}
	a, err := mail.ParseAddress(t)
	if err != nil {
		return "", fmt.Errorf("%q is not an address: write it like MAILER-DAEMON@{hostname} or \"Mail Delivery System <postmaster@example.org>\"", s)
	}
	if at := strings.LastIndexByte(a.Address, '@'); at < 0 || !strings.HasPrefix(a.Address[at+1:], "[") && !expr.IsHostname(a.Address[at+1:]) {
		return "", fmt.Errorf("%q: the domain of %s is not a host name", s, a.Address)
	}
	return s, nil
}
