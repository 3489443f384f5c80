package tlsrpt

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/postern-mta/postern/internal/testbed/smtpbed"
)

// post is one request the test's HTTPS server received.
type post struct {
	path, contentType string
	body              []byte
}

// reportServer is a real HTTPS server on 127.0.0.1 with a certificate for
// reports.example.test from a throwaway CA: /ok takes reports, /fail
// answers 500, /moved redirects to /ok.
type reportServer struct {
	ca    *smtpbed.CA
	srv   *httptest.Server
	mu    sync.Mutex
	posts []post
}

func startReportServer(t *testing.T) *reportServer {
	t.Helper()
	rs := &reportServer{ca: smtpbed.NewCA(t)}
	leaf := rs.ca.Issue(t, "reports.example.test")
	rs.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rs.mu.Lock()
		rs.posts = append(rs.posts, post{r.URL.Path, r.Header.Get("Content-Type"), body})
		rs.mu.Unlock()
		switch r.URL.Path {
		case "/ok":
			w.WriteHeader(http.StatusCreated)
		case "/moved":
			http.Redirect(w, r, "/ok", http.StatusFound)
		default:
			http.Error(w, "broken", http.StatusInternalServerError)
		}
	}))
	rs.srv.TLS = &tls.Config{Certificates: []tls.Certificate{leaf.Cert}}
	rs.srv.StartTLS()
	t.Cleanup(rs.srv.Close)
	return rs
}

// url is an https: URI of the server by name; the port is the server's.
func (rs *reportServer) url(path string) string {
	_, port, _ := net.SplitHostPort(rs.srv.Listener.Addr().String())
	return "https://reports.example.test:" + port + path
}

func (rs *reportServer) received() []post {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return slices.Clone(rs.posts)
}

// submitter resolves reports.example.test to the server's loopback address
// and dials through Dial, recording where it dialled.
func (rs *reportServer) submitter(dialled *[]netip.AddrPort) *Submitter {
	server := netip.MustParseAddrPort(rs.srv.Listener.Addr().String()).Addr()
	return &Submitter{
		From:      "tlsrpt@sender.example",
		Submitter: "sender.example",
		RootCAs:   rs.ca.Pool,
		LookupHost: func(_ context.Context, host string) ([]netip.Addr, error) {
			if host != "reports.example.test" {
				return nil, errors.New("no such host " + host)
			}
			return []netip.Addr{server}, nil
		},
		Dial: func(ctx context.Context, network string, remote netip.AddrPort, local netip.Addr) (net.Conn, error) {
			*dialled = append(*dialled, remote)
			var d net.Dialer
			return d.DialContext(ctx, network, remote.String())
		},
	}
}

func gunzipReport(t *testing.T, body []byte) *Report {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("body is not gzip: %v", err)
	}
	data, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	var r Report
	if err := json.Unmarshal(data, &r); err != nil {
		t.Fatalf("body is not a report: %v", err)
	}
	return &r
}

// TestSubmitHTTPS posts to a real HTTPS server: the body gunzips to the
// report, the content type is application/tlsrpt+gzip, the connection went
// through Dial to the address LookupHost gave, and no proxy from the
// environment is used.
func TestSubmitHTTPS(t *testing.T) {
	t.Setenv("HTTPS_PROXY", "http://127.0.0.1:9") // would break the POST if used
	rs := startReportServer(t)
	var dialled []netip.AddrPort
	s := rs.submitter(&dialled)
	r := recordedReports(t)[0]
	if err := s.Submit(context.Background(), r, []string{rs.url("/ok")}); err != nil {
		t.Fatal(err)
	}
	posts := rs.received()
	if len(posts) != 1 {
		t.Fatalf("server got %d requests, want 1", len(posts))
	}
	if posts[0].contentType != "application/tlsrpt+gzip" {
		t.Errorf("Content-Type %q, want application/tlsrpt+gzip", posts[0].contentType)
	}
	if got := gunzipReport(t, posts[0].body); !reflect.DeepEqual(got, r) {
		t.Errorf("posted report differs:\ngot  %+v\nwant %+v", got, r)
	}
	if len(dialled) != 1 || dialled[0].String() != rs.srv.Listener.Addr().String() {
		t.Errorf("dialled %v, want the server's address once", dialled)
	}
}

