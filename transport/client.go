package transport

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/postern-mta/postern/transport/mailbox"
)

// DefaultIdleTimeout is how long a pooled connection waits for its next
// transaction when [Client.IdleTimeout] is zero.
const DefaultIdleTimeout = 30 * time.Second

// Client delivers messages according to [Plan]s and keeps a pool of
// connections for reuse. The zero value is ready to use; a Client is safe
// for concurrent use. Set the fields before the first Deliver and do not
// change them afterwards. Call Close when done, to QUIT pooled connections.
type Client struct {
	// Dialer opens connections; nil means [NetDialer].
	Dialer Dialer
	// RootCAs verifies server certificates (PKIX); nil means the system
	// roots.
	RootCAs *x509.CertPool
	// IdleTimeout closes a pooled connection unused for this long; zero
	// means DefaultIdleTimeout, negative disables reuse.
	IdleTimeout time.Duration
	// MaxIdle bounds the number of idle pooled connections; zero means 100.
	MaxIdle int
	// Logger receives debug records of sessions (never credentials or
	// message content); nil means no logging.
	Logger *slog.Logger
	// TLSSessions is how many TLS sessions are kept for resumption (one
	// per server name, least recently used first out); zero means 256,
	// negative disables resumption. A resumed session is checked like a
	// new one: the certificate checks run on the chain the session
	// carries.
	TLSSessions int
	// SelfNames are the names this MTA greets and says EHLO with. A server
	// whose greeting or EHLO reply names one of them (compared without
	// case) is this MTA itself: the delivery fails permanently with class
	// [ClassLoop] (554 5.4.6), as Postfix's "loops back to myself". Empty
	// means no check.
	SelfNames []string

	pool     pool
	sessOnce sync.Once
	sessions tls.ClientSessionCache
}

// sessionCache returns the client's TLS session cache, nil when disabled.
func (c *Client) sessionCache() tls.ClientSessionCache {
	c.sessOnce.Do(func() {
		switch {
		case c.TLSSessions == 0:
			c.sessions = tls.NewLRUClientSessionCache(256)
		case c.TLSSessions > 0:
			c.sessions = tls.NewLRUClientSessionCache(c.TLSSessions)
		}
	})
	return c.sessions
}

func (c *Client) dialer() Dialer {
	if c.Dialer != nil {
		return c.Dialer
	}
	return NetDialer{}
}

// debug logs a debug record of a session. Callers on the per-message
// path check [Client.debugging] first: building args costs allocations
// even when the record is dropped.
func (c *Client) debug(msg string, args ...any) {
	if c.debugging() {
		c.Logger.Debug("transport: "+msg, args...)
	}
}

// debugging reports whether debug records are kept.
func (c *Client) debugging() bool {
	return c.Logger != nil && c.Logger.Enabled(context.Background(), slog.LevelDebug)
}

// Close QUITs and closes the pooled connections; later deliveries still
// work but nothing more is pooled.
// isSelf reports whether name is one of c.SelfNames.
func (c *Client) isSelf(name string) bool {
	for _, n := range c.SelfNames {
		if n != "" && strings.EqualFold(strings.TrimSuffix(name, "."), strings.TrimSuffix(n, ".")) {
			return true
		}
	}
	return false
}

func (c *Client) Close() error {
	c.pool.closeAll()
	return nil
}

// delivery is the state of one Deliver call.
type delivery struct {
	c       *Client
	plan    *Plan
	msg     *Message
	start   time.Time
	results []Result
	pending []int    // recipients without a result, in order
	from    string   // the reverse-path, canonical (RFC 5321 Mailbox, see package mailbox)
	rcpts   []string // the forward-paths, canonical, by recipient index
	eight   bool     // the body has 8-bit bytes
	utf8    bool     // SMTPUTF8 needed
	current *session
	// attempts made so far, given to every result at the end.
	attempts []Attempt
}

// Deliver delivers msg to its recipients following plan, and returns one
// [Result] per recipient of msg, in the same order — whatever happens,
// including a cancelled ctx or a panic inside the transport (both give
// temporary results to the recipients not yet answered).
//
// Hosts are tried in order, and each host's addresses in order. Failures
// before MAIL FROM move on to the next address (connection failures) or the
// next host (the host answered: a negative greeting or EHLO, a TLS or AUTH
// failure, a SIZE, SMTPUTF8 or REQUIRETLS mismatch). Under strict TLS, a
// host without STARTTLS (or refusing it) is a temporary failure, 451 4.7.10,
// so that a downgrade defers the message instead of bouncing it; only a
// message with [Message.RequireTLS] gets a permanent 550 5.7.10. Once MAIL
// FROM is sent, the replies are final for this attempt: 2xx delivered, 4xx
// temporary, 5xx permanent, per recipient where the reply is per recipient.
// When every host failed, every recipient gets the last failure.
//
// A pooled connection taken for this message gets this delivery's timeouts
// and messages-per-connection limit; one that has already carried that many
// transactions is closed instead.
func (c *Client) Deliver(ctx context.Context, plan *Plan, msg *Message) (results []Result) {
	if msg == nil {
		return nil
	}
	d := &delivery{c: c, plan: plan, msg: msg, start: time.Now(), results: make([]Result, len(msg.Recipients))}
	defer func() {
		if v := recover(); v != nil {
			if d.current != nil {
				d.current.close()
			}
			c.debug("panic", "panic", v, "stack", string(debug.Stack()))
			d.finish(localError(451, EnhancedCode{4, 3, 0}, ClassIO, "", fmt.Sprintf("internal error in the transport: %v", v)))
		}
		for i := range d.results {
			d.results[i].Attempts = d.attempts
		}
		results = d.results
	}()
	for i, r := range msg.Recipients {
		d.results[i].Recipient = r.Address
	}
	d.run(ctx)
	return d.results
}

