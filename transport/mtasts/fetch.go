package mtasts

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"time"
)

// The TLS-RPT result types of a failed fetch (RFC 8460 section 4.3.2).
const (
	// ResultWebPKIInvalid: the policy host's certificate did not verify.
	ResultWebPKIInvalid = "sts-webpki-invalid"
	// ResultPolicyInvalid: the policy was fetched but is not valid (it
	// does not parse, or is not text/plain).
	ResultPolicyInvalid = "sts-policy-invalid"
	// ResultFetchError: the policy could not be fetched (DNS, connect,
	// timeout, TLS handshake, HTTP status, redirect, size).
	ResultFetchError = "sts-policy-fetch-error"
)

// MaxPolicySize is the largest policy body a [Fetcher] accepts (RFC 8461
// section 3.3 suggests 64 KiB).
const MaxPolicySize = 64 << 10

// DefaultTimeout bounds a whole fetch when [Fetcher.Timeout] is zero.
const DefaultTimeout = time.Minute

// userAgent names us to the policy host.
const userAgent = "postern (MTA-STS policy fetch; RFC 8461)"

// Fetcher fetches https://mta-sts.DOMAIN/.well-known/mta-sts.txt (RFC 8461
// section 3.3). Its zero value is not usable: LookupHost is required. A
// Fetcher is safe for concurrent use.
type Fetcher struct {
	// LookupHost resolves a host name to addresses (the caller's
	// resolver: the system resolver is never used); required.
	LookupHost func(ctx context.Context, host string) ([]netip.Addr, error)
	// Dial opens the TCP connection to remote ("tcp4" or "tcp6"), binding
	// local when it is valid; nil: a net.Dialer. Same signature as the
	// DialContext method of transport.Dialer.
	Dial func(ctx context.Context, network string, remote netip.AddrPort, local netip.Addr) (net.Conn, error)
	// RootCAs verify the policy host's certificate; nil: the system roots.
	RootCAs *x509.CertPool
	// Timeout bounds the whole fetch: lookup, connect, TLS, headers and
	// body; 0: [DefaultTimeout].
	Timeout time.Duration
}

// FetchError says why a fetch failed, with the TLS-RPT result type (RFC
// 8460 section 4.3.2): [ResultWebPKIInvalid], [ResultPolicyInvalid] or
// [ResultFetchError].
type FetchError struct {
	Type   string
	Domain string
	Err    error
}

// Error implements error.
func (e *FetchError) Error() string {
	return fmt.Sprintf("mta-sts policy of %s: %s: %v", e.Domain, e.Type, e.Err)
}

// Unwrap returns the cause.
func (e *FetchError) Unwrap() error { return e.Err }

// TLSResultType is the TLS-RPT result type of the failure.
func (e *FetchError) TLSResultType() string { return e.Type }

