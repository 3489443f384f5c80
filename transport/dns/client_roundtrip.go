package dns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	mdns "github.com/miekg/dns"
)

// ask sends one question to one server: over UDP first for "udp" servers,
// over TCP or TLS otherwise. With TCPOnError a UDP question is repeated
// over TCP when the answer is truncated or the UDP exchange fails with an
// error that is not a timeout (port unreachable, a reply that cannot be
// parsed): a server that does not answer over UDP is unlikely to answer
// over TCP, and waiting for it twice would double what it costs. It
// checks that the reply answers the question.
func (c *Client) ask(ctx context.Context, srv *upstreamServer, name string, qtype uint16, cd bool) (*mdns.Msg, error) {
	m := new(mdns.Msg)
	m.SetQuestion(name, qtype)
	m.RecursionDesired = true
	m.CheckingDisabled = cd
	if c.dnssec {
		m.AuthenticatedData = true
	}
	if c.edns {
		m.SetEdns0(ednsBufSize, c.dnssec)
	}
	var (
		r   *mdns.Msg
		err error
	)
	switch srv.Proto {
	case "tls":
		r, err = c.roundTrip(ctx, srv.tls, srv.addr, m)
	case "tcp":
		r, err = c.roundTrip(ctx, c.tcp, srv.addr, m)
	default:
		r, err = c.roundTrip(ctx, c.udp, srv.addr, m)
		switch {
		case err != nil && c.tcpOnError && ctx.Err() == nil && !isTimeout(err):
			r, err = c.roundTrip(ctx, c.tcp, srv.addr, m)
			if err != nil {
				err = fmt.Errorf("over UDP and then TCP: %w", err)
			}
		case err == nil && r.Truncated && c.tcpOnError:
			r, err = c.roundTrip(ctx, c.tcp, srv.addr, m)
		case err == nil && r.Truncated:
			return nil, errors.New("truncated answer over UDP (TCP fallback is off)")
		}
	}
	if err != nil {
		return nil, err
	}
	if !r.Response || r.Opcode != mdns.OpcodeQuery {
		return nil, errors.New("malformed reply: not a query response")
	}
	if len(r.Question) > 0 {
		q := r.Question[0]
		if len(r.Question) != 1 || q.Qtype != qtype || !strings.EqualFold(q.Name, name) {
			return nil, fmt.Errorf("reply is for another question (%s %s)", q.Name, typeName(q.Qtype))
		}
	} else if r.Rcode == mdns.RcodeSuccess || r.Rcode == mdns.RcodeNameError {
		return nil, errors.New("malformed reply: no question section")
	}
	return r, nil
}

// isTimeout reports whether err is an exchange that ran out of time: a
// network timeout, or the per-exchange deadline.
func isTimeout(err error) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// roundTrip does one exchange within the per-exchange timeout and the
// concurrency limit, abandoning it when ctx is done.
func (c *Client) roundTrip(ctx context.Context, mc *mdns.Client, addr string, m *mdns.Msg) (*mdns.Msg, error) {
	select {
	case c.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-c.sem }()
	ctx, cancel := context.WithTimeout(ctx, mc.Timeout)
	defer cancel()
	conn, err := mc.DialContext(ctx, addr)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	r, _, err := mc.ExchangeWithConnContext(ctx, m, conn)
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return nil, fmt.Errorf("%w: %w", cerr, err)
		}
		return nil, err
	}
	return r, nil
}