// attempt records one try of target ti of host hi.
func (d *delivery) attempt(hi, ti int, s *session, f *failure, warnings []Warning) {
	a := Attempt{Host: hi, Target: ti, Warnings: warnings}
	if s != nil {
		a.Address, a.Source, a.TLS = s.remote, s.local, s.tls
		a.Warnings = append(a.Warnings, s.warnings...)
	}
	if f != nil {
		a.Err = f.err
		if s == nil && f.err != nil {
			a.Address, a.Source = f.err.Address, f.local
		}
	}
	d.attempts = append(d.attempts, a)
}

func (d *delivery) run(ctx context.Context) {
	msg := d.msg
	from, err := mailbox.ParseReversePath(msg.From)
	if err != nil {
		d.finish(localError(501, EnhancedCode{5, 1, 7}, ClassUnexpectedReply, "MAIL FROM", "bad sender: "+err.Error()))
		return
	}
	d.from = from.String()
	d.utf8 = msg.SMTPUTF8 || from.UTF8
	d.rcpts = make([]string, len(msg.Recipients))
	for i, r := range msg.Recipients {
		a, err := mailbox.Parse(r.Address)
		if err != nil {
			d.set(i, nil, localError(501, EnhancedCode{5, 1, 3}, ClassUnexpectedReply, "RCPT TO", "bad recipient: "+err.Error()), nil)
			continue
		}
		d.rcpts[i] = a.String()
		d.utf8 = d.utf8 || a.UTF8
		d.pending = append(d.pending, i)
	}
	if len(d.pending) == 0 {
		return
	}
	if msg.Body != nil {
		eight, err := has8bit(msg.Body, msg.Size)
		if err != nil {
			d.finish(localError(451, EnhancedCode{4, 3, 0}, ClassIO, "", "reading the message: "+err.Error()))
			return
		}
		d.eight = eight
	}
	if d.plan == nil || len(d.plan.Hosts) == 0 {
		d.finish(localError(451, EnhancedCode{4, 4, 4}, ClassDNS, "", "no host to deliver to"))
		return
	}

	var last *Error
	for hi := range d.plan.Hosts {
		h := &d.plan.Hosts[hi]
		if ctx.Err() != nil {
			break
		}
		if len(h.Targets) == 0 {
			last = localError(550, EnhancedCode{5, 4, 4}, ClassDNS, "", "host has no usable address").at(h.Name, netip.AddrPort{})
			continue
		}
		for ti := range h.Targets {
			if ctx.Err() != nil {
				break
			}
			done, f := d.tryTarget(ctx, hi, ti)
			if done {
				return
			}
			last = f.err
			if f.hold || last.Class == ClassLoop {
				// No other target or host: see ErrHold; and a loop
				// is this MTA's own configuration, not the host's.
				d.finish(last)
				return
			}
			if f.nextHost {
				break
			}
		}
	}
	if err := ctx.Err(); err != nil {
		last = localError(451, EnhancedCode{4, 3, 0}, ClassIO, "", "delivery interrupted: "+context.Cause(ctx).Error())
		last.Err = context.Cause(ctx)
	}
	d.finish(last)
}

