package tlsrpt

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// DefaultTimeout bounds one HTTPS submission when [Submitter.Timeout] is 0.
const DefaultTimeout = time.Minute

// Submitter sends reports to the URIs of a policy domain's TLSRPT record
// (RFC 8460 section 5): mailto: URIs through SendMail, https: URIs by an
// HTTP POST of the gzipped report (section 5.4).
//
// HTTPS uses a client of its own: it dials through Dial (after LookupHost),
// verifies the server against RootCAs, never uses a proxy from the
// environment, does not follow redirects, and counts only a 2xx status as
// delivered.
type Submitter struct {
	// From is the address reports are mailed from (envelope and From:).
	From string
	// Submitter is the domain of the sending MTA (section 5.3); it must be
	// the domain of the reports' contact-info.
	Submitter string
	// SendMail delivers a mailed report, already built; the embedder wires
	// it to its own delivery (for example engine.Deliver) and DKIM-signs
	// the message on the way (section 3).
	SendMail func(ctx context.Context, from string, to []string, msg []byte) error
	// Dial opens a TCP connection for HTTPS; local is the zero Addr when
	// the source address is left to the system. nil: a net.Dialer.
	Dial func(ctx context.Context, network string, remote netip.AddrPort, local netip.Addr) (net.Conn, error)
	// LookupHost resolves an https: URI's host; nil: net.DefaultResolver.
	LookupHost func(ctx context.Context, host string) ([]netip.Addr, error)
	// RootCAs verify HTTPS servers; nil: the system's roots.
	RootCAs *x509.CertPool
	// Timeout bounds each HTTPS submission; 0: DefaultTimeout.
	Timeout time.Duration
}

// Submit sends r to each URI of rua. It returns nil when every URI took
// the report, else one error per failed URI (joined with errors.Join); a
// URI of a scheme other than mailto: or https: is skipped with an error
// saying so. Each mailto: URI gets a message of its own.
func (s *Submitter) Submit(ctx context.Context, r *Report, rua []string) error {
	if r == nil {
		return errors.New("tlsrpt: submit: no report")
	}
	var errs []error
	client := s.httpClient()
	defer client.CloseIdleConnections()
	for _, raw := range rua {
		u, err := url.Parse(raw)
		if err != nil {
			errs = append(errs, fmt.Errorf("tlsrpt: submit report %s to %q: %w", r.ReportID, raw, err))
			continue
		}
		switch u.Scheme {
		case "mailto":
			err = s.mail(ctx, r, u)
		case "https":
			err = s.post(ctx, client, r, u)
		default:
			err = fmt.Errorf("scheme %q is not mailto or https, skipped", u.Scheme)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("tlsrpt: submit report %s to %q: %w", r.ReportID, raw, err))
		}
	}
	return errors.Join(errs...)
}

// mail builds the message for the URI's address(es) and hands it to
// SendMail.
func (s *Submitter) mail(ctx context.Context, r *Report, u *url.URL) error {
	if s.SendMail == nil {
		return errors.New("no SendMail to mail it with")
	}
	to, err := mailtoAddrs(u)
	if err != nil {
		return err
	}
	msg, err := BuildMessage(r, s.From, joinAddrs(to), s.Submitter, time.Now())
	if err != nil {
		return err
	}
	return s.SendMail(ctx, s.From, to, msg)
}

func joinAddrs(list []string) string { return strings.Join(list, ", ") }

// post sends the gzipped report to an https: URI.
func (s *Submitter) post(ctx context.Context, client *http.Client, r *Report, u *url.URL) error {
	body, err := r.gzipped()
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/tlsrpt+gzip")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // lets the connection be reused
	if resp.StatusCode/100 != 2 {
		if loc := resp.Header.Get("Location"); loc != "" {
			return fmt.Errorf("HTTP status %s (redirect to %q not followed)", resp.Status, loc)
		}
		return fmt.Errorf("HTTP status %s", resp.Status)
	}
	return nil
}

// httpClient builds the client for one Submit call.
func (s *Submitter) httpClient() *http.Client {
	timeout := s.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			Proxy:               nil, // never a proxy from the environment
			DialContext:         s.dialContext,
			TLSClientConfig:     &tls.Config{RootCAs: s.RootCAs, MinVersion: tls.VersionTLS12},
			TLSHandshakeTimeout: timeout,
			MaxIdleConnsPerHost: 1,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// dialContext resolves the host and tries its addresses in order.
func (s *Submitter) dialContext(ctx context.Context, network, hostport string) (net.Conn, error) {
	host, portStr, err := net.SplitHostPort(hostport)
	if err != nil {
		return nil, err
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("port of %q: %w", hostport, err)
	}
	addrs, err := s.lookup(ctx, host)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, a := range addrs {
		conn, err := s.dial(ctx, network, netip.AddrPortFrom(a.Unmap(), uint16(port)))
		if err == nil {
			return conn, nil
		}
		errs = append(errs, err)
	}
	return nil, fmt.Errorf("dial %s: %w", hostport, errors.Join(errs...))
}

func (s *Submitter) lookup(ctx context.Context, host string) ([]netip.Addr, error) {
	if a, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{a}, nil
	}
	var addrs []netip.Addr
	var err error
	if s.LookupHost != nil {
		addrs, err = s.LookupHost(ctx, host)
	} else {
		addrs, err = net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	}
	if err != nil {
		return nil, fmt.Errorf("look up %s: %w", host, err)
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("look up %s: no addresses", host)
	}
	return addrs, nil
}

func (s *Submitter) dial(ctx context.Context, network string, remote netip.AddrPort) (net.Conn, error) {
	if s.Dial != nil {
		return s.Dial(ctx, network, remote, netip.Addr{})
	}
	var d net.Dialer
	return d.DialContext(ctx, network, remote.String())
}
