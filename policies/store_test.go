package policies

import (
	"strings"
	"testing"
)

// limits.store: memory or a Redis URL (redis://, rediss://, several hosts
// for a Cluster), with the password only from a secret; every misuse is a
// load error that says what to write instead, and never shows a password.
func TestLimitsStore(t *testing.T) {
	t.Setenv("REDIS_PW", "hunter2-not-shown")
	for _, tt := range []struct {
		name, store string
		want        string // error substring; "" for a policy that loads
		check       func(*testing.T, *Set)
	}{
		{name: "memory", store: "memory", check: func(t *testing.T, s *Set) {
			if s.Limits.Store != "memory" || s.Limits.OnStoreError != "defer" {
				t.Errorf("store %q, on-store-error %q", s.Limits.Store, s.Limits.OnStoreError)
			}
		}},
		{name: "redis URL", store: "redis://127.0.0.1:6379/2"},
		{name: "rediss URL", store: "rediss://redis.internal:6380/0"},
		{name: "cluster, several hosts", store: "redis://10.0.0.1:7000,10.0.0.2:7000"},
		{name: "mapping with a password from env, cluster", store: "\n    url: redis://127.0.0.1:7000\n    password: {env: REDIS_PW}\n    cluster: true",
			check: func(t *testing.T, s *Set) {
				if s.Limits.StorePassword.Source() != "<from env REDIS_PW>" || !s.Limits.StoreCluster {
					t.Errorf("password %s cluster %v", s.Limits.StorePassword, s.Limits.StoreCluster)
				}
				out, err := Marshal(s)
				if err != nil || strings.Contains(string(out), "hunter2") || !strings.Contains(string(out), "<from env REDIS_PW>") {
					t.Errorf("printed policy:\n%s (%v)", out, err)
				}
			}},
		{name: "password in the URL", store: "redis://:hunter2@127.0.0.1:6379/0", want: "the Redis password is never written in the URL"},
		{name: "user and password in the URL", store: "redis://bob:hunter2@127.0.0.1:6379/0", want: "password: {env: NAME}"},
		{name: "literal password", store: "\n    url: redis://127.0.0.1:6379\n    password: hunter2", want: "limits.store.password: the Redis password is never written in the policy"},
		{name: "mapping without url", store: "\n    password: {env: REDIS_PW}", want: "limits.store.url: missing"},
		{name: "other scheme", store: "memcached://127.0.0.1:11211", want: "is not memory, redis://HOST:PORT/DB or rediss://"},
		{name: "no port", store: "redis://127.0.0.1/0", want: `"127.0.0.1" is not HOST:PORT`},
		{name: "database not a number", store: "redis://127.0.0.1:6379/zero", want: "the Redis database must be a number"},
		{name: "query", store: "redis://127.0.0.1:6379/0?cluster=true", want: "no query or fragment is read"},
		{name: "unknown key", store: "\n    url: redis://127.0.0.1:6379\n    tls: true", want: `unknown key "tls" in limits.store`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			set, err := Parse("p.yaml", []byte("version: 1\nlimits:\n  store: "+tt.store+"\n"), Options{})
			if tt.want == "" {
				if err != nil {
					t.Fatalf("does not load: %v", err)
				}
				if tt.check != nil {
					tt.check(t, set)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("the error shows the password: %v", err)
			}
		})
	}
	if _, err := Parse("p.yaml", []byte("version: 1\nlimits:\n  on-store-error: ignore\n"), Options{}); err == nil || !strings.Contains(err.Error(), "expected defer or allow") {
		t.Errorf("on-store-error ignore: %v", err)
	}
	if s, err := Parse("p.yaml", []byte("version: 1\nlimits:\n  on-store-error: allow\n"), Options{}); err != nil || s.Limits.OnStoreError != "allow" {
		t.Errorf("on-store-error allow: %v %v", s, err)
	}
}
