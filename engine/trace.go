package engine

import (
	"fmt"
	"net/netip"
	"strconv"
	"time"

	"github.com/postern-mta/postern/policies"
	"github.com/postern-mta/postern/transport/dns"
)

// newTrace returns a trace to record into (nil without tracing).
func (r *run) newTrace() *policies.Trace {
	if !r.cfg.trace {
		return nil
	}
	return &policies.Trace{}
}

// flush appends tr's entries to g's trace with a context label. The label
// is built only when tracing.
func flush(g *Group, tr *policies.Trace, label func() string) {
	if tr == nil || len(tr.Entries) == 0 {
		return
	}
	context := label()
	for i := range tr.Entries {
		if tr.Entries[i].Context == "" {
			tr.Entries[i].Context = context
		}
	}
	g.Trace = append(g.Trace, tr.Entries...)
	tr.Entries = tr.Entries[:0]
}

// lookup records a DNS question in the group when tracing.
func (r *run) lookup(g *Group, name, typ string, answer func() []string, secure bool, info dns.Info, err error) {
	if !r.cfg.trace {
		return
	}
	l := DNSQuery{Name: name, Type: typ, Answer: answer(), Secure: secure, Cached: info.Cached, Stale: info.Stale}
	if l.Answer == nil {
		l.Answer = []string{}
	}
	if info.TTL > 0 {
		l.TTL = info.TTL.Round(time.Second).String()
	}
	if err != nil {
		l.Error = err.Error()
	}
	g.Lookups = append(g.Lookups, l)
}

func txtAnswer(recs []string) []string { return append([]string(nil), recs...) }

func mxAnswer(res dns.MXResult) []string {
	if res.NullMX {
		return []string{"0 ."}
	}
	out := make([]string, len(res.Records))
	for i, m := range res.Records {
		out[i] = strconv.Itoa(int(m.Preference)) + " " + m.Host
	}
	return out
}

func addrAnswer(addrs []netip.Addr) []string {
	out := make([]string, len(addrs))
	for i, a := range addrs {
		out[i] = a.String()
	}
	return out
}

func tlsaAnswer(recs []dns.TLSA) []string {
	out := make([]string, len(recs))
	for i, t := range recs {
		out[i] = fmt.Sprintf("%d %d %d %x", t.Usage, t.Selector, t.MatchingType, t.Data)
	}
	return out
}
