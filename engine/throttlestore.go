package engine

import (
	"crypto/tls"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/postern-mta/postern/engine/throttle"
	"github.com/postern-mta/postern/policies"
)

// throttleStores are the stores an engine has made for its policies, by
// configuration, kept for the engine's life: a reload that keeps the store
// keeps its counters (and the leases of deliveries still running under the
// old policy stay valid).
type throttleStores struct {
	mu     sync.Mutex
	stores map[string]throttle.Store
}

// storeFor returns the throttle store set's limits.store describes:
// Options.Throttles when given, the engine's in-memory store, or a Redis
// store (made without connecting: the first acquire connects). Redis is
// reached with the operating system's dialer, not Options.Dialer: it is
// the fleet's infrastructure, not a delivery.
func (e *Engine) storeFor(set *policies.Set) (throttle.Store, error) {
	if e.opts.Throttles != nil {
		return e.opts.Throttles, nil
	}
	l := set.Limits
	id := l.Store + "\x00" + l.StorePassword.Source() + "\x00" + strconv.FormatBool(l.StoreCluster) + "\x00" + l.StoreLeaseTTL.String()
	e.stores.mu.Lock()
	defer e.stores.mu.Unlock()
	if s, ok := e.stores.stores[id]; ok {
		return s, nil
	}
	var s throttle.Store
	if l.Store == "memory" || l.Store == "" {
		var now func() time.Time
		if e.clockSet {
			now = e.opts.Clock
		}
		s = throttle.NewMemory(throttle.MemoryOptions{Now: now})
	} else {
		o, err := throttle.ParseURL(l.Store)
		if err != nil {
			return nil, fmt.Errorf("engine: %s: limits.store: %w", set.File, err)
		}
		o.Cluster = o.Cluster || l.StoreCluster
		if l.StoreLeaseTTL > 0 {
			o.LeaseTTL = l.StoreLeaseTTL
		}
		if !l.StorePassword.IsZero() {
			pw, err := l.StorePassword.Resolve()
			if err != nil {
				return nil, fmt.Errorf("engine: %s: limits.store.password: %w", set.File, err)
			}
			o.Password = pw
		}
		if o.TLS != nil {
			o.TLS = &tls.Config{ServerName: o.TLS.ServerName, RootCAs: e.opts.RootCAs, MinVersion: tls.VersionTLS12}
		}
		r, err := throttle.NewRedis(o)
		if err != nil {
			return nil, fmt.Errorf("engine: %s: limits.store: %w", set.File, err)
		}
		s = r
	}
	if e.stores.stores == nil {
		e.stores.stores = map[string]throttle.Store{}
	}
	e.stores.stores[id] = s
	return s, nil
}

// closeStores closes the stores the engine made.
func (e *Engine) closeStores() {
	e.stores.mu.Lock()
	defer e.stores.mu.Unlock()
	for id, s := range e.stores.stores {
		_ = s.Close()
		delete(e.stores.stores, id)
	}
}
