//go:build linux

package mtasts

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/postern-mta/postern/internal/testbed/httpbed"
	"github.com/postern-mta/postern/internal/testbed/smtpbed"
)

// TestFetch fetches policies from a real nginx, one virtual host per case.
func TestFetch(t *testing.T) {
	good := policyText(Enforce, 86400, "mx1.example.test", "*.example.test")
	goodPolicy := &Policy{Enforce, []string{"mx1.example.test", "*.example.test"}, 86400 * time.Second}
	over := policyOfSize(MaxPolicySize + 1)
	site := func(name string, s httpbed.Site) httpbed.Site {
		s.Names = []string{"mta-sts." + name}
		return s
	}
	files := func(content []byte) map[string][]byte { return map[string][]byte{policyP: content} }
	// sub_filter drops Content-Length: the body comes chunked.
	chunked := []string{"location = " + policyP + ` { sub_filter_types text/plain; sub_filter "no such text" "x"; }`}

	b := newBed(t)
	wrong := b.ca.Issue(t, "other.example.test")
	otherCA := smtpbed.NewCA(t).Issue(t, "mta-sts.unknownca.test")
	expired := b.ca.IssueValid(t, time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour), "mta-sts.expired.test")
	withCert := func(name string, leaf *smtpbed.Leaf) httpbed.Site {
		return site(name, httpbed.Site{CertFile: leaf.CertFile, KeyFile: leaf.KeyFile, Files: files(good)})
	}
	names := []string{"mta-sts.example.test"}
	for _, n := range []string{"redirect", "notfound", "status500", "big", "chunked", "limit", "html",
		"charset", "invalid"} {
		names = append(names, "mta-sts."+n+".test")
	}
	b.start(t, names, httpbed.Site{Files: files(good)},
		site("redirect.test", httpbed.Site{Redirects: map[string]string{policyP: "https://mta-sts.example.test" + policyP}}),
		site("notfound.test", httpbed.Site{}),
		site("status500.test", httpbed.Site{Locations: []string{"location = " + policyP + " { return 500; }"}}),
		site("big.test", httpbed.Site{Files: files(over)}),
		site("chunked.test", httpbed.Site{Files: files(over), Locations: chunked}),
		site("limit.test", httpbed.Site{Files: files(policyOfSize(MaxPolicySize))}),
		site("html.test", httpbed.Site{Files: files(good), ContentTypes: map[string]string{policyP: "text/html"}}),
		site("charset.test", httpbed.Site{Files: files(good), ContentTypes: map[string]string{policyP: "text/plain; charset=utf-8"}}),
		site("invalid.test", httpbed.Site{Files: files([]byte("version: STSv1\nmode: enforce\nmx: mx1.example.test\n"))}),
		withCert("wrongname.test", wrong),
		withCert("unknownca.test", otherCA),
		withCert("expired.test", expired),
	)

	tests := []struct {
		name    string
		domain  string
		want    *Policy
		errType string // "" for success
		errText string
	}{
		{"ok, after the refused IPv6 address", "example.test", goodPolicy, "", ""},
		{"domain in upper case with a trailing dot", "EXAMPLE.test.", goodPolicy, "", ""},
		{"text/plain with charset", "charset.test", goodPolicy, "", ""},
		{"body of exactly 64 KiB", "limit.test", &Policy{Enforce, []string{"mx.example.test"}, 86400 * time.Second}, "", ""},
		{"redirect refused", "redirect.test", nil, ResultFetchError, "301"},
		{"404", "notfound.test", nil, ResultFetchError, "404"},
		{"500", "status500.test", nil, ResultFetchError, "500"},
		{"body of 64 KiB + 1 with Content-Length", "big.test", nil, ResultFetchError, "Content-Length 65537"},
		{"body of 64 KiB + 1 chunked", "chunked.test", nil, ResultFetchError, "body is over the limit"},
		{"wrong content type", "html.test", nil, ResultPolicyInvalid, `Content-Type "text/html"`},
		{"invalid policy", "invalid.test", nil, ResultPolicyInvalid, `no "max_age" field`},
		{"certificate for another name", "wrongname.test", nil, ResultWebPKIInvalid, "other.example.test"},
		{"certificate from an unknown CA", "unknownca.test", nil, ResultWebPKIInvalid, "unknown authority"},
		{"expired certificate", "expired.test", nil, ResultWebPKIInvalid, "expired"},
		{"nothing listening", "nothing.test", nil, ResultFetchError, "connection refused"},
		{"host does not resolve", "nxdomain.test", nil, ResultFetchError, "NXDOMAIN"},
		{"not a domain name", "example.test/x?", nil, ResultFetchError, "not a domain name"},
	}
	f := b.fetcher()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := f.Fetch(context.Background(), tt.domain)
			if tt.errType == "" {
				if err != nil {
					t.Fatalf("Fetch: %v", err)
				}
				if !reflect.DeepEqual(p, tt.want) {
					t.Fatalf("Fetch = %+v, want %+v", p, tt.want)
				}
				return
			}
			var fe *FetchError
			if !errors.As(err, &fe) {
				t.Fatalf("Fetch = %+v, %v; want a *FetchError", p, err)
			}
			if fe.TLSResultType() != tt.errType || !strings.Contains(err.Error(), tt.errText) {
				t.Fatalf("Fetch error %q (type %s); want type %s containing %q", err, fe.Type, tt.errType, tt.errText)
			}
		})
	}

	t.Run("addresses in order, HTTP/1.1, User-Agent, no proxy", func(t *testing.T) {
		b.dialed()
		before := len(b.srv.AccessLog(t))
		if _, err := f.Fetch(context.Background(), "example.test"); err != nil {
			t.Fatal(err)
		}
		want := []netip.AddrPort{netip.AddrPortFrom(srv6, 443), netip.AddrPortFrom(srv4, 443)}
		if got := b.dialed(); !slices.Equal(got, want) {
			t.Fatalf("dialed %v, want %v", got, want)
		}
		lines := b.srv.WaitAccessLog(t, before+1)
		if len(lines) != before+1 {
			t.Fatalf("access log has %d lines, want %d", len(lines), before+1)
		}
		const wantLine = `mta-sts.example.test GET /.well-known/mta-sts.txt 200 HTTP/1.1 "postern`
		if !strings.HasPrefix(lines[before], wantLine) {
			t.Fatalf("access log line %q, want it to start with %q", lines[before], wantLine)
		}
	})

	t.Run("the chunked site really sends no Content-Length", func(t *testing.T) {
		// Guards the "chunked" case above: it must test the body limit,
		// not the Content-Length check.
		tr := &http.Transport{DialTLSContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			c, err := b.np.Client.DialContext(ctx, "tcp4", netip.AddrPortFrom(srv4, 443), netip.Addr{})
			if err != nil {
				return nil, err
			}
			return tls.Client(c, &tls.Config{ServerName: "mta-sts.chunked.test", RootCAs: b.ca.Pool}), nil
		}}
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr}).Get("https://mta-sts.chunked.test" + policyP)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.ContentLength != -1 || resp.Header.Get("Content-Length") != "" {
			t.Fatalf("chunked site sent Content-Length %d", resp.ContentLength)
		}
	})

	t.Run("timeout", func(t *testing.T) {
		f := b.fetcher()
		f.Timeout = 300 * time.Millisecond
		_, err := f.Fetch(context.Background(), "blackhole.test")
		var fe *FetchError
		if !errors.As(err, &fe) || fe.Type != ResultFetchError || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Fetch = %v; want sts-policy-fetch-error wrapping the deadline", err)
		}
	})
}
