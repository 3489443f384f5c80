package dsn_test

import (
	"fmt"
	"strings"
	"time"

	"github.com/postern-mta/postern/engine/dsn"
)

// A bounce for one recipient the remote server refused, returning the
// header only (RET=HDRS). Date, MessageID and Boundary are fixed here so
// that the output is the same every time; an MTA leaves them empty.
func ExampleBuild() {
	at := time.Date(2026, 3, 2, 10, 15, 0, 0, time.UTC)
	msg, err := dsn.Build(dsn.Report{
		ReportingMTA: "mta.example.org",
		EnvID:        "QQ314159",
		Arrival:      at.Add(-time.Hour),
		From:         "Mail Delivery System <MAILER-DAEMON@mta.example.org>",
		To:           "alice@example.org",
		Return:       dsn.ReturnHeaders,
		Original:     []byte("From: alice@example.org\r\nSubject: lunch\r\n\r\nNoon?\r\n"),
		Recipients: []dsn.Recipient{{
			Final:       "bob@example.com",
			Original:    "rfc822;Bob@example.com",
			Action:      dsn.Failed,
			Status:      "5.1.1",
			RemoteMTA:   "mx1.example.com",
			Diagnostic:  "550 5.1.1 <bob@example.com>: Recipient address rejected: User unknown",
			LastAttempt: at,
		}},
		Date:      at,
		MessageID: "dsn-1@mta.example.org",
		Boundary:  "BOUNDARY",
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Print(strings.ReplaceAll(string(msg), "\r\n", "\n"))
	// Output:
	// From: "Mail Delivery System" <MAILER-DAEMON@mta.example.org>
	// To: <alice@example.org>
	// Date: Mon, 02 Mar 2026 10:15:00 +0000
	// Message-ID: <dsn-1@mta.example.org>
	// Subject: Undelivered Mail Returned to Sender
	// Auto-Submitted: auto-replied
	// MIME-Version: 1.0
	// Content-Type: multipart/report; boundary=BOUNDARY; report-type=delivery-status
	//
	// --BOUNDARY
	// Content-Type: text/plain; charset=us-ascii
	//
	// This is the mail system at mta.example.org.
	//
	// Your message could not be delivered to the recipients marked "failed"
	// below. The mail system has given up on them.
	//
	// <bob@example.com>: failed, status 5.1.1
	//     Originally addressed to: <Bob@example.com>
	//     mx1.example.com said: 550 5.1.1 <bob@example.com>: Recipient
	//         address rejected: User unknown
	//     Last attempt: Mon, 02 Mar 2026 10:15:00 +0000
	//
	// The header of your message is attached.
	//
	// --BOUNDARY
	// Content-Type: message/delivery-status
	//
	// Original-Envelope-Id: QQ314159
	// Reporting-MTA: dns; mta.example.org
	// Arrival-Date: Mon, 02 Mar 2026 09:15:00 +0000
	//
	// Original-Recipient: rfc822; Bob@example.com
	// Final-Recipient: rfc822; bob@example.com
	// Action: failed
	// Status: 5.1.1
	// Remote-MTA: dns; mx1.example.com
	// Diagnostic-Code: smtp; 550 5.1.1 <bob@example.com>: Recipient address
	//  rejected: User unknown
	// Last-Attempt-Date: Mon, 02 Mar 2026 10:15:00 +0000
	//
	// --BOUNDARY
	// Content-Type: text/rfc822-headers
	//
	// From: alice@example.org
	// Subject: lunch
	//
	// --BOUNDARY--
}
