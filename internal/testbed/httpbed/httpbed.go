// Package httpbed starts a real HTTPS server, nginx, for tests: the MTA-STS
// policy host of RFC 8461 section 3.3 (and any other static HTTPS site a
// test needs).
//
// nginx runs in the foreground as one process (daemon off, master_process
// off), with its configuration, pid file, logs and temporary files in the
// test's temporary directory, on loopback or inside a network namespace
// made by smtpbed.NewNetPair, and is stopped when the test ends.
package httpbed

import (
	"fmt"
	"net/netip"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/postern-mta/postern/internal/testbed"
	"github.com/postern-mta/postern/internal/testbed/smtpbed"
)

// Site is what one virtual host serves.
type Site struct {
	// Names are the server names (SNI and Host) the site answers to. The
	// default site (Options.Site) answers to every name the others do not.
	Names []string
	// CertFile (full chain) and KeyFile are PEM files, such as
	// smtpbed.Leaf's. Another site without them uses the default site's.
	CertFile, KeyFile string
	// Files are served from the site's root: URL path → content.
	Files map[string][]byte
	// ContentTypes overrides the Content-Type of a path. Without it, .txt
	// files are text/plain and others application/octet-stream.
	ContentTypes map[string]string
	// Redirects answer a path with 301 and a Location: path → target.
	Redirects map[string]string
	// Locations are extra raw nginx "location" blocks for the site.
	Locations []string
}

// Options configure [Start].
type Options struct {
	// Host to listen on; default 127.0.0.1. IPv6 literals are fine.
	Host string
	// Port to listen on; default a free port on loopback (inside a Netns:
	// 443).
	Port int
	// Netns runs nginx inside this network namespace.
	Netns *smtpbed.Netns
	// Site is the default site; it needs CertFile and KeyFile.
	Site
	// Sites are more virtual hosts on the same address, chosen by name.
	Sites []Site
}

// Server is a running nginx.
type Server struct {
	Addr netip.AddrPort
	// Dir holds the configuration, logs and the sites' roots.
	Dir  string
	Proc *testbed.Process

	root string // the default site's root
}

// Start writes the configuration, starts nginx and waits until it accepts
// connections. The test is skipped when nginx is not installed (failed
// with POSTERN_REQUIRE_PEERS=1).
func Start(t testing.TB, o Options) *Server {
	t.Helper()
	bin := testbed.Require(t, "nginx")
	host, port := testbed.ListenOn(t, o.Host, o.Port, o.Netns != nil, 443)
	if o.CertFile == "" || o.KeyFile == "" {
		t.Fatal("httpbed: the default site needs CertFile and KeyFile")
	}
	dir := t.TempDir()
	for _, d := range []string{"tmp", "logs"} {
		mkdir(t, filepath.Join(dir, d))
	}
	s := &Server{Addr: netip.AddrPortFrom(netip.MustParseAddr(host), uint16(port)), Dir: dir}
	listen := "listen " + testbed.Addr(host, port) + " ssl"
	var servers strings.Builder
	s.root = writeSite(t, &servers, filepath.Join(dir, "site0"), listen+" default_server", o.Site, o.Site)
	for i, site := range o.Sites {
		if len(site.Names) == 0 {
			t.Fatalf("httpbed: site %d has no Names", i+1)
		}
		writeSite(t, &servers, filepath.Join(dir, "site"+strconv.Itoa(i+1)), listen, site, o.Site)
	}
	conf := filepath.Join(dir, "nginx.conf")
	write(t, conf, fmt.Sprintf(`daemon off;
master_process off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log stderr notice;
events { worker_connections 64; }
http {
    log_format bed '$ssl_server_name $request_method $request_uri $status $server_protocol "$http_user_agent"';
    access_log %[1]s/logs/access.log bed;
    client_body_temp_path %[1]s/tmp;
    proxy_temp_path %[1]s/tmp;
    fastcgi_temp_path %[1]s/tmp;
    uwsgi_temp_path %[1]s/tmp;
    scgi_temp_path %[1]s/tmp;
    types { text/plain txt; }
    default_type application/octet-stream;
    keepalive_timeout 5s;
%[2]s}
`, dir, servers.String()))
	argv := []string{bin, "-e", "stderr", "-p", dir, "-c", conf}
	ready := testbed.DialReady(s.Addr.String())
	if o.Netns != nil {
		argv = append(o.Netns.ExecPrefix(), argv...)
		ready = o.Netns.DialReady(s.Addr)
	}
	s.Proc = testbed.Start(t, dir, argv...)
	testbed.WaitFor(t, s.Proc, 10*time.Second, ready)
	return s
}

