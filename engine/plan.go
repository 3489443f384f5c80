package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/postern-mta/postern/engine/throttle"
	"github.com/postern-mta/postern/policies"
	"github.com/postern-mta/postern/transport"
)

// plan turns a group's decision into a transport plan, as it is: every
// host that is not skipped, each address with the source address, EHLO
// name and timeouts the evaluation settled. Nothing is evaluated again.
func plan(g *Group, hooks *connHooks) (*transport.Plan, error) {
	rt := g.route
	p := &transport.Plan{Hooks: hooks}
	for _, h := range g.Hosts {
		if h.Skipped != nil {
			continue
		}
		th := transport.Host{Name: h.Name, Preference: h.Preference, Port: 25, IsRelay: rt.Type == policies.RouteRelay,
			StartTLS: startTLS(h.TLS.STARTTLS), AllowInvalidCerts: h.TLS.AllowInvalidCerts,
			MinTLSVersion: h.TLS.MinVersion.Uint16(), MessagesPerConnection: h.MessagesPerConnection,
			HandshakeTimeout: time.Duration(h.TLS.HandshakeTimeout)}
		switch {
		case h.verifier != nil:
			// DANE (RFC 7672): the TLSA records replace PKIX, and the
			// name sent in SNI is the TLSA base domain (section 8.1).
			th.Verifier = h.verifier
			if base := h.TLS.DANEState.Base; base != "" && base != h.Name {
				th.SNI = base
			}
		case h.stsEnforce:
			th.MTASTSEnforce = true
		case h.anyCert && h.TLS.Verify == "none":
			// Unusable TLSA records only: TLS without authentication.
			th.AllowInvalidCerts = true
		}
		if h.TLS.Required {
			th.StartTLS = transport.StartTLSRequire
		}
		if th.IsRelay {
			th.Port, th.ImplicitTLS, th.AllowPlaintextAuth = rt.Port, rt.ImplicitTLS, rt.AllowPlaintextAuth
			if rt.Protocol == "lmtp" {
				th.Protocol = transport.LMTP
			}
			if rt.Auth != nil {
				secret, err := rt.Auth.Secret.Resolve()
				if err != nil {
					return nil, fmt.Errorf("route %s: auth: %w", rt.Name, err)
				}
				th.Auth = &transport.Auth{Username: rt.Auth.Username, Secret: transport.Secret(secret)}
			}
		}
		for _, c := range h.Connections {
			t := transport.Target{Addr: c.RemoteIP, EHLOName: c.EHLOHostname, Timeouts: transport.Timeouts{
				Connect: time.Duration(c.Timeouts.Connect), Greeting: time.Duration(c.Timeouts.Greeting),
				EHLO: time.Duration(c.Timeouts.EHLO), MailFrom: time.Duration(c.Timeouts.MailFrom),
				RcptTo: time.Duration(c.Timeouts.RcptTo), Data: time.Duration(c.Timeouts.Data)}}
			if c.SourceIP != nil {
				t.Source = *c.SourceIP
			}
			th.Targets = append(th.Targets, t)
		}
		hooks.hosts = append(hooks.hosts, h)
		p.Hosts = append(p.Hosts, th)
	}
	return p, nil
}

func startTLS(m policies.TLSMode) transport.StartTLSMode {
	switch m {
	case policies.TLSRequire:
		return transport.StartTLSRequire
	case policies.TLSDisable:
		return transport.StartTLSDisable
	}
	return transport.StartTLSOptional
}

// connHooks takes the slots of connection-level throttles as the
// transport reaches each address; they are held until the group's
// delivery ends. A full throttle holds the whole delivery (the transport
// tries no other address or host): moving on to a backup MX because the
// primary's throttle is full would defeat a per-MX limit. It needs no
// lock: the transport calls BeforeConnect from the goroutine running
// Client.Deliver, which is deliverGroup's, the one that calls wait and
// release after it.
type connHooks struct {
	e     *Engine
	s     *state
	hosts []*Host // parallel to Plan.Hosts

	leases  []throttle.Lease
	maxWait time.Duration // longest wait of a full throttle
	warns   []string      // store failures passed over (on-store-error: allow)
}

// BeforeConnect implements transport.Hooks.
func (c *connHooks) BeforeConnect(ctx context.Context, host, target int) error {
	var taken []throttle.Lease
	for _, ref := range c.hosts[host].Connections[target].throttles {
		lease, terr, wait, warn := c.e.acquire(ctx, c.s, ref)
		if warn != "" {
			c.warns = append(c.warns, warn)
		}
		if terr != nil {
			for _, l := range taken {
				l.Release(true)
			}
			c.maxWait = max(c.maxWait, wait)
			terr.Err = errors.Join(terr.Err, transport.ErrHold)
			return terr
		}
		if lease.Held() {
			taken = append(taken, lease)
		}
	}
	c.leases = append(c.leases, taken...)
	return nil
}

// wait is how long a full connection-level throttle asked to wait.
func (c *connHooks) wait() time.Duration {
	if c.maxWait <= 0 {
		return time.Second
	}
	return c.maxWait
}

// release gives back the concurrency slots taken.
func (c *connHooks) release() {
	for _, l := range c.leases {
		l.Release(false)
	}
	c.leases = nil
}
