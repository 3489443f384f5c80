package httpbed

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/postern-mta/postern/internal/testbed/smtpbed"
)

// TestServer starts nginx on loopback with two sites and checks what it
// serves: files with their content types, a redirect, the site chosen by
// name (its own certificate), a file changed while it runs, the log.
func TestServer(t *testing.T) {
	ca := smtpbed.NewCA(t)
	def := ca.Issue(t, "www.example.test")
	other := ca.Issue(t, "other.example.test")
	s := Start(t, Options{
		Site: Site{
			CertFile: def.CertFile, KeyFile: def.KeyFile,
			Files: map[string][]byte{
				"/a.txt":      []byte("plain"),
				"/b.txt":      []byte("html"),
				"/dir/c.bin":  []byte("bytes"),
				"/moved.html": []byte("never served"),
			},
			ContentTypes: map[string]string{"/b.txt": "text/html; charset=utf-8"},
			Redirects:    map[string]string{"/moved.html": "https://elsewhere.example.test/"},
		},
		Sites: []Site{{Names: []string{"other.example.test"}, CertFile: other.CertFile, KeyFile: other.KeyFile,
			Files: map[string][]byte{"/a.txt": []byte("other site")}}},
	})
	get := func(name, path string) (*http.Response, string) {
		t.Helper()
		tr := &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, s.Addr.String())
		}, TLSClientConfig: &tls.Config{RootCAs: ca.Pool}}
		defer tr.CloseIdleConnections()
		c := &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp, err := c.Get("https://" + name + path)
		if err != nil {
			t.Fatalf("GET https://%s%s: %v", name, path, err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, string(b)
	}
	tests := []struct {
		name, path       string
		status           int
		contentType, out string
	}{
		{"www.example.test", "/a.txt", 200, "text/plain", "plain"},
		{"www.example.test", "/b.txt", 200, "text/html; charset=utf-8", "html"},
		{"www.example.test", "/dir/c.bin", 200, "application/octet-stream", "bytes"},
		{"www.example.test", "/missing.txt", 404, "", ""},
		{"other.example.test", "/a.txt", 200, "text/plain", "other site"},
	}
	for _, tt := range tests {
		resp, body := get(tt.name, tt.path)
		if resp.StatusCode != tt.status {
			t.Errorf("%s%s: status %d, want %d", tt.name, tt.path, resp.StatusCode, tt.status)
			continue
		}
		if tt.status == 200 && (resp.Header.Get("Content-Type") != tt.contentType || body != tt.out) {
			t.Errorf("%s%s: %q %q, want %q %q", tt.name, tt.path, resp.Header.Get("Content-Type"), body, tt.contentType, tt.out)
		}
	}
	resp, _ := get("www.example.test", "/moved.html")
	if resp.StatusCode != 301 || resp.Header.Get("Location") != "https://elsewhere.example.test/" {
		t.Errorf("redirect: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	s.SetFile(t, "/a.txt", []byte("changed"))
	if _, body := get("www.example.test", "/a.txt"); body != "changed" {
		t.Errorf("after SetFile: %q", body)
	}
	lines := s.WaitAccessLog(t, len(tests)+2)
	if len(lines) != len(tests)+2 || !strings.HasPrefix(lines[0], "www.example.test GET /a.txt 200 HTTP/1.1") {
		t.Errorf("access log: %q", lines)
	}
}
