package examples_test

// TestCases runs the dry-run cases of every example: examples/NAME/cases.yaml
// lists `postern dry-run` invocations (from, to, vars, meta, seed) and the
// facts each must show. The example's policy is loaded as the CLI loads it,
// with its own static resolver (dns: resolver: static, zone-file: zone.txt),
// and evaluated with engine.Evaluate.
//
// cases.yaml is a list of cases:
//
//	- name: what the case shows
//	  from: alice@example.org        # "" or "<>" is the null sender
//	  to: [bob@example.com]
//	  vars: {retry_num: 3, last_error: tls}   # --var, recipient-phase only
//	  meta: {stream: bulk}                    # --meta
//	  seed: 1                                 # --seed (default 1)
//	  group_count: 1                          # optional: number of groups
//	  groups:
//	    - rcpt: bob@example.com      # the group holding this recipient
//	      route: mx                  # group facts, each optional ...
//	      host: mx2.example.com      # which host the host facts are about;
//	                                 # default: the first host not skipped
//	      starttls: require          # host facts, each optional ...
//
// Group facts: route, route_type, outcome, error_class, temporary,
// recipients, relay (ADDRESS:PORT), protocol, implicit_tls, secret (where
// it comes from, as printed), mta_sts, mta_sts_record, mta_sts_mode (the
// mode of the policy in force, "" for none), hosts (names in the
// order they would be tried), skipped (names of skipped hosts), throttles
// (names of the throttles that apply, both phases; a connection-phase
// throttle is listed once per host), throttle_keys (name: key of its first
// entry), limits_recipients, lookups (number of DNS questions asked).
//
// Host facts: addresses, ip_lookup, mx_secure, starttls, dane,
// dane_active, tls_required, verify (dane, mta-sts, pkix, none,
// opportunistic), min_version, allow_invalid_certs, messages_per_connection,
// ehlo (EHLO name per connection), sources (source IP per connection, ""
// when the kernel chooses).
//
// Facts not listed are not checked: a case says what its README promises.

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/postern-mta/postern/engine"
)

type dryRunCase struct {
	Name       string            `yaml:"name"`
	From       string            `yaml:"from"`
	To         []string          `yaml:"to"`
	Vars       map[string]string `yaml:"vars"`
	Meta       map[string]string `yaml:"meta"`
	Seed       *uint64           `yaml:"seed"`
	GroupCount *int              `yaml:"group_count"`
	Groups     []groupFacts      `yaml:"groups"`
}

type groupFacts struct {
	Rcpt string `yaml:"rcpt"`

	Route            *string           `yaml:"route"`
	RouteType        *string           `yaml:"route_type"`
	Outcome          *string           `yaml:"outcome"`
	ErrorClass       *string           `yaml:"error_class"`
	Temporary        *bool             `yaml:"temporary"`
	Recipients       []string          `yaml:"recipients"`
	Relay            *string           `yaml:"relay"`
	Protocol         *string           `yaml:"protocol"`
	ImplicitTLS      *bool             `yaml:"implicit_tls"`
	Secret           *string           `yaml:"secret"`
	MTASTS           *string           `yaml:"mta_sts"`
	MTASTSRecord     *string           `yaml:"mta_sts_record"`
	MTASTSMode       *string           `yaml:"mta_sts_mode"`
	Hosts            []string          `yaml:"hosts"`
	Skipped          []string          `yaml:"skipped"`
	Throttles        []string          `yaml:"throttles"`
	ThrottleKeys     map[string]string `yaml:"throttle_keys"`
	LimitsRecipients *int              `yaml:"limits_recipients"`
	Lookups          *int              `yaml:"lookups"`

	Host                  string   `yaml:"host"`
	Addresses             []string `yaml:"addresses"`
	IPLookup              *string  `yaml:"ip_lookup"`
	MXSecure              *bool    `yaml:"mx_secure"`
	STARTTLS              *string  `yaml:"starttls"`
	DANE                  *string  `yaml:"dane"`
	DANEActive            *bool    `yaml:"dane_active"`
	TLSRequired           *bool    `yaml:"tls_required"`
	Verify                *string  `yaml:"verify"`
	MinVersion            *string  `yaml:"min_version"`
	AllowInvalidCerts     *bool    `yaml:"allow_invalid_certs"`
	MessagesPerConnection *int     `yaml:"messages_per_connection"`
	EHLO                  []string `yaml:"ehlo"`
	Sources               []string `yaml:"sources"`
}

