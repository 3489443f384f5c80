package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/postern-mta/postern/relay"
	"github.com/postern-mta/postern/relay/control"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// relayFormats are the words --log-format takes.
var relayFormats = []string{"text", "json"}

// relayOptions are the flags of `postern relay`.
type relayOptions struct {
	policy, spool, metrics, logFormat string
	listen                            listFlag
}

func relayFlags() (*flag.FlagSet, *relayOptions) {
	fs := newFlagSet("relay")
	o := &relayOptions{}
	fs.StringVar(&o.policy, "c", "", "policy `file` (its relay: block configures the daemon)")
	fs.StringVar(&o.spool, "spool", "", "spool `directory` (created when missing; one daemon per spool)")
	fs.Var(&o.listen, "listen", "listen on `ADDR:PORT` instead of the policy's listener address (repeat: one per listener, in order)")
	fs.StringVar(&o.metrics, "metrics", "", "serve /metrics, /healthz and /readyz on `ADDR:PORT` (off when empty)")
	fs.StringVar(&o.logFormat, "log-format", "text", "log `format`: text or json (to standard error)")
	return fs, o
}

// cmdRelay runs the relay daemon until SIGTERM or SIGINT; SIGHUP reloads
// the policy.
func cmdRelay(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "reload" {
		return cmdRelayReload(args[1:], stdout, stderr)
	}
	fs, o := relayFlags()
	fs.SetOutput(stderr)
	if code, done := parseFlags(fs, args); done {
		return code
	}
	if o.policy == "" || o.spool == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "postern relay: -c POLICY and --spool DIR are required, and nothing else")
		return exitUsage
	}
	var h slog.Handler
	switch o.logFormat {
	case "text":
		h = slog.NewTextHandler(stderr, nil)
	case "json":
		h = slog.NewJSONHandler(stderr, nil)
	default:
		fmt.Fprintf(stderr, "postern relay: --log-format %q: want text or json\n", o.logFormat)
		return exitUsage
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	d, err := relay.New(relay.Options{Policy: o.policy, Spool: o.spool, Listen: o.listen, Logger: slog.New(h), Registry: reg})
	if err != nil {
		printLoadError(stderr, o.policy, err)
		return exitFailed
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for range hup {
			_ = d.Reload() // logged by Reload
		}
	}()
	go func() {
		// A second SIGTERM or SIGINT exits at once: everything
		// acknowledged is on disk already.
		<-ctx.Done()
		again := make(chan os.Signal, 1)
		signal.Notify(again, syscall.SIGTERM, syscall.SIGINT)
		<-again
		os.Exit(exitFailed)
	}()
	if err := d.Run(ctx, o.metrics); err != nil {
		fmt.Fprintf(stderr, "postern relay: %s\n", escErr(err))
		return exitFailed
	}
	return exitOK
}

// cmdRelayReload asks the running daemon to reload its policy (as SIGHUP
// does) and prints why when it refuses.
func cmdRelayReload(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("relay")
	fs.SetOutput(stderr)
	spool := fs.String("spool", "/var/spool/postern", "spool `directory` of the daemon")
	if code, done := parseFlags(fs, args); done {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintln(stderr, "postern relay reload: takes no arguments")
		return exitUsage
	}
	c := control.Dial(filepath.Join(*spool, "control.sock"))
	defer c.Close()
	if err := c.Reload(context.Background()); err != nil {
		fmt.Fprintf(stderr, "postern relay reload: %s\n", escErr(err))
		return exitFailed
	}
	fmt.Fprintln(stdout, "policy reloaded")
	return exitOK
}
