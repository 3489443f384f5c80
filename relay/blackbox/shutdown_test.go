package blackbox_test

import (
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/postern-mta/postern/internal/testbed"
	"github.com/postern-mta/postern/internal/testbed/smtpbed"
)

// TestGracefulStop: on SIGTERM the relay stops being ready, answers the
// next MAIL of an open session 421 4.3.2, lets a message inside DATA
// finish and acknowledges it only once it is on disk, cuts off a DATA
// still unfinished at queue.shutdown-timeout without acknowledging it,
// and exits 0. Restarted, it delivers the message it acknowledged and
// nothing else.
func TestGracefulStop(t *testing.T) {
	sink := smtpbed.StartSink(t, smtpbed.SinkOptions{})
	closed := testbed.ClosedPort(t) // nothing is delivered before the restart
	metrics := testbed.Addr("127.0.0.1", testbed.FreePort(t, "127.0.0.1"))
	policy := sinkPolicy("127.0.0.1", int(closed.Port()), ", shutdown-timeout: 2s") + "queue: {retry: [1s]}\n"
	r := newRelay(t, relayOptions{Policy: policy, Metrics: metrics})
	run := r.Start()

	// open starts a session and, when inData, a message whose data is
	// half sent.
	open := func(subject string, inData bool) (*smtpClient, []byte) {
		t.Helper()
		c, g, err := dialSMTP(r.Addr)
		if err != nil || g.Code != 220 {
			t.Fatalf("connect: %v %v", g, err)
		}
		t.Cleanup(func() { _ = c.conn.Close() })
		for _, line := range []string{"EHLO client.test", "MAIL FROM:<alice@sender.test>", "RCPT TO:<bob@dest.test>", "DATA"} {
			if !inData && line != "EHLO client.test" {
				break
			}
			rr, err := c.Cmd("%s", line)
			if err != nil || rr.Code/100 > 3 {
				t.Fatalf("%s: %v %v", line, rr, err)
			}
		}
		body := message(subject, 20000)
		if inData {
			if _, err := c.conn.Write(body[:len(body)/2]); err != nil {
				t.Fatal(err)
			}
		}
		return c, body
	}
	finishing, fbody := open("finishes after SIGTERM", true)
	stalled, _ := open("never finishes", true)
	idle, _ := open("", false)

	if err := syscall.Kill(run.cmd.Process.Pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// Draining: /readyz turns 503 (polling the other process).
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + metrics + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusServiceUnavailable {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz not 503 within 10 s of SIGTERM (last: %v %v)", resp, err)
		}
		time.Sleep(20 * time.Millisecond)
	}

	if rr, err := idle.Cmd("MAIL FROM:<alice@sender.test>"); err != nil || rr.Code != 421 || !strings.HasPrefix(rr.Text, "4.3.2 ") {
		t.Errorf("MAIL after SIGTERM: %v %v, want 421 4.3.2", rr, err)
	}

	// The message inside DATA finishes and is acknowledged.
	if _, err := finishing.conn.Write(append(fbody[len(fbody)/2:], ".\r\n"...)); err != nil {
		t.Fatal(err)
	}
	fr, err := finishing.read()
	id := fr.QueueID()
	if err != nil || id == "" {
		t.Errorf("end of data after SIGTERM: %v %v, want 250 queued as ID", fr, err)
	}

	// The stalled one is cut off at the shutdown timeout, with no 250.
	sr, err := stalled.read()
	if err == nil && sr.Code/100 == 2 {
		t.Errorf("a DATA never finished was answered %v", sr)
	}
	t.Logf("stalled DATA at the shutdown timeout: %v %v", sr, err)

	select {
	case <-run.done:
	case <-time.After(20 * time.Second):
		t.Fatal("the relay did not exit within 20 s of SIGTERM (shutdown-timeout 2s)")
	}
	if code := run.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit code %d after SIGTERM, want 0", code)
	}
	files := msgFiles(t, r.Spool)
	if id != "" {
		if _, ok := files[id]; !ok {
			t.Errorf("%s was acknowledged during the shutdown but is not in msg/", id)
		}
	}
	if len(files) != 1 {
		t.Errorf("msg/ holds %d messages after the shutdown, want only the acknowledged one", len(files))
	}

	// Restarted with the destination up, it delivers exactly that one.
	if n := len(find(r.Records(), "queued")); n != 1 {
		t.Errorf("%d messages logged as queued before the restart, want 1", n)
	}
	r.SetPolicy(sinkPolicy("127.0.0.1", int(sink.Addr.Port()), ""))
	r.Start()
	r.WaitLog(20*time.Second, "the acknowledged message delivered after the restart", func(recs []logRecord) bool {
		return len(find(recs, "delivery", "id", id, "status", "sent")) > 0 && len(msgFiles(t, r.Spool)) == 0
	})
	var subjects []string
	for _, m := range sink.Messages(t) {
		subjects = append(subjects, seqSubjectAny(m.Data))
	}
	if len(subjects) != 1 || subjects[0] != "finishes after SIGTERM" {
		t.Errorf("the sink got %q, want only the message acknowledged during the shutdown", subjects)
	}
}
