package throttle

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// errInlinePassword refuses a password written in the URL: it would end up
// in the policy file, logs and dry-run output.
var errInlinePassword = errors.New("throttle: redis URL: an inline password is not allowed; " +
	"give it as the policy's password secret ({env:NAME} or {file:PATH}) and write only the user in the URL")

// ParseURL reads a Redis URL (RFC 3986 syntax, the redis and rediss
// schemes) into options:
//
//	redis://[user@]host[:port][/db]                 a single node
//	rediss://[user@]host[:port][/db]                the same over TLS
//	redis://[user@]host1[:port],host2[:port],...    a Redis Cluster (seed nodes)
//	redis://[user@]host[:port]?cluster=true         a Cluster, from one seed
//
// The port defaults to 6379, the database to 0 (a Cluster has only 0);
// IPv6 hosts are bracketed ("[::1]:6379"); the user is percent-decoded.
// A password in the URL ("user:password@", "?password=") is an error:
// it is a secret of the policy. Errors never repeat the URL.
func ParseURL(s string) (RedisOptions, error) {
	var o RedisOptions
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		return o, errors.New("throttle: redis URL: want redis://host:port or rediss://host:port")
	}
	switch strings.ToLower(scheme) {
	case "redis":
	case "rediss":
		o.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
	default:
		if !validScheme(scheme) {
			// Not a scheme at all (a URL missing its scheme, "u:pw@h://..."):
			// what stands before "://" may hold a secret, so it is not shown.
			return o, errors.New("throttle: redis URL: want redis://host:port or rediss://host:port")
		}
		return o, fmt.Errorf("throttle: redis URL: scheme %q: want redis or rediss", scheme)
	}
	if i := strings.LastIndex(rest, "@"); i >= 0 {
		user := rest[:i]
		rest = rest[i+1:]
		if strings.Contains(user, ":") {
			return o, errInlinePassword
		}
		if strings.ContainsAny(user, "/?#") {
			return o, errors.New("throttle: redis URL: malformed user")
		}
		u, err := url.PathUnescape(user)
		if err != nil || u == "" {
			return o, errors.New("throttle: redis URL: malformed user")
		}
		o.Username = u
	}
	if strings.Contains(rest, "#") {
		return o, errors.New("throttle: redis URL: a fragment (#) means nothing here")
	}
	rest, query, _ := strings.Cut(rest, "?")
	hosts, path, _ := strings.Cut(rest, "/")
	for h := range strings.SplitSeq(hosts, ",") {
		addr, err := hostPort(h)
		if err != nil {
			return o, err
		}
		o.Addrs = append(o.Addrs, addr)
	}
	if err := o.parseQuery(query); err != nil {
		return o, err
	}
	if path != "" {
		db, err := strconv.Atoi(path)
		if err != nil || db < 0 {
			return o, fmt.Errorf("throttle: redis URL: database %q: want a number", path)
		}
		o.DB = db
	}
	if (o.Cluster || len(o.Addrs) > 1) && o.DB != 0 {
		return o, fmt.Errorf("throttle: redis URL: database %d: a Redis Cluster has only database 0", o.DB)
	}
	return o, nil
}

// validScheme reports whether s has the syntax of a URI scheme (RFC 3986
// §3.1): a letter, then letters, digits, "+", "-" or ".".
func validScheme(s string) bool {
	for i, c := range s {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		case i > 0 && (c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.'):
		default:
			return false
		}
	}
	return s != ""
}

// hostPort checks one host[:port] of the URL and adds the default port.
func hostPort(h string) (string, error) {
	if h == "" {
		return "", errors.New("throttle: redis URL: empty host")
	}
	host, port := h, "6379"
	if strings.HasPrefix(h, "[") || strings.Contains(h, ":") {
		if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") {
			h += ":6379" // a bracketed IPv6 address without a port
		}
		var err error
		if host, port, err = net.SplitHostPort(h); err != nil {
			return "", fmt.Errorf("throttle: redis URL: host %q: %w", h, err)
		}
	}
	if host == "" {
		return "", fmt.Errorf("throttle: redis URL: host %q: empty host name", h)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return "", fmt.Errorf("throttle: redis URL: host %q: port %q: want 1 to 65535", h, port)
	}
	return net.JoinHostPort(host, port), nil
}

// parseQuery reads the URL's parameters: only cluster is known.
func (o *RedisOptions) parseQuery(query string) error {
	if query == "" {
		return nil
	}
	v, err := url.ParseQuery(query)
	if err != nil {
		return errors.New("throttle: redis URL: malformed parameters")
	}
	for k, vals := range v {
		switch k {
		case "cluster":
			b, err := strconv.ParseBool(vals[len(vals)-1])
			if err != nil {
				return fmt.Errorf("throttle: redis URL: cluster=%q: want true or false", vals[len(vals)-1])
			}
			if !b && len(o.Addrs) > 1 {
				return errors.New("throttle: redis URL: cluster=false with several hosts (several hosts are a Cluster)")
			}
			o.Cluster = b
		case "password":
			return errInlinePassword
		default:
			return fmt.Errorf("throttle: redis URL: unknown parameter %q (known: cluster)", k)
		}
	}
	return nil
}