// TestSubmitHTTPSFailures: a 500, a redirect (not followed), a server
// whose certificate is not from RootCAs and a host that does not resolve
// are each an error naming its URI; the good URI in the same call still
// gets the report.
func TestSubmitHTTPSFailures(t *testing.T) {
	rs := startReportServer(t)
	var dialled []netip.AddrPort
	s := rs.submitter(&dialled)
	r := recordedReports(t)[0]
	bad := []string{rs.url("/fail"), rs.url("/moved"), "https://nowhere.example.test/x"}
	err := s.Submit(context.Background(), r, append([]string{rs.url("/ok")}, bad...))
	if err == nil {
		t.Fatal("Submit succeeded")
	}
	for _, u := range bad {
		if !strings.Contains(err.Error(), u) {
			t.Errorf("the error does not name %s:\n%v", u, err)
		}
	}
	if n := len(err.(interface{ Unwrap() []error }).Unwrap()); n != len(bad) {
		t.Errorf("%d errors, want %d:\n%v", n, len(bad), err)
	}
	var paths []string
	for _, p := range rs.received() {
		paths = append(paths, p.path)
	}
	if want := []string{"/ok", "/fail", "/moved"}; !slices.Equal(paths, want) {
		t.Errorf("server got %v, want %v (the redirect not followed)", paths, want)
	}

	s.RootCAs = nil // the system roots do not know the test CA
	if err := s.Submit(context.Background(), r, []string{rs.url("/ok")}); err == nil {
		t.Error("Submit trusted a certificate from outside RootCAs")
	}
}

// TestSubmitMailto: each mailto: URI goes to SendMail as its own message
// with the URI's recipients; other schemes are skipped with an error.
func TestSubmitMailto(t *testing.T) {
	type sent struct {
		from string
		to   []string
		msg  []byte
	}
	var got []sent
	s := &Submitter{
		From:      "tlsrpt@sender.example",
		Submitter: "sender.example",
		SendMail: func(_ context.Context, from string, to []string, msg []byte) error {
			got = append(got, sent{from, to, msg})
			if to[0] == "full@example.net" {
				return errors.New("452 mailbox full")
			}
			return nil
		},
	}
	r := recordedReports(t)[0]
	err := s.Submit(context.Background(), r, []string{
		"mailto:tlsrpt@example.net",
		"mailto:a@example.net%2Cb@example.net?subject=ignored",
		"mailto:full@example.net",
		"http://reports.example.net/",
	})
	if err == nil || !strings.Contains(err.Error(), "452 mailbox full") || !strings.Contains(err.Error(), `"http"`) {
		t.Errorf("want errors for the full mailbox and the http: URI, got %v", err)
	}
	if n := len(err.(interface{ Unwrap() []error }).Unwrap()); n != 2 {
		t.Errorf("%d errors, want 2:\n%v", n, err)
	}
	wantTo := [][]string{{"tlsrpt@example.net"}, {"a@example.net", "b@example.net"}, {"full@example.net"}}
	if len(got) != len(wantTo) {
		t.Fatalf("SendMail called %d times, want %d", len(got), len(wantTo))
	}
	for i, g := range got {
		if g.from != "tlsrpt@sender.example" || !slices.Equal(g.to, wantTo[i]) {
			t.Errorf("message %d: from %q to %q, want from tlsrpt@sender.example to %q", i, g.from, g.to, wantTo[i])
		}
		m, err := mail.ReadMessage(bytes.NewReader(g.msg))
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		list, err := m.Header.AddressList("To")
		if err != nil || len(list) != len(wantTo[i]) {
			t.Errorf("message %d: To: %q (%v)", i, m.Header.Get("To"), err)
		}
		if m.Header.Get("TLS-Report-Domain") != "example.net" {
			t.Errorf("message %d is not the report", i)
		}
	}
}
