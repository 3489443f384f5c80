package engine

import (
	"cmp"
	"os"
	"strconv"
	"time"

	"github.com/postern-mta/postern/engine/dsn"
	"github.com/postern-mta/postern/transport"
)

// DSNOptions tune [Engine.DSN].
type DSNOptions struct {
	// ReportingMTA is this MTA's host name, for Reporting-MTA and the
	// From: MAILER-DAEMON@ of the notification; "" means
	// Options.Hostname, then the machine's host name.
	ReportingMTA string
	// MaxReturnSize bounds the original returned whole; a larger one
	// comes back as its header only. Zero: no bound.
	MaxReturnSize int
	// From is the notification's From: header field (an address, or a
	// display name and <address>); "" means MAILER-DAEMON@ReportingMTA.
	From string
}

// DSN builds the delivery status notification (RFC 3461, 3464) that the
// results of one Deliver of msg call for, to go to msg.From: the
// recipients that failed permanently (unless their NOTIFY excludes
// FAILURE), those deferred with NotifyDelay set (unless it excludes
// DELAY), and those delivered whose NOTIFY asks for SUCCESS (action
// delivered over LMTP, which is final delivery; relayed when the SMTP
// server took the message without offering DSN; none when it offered
// DSN, since NOTIFY went on with the recipient and the next hop reports
// from then on, RFC 3461 section 4.2) — each with
// its Final- and Original-Recipient (ORCPT), Status, Remote-MTA and
// Diagnostic-Code from the result; the original (header and body) is
// returned as msg.Ret asks. It returns nil when no notification is due,
// or when msg.From is the null sender (a notification about a
// notification is never sent, RFC 3461 section 6.2). recipients are the
// positions in msg.To the notification reports on.
func (e *Engine) DSN(msg Message, results []Result, original []byte, opts DSNOptions) (report []byte, recipients []int, err error) {
	if msg.From == "" || msg.From == "<>" {
		return nil, nil, nil
	}
	now := e.opts.Clock()
	var rcpts []dsn.Recipient
	for i := range results {
		r := &results[i]
		p := msg.dsnOf(i)
		action, ok := dsnAction(r, p.Notify)
		if !ok {
			continue
		}
		d := dsn.Recipient{Final: r.Recipient, Action: action, LastAttempt: now}
		if p.ORcpt != "" {
			d.Original = "rfc822;" + p.ORcpt
		}
		if !r.Enhanced.IsZero() {
			d.Status = r.Enhanced.String()
		}
		if r.Address.IsValid() && r.Host != "" {
			d.RemoteMTA = r.Host
			if r.Code != 0 && (r.Err == nil || r.Err.Reply) {
				// The reply is the server's: quote it. A code the
				// transport chose for a failure of its own (the
				// connection dropped, no reply at all) is not
				// quoted as the server's.
				d.Diagnostic = strconv.Itoa(r.Code) + " " + r.Enhanced.String() + " " + r.Text
			}
		}
		if action == dsn.Delayed && !r.ExpiresAt.IsZero() {
			d.WillRetryUntil = r.ExpiresAt
		}
		rcpts = append(rcpts, d)
		recipients = append(recipients, i)
	}
	if len(rcpts) == 0 {
		return nil, nil, nil
	}
	host := opts.ReportingMTA
	if host == "" {
		host = e.opts.Hostname
	}
	if host == "" {
		host, _ = os.Hostname()
	}
	rep := dsn.Report{ReportingMTA: host, EnvID: msg.EnvID, Arrival: now.Add(-time.Duration(msg.QueueAge) * time.Second),
		From: cmp.Or(opts.From, "MAILER-DAEMON@"+host), To: msg.From, Return: dsnReturn(msg.Ret), MaxReturnSize: opts.MaxReturnSize,
		Original: original, Recipients: rcpts, Date: now}
	report, err = dsn.Build(rep)
	if err != nil {
		return nil, nil, err
	}
	return report, recipients, nil
}

// dsnAction is the DSN action a result calls for under the recipient's
// NOTIFY (zero: the default, FAILURE and DELAY; RFC 3461 section 4.1),
// and whether one is due.
func dsnAction(r *Result, notify transport.NotifyFlags) (dsn.Action, bool) {
	if notify&transport.NotifyNever != 0 || r.Local {
		return "", false
	}
	wants := func(f transport.NotifyFlags) bool { return notify == 0 || notify&f != 0 }
	switch r.Status {
	case transport.StatusPermanent:
		return dsn.Failed, wants(transport.NotifyFailure)
	case transport.StatusTemporary:
		return dsn.Delayed, r.NotifyDelay && wants(transport.NotifyDelay)
	case transport.StatusDelivered:
		switch {
		case notify&transport.NotifySuccess == 0:
			return "", false
		case r.Protocol == transport.LMTP:
			// LMTP is final delivery (RFC 2033).
			return dsn.Delivered, true
		case r.PeerDSN:
			// NOTIFY went on to the next hop, which reports from now
			// on (RFC 3461 section 4.2): nothing from us.
			return "", false
		}
		// Handed to an SMTP server that does not do DSN: we report
		// that it left our hands, and nobody will report more.
		return dsn.Relayed, true
	}
	return "", false
}

// dsnReturn maps RET.
func dsnReturn(r transport.DSNReturn) dsn.Return {
	switch r {
	case transport.ReturnFull:
		return dsn.ReturnFull
	case transport.ReturnHeaders:
		return dsn.ReturnHeaders
	}
	return dsn.ReturnDefault
}
