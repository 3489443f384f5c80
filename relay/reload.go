package relay

import (
	"crypto/tls"
	"fmt"
	"slices"

	"github.com/postern-mta/postern/internal/safefile"
	"github.com/postern-mta/postern/policies"
	"github.com/postern-mta/postern/relay/smtpd"
)

// Reload reads the policy file again (SIGHUP, `postern relay reload`),
// with the users file and the TLS certificates it names. A policy that
// does not load, or whose files do not, is refused: the old one stays in
// force, and the error (every policy error with its file:line:col) is
// logged, counted and returned. Listener addresses and modes need a
// restart: changes to them are logged as ignored. Deliveries in flight
// finish under the policy they started with; the next dispatch of every
// queued message is decided by the new one.
func (d *Daemon) Reload() error {
	set, err := policies.LoadFile(d.opts.Policy, policies.Options{Hostname: d.opts.Engine.Hostname})
	if err == nil {
		err = d.swapFiles(set.Relay())
	}
	if err == nil {
		err = d.eng.Reload(set)
	}
	if err != nil {
		d.m.reload(false, "")
		d.log.Error("policy reload refused; the old policy stays in force", "policy", d.opts.Policy, "err", err)
		return err
	}
	old := d.hash()
	d.policyHash.Store(policyHash(d.opts.Policy))
	rc := set.Relay()
	d.sc.SetWorkers(rc.Queue.Workers)
	d.m.reload(true, d.hash())
	d.log.Info("policy reloaded", "policy", d.opts.Policy, "policy_hash", d.hash(), "previous_hash", old)
	return nil
}

// swapFiles loads the users file and certificates of rc and installs
// them; nothing is installed unless all of them load. Listener changes
// are reported as needing a restart.
func (d *Daemon) swapFiles(rc *policies.Relay) error {
	users, err := loadUsers(rc)
	if err != nil {
		return err
	}
	certs := map[string]*tls.Config{}
	for _, l := range rc.Listeners {
		cfg, err := listenerTLS(l)
		if err != nil {
			return err
		}
		if cfg != nil {
			certs[l.Name] = cfg
		}
	}
	cur := d.eng.Policy().Relay()
	if !sameListeners(cur.Listeners, rc.Listeners) {
		d.log.Warn("relay.listeners changed: ignored until restart", "policy", d.opts.Policy)
	}
	for name, cfg := range certs {
		if err := d.srv.SetTLS(name, cfg); err != nil {
			d.log.Warn("listener TLS not changed", "listener", name, "err", err)
		}
	}
	if users != nil {
		d.srv.SetUsers(users)
	}
	return nil
}

// sameListeners reports whether two listener lists bind the same way.
func sameListeners(a, b []policies.Listener) bool {
	return slices.EqualFunc(a, b, func(x, y policies.Listener) bool {
		return x.Name == y.Name && x.Address == y.Address && x.Mode == y.Mode
	})
}

// loadUsers reads relay.auth.users-file; nil without AUTH.
func loadUsers(rc *policies.Relay) (*smtpd.Users, error) {
	if !rc.Auth.Enabled() {
		return nil, nil
	}
	u, err := smtpd.LoadUsers(rc.Auth.UsersFile)
	if err != nil {
		return nil, fmt.Errorf("%s: relay.auth.users-file: %w", rc.Position("auth.users-file"), err)
	}
	return u, nil
}

// listenerTLS loads a listener's certificate; nil without tls.
func listenerTLS(l policies.Listener) (*tls.Config, error) {
	if l.TLS == nil {
		return nil, nil
	}
	// Read as bounded regular files: the policy names them.
	certPEM, err := safefile.Read(l.TLS.Cert, maxPEM)
	if err != nil {
		return nil, fmt.Errorf("%s: relay.listeners %q tls: %w", l.At, l.Name, err)
	}
	keyPEM, err := safefile.Read(l.TLS.Key, maxPEM)
	if err != nil {
		return nil, fmt.Errorf("%s: relay.listeners %q tls: %w", l.At, l.Name, err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%s: relay.listeners %q tls (%s, %s): %w", l.At, l.Name, l.TLS.Cert, l.TLS.Key, err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// maxPEM bounds a listener's certificate chain or key file.
const maxPEM = 1 << 20
