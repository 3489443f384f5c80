package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/postern-mta/postern/expr"
	"github.com/postern-mta/postern/transport/dns"
)

// Naming a client: forward-confirmed reverse DNS, as Postfix does it. The
// PTR records of the client's address (RFC 1035 section 3.5, RFC 3596
// section 2.5) are only what the owner of the reverse zone claims; a name
// is used only when its own A (IPv4 client) or AAAA (IPv6 client) records
// hold the client's address. Otherwise the client is "unknown" in the log
// line (client=unknown[IP]) and in the Received header. A loopback client
// is "localhost", without a question.
const (
	// ptrTimeout bounds the naming of one client, the PTR question and
	// the forward questions together. Naming happens when the client
	// connects: a client whose reverse DNS is slow or broken is named
	// "unknown" after at most this long, rather than kept waiting for its
	// greeting. (A Cache remembers the answers it did get, negative ones
	// included, for the next connection.)
	ptrTimeout = 5 * time.Second
	// maxPTRNames is how many names of one PTR answer are checked with a
	// forward question, in answer order: each costs a question, and the
	// reverse zone is the client's to fill. Usually there is one.
	maxPTRNames = 3
)

// errNoReverse is the answer when the resolver in force cannot ask PTR
// questions (an embedder's resolver without dns.Reverse).
var errNoReverse = errors.New("relay: the resolver does not answer PTR questions")

// loopbackName is the name of a client on a loopback address, given
// without a DNS question: what /etc/hosts says, and what Postfix logs for
// the programs of its own host (a relay behind Postfix on the same
// machine is the common case, and a question per connection is saved).
const loopbackName = "localhost"

// clientName returns the function naming a client from its address: a
// loopback client (127.0.0.0/8, ::1, or one of these v4-mapped) is
// "localhost" without a question; any other by forward-confirmed reverse
// DNS through r, an error wrapping errNoReverse when r (possibly nil) does
// not implement [dns.Reverse]. A PTR name whose forward records do not
// hold the address is logged on log at Warn, as Postfix does. The
// function returns a valid host name, lower-case and without a trailing
// dot, or an error saying why there is none.
func clientName(r dns.Resolver, log *slog.Logger) func(ctx context.Context, ip netip.Addr) (string, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	rev, _ := r.(dns.Reverse)
	return func(ctx context.Context, ip netip.Addr) (string, error) {
		ip = ip.WithZone("").Unmap()
		if ip.IsLoopback() {
			return loopbackName, nil
		}
		if rev == nil {
			return "", fmt.Errorf("relay: naming client %s: %w", ip, errNoReverse)
		}
		return confirmedName(ctx, r, rev, ip, log)
	}
}

// clientPTR is the listeners' LookupPTR. It asks the resolver of the
// policy in force at each call: a reload may replace it.
func (d *Daemon) clientPTR(ctx context.Context, ip netip.Addr) (string, error) {
	var r dns.Resolver
	if d.eng != nil {
		r = d.eng.Resolver()
	}
	return clientName(r, d.log)(ctx, ip)
}

// confirmedName is the first of ip's PTR names (at most maxPTRNames
// checked, within ptrTimeout) that is a valid host name and whose forward
// records hold ip; ip has no zone and is not v4-mapped. Each name checked
// in vain is logged on log.
func confirmedName(parent context.Context, r dns.Resolver, rev dns.Reverse, ip netip.Addr, log *slog.Logger) (string, error) {
	ctx, cancel := context.WithTimeout(parent, ptrTimeout)
	defer cancel()
	ptr, err := rev.LookupPTR(ctx, ip)
	if err != nil {
		return "", fmt.Errorf("relay: naming client %s: %w", ip, err)
	}
	var errs []error
	checked := 0
	for _, raw := range ptr.Names {
		name := strings.TrimSuffix(strings.ToLower(raw), ".")
		if !validHostName(name) {
			errs = append(errs, fmt.Errorf("PTR name %q is not a valid host name", raw))
			continue
		}
		if checked == maxPTRNames {
			errs = append(errs, fmt.Errorf("only the first %d PTR names are checked", maxPTRNames))
			break
		}
		checked++
		ok, err := resolvesTo(ctx, r, name, ip)
		if ok {
			return name, nil
		}
		if parent.Err() == nil { // not when the caller gave up (the daemon stops)
			warnUnconfirmed(log, name, ip, err)
		}
		if err == nil {
			err = fmt.Errorf("%s does not resolve back to %s", name, ip)
		}
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		errs = append(errs, errors.New("empty PTR answer"))
	}
	return "", fmt.Errorf("relay: naming client %s: no forward-confirmed PTR name: %w", ip, errors.Join(errs...))
}

// warnUnconfirmed logs, in Postfix's words, that the PTR name of a client
// does not resolve back to its address: either the forward records do not
// hold it (err nil), or the forward question failed (err). A wrong or
// forged reverse zone, or one out of step with its forward zone, shows
// here.
func warnUnconfirmed(log *slog.Logger, name string, ip netip.Addr, err error) {
	msg := "hostname " + name + " does not resolve to address " + ip.String()
	if err != nil {
		log.Warn(msg, "hostname", name, "client_ip", ip.String(), "err", err)
		return
	}
	log.Warn(msg, "hostname", name, "client_ip", ip.String())
}

// resolvesTo reports whether name's A records (AAAA for an IPv6 ip) hold
// ip.
func resolvesTo(ctx context.Context, r dns.Resolver, name string, ip netip.Addr) (bool, error) {
	lookup := r.LookupA
	if ip.Is6() {
		lookup = r.LookupAAAA
	}
	res, err := lookup(ctx, name)
	if err != nil {
		return false, err
	}
	return slices.Contains(res.Addrs, ip), nil
}

// validHostName reports whether name, already lower-case and without the
// trailing dot, may name a host in a log line and a Received header: a
// DNS host name (RFC 1123 section 2.1, underscores tolerated as Postfix
// does) that does not end in an all-numeric label, so that it cannot pass
// for an address ("10.0.0.1", "1.2.3.4.5").
func validHostName(name string) bool {
	if !expr.IsHostname(name) {
		return false
	}
	last := name[strings.LastIndexByte(name, '.')+1:]
	return strings.Trim(last, "0123456789") != ""
}
