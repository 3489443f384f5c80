package dns

import (
	"context"
	"errors"
	"fmt"

	mdns "github.com/miekg/dns"
)

// exchange asks the servers in turn until one gives a usable answer
// (NOERROR or NXDOMAIN). The returned error has Kind and Server set.
func (c *Client) exchange(ctx context.Context, name string, qtype uint16) (*mdns.Msg, *upstreamServer, *Error) {
	n := len(c.servers)
	start := 0
	if c.rotate && n > 1 {
		start = int((c.next.Add(1) - 1) % uint32(n))
	}
	var last *Error
	for a := 0; a < c.attempts; a++ {
		for i := 0; i < n; i++ {
			if err := ctx.Err(); err != nil {
				srv := ""
				if last != nil {
					srv = last.Server
				}
				return nil, nil, &Error{Kind: Temporary, Server: srv, Err: err}
			}
			srv := &c.servers[(start+i)%n]
			msg, err := c.ask(ctx, srv, name, qtype, false)
			if err != nil {
				last = &Error{Kind: Temporary, Server: srv.name, Err: err}
				continue
			}
			switch msg.Rcode {
			case mdns.RcodeSuccess, mdns.RcodeNameError:
				return msg, srv, nil
			case mdns.RcodeServerFailure:
				if ede := bogusEDE(msg); ede != nil {
					return nil, srv, &Error{Kind: Bogus, Server: srv.name,
						Err: fmt.Errorf("SERVFAIL with extended error %d (%s)%s", ede.InfoCode, mdns.ExtendedErrorCodeToString[ede.InfoCode], extraText(ede))}
				}
				// A validating resolver answers SERVFAIL for bogus data; with
				// CD set it returns the data unchecked. Data that comes back
				// with CD while the plain question still fails shows a
				// validation failure. (The plain question is repeated so a
				// SERVFAIL that was only transient is not taken for bogus.)
				if cd, err := c.ask(ctx, srv, name, qtype, true); err == nil &&
					(cd.Rcode == mdns.RcodeSuccess || cd.Rcode == mdns.RcodeNameError) {
					again, err := c.ask(ctx, srv, name, qtype, false)
					if err == nil && (again.Rcode == mdns.RcodeSuccess || again.Rcode == mdns.RcodeNameError) {
						return again, srv, nil
					}
					if err == nil && again.Rcode == mdns.RcodeServerFailure {
						return nil, srv, &Error{Kind: Bogus, Server: srv.name,
							Err: errors.New("SERVFAIL, but the answer comes back with checking disabled (DNSSEC validation failed)")}
					}
				}
				last = &Error{Kind: Temporary, Server: srv.name, Err: errors.New("SERVFAIL")}
			default:
				last = &Error{Kind: Temporary, Server: srv.name, Err: errors.New(rcodeName(msg.Rcode))}
			}
		}
	}
	if last == nil {
		last = &Error{Kind: Temporary, Err: errors.New("no servers")}
	}
	return nil, nil, last
}

func rcodeName(rc int) string {
	if s, ok := mdns.RcodeToString[rc]; ok {
		return s
	}
	return fmt.Sprintf("RCODE%d", rc)
}

func extraText(ede *mdns.EDNS0_EDE) string {
	if ede.ExtraText == "" {
		return ""
	}
	return ": " + ede.ExtraText
}

// bogusEDE returns an Extended DNS Error (RFC 8914) of the DNSSEC family
// (6 DNSSEC Bogus ... 12 NSEC Missing) in m, if any.
func bogusEDE(m *mdns.Msg) *mdns.EDNS0_EDE {
	opt := m.IsEdns0()
	if opt == nil {
		return nil
	}
	for _, o := range opt.Option {
		if ede, ok := o.(*mdns.EDNS0_EDE); ok &&
			ede.InfoCode >= mdns.ExtendedErrorCodeDNSBogus && ede.InfoCode <= mdns.ExtendedErrorCodeNSECMissing {
			return ede
		}
	}
	return nil
}
