package main

import "github.com/postern-mta/postern/bench/internal/sinkproc"

// The sinks are bench/internal/sinkproc's: Postfix's smtp-sink, and this
// program's STARTTLS sink (gosink.go), which prints the same counters
// with the TLS handshakes.

// tlsSinkSpec is this program's STARTTLS sink (-worker sink), offering
// STARTTLS with the certificate in certFile and keyFile.
func tlsSinkSpec(self, certFile, keyFile string) sinkproc.Spec {
	return sinkproc.Spec{Name: "STARTTLS sink", Argv: func(addr string) []string {
		return []string{self, "-worker", "sink", "-addr", addr, "-cert", certFile, "-key", keyFile}
	}}
}
