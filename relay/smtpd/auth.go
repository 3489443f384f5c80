package smtpd

import (
	"errors"
	"net/netip"
	"sync"
	"time"

	"github.com/emersion/go-sasl"
)

// authLimiter counts AUTH failures per client (an IPv4 address, an IPv6
// block: clientBlock) in fixed windows of AuthFailureWindow.
type authLimiter struct {
	mu  sync.Mutex
	max int
	now func() time.Time
	m   map[netip.Addr]*authWindow
}

type authWindow struct {
	start time.Time
	n     int
}

// maxTrackedIPs bounds the limiter's memory: past it, expired windows are
// dropped at each new failure.
const maxTrackedIPs = 4096

func (l *authLimiter) blocked(ip netip.Addr) bool {
	ip = clientBlock(ip)
	l.mu.Lock()
	defer l.mu.Unlock()
	w := l.m[ip]
	if w == nil {
		return false
	}
	if l.now().Sub(w.start) >= AuthFailureWindow {
		delete(l.m, ip)
		return false
	}
	return w.n >= l.max
}

func (l *authLimiter) fail(ip netip.Addr) {
	ip = clientBlock(ip)
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	w := l.m[ip]
	if w == nil || now.Sub(w.start) >= AuthFailureWindow {
		if len(l.m) >= maxTrackedIPs {
			for k, v := range l.m {
				if now.Sub(v.start) >= AuthFailureWindow {
					delete(l.m, k)
				}
			}
		}
		l.m[ip] = &authWindow{start: now, n: 1}
		return
	}
	w.n++
}

// loginServer is the server side of the LOGIN mechanism
// (draft-murchison-sasl-login): "Username:", then "Password:", either
// skipped when the client sent it as the initial response.
type loginServer struct {
	step   int
	user   string
	verify sasl.PlainAuthenticator
}

var errLoginSequence = errors.New("sasl: unexpected LOGIN response")

func (a *loginServer) Next(response []byte) (challenge []byte, done bool, err error) {
	switch a.step {
	case 0:
		if response == nil {
			a.step = 1
			return []byte("Username:"), false, nil
		}
		a.user, a.step = string(response), 2
		return []byte("Password:"), false, nil
	case 1:
		a.user, a.step = string(response), 2
		return []byte("Password:"), false, nil
	case 2:
		a.step = 3
		return nil, true, a.verify("", a.user, string(response))
	}
	return nil, true, errLoginSequence
}