// Fetch GETs the policy of domain over HTTPS and parses it:
//
//   - mta-sts.DOMAIN is resolved with LookupHost and its addresses are
//     tried in the order given (both families) on port 443 until one
//     accepts the TCP connection.
//   - TLS 1.2 or later; the certificate must verify against RootCAs for
//     the name mta-sts.DOMAIN, which is also sent as SNI.
//   - HTTP/1.1, no proxy (whatever the environment says), no cookies, a
//     User-Agent naming postern. Redirects are not followed: any status
//     but 200 is a failure, a 3xx included.
//   - The Content-Type must be text/plain (parameters such as charset are
//     allowed) and the body at most [MaxPolicySize] bytes, whatever
//     Content-Length says or does not say.
//
// Errors are *[FetchError].
func (f *Fetcher) Fetch(ctx context.Context, domain string) (*Policy, error) {
	d := normalDomain(domain)
	fail := func(typ string, err error) (*Policy, error) {
		return nil, &FetchError{Type: typ, Domain: d, Err: err}
	}
	if !validDomain(d) {
		return fail(ResultFetchError, fmt.Errorf("%q is not a domain name", domain))
	}
	if f.LookupHost == nil {
		return fail(ResultFetchError, errors.New("the Fetcher has no LookupHost"))
	}
	timeout := f.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	host := "mta-sts." + d
	url := "https://" + host + "/.well-known/mta-sts.txt"
	client := &http.Client{
		Transport: &http.Transport{
			Proxy: nil, // never from the environment
			DialTLSContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return f.dialTLS(ctx, host)
			},
			DisableKeepAlives:      true,
			DisableCompression:     true,
			MaxResponseHeaderBytes: 64 << 10,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fail(ResultFetchError, err)
	}
	req.Header.Set("User-Agent", userAgent)
	resp, err := client.Do(req)
	if err != nil {
		if errors.As(err, new(*tls.CertificateVerificationError)) {
			return fail(ResultWebPKIInvalid, err)
		}
		return fail(ResultFetchError, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		return fail(ResultFetchError, fmt.Errorf("GET %s: %s to %q: redirects are not followed (RFC 8461 section 3.3)",
			url, resp.Status, resp.Header.Get("Location")))
	}
	if resp.StatusCode != http.StatusOK {
		return fail(ResultFetchError, fmt.Errorf("GET %s: %s", url, resp.Status))
	}
	ct := resp.Header.Get("Content-Type")
	if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "text/plain" {
		return fail(ResultPolicyInvalid, fmt.Errorf("GET %s: Content-Type %q, want text/plain", url, ct))
	}
	if resp.ContentLength > MaxPolicySize {
		return fail(ResultFetchError, fmt.Errorf("GET %s: Content-Length %d is over the limit of %d bytes", url, resp.ContentLength, MaxPolicySize))
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxPolicySize+1))
	if err != nil {
		return fail(ResultFetchError, fmt.Errorf("GET %s: reading the body: %w", url, err))
	}
	if len(body) > MaxPolicySize {
		return fail(ResultFetchError, fmt.Errorf("GET %s: the body is over the limit of %d bytes", url, MaxPolicySize))
	}
	p, err := ParsePolicy(body)
	if err != nil {
		return fail(ResultPolicyInvalid, fmt.Errorf("GET %s: %w", url, err))
	}
	return p, nil
}

// dialTLS connects to host on port 443, trying its addresses in order,
// and completes the TLS handshake.
func (f *Fetcher) dialTLS(ctx context.Context, host string) (net.Conn, error) {
	addrs, err := f.LookupHost(ctx, host)
	if err != nil {
		return nil, fmt.Errorf("looking up %s: %w", host, err)
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("looking up %s: no addresses", host)
	}
	var errs []error
	for _, a := range addrs {
		a = a.Unmap()
		network := "tcp6"
		if a.Is4() {
			network = "tcp4"
		}
		remote := netip.AddrPortFrom(a, 443)
		c, err := f.dial(ctx, network, remote)
		if err != nil {
			errs = append(errs, fmt.Errorf("connecting to %s: %w", remote, err))
			if ctx.Err() != nil {
				break
			}
			continue
		}
		tc := tls.Client(c, &tls.Config{
			ServerName: host,
			RootCAs:    f.RootCAs,
			MinVersion: tls.VersionTLS12,
			NextProtos: []string{"http/1.1"},
		})
		if err := tc.HandshakeContext(ctx); err != nil {
			c.Close()
			return nil, fmt.Errorf("TLS with %s (%s): %w", host, remote, err)
		}
		return tc, nil
	}
	return nil, errors.Join(errs...)
}

func (f *Fetcher) dial(ctx context.Context, network string, remote netip.AddrPort) (net.Conn, error) {
	if f.Dial != nil {
		return f.Dial(ctx, network, remote, netip.Addr{})
	}
	var d net.Dialer
	return d.DialContext(ctx, network, remote.String())
}