// tryTarget delivers through target ti of host hi. done reports that the
// recipients got their results; otherwise f says why not.
func (d *delivery) tryTarget(ctx context.Context, hi, ti int) (done bool, f *failure) {
	msg := d.msg
	h := &d.plan.Hosts[hi]
	t := &h.Targets[ti]
	addr := t.Addr.Unmap()
	remote := netip.AddrPortFrom(addr, uint16(h.port()))
	if d.plan.Hooks != nil {
		if err := d.plan.Hooks.BeforeConnect(ctx, hi, ti); err != nil {
			return false, &failure{err: asError(err, ClassConnection, "before connecting").at(h.Name, remote), hold: errors.Is(err, ErrHold)}
		}
	}
	local := t.Source.Unmap()
	p := &connParams{host: h, remote: remote, local: local, ehlo: t.EHLOName, to: t.Timeouts.withDefaults(), handshake: h.HandshakeTimeout}
	if p.ehlo == "" {
		p.ehlo = "localhost"
	}
	if p.handshake <= 0 {
		p.handshake = DefaultHandshakeTimeout
	}
	p.strict = h.StartTLS == StartTLSRequire || h.Verifier != nil || h.MTASTSEnforce || msg.RequireTLS || h.ImplicitTLS
	p.mustPKIX = !h.AllowInvalidCerts || h.MTASTSEnforce || msg.RequireTLS
	p.requireTLS = msg.RequireTLS
	p.max = h.MessagesPerConnection
	if d.c.IdleTimeout < 0 || p.max < 1 {
		p.max = 1
	}
	p.key = poolKey{remote: remote, local: local, host: strings.ToLower(h.Name), proto: h.Protocol, ehlo: p.ehlo,
		tls: fmt.Sprintf("%d/%t/%t/%t/%s/%t/%d/%s", h.StartTLS, h.ImplicitTLS, p.strict, p.mustPKIX, verifierKey(h.Verifier), h.MTASTSEnforce, h.MinTLSVersion, strings.ToLower(h.SNI))}
	if h.Auth != nil {
		sum := sha256.Sum256([]byte(h.Auth.Username + "\x00" + string(h.Auth.Secret)))
		p.key.creds = hex.EncodeToString(sum[:16])
	}

	var extra []Warning
	for {
		s := d.c.pool.get(p.key)
		if s != nil {
			if s.uses >= p.max {
				// Carried as many transactions as this delivery's
				// limit allows.
				s.quit()
				continue
			}
			d.current = s // closed by Deliver's recover on a panic
			// The connection was opened for an earlier delivery: from
			// now on this one's timeouts and limit apply.
			s.to, s.max = p.to, p.max
			s.bind(ctx)
			if s.ext.has("PIPELINING") {
				s.rset = true // sent with MAIL FROM, see transaction.writeAll
			} else if r, err := s.cmd(s.to.EHLO, "RSET"); err != nil || r.Code != 250 {
				// Gone stale while idle: not a delivery failure.
				s.close()
				d.current = nil
				continue
			}
			if d.c.debugging() {
				d.c.debug("reusing connection", "host", h.Name, "remote", remote, "uses", s.uses)
			}
		} else {
			var f *failure
			s, f = d.c.open(ctx, p)
			if f != nil {
				if f.retryPlain && !p.noTLS {
					// Optional STARTTLS whose handshake failed: once
					// more, in plaintext (see StartTLSOptional).
					p.noTLS = true
					d.attempt(hi, ti, nil, f, nil)
					extra = append(extra, Warning{ClassTLS, f.err.Message + "; reconnected and continued without TLS", f.err.TLSResult})
					continue
				}
				d.attempt(hi, ti, nil, f, nil)
				return false, f
			}
			s.warnings = append(s.warnings, extra...)
		}
		d.current = s
		f := d.transact(s)
		d.current = nil
		if f != nil && f.stale {
			// A pooled connection gone stale while idle: not a
			// delivery failure, and nothing of the message was taken.
			s.close()
			continue
		}
		d.attempt(hi, ti, s, f, nil)
		d.c.release(s)
		if f != nil {
			return false, f
		}
		return true, nil
	}
}

// set records the result of recipient i: delivered by reply r, or failed
// with e; s (if any) says where.
func (d *delivery) set(i int, r *reply, e *Error, s *session) {
	res := &d.results[i]
	if res.Status != StatusUnknown {
		return // never two results for one recipient
	}
	res.Duration = time.Since(d.start)
	if s != nil {
		res.Host, res.Address, res.Source, res.Protocol, res.TLS = s.host, s.remote, s.local, s.proto, s.tls
		res.Warnings = append([]Warning(nil), s.warnings...)
		res.PeerDSN = s.esmtp && s.ext.has("DSN")
	}
	if e == nil {
		res.Status, res.Code, res.Enhanced, res.Text, res.Class = StatusDelivered, r.Code, r.Enhanced, r.text(), ClassNone
		return
	}
	e2 := *e // each result gets its own error value
	if s != nil && e2.Host == "" {
		e2.Host, e2.Address = s.host, s.remote
	}
	if e2.Code == 0 {
		e2.Code = 451
	}
	if e2.Class == "" || e2.Class == ClassNone {
		e2.Class = ClassIO
	}
	res.Status = StatusTemporary
	if e2.Permanent {
		res.Status = StatusPermanent
	}
	res.Code, res.Enhanced, res.Text, res.Class, res.Err = e2.Code, e2.Enhanced, e2.Message, e2.Class, &e2
	if s == nil {
		res.Host, res.Address = e2.Host, e2.Address
		// The attempt that failed with e says how far its session got:
		// its TLS state (a session verified by DANE that then failed on
		// REQUIRETLS says so), source and warnings.
		for k := len(d.attempts) - 1; k >= 0; k-- {
			if a := &d.attempts[k]; a.Err == e {
				res.TLS, res.Source = a.TLS, a.Source
				res.Warnings = append([]Warning(nil), a.Warnings...)
				break
			}
		}
	}
}

// finish gives e to every recipient without a result.
func (d *delivery) finish(e *Error) {
	if e == nil {
		e = localError(451, EnhancedCode{4, 3, 0}, ClassIO, "", "not delivered")
	}
	for i := range d.results {
		if d.results[i].Status == StatusUnknown {
			d.set(i, nil, e, nil)
		}
	}
}
