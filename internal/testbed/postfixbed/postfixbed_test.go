package postfixbed_test

import (
	"errors"
	"net/smtp"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/postern-mta/postern/internal/testbed/postfixbed"
	"github.com/postern-mta/postern/internal/testbed/smtpbed"
)

// TestPostfixbedRelaysAndLogs starts an instance, relays a message
// through it to a sink, and finds the delivery in the instance's own log
// file; when the (sub)test ends the master is gone and the directory
// removed.
func TestPostfixbedRelaysAndLogs(t *testing.T) {
	var dir string
	var master int
	t.Run("instance", func(t *testing.T) {
		sink := smtpbed.StartSink(t, smtpbed.SinkOptions{})
		pf := postfixbed.Start(t, postfixbed.Options{Relay: sink.Addr.String()})
		dir = pf.Dir
		b, err := os.ReadFile(filepath.Join(pf.Spool(), "pid", "master.pid"))
		if err != nil {
			t.Fatal(err)
		}
		master, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		if master <= 0 {
			t.Fatalf("master.pid %q", b)
		}
		if got := strings.TrimSpace(pf.Command(t, "postconf", "-h", "queue_directory")); got != pf.Spool() {
			t.Errorf("queue_directory %q, want the instance's %q", got, pf.Spool())
		}

		msg := "Subject: hi\r\n\r\nhello\r\n"
		if err := smtp.SendMail(pf.SMTPD, nil, "a@sender.test", []string{"b@dest.test"}, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		pf.WaitLog(t, time.Minute, func(log string) error {
			if !strings.Contains(log, "to=<b@dest.test>, relay=127.0.0.1[127.0.0.1]:"+strconv.Itoa(int(sink.Addr.Port()))) || !strings.Contains(log, "status=sent") {
				return errors.New("no delivery to the sink logged yet")
			}
			return nil
		})
		got := sink.WaitMessages(t, 1)
		if len(got) != 1 || !strings.HasPrefix(got[0].MailArgs, "<a@sender.test>") || len(got[0].RcptArgs) != 1 || !strings.HasPrefix(got[0].RcptArgs[0], "<b@dest.test>") {
			t.Errorf("the sink got %+v", got)
		}
	})
	if err := syscall.Kill(master, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("master %d after the test: kill 0 says %v, want no such process", master, err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s after the test: %v, want it removed", dir, err)
	}
}

// TestPostfixbedConfigRelay refuses a relay that is not HOST:PORT.
func TestPostfixbedConfigRelay(t *testing.T) {
	for _, relay := range []string{"", "127.0.0.1", "[::1]:25"} {
		c := postfixbed.Config{Dir: t.TempDir(), SMTPD: "127.0.0.1:2525", Relay: relay}
		if err := c.Write(); err == nil {
			t.Errorf("relay %q: no error", relay)
		}
	}
}
