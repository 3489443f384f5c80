package engine

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/postern-mta/postern/engine/metrics"
	"github.com/postern-mta/postern/transport"
)

// AttemptInfo is one connection attempt of a delivery, for
// Options.OnAttempt.
type AttemptInfo struct {
	MessageID string // Message.ID
	Domain    string // the recipient domain of the group
	Route     string
	Host      string // the MX host or relay tried
	// Address and Source are the remote and local addresses, when a
	// connection was made.
	Address, Source netip.AddrPort
	// TLS is the session's TLS state once established (zero without).
	TLS transport.TLSInfo
	// Err is why the attempt did not carry the transaction (a refused
	// connection, a failed STARTTLS, a reply that ended the session); nil
	// for the attempt that carried it.
	Err *transport.Error
	// Recipients is the number of recipients the group sent; for the
	// attempt that carried the transaction, Delivered, Deferred and
	// Bounced say how the server answered them.
	Recipients                   int
	Delivered, Deferred, Bounced int
}

// reportAttempts calls Options.OnAttempt for each attempt of a group's
// delivery (the transport's Attempts, shared by its results sent).
func (e *Engine) reportAttempts(msg *Message, g *Group, p *transport.Plan, sent []transport.Result) {
	if e.opts.OnAttempt == nil {
		return
	}
	for _, a := range sent[0].Attempts {
		info := AttemptInfo{MessageID: msg.ID, Domain: g.Domain, Route: g.Route.Name, Address: a.Address, Source: a.Source,
			TLS: a.TLS, Err: a.Err, Recipients: len(sent)}
		if a.Err == nil {
			for _, r := range sent {
				switch r.Status {
				case transport.StatusDelivered:
					info.Delivered++
				case transport.StatusTemporary:
					info.Deferred++
				default:
					info.Bounced++
				}
			}
		}
		if a.Host >= 0 && a.Host < len(p.Hosts) {
			info.Host = p.Hosts[a.Host].Name
		}
		e.opts.OnAttempt(info)
	}
}

// logStatus is the Postfix-style status word of a result: sent, deferred,
// bounced, or local (handed back to the embedder).
func logStatus(r *Result) string {
	switch {
	case r.Local:
		return "local"
	case r.Status == transport.StatusDelivered:
		return "sent"
	case r.Status == transport.StatusTemporary:
		return "deferred"
	}
	return "bounced"
}

// observe logs one line per result — the message's ID, the recipient,
// status=sent|deferred|bounced|local and Postfix's fields (relay host
// and address, delay in milliseconds, DSN code, the reply) — with the
// caller's context, and counts it in the metrics.
func (e *Engine) observe(ctx context.Context, msg *Message, results []Result) {
	m, lg := e.opts.Metrics, e.opts.Logger
	for i := range results {
		r := &results[i]
		verify := string(r.TLS.Verified)
		if m != nil {
			m.Delivered(r.StatusText(), string(r.Class), r.Route, verify, domainOf(r.Recipient))
		}
		status := logStatus(r)
		level := slog.LevelInfo
		if status == "deferred" || status == "bounced" {
			level = slog.LevelWarn
		}
		if !lg.Enabled(ctx, level) {
			continue
		}
		attrs := make([]slog.Attr, 0, 14)
		attrs = append(attrs, slog.String("id", msg.ID), slog.String("to", r.Recipient), slog.String("status", status),
			slog.String("route", r.Route))
		if r.Host != "" {
			attrs = append(attrs, slog.String("relay", relayField(r.Host, r.Address)))
		}
		// Postfix's delay=, in whole milliseconds: an integer, because
		// slog's JSON handler formats a float through encoding/json, a
		// third of the cost of the whole line in a real run.
		attrs = append(attrs, slog.Int64("delay_ms", r.Duration.Milliseconds()))
		if r.Code != 0 {
			attrs = append(attrs, slog.Int("code", r.Code))
		}
		if !r.Enhanced.IsZero() {
			attrs = append(attrs, slog.String("dsn", r.Enhanced.String()))
		}
		if r.Text != "" {
			attrs = append(attrs, slog.String("reply", r.Text))
		}
		if r.Class != "" && r.Class != transport.ClassNone {
			attrs = append(attrs, slog.String("class", string(r.Class)))
		}
		if r.TLS.Enabled() {
			attrs = append(attrs, slog.String("tls", verify))
		}
		if !r.RetryAfter.IsZero() {
			attrs = append(attrs, slog.Time("retry_after", r.RetryAfter), slog.String("retry_from", r.RetryFrom))
		}
		// The record is built here, without the caller's source line
		// (runtime.Callers costs more than the rest of the line): it
		// would always name this function.
		rec := slog.NewRecord(time.Now(), level, "delivery", 0)
		rec.AddAttrs(attrs...)
		_ = lg.Handler().Handle(ctx, rec)
	}
}

// relayField is Postfix's relay= value: host[address]:port, or the host
// alone when no connection was made; built in one allocation.
func relayField(host string, addr netip.AddrPort) string {
	if !addr.IsValid() {
		return host
	}
	var buf [96]byte
	b := append(buf[:0], host...)
	b = append(b, '[')
	b = addr.Addr().AppendTo(b)
	b = append(b, "]:"...)
	b = strconv.AppendUint(b, uint64(addr.Port()), 10)
	return string(b)
}

// domainOf is the domain of an address, "" without one.
func domainOf(addr string) string {
	for i := len(addr) - 1; i >= 0; i-- {
		if addr[i] == '@' {
			return addr[i+1:]
		}
	}
	return ""
}

// countingDialer counts the delivery connections it opens and their
// closes in the metrics (postern_connections_open).
type countingDialer struct {
	transport.Dialer
	m *metrics.Metrics
}

// DialContext dials with the wrapped dialer and counts the connection.
func (d countingDialer) DialContext(ctx context.Context, network string, remote netip.AddrPort, local netip.Addr) (net.Conn, error) {
	c, err := d.Dialer.DialContext(ctx, network, remote, local)
	if err != nil {
		return nil, err
	}
	d.m.ConnOpened()
	return &countedConn{Conn: c, m: d.m}, nil
}

// countedConn counts its Close once.
type countedConn struct {
	net.Conn
	m    *metrics.Metrics
	once sync.Once
}

// Close closes the connection and counts it closed, once.
func (c *countedConn) Close() error {
	c.once.Do(c.m.ConnClosed)
	return c.Conn.Close()
}

// countDANE counts the DANE decision of each host of a group delivered,
// and each attempt whose certificate matched none of the TLSA records.
func (e *Engine) countDANE(g *Group, attempts []transport.Attempt) {
	m := e.opts.Metrics
	if m == nil {
		return
	}
	for _, h := range g.Hosts {
		if h.daneWord != "" {
			m.DANE(h.daneWord)
		}
	}
	for _, a := range attempts {
		if a.Err != nil && a.Err.Class == transport.ClassDANE {
			m.DANE(metrics.DANEVerifyFailed)
		}
	}
}