// writeSite creates the site's root with its files and appends its server
// block to b; def is the default site, whose certificate others inherit.
// It returns the root.
func writeSite(t testing.TB, b *strings.Builder, root, listen string, site, def Site) string {
	t.Helper()
	mkdir(t, root)
	for p, content := range site.Files {
		setFile(t, root, p, content)
	}
	cert, key := site.CertFile, site.KeyFile
	if cert == "" {
		cert, key = def.CertFile, def.KeyFile
	}
	names := "_"
	if len(site.Names) > 0 {
		names = strings.Join(site.Names, " ")
	}
	fmt.Fprintf(b, "    server {\n        %s;\n        server_name %s;\n", listen, names)
	fmt.Fprintf(b, "        ssl_certificate %s;\n        ssl_certificate_key %s;\n", cert, key)
	fmt.Fprintf(b, "        root %s;\n", root)
	for _, p := range sortedKeys(site.ContentTypes) {
		fmt.Fprintf(b, "        location = %s { types { } default_type %s; }\n", p, quote(site.ContentTypes[p]))
	}
	for _, p := range sortedKeys(site.Redirects) {
		fmt.Fprintf(b, "        location = %s { return 301 %s; }\n", p, quote(site.Redirects[p]))
	}
	for _, l := range site.Locations {
		fmt.Fprintf(b, "        %s\n", l)
	}
	b.WriteString("    }\n")
	return root
}

// SetFile sets the content of path on the default site while nginx runs
// (nginx opens files per request, so the next request sees it).
func (s *Server) SetFile(t testing.TB, path string, content []byte) {
	t.Helper()
	setFile(t, s.root, path, content)
}

// AccessLog returns the access log lines so far, one per request:
// "SNI METHOD URI STATUS PROTOCOL "USER-AGENT"". nginx writes a line after
// the response is sent, so a client may see the response first.
func (s *Server) AccessLog(t testing.TB) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(s.Dir, "logs", "access.log"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var lines []string
	for l := range strings.SplitSeq(string(b), "\n") {
		if l != "" {
			lines = append(lines, l)
		}
	}
	return lines
}

// WaitAccessLog polls the access log until it has n lines or 5s have
// passed, and returns what it holds last.
func (s *Server) WaitAccessLog(t testing.TB, n int) []string {
	t.Helper()
	lines := s.AccessLog(t)
	for deadline := time.Now().Add(5 * time.Second); len(lines) < n && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
		lines = s.AccessLog(t)
	}
	return lines
}

// setFile writes content to root+urlPath atomically (a temporary file
// renamed into place), so a request never sees half a file.
func setFile(t testing.TB, root, urlPath string, content []byte) {
	t.Helper()
	clean := path.Clean("/" + urlPath)
	dst := filepath.Join(root, filepath.FromSlash(clean))
	mkdir(t, filepath.Dir(dst))
	tmp := dst + ".tmp"
	// World-readable: a worker may run as another user.
	if err := os.WriteFile(tmp, content, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		t.Fatal(err)
	}
}

func mkdir(t testing.TB, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
}

func write(t testing.TB, name, content string) {
	t.Helper()
	if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// quote makes s one nginx configuration token.
func quote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
