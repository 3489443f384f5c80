// Command embed is the outbound core of a mail server built on Postern's
// engine: a queue directory, a delivery loop, delivery status
// notifications (RFC 3461, 3464), Prometheus metrics on /metrics, a JSON
// log with one line per recipient, and the policy reloaded when its file
// changes or on SIGHUP. The queue is the program's; each attempt is the
// engine's.
//
//	printf 'Subject: hi\r\n\r\nhello\r\n' | embed -queue q -enqueue -from alice@example.org -to bob@example.com
//	embed -c policy.yaml -queue q            # deliver, serve 127.0.0.1:9125/metrics, until SIGINT/SIGTERM
//	embed -c policy.yaml -queue q -once      # attempt what is due, then exit
//
// See README.md, and docs/embedding.md for the reasoning behind each part.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// addrs collects a repeatable flag.
type addrs []string

func (a *addrs) String() string     { return strings.Join(*a, ",") }
func (a *addrs) Set(v string) error { *a = append(*a, v); return nil }

// run is the program; it returns the exit status: 0, 1 for a failure, 2
// for bad usage.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("embed", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := config{logOut: stderr}
	fs.StringVar(&cfg.policy, "c", "policy.yaml", "policy `file`")
	fs.StringVar(&cfg.queueDir, "queue", "queue", "queue `directory`")
	fs.StringVar(&cfg.hostname, "hostname", "", "this MTA's host `name` (default the machine's)")
	listen := fs.String("listen", "127.0.0.1:9125", "`address` to serve /metrics on")
	interval := fs.Duration("interval", 10*time.Second, "how often to look for due messages")
	once := fs.Bool("once", false, "attempt the messages that are due, then exit")
	enqueue := fs.Bool("enqueue", false, "queue the message on standard input for -from and -to, print its ID, and exit")
	var env envelope
	fs.StringVar(&env.From, "from", "", "envelope sender (-enqueue); empty for the null sender")
	var to addrs
	fs.Var(&to, "to", "recipient (-enqueue; repeat for several)")
	notify := fs.String("notify", "", "DSN NOTIFY of every recipient (-enqueue): NEVER, or SUCCESS,FAILURE,DELAY")
	fs.StringVar(&env.Ret, "ret", "", "DSN RET (-enqueue): FULL or HDRS")
	fs.StringVar(&env.EnvID, "envid", "", "DSN ENVID (-enqueue)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *enqueue {
		for _, a := range to {
			env.Rcpts = append(env.Rcpts, recipient{Addr: a, Notify: *notify})
		}
		return enqueueStdin(cfg.queueDir, env, stdin, stdout, stderr)
	}

	m, err := newMTA(cfg)
	if err != nil {
		fmt.Fprintln(stderr, "embed:", err)
		return 1
	}
	defer m.eng.Close()
	if *once {
		err = m.runOnce(ctx)
	} else {
		var ln net.Listener
		if ln, err = net.Listen("tcp", *listen); err == nil {
			err = m.serve(ctx, ln, *interval)
		}
	}
	if err != nil {
		fmt.Fprintln(stderr, "embed:", err)
		return 1
	}
	return 0
}

// enqueueStdin queues the message on stdin for env's sender and
// recipients and prints its queue ID.
func enqueueStdin(dir string, env envelope, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(env.Rcpts) == 0 {
		fmt.Fprintln(stderr, "embed: -enqueue needs at least one -to")
		return 2
	}
	if _, err := parseNotify(env.Rcpts[0].Notify); err != nil {
		fmt.Fprintln(stderr, "embed: -notify:", err)
		return 2
	}
	if r := strings.ToUpper(env.Ret); r != "" && r != "FULL" && r != "HDRS" {
		fmt.Fprintf(stderr, "embed: -ret %q: want FULL or HDRS\n", env.Ret)
		return 2
	}
	body, err := io.ReadAll(stdin)
	if err == nil && len(body) == 0 {
		err = fmt.Errorf("no message on standard input")
	}
	if err == nil {
		err = os.MkdirAll(dir, 0o700)
	}
	var id string
	if err == nil {
		id, err = (&queue{dir: dir, now: time.Now}).enqueue(env, body)
	}
	if err != nil {
		fmt.Fprintln(stderr, "embed: -enqueue:", err)
		return 1
	}
	fmt.Fprintln(stdout, id)
	return 0
}
