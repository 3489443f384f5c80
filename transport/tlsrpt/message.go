package tlsrpt

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"net/textproto"
	"strings"
	"time"
)

// BuildMessage returns the report as the mail message of RFC 8460 section
// 5.3: a multipart/report; report-type="tlsrpt" message (RFC 6522) with a
// human-readable text/plain part and the gzipped report as an
// application/tlsrpt+gzip attachment (base64) named per section 5.1, the
// From, To, Date, Subject, Message-ID, MIME-Version, TLS-Report-Domain and
// TLS-Report-Submitter header fields, TLS-Required: No (RFC 8689 section 5:
// a report must get through the broken TLS policy it may be about), and
// CRLF line ends.
//
// from is one address, to one address or a comma-separated list. submitter
// is the domain of the sending MTA; section 5.3 requires it to be the
// domain of the report's contact-info. The Subject carries
// "Report-ID: <report-id@submitter>", so the report-id must be a dot-atom
// (the [Aggregator]'s are). The message is not DKIM-signed; section 3
// requires that, so the caller signs it before sending.
func BuildMessage(r *Report, from, to, submitter string, now time.Time) ([]byte, error) {
	if err := checkMessage(r, from, to, submitter); err != nil {
		return nil, fmt.Errorf("tlsrpt: message for report %q: %w", r.ReportID, err)
	}
	gz, err := r.gzipped()
	if err != nil {
		return nil, err
	}
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	if err := writeText(mw, r, submitter); err != nil {
		return nil, fmt.Errorf("tlsrpt: message for report %q: %w", r.ReportID, err)
	}
	if err := writeAttachment(mw, gz, r.filename(submitter)); err != nil {
		return nil, fmt.Errorf("tlsrpt: message for report %q: %w", r.ReportID, err)
	}
	if err := mw.Close(); err != nil {
		return nil, fmt.Errorf("tlsrpt: message for report %q: %w", r.ReportID, err)
	}

	var msg bytes.Buffer
	h := func(name, value string) { msg.WriteString(name + ": " + value + "\r\n") }
	h("From", from)
	h("To", to)
	h("Date", now.Format(time.RFC1123Z))
	// Section 5.3's tlsrpt-subject, folded at its FWS as the RFC's example.
	h("Subject", "Report Domain: "+r.domain()+"\r\n Submitter: "+submitter+
		"\r\n Report-ID: <"+r.ReportID+"@"+submitter+">")
	h("Message-ID", "<"+rand.Text()+"@"+submitter+">")
	h("TLS-Report-Domain", r.domain())
	h("TLS-Report-Submitter", submitter)
	// A report is about TLS failing on the way to the domain: it must not
	// be held up by the very policy it reports on. RFC 8689 section 5's
	// header field asks the delivering MTAs (Postern's engine among them)
	// not to apply the recipient's DANE or MTA-STS policy to it.
	h("TLS-Required", "No")
	h("MIME-Version", "1.0")
	h("Content-Type", `multipart/report; report-type="tlsrpt";`+"\r\n\t"+`boundary="`+mw.Boundary()+`"`)
	msg.WriteString("\r\n")
	msg.Write(body.Bytes())
	return msg.Bytes(), nil
}

// checkMessage refuses what would make a broken or forged header.
func checkMessage(r *Report, from, to, submitter string) error {
	if r == nil {
		return fmt.Errorf("no report")
	}
	for _, v := range []string{from, to, submitter, r.domain(), r.ReportID} {
		if strings.ContainsAny(v, "\r\n") {
			return fmt.Errorf("line break in %q", v)
		}
	}
	if _, err := mail.ParseAddress(from); err != nil {
		return fmt.Errorf("from address %q: %w", from, err)
	}
	if _, err := mail.ParseAddressList(to); err != nil {
		return fmt.Errorf("to address %q: %w", to, err)
	}
	if r.domain() == "" {
		return fmt.Errorf("report has no policy domain")
	}
	if submitter == "" {
		return fmt.Errorf("no submitter domain")
	}
	_, contactDomain, _ := strings.Cut(r.ContactInfo, "@")
	if !strings.EqualFold(strings.TrimSuffix(contactDomain, "."), strings.TrimSuffix(submitter, ".")) {
		return fmt.Errorf("contact-info %q is not at the submitter domain %q (RFC 8460 section 5.3)", r.ContactInfo, submitter)
	}
	if !isDotAtom(r.ReportID) {
		return fmt.Errorf("report-id is not a dot-atom, so cannot be a Subject's msg-id (RFC 8460 section 5.3)")
	}
	for _, d := range []string{r.domain(), submitter} {
		if !isDotAtom(d) {
			return fmt.Errorf("%q is not a domain name for the Subject (RFC 8460 section 5.3)", d)
		}
	}
	return nil
}

// isDotAtom: RFC 5322 dot-atom-text, the id-left of a msg-id.
func isDotAtom(s string) bool {
	if s == "" {
		return false
	}
	for atom := range strings.SplitSeq(s, ".") {
		if atom == "" {
			return false
		}
		for i := 0; i < len(atom); i++ {
			if c := atom[i]; !isAlnum(c) && !strings.ContainsRune("!#$%&'*+-/=?^_`{|}~", rune(c)) {
				return false
			}
		}
	}
	return true
}

// writeText writes the human-readable first part RFC 6522 asks for.
func writeText(mw *multipart.Writer, r *Report, submitter string) error {
	part, err := mw.CreatePart(textproto.MIMEHeader{
		"Content-Type":              {`text/plain; charset="utf-8"`},
		"Content-Transfer-Encoding": {"quoted-printable"},
	})
	if err != nil {
		return err
	}
	var ok, failed int64
	for _, p := range r.Policies {
		ok += p.Summary.Successful
		failed += p.Summary.Failed
	}
	qp := quotedprintable.NewWriter(part)
	fmt.Fprintf(qp, "This is an aggregate TLS report (RFC 8460).\n\n"+
		"Submitter: %s\nPolicy domain: %s\nFrom: %s\nTo: %s\n"+
		"Sessions: %d successful, %d failed\nReport-ID: %s\n\n"+
		"The report is attached as\n%s\n",
		submitter, r.domain(), r.Start.UTC().Format(time.RFC3339), r.End.UTC().Format(time.RFC3339),
		ok, failed, r.ReportID, r.filename(submitter))
	return qp.Close()
}

// writeAttachment writes the gzipped report, base64 in lines of 76.
func writeAttachment(mw *multipart.Writer, gz []byte, filename string) error {
	disposition := mime.FormatMediaType("attachment", map[string]string{"filename": filename})
	if disposition == "" {
		return fmt.Errorf("file name %q cannot be a MIME parameter", filename)
	}
	part, err := mw.CreatePart(textproto.MIMEHeader{
		"Content-Type":              {"application/tlsrpt+gzip"},
		"Content-Transfer-Encoding": {"base64"},
		"Content-Disposition":       {disposition},
	})
	if err != nil {
		return err
	}
	enc := base64.StdEncoding.EncodeToString(gz)
	for len(enc) > 76 {
		if _, err := part.Write([]byte(enc[:76] + "\r\n")); err != nil {
			return err
		}
		enc = enc[76:]
	}
	_, err = part.Write([]byte(enc + "\r\n"))
	return err
}