// readCases reads dir/cases.yaml; unknown keys are errors, so a typo in a
// fact name cannot silently check nothing.
func readCases(t *testing.T, dir string) []dryRunCase {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "cases.yaml"))
	if err != nil {
		t.Fatalf("every example needs dry-run cases: %v", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var cases []dryRunCase
	if err := dec.Decode(&cases); err != nil {
		t.Fatalf("%s/cases.yaml: %v", dir, err)
	}
	if len(cases) == 0 {
		t.Fatalf("%s/cases.yaml has no cases", dir)
	}
	return cases
}

// message builds the engine message as `postern dry-run` does from flags.
func (c *dryRunCase) message() (engine.Message, error) {
	m := engine.Message{From: c.From, To: c.To, Meta: c.Meta}
	if m.From == "<>" {
		m.From = ""
	}
	for name, v := range c.Vars {
		n, nerr := strconv.Atoi(v)
		ints := map[string]*int{"size": &m.Size, "priority": &m.Priority, "retry_num": &m.RetryNum,
			"notify_num": &m.NotifyNum, "expires_in": &m.ExpiresIn, "queue_age": &m.QueueAge,
			"received_via_port": &m.ReceivedViaPort}
		strs := map[string]*string{"last_error": &m.LastError, "last_status": &m.LastStatus,
			"queue_name": &m.QueueName, "source": &m.Source, "received_from_ip": &m.ReceivedFromIP,
			"authenticated_as": &m.AuthenticatedAs}
		switch {
		case ints[name] != nil && nerr == nil:
			*ints[name] = n
		case ints[name] != nil:
			return m, fmt.Errorf("var %s: %q is not an integer", name, v)
		case strs[name] != nil:
			*strs[name] = v
		default:
			return m, fmt.Errorf("var %s: not a recipient-phase variable", name)
		}
	}
	return m, nil
}

func TestCases(t *testing.T) {
	for _, dir := range exampleDirs(t) {
		t.Run(dir, func(t *testing.T) {
			cases := readCases(t, dir)
			eng, err := engine.LoadFile(filepath.Join(dir, "policy.yaml"), engine.Options{Hostname: "mta.example.org"})
			if err != nil {
				t.Fatalf("%s does not load:\n%v", dir, err)
			}
			for _, c := range cases {
				t.Run(c.Name, func(t *testing.T) {
					msg, err := c.message()
					if err != nil {
						t.Fatal(err)
					}
					seed := uint64(1)
					if c.Seed != nil {
						seed = *c.Seed
					}
					rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)) // as postern dry-run --seed
					d, err := eng.Evaluate(context.Background(), msg, engine.WithTrace(), engine.WithRand(rng.Uint64))
					if err != nil {
						t.Fatal(err)
					}
					var errs []string
					if c.GroupCount != nil && len(d.Groups) != *c.GroupCount {
						errs = append(errs, fmt.Sprintf("%d groups, want %d", len(d.Groups), *c.GroupCount))
					}
					for _, f := range c.Groups {
						errs = append(errs, f.check(d)...)
					}
					if len(errs) > 0 {
						var text bytes.Buffer
						_ = d.WriteText(&text)
						t.Errorf("%s: postern dry-run -c %s/policy.yaml %s\n  %s\n\ndecision:\n%s",
							c.Name, dir, c.flags(), strings.Join(errs, "\n  "), text.String())
					}
				})
			}
		})
	}
}

// flags renders the case as dry-run flags, for the failure message.
func (c *dryRunCase) flags() string {
	var b strings.Builder
	fmt.Fprintf(&b, "--from %q", c.From)
	for _, to := range c.To {
		fmt.Fprintf(&b, " --to %s", to)
	}
	for k, v := range c.Vars {
		fmt.Fprintf(&b, " --var %s=%s", k, v)
	}
	for k, v := range c.Meta {
		fmt.Fprintf(&b, " --meta %s=%s", k, v)
	}
	if c.Seed != nil {
		fmt.Fprintf(&b, " --seed %d", *c.Seed)
	} else {
		b.WriteString(" --seed 1")
	}
	return b.String()
}

