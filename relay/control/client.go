package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"syscall"
	"time"

	"github.com/postern-mta/postern/relay/spool"
)

// Client is the admin API of a daemon, over its control socket. It
// implements [Queue]; its methods are safe for concurrent use. A method
// that finds nothing listening returns an error wrapping [ErrNoDaemon];
// one the daemon refused returns an error with the daemon's text, which
// matches [ErrNotFound] and [ErrOffline] as the daemon's did.
type Client struct {
	path string
	hc   *http.Client
}

var _ Queue = (*Client)(nil)

// Dial returns a Client for the control socket at path. It does not
// connect: each method does (and reuses idle connections).
func Dial(path string) *Client {
	d := &net.Dialer{Timeout: 5 * time.Second}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, "unix", path)
		},
		DisableCompression: true,
		MaxIdleConns:       2,
		IdleConnTimeout:    30 * time.Second,
	}
	return &Client{path: path, hc: &http.Client{Transport: tr}}
}

// Close closes the idle connections.
func (c *Client) Close() error {
	c.hc.CloseIdleConnections()
	return nil
}

// List implements [Queue].
func (c *Client) List(ctx context.Context, f Filter) ([]MessageInfo, error) {
	if err := validIDs("list", f.IDs); err != nil {
		return nil, err
	}
	var ms []MessageInfo
	if err := c.call(ctx, http.MethodPost, "/v1/list", f, &ms); err != nil {
		return nil, err
	}
	return ms, nil
}

// Show implements [Queue].
func (c *Client) Show(ctx context.Context, id string) (MessageInfo, error) {
	var m MessageInfo
	if err := validIDs("show", []string{id}); err != nil {
		return m, err
	}
	err := c.call(ctx, http.MethodGet, "/v1/messages/"+url.PathEscape(id), nil, &m)
	return m, err
}

// Body implements [Queue]. A body cut short by the daemon ends in an
// error, not in io.EOF.
func (c *Client) Body(ctx context.Context, id string) (io.ReadCloser, error) {
	if err := validIDs("show", []string{id}); err != nil {
		return nil, err
	}
	resp, err := c.do(ctx, http.MethodGet, "/v1/messages/"+url.PathEscape(id)+"/body", nil)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		return nil, c.failure(resp, nil)
	}
	return resp.Body, nil
}

// Flush implements [Queue].
func (c *Client) Flush(ctx context.Context, f Filter) (int, error) {
	return c.count(ctx, "flush", f.IDs, f)
}

// Hold implements [Queue].
func (c *Client) Hold(ctx context.Context, f Filter) (int, error) {
	return c.count(ctx, "hold", f.IDs, f)
}

// Release implements [Queue].
func (c *Client) Release(ctx context.Context, ids []string) (int, error) {
	return c.count(ctx, "release", ids, idsRequest{IDs: ids})
}

// Delete implements [Queue].
func (c *Client) Delete(ctx context.Context, ids []string, bounce bool) (int, error) {
	return c.count(ctx, "delete", ids, idsRequest{IDs: ids, Bounce: bounce})
}

// Stats implements [Queue].
func (c *Client) Stats(ctx context.Context) (Stats, error) {
	var st Stats
	err := c.call(ctx, http.MethodGet, "/v1/stats", nil, &st)
	return st, err
}

// Reload implements [Queue].
func (c *Client) Reload(ctx context.Context) error {
	return c.call(ctx, http.MethodPost, "/v1/reload", struct{}{}, nil)
}

// count makes the request of a verb that answers a count.
func (c *Client) count(ctx context.Context, verb string, ids []string, in any) (int, error) {
	if err := validIDs(verb, ids); err != nil {
		return 0, err
	}
	var out countBody
	err := c.call(ctx, http.MethodPost, "/v1/"+verb, in, &out)
	return out.Count, err
}

// call sends in (nil: no body) and decodes the answer into out (nil:
// discarded). For an error answer that carries a count, out gets it too.
func (c *Client) call(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("control socket %s: encode the request: %w", c.path, err)
		}
		body = bytes.NewReader(b)
	}
	resp, err := c.do(ctx, method, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return c.failure(resp, out)
	}
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("control socket %s: %s %s: decode the answer: %w", c.path, method, path, err)
	}
	return nil
}

// do sends one request; a failure to connect wraps ErrNoDaemon.
func (c *Client) do(ctx context.Context, method, path string, body io.Reader) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, "http://postern"+path, body)
	if err != nil {
		return nil, fmt.Errorf("control socket %s: %w", c.path, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" && (errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED)) {
			return nil, fmt.Errorf("control socket %s: %w (%v)", c.path, ErrNoDaemon, op.Err)
		}
		return nil, fmt.Errorf("control socket %s: %w", c.path, err)
	}
	return resp, nil
}

// failure turns an error answer into an error carrying the daemon's
// text; a count in it goes to out when out is a *countBody.
func (c *Client) failure(resp *http.Response, out any) error {
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var eb countBody
	if err := json.Unmarshal(raw, &eb); err != nil || eb.Error == "" {
		return fmt.Errorf("control socket %s: the daemon answered %s: %.200q", c.path, resp.Status, raw)
	}
	if cb, ok := out.(*countBody); ok {
		cb.Count = eb.Count
	}
	re := &remoteError{text: eb.Error}
	switch eb.Kind {
	case kindNotFound:
		re.is = ErrNotFound
	case kindOffline:
		re.is = ErrOffline
	}
	return re
}

// remoteError is an error the daemon reported: its text, and the
// sentinel its kind stands for (nil for the other kinds).
type remoteError struct {
	text string
	is   error
}

func (e *remoteError) Error() string { return e.text }
func (e *remoteError) Unwrap() error { return e.is }

// validIDs checks ids before they go into a request.
func validIDs(verb string, ids []string) error {
	for _, id := range ids {
		if !spool.ValidID(id) {
			return fmt.Errorf("%s: queue ID %q: %w", verb, id, spool.ErrBadID)
		}
	}
	return nil
}
