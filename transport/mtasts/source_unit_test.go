package mtasts

import (
	"context"
	"errors"
	"testing"
	"time"
)

// fetchFunc is a PolicyFetcher stand-in.
type fetchFunc func(ctx context.Context, domain string) (*Policy, error)

func (f fetchFunc) Fetch(ctx context.Context, domain string) (*Policy, error) { return f(ctx, domain) }

// TestSourceOtherFetchers: a PolicyFetcher's plain errors become
// sts-policy-fetch-error and are remembered like any failure; no
// Fetcher, no policy without an error, and a panicking Fetcher are
// failures too, not a crash.
func TestSourceOtherFetchers(t *testing.T) {
	calls := 0
	cause := errors.New("disk on fire")
	s := &Source{Fetcher: fetchFunc(func(context.Context, string) (*Policy, error) {
		calls++
		return nil, cause
	}), Now: func() time.Time { return t0 }}
	for range 2 {
		r := s.Policy(context.Background(), "example.com", Record{ID: "1"})
		var fe *FetchError
		if r.Policy != nil || !errors.As(r.Err, &fe) || fe.Type != ResultFetchError || !errors.Is(r.Err, cause) {
			t.Fatalf("Result = %+v; want no policy and a sts-policy-fetch-error wrapping the cause", r)
		}
	}
	if calls != 1 {
		t.Fatalf("Fetch called %d times, want 1 (the failure is remembered)", calls)
	}

	for name, f := range map[string]PolicyFetcher{
		"no Fetcher":                   nil,
		"no policy and no error":       fetchFunc(func(context.Context, string) (*Policy, error) { return nil, nil }),
		"a panic in the PolicyFetcher": fetchFunc(func(context.Context, string) (*Policy, error) { panic("boom") }),
	} {
		r := (&Source{Fetcher: f}).Policy(context.Background(), "example.com", Record{ID: "1"})
		var fe *FetchError
		if r.Policy != nil || !errors.As(r.Err, &fe) || fe.Type != ResultFetchError {
			t.Errorf("%s: Result = %+v, want no policy and a sts-policy-fetch-error", name, r)
		}
	}
}