// check compares the facts with the group holding f.Rcpt.
func (f *groupFacts) check(d *engine.Decision) []string {
	var g *engine.Group
	for _, x := range d.Groups {
		for _, r := range x.Recipients {
			if r == f.Rcpt {
				g = x
			}
		}
	}
	if g == nil {
		return []string{fmt.Sprintf("no group holds %s", f.Rcpt)}
	}
	var errs []string
	p := func(fact string, got, want any) {
		if !reflect.DeepEqual(got, want) {
			errs = append(errs, fmt.Sprintf("%s: %s = %v, want %v", f.Rcpt, fact, got, want))
		}
	}
	str := func(fact string, got string, want *string) {
		if want != nil {
			p(fact, got, *want)
		}
	}
	list := func(fact string, got, want []string) {
		if want != nil {
			if got == nil {
				got = []string{}
			}
			p(fact, got, want)
		}
	}
	str("route", g.Route.Name, f.Route)
	str("route_type", string(g.Route.Type), f.RouteType)
	str("outcome", string(g.Outcome), f.Outcome)
	if f.ErrorClass != nil || f.Temporary != nil {
		if g.Error == nil {
			errs = append(errs, fmt.Sprintf("%s: no error, want one", f.Rcpt))
		} else {
			str("error_class", string(g.Error.Class), f.ErrorClass)
			if f.Temporary != nil {
				p("temporary", g.Error.Temporary, *f.Temporary)
			}
		}
	}
	list("recipients", g.Recipients, f.Recipients)
	if f.Relay != nil {
		p("relay", g.Route.Address+":"+strconv.Itoa(g.Route.Port), *f.Relay)
	}
	str("protocol", g.Route.Protocol, f.Protocol)
	if f.ImplicitTLS != nil {
		p("implicit_tls", g.Route.ImplicitTLS, *f.ImplicitTLS)
	}
	if f.Secret != nil {
		got := ""
		if g.Route.Auth != nil {
			got = g.Route.Auth.Secret
		}
		p("secret", got, *f.Secret)
	}
	str("mta_sts", g.MTASTS.Setting, f.MTASTS)
	str("mta_sts_record", g.MTASTS.Record, f.MTASTSRecord)
	if f.MTASTSMode != nil {
		mode := ""
		if g.MTASTS.Policy != nil {
			mode = g.MTASTS.Policy.Mode
		}
		p("mta_sts_mode", mode, *f.MTASTSMode)
	}
	var hosts, skipped []string
	for _, h := range g.Hosts {
		hosts = append(hosts, h.Name)
		if h.Skipped != nil {
			skipped = append(skipped, h.Name)
		}
	}
	list("hosts", hosts, f.Hosts)
	list("skipped", skipped, f.Skipped)
	var throttles []string
	keys := map[string]string{}
	for _, th := range g.Throttles {
		throttles = append(throttles, th.Name)
		if _, ok := keys[th.Name]; !ok {
			keys[th.Name] = th.Key
		}
	}
	list("throttles", throttles, f.Throttles)
	if f.ThrottleKeys != nil {
		for name, want := range f.ThrottleKeys {
			p("throttle_keys."+name, keys[name], want)
		}
	}
	if f.LimitsRecipients != nil {
		p("limits_recipients", g.Limits.Recipients, *f.LimitsRecipients)
	}
	if f.Lookups != nil {
		p("lookups", len(g.Lookups), *f.Lookups)
	}
	return append(errs, f.checkHost(g)...)
}

// checkHost compares the host facts with the chosen host of g.
func (f *groupFacts) checkHost(g *engine.Group) []string {
	if f.Addresses == nil && f.IPLookup == nil && f.MXSecure == nil && f.STARTTLS == nil && f.DANE == nil &&
		f.DANEActive == nil && f.TLSRequired == nil && f.Verify == nil && f.MinVersion == nil && f.AllowInvalidCerts == nil &&
		f.MessagesPerConnection == nil && f.EHLO == nil && f.Sources == nil {
		return nil
	}
	var h *engine.Host
	for _, x := range g.Hosts {
		if (f.Host == "" && x.Skipped == nil) || x.Name == f.Host {
			h = x
			break
		}
	}
	if h == nil {
		return []string{fmt.Sprintf("%s: no host %q to check host facts on", f.Rcpt, f.Host)}
	}
	var errs []string
	p := func(fact string, got, want any) {
		if !reflect.DeepEqual(got, want) {
			errs = append(errs, fmt.Sprintf("%s: host %s: %s = %v, want %v", f.Rcpt, h.Name, fact, got, want))
		}
	}
	if f.Addresses != nil {
		addrs := []string{}
		for _, a := range h.Addresses {
			addrs = append(addrs, a.String())
		}
		p("addresses", addrs, f.Addresses)
	}
	if f.IPLookup != nil {
		p("ip_lookup", string(h.IPLookup), *f.IPLookup)
	}
	if f.MXSecure != nil {
		p("mx_secure", h.Secure, *f.MXSecure)
	}
	if f.STARTTLS != nil {
		p("starttls", string(h.TLS.STARTTLS), *f.STARTTLS)
	}
	if f.DANE != nil {
		p("dane", string(h.TLS.DANE), *f.DANE)
	}
	if f.DANEActive != nil {
		p("dane_active", h.TLS.DANEState.Active, *f.DANEActive)
	}
	if f.TLSRequired != nil {
		p("tls_required", h.TLS.Required, *f.TLSRequired)
	}
	if f.Verify != nil {
		p("verify", h.TLS.Verify, *f.Verify)
	}
	if f.MinVersion != nil {
		p("min_version", string(h.TLS.MinVersion), *f.MinVersion)
	}
	if f.AllowInvalidCerts != nil {
		p("allow_invalid_certs", h.TLS.AllowInvalidCerts, *f.AllowInvalidCerts)
	}
	if f.MessagesPerConnection != nil {
		p("messages_per_connection", h.MessagesPerConnection, *f.MessagesPerConnection)
	}
	ehlo, sources := []string{}, []string{}
	for _, c := range h.Connections {
		ehlo = append(ehlo, c.EHLOHostname)
		src := ""
		if c.SourceIP != nil {
			src = c.SourceIP.String()
		}
		sources = append(sources, src)
	}
	if f.EHLO != nil {
		p("ehlo", ehlo, f.EHLO)
	}
	if f.Sources != nil {
		p("sources", sources, f.Sources)
	}
	return errs
}
