// Command embed is the smallest program that embeds Postern's engine: it
// loads a policy, decides one message and prints one line per group of
// recipients (one SMTP transaction each): the route, the outcome and the
// hosts in the order they would be tried.
//
//	go run ./examples/embed -from alice@example.org -to bob@example.com -to carol@example.org
//
// It connects to nothing: the default policy, examples/quickstart, answers
// DNS from its zone file. See README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/postern-mta/postern/engine"
	"github.com/postern-mta/postern/policies"
)

// recipients collects the repeatable -to flag.
type recipients []string

func (r *recipients) String() string     { return strings.Join(*r, ",") }
func (r *recipients) Set(v string) error { *r = append(*r, v); return nil }

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is the program; it returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("embed", flag.ContinueOnError)
	fs.SetOutput(stderr)
	policy := fs.String("c", "examples/quickstart/policy.yaml", "policy `file`")
	from := fs.String("from", "alice@example.org", "envelope sender `address` (\"\" for the null sender)")
	var to recipients
	fs.Var(&to, "to", "recipient `address` (repeat for several)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if len(to) == 0 {
		fmt.Fprintln(stderr, "embed: at least one -to is required")
		return 2
	}

	eng, err := engine.LoadFile(*policy, engine.Options{})
	if err != nil {
		var list policies.ErrorList
		if errors.As(err, &list) {
			for _, e := range list { // every problem, with its position
				fmt.Fprintln(stderr, e)
			}
			return 1
		}
		fmt.Fprintln(stderr, "embed:", err)
		return 1
	}
	defer eng.Close()

	dec, err := eng.Evaluate(context.Background(), engine.Message{From: *from, To: to})
	if err != nil {
		fmt.Fprintln(stderr, "embed:", err)
		return 1
	}
	for _, g := range dec.Groups {
		fmt.Fprintln(stdout, groupLine(g))
	}
	return 0
}

// groupLine describes a group on one line, for example
//
//	example.com via mx (mx): deliver [bob@example.com] hosts mx1.example.com (192.0.2.25, 2001:db8::25; starttls require), ...
func groupLine(g *engine.Group) string {
	var b strings.Builder
	route := g.Route.Name
	if route == "" {
		route = "(no route)"
	} else {
		route += " (" + string(g.Route.Type) + ")"
	}
	fmt.Fprintf(&b, "%s via %s: %s [%s]", g.Domain, route, g.Outcome, strings.Join(g.Recipients, ", "))
	if g.Error != nil {
		kind := "permanent"
		if g.Error.Temporary {
			kind = "temporary"
		}
		fmt.Fprintf(&b, " %s %s: %s", kind, g.Error.Class, firstLine(g.Error.Message))
	}
	var hosts []string
	for _, h := range g.Hosts {
		if h.Skipped != nil {
			hosts = append(hosts, fmt.Sprintf("%s (skipped: %s)", h.Name, *h.Skipped))
			continue
		}
		addrs := make([]string, len(h.Addresses))
		for i, a := range h.Addresses {
			addrs[i] = a.String()
		}
		hosts = append(hosts, fmt.Sprintf("%s (%s; starttls %s)", h.Name, strings.Join(addrs, ", "), h.TLS.STARTTLS))
	}
	if len(hosts) > 0 {
		fmt.Fprintf(&b, " hosts %s", strings.Join(hosts, ", "))
	}
	return b.String()
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
