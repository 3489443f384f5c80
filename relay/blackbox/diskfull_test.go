package blackbox_test

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/postern-mta/postern/internal/testbed"
	"github.com/postern-mta/postern/internal/testbed/smtpbed"
)

// loopFS makes a file system of size bytes (ext4 without reserved
// blocks, so that root gets ENOSPC like everyone else) on a loop device,
// mounts it, and unmounts it when the test ends. It skips the test when
// the machine cannot mount one (not root, no loop devices).
func loopFS(t *testing.T, size int64) string {
	t.Helper()
	mkfs := testbed.Require(t, "mkfs.ext4")
	mount := testbed.Require(t, "mount")
	umount := testbed.Require(t, "umount")
	if os.Geteuid() != 0 {
		t.Skip("the disk-full test mounts a loop file system and needs root")
	}
	dir := t.TempDir()
	img := filepath.Join(dir, "spool.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if out, err := exec.Command(mkfs, "-q", "-F", "-m", "0", img).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v\n%s", err, out)
	}
	mnt := filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(mount, "-o", "loop", img, mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot loop-mount an ext4 image here (mount -o loop: %v: %s): the disk-full test needs loop devices", err, strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() {
		deadline := time.Now().Add(10 * time.Second)
		for {
			out, err := exec.Command(umount, mnt).CombinedOutput()
			if err == nil {
				return
			}
			if time.Now().After(deadline) {
				t.Errorf("umount %s: %v\n%s (detaching it lazily)", mnt, err, out)
				_ = exec.Command(umount, "-l", mnt).Run()
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
	return mnt
}

// readyz returns the status code of GET /readyz and its body.
func readyz(t *testing.T, addr string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + addr + "/readyz")
	if err != nil {
		t.Fatalf("GET /readyz: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

// TestDiskFull fills a small spool file system with ~200 KB messages
// while nothing drains (the destination is a closed port). Every refusal
// is 452 4.3.1 (at MAIL, or after the data when a write fails); every
// message acknowledged has its file in msg/; once the destination
// listens, every acknowledged message is delivered. With
// min-free-space: 0 the disk really fills (writes fail with ENOSPC), and
// the relay, killed, starts again on the full disk; with 2MiB, MAIL is
// refused before that and /readyz reports 503.
func TestDiskFull(t *testing.T) {
	t.Run("min-free-space 0", func(t *testing.T) { diskFull(t, "0", false) })
	t.Run("min-free-space 2MiB", func(t *testing.T) { diskFull(t, "2MiB", true) })
}

func diskFull(t *testing.T, floor string, floorFirst bool) {
	mnt := loopFS(t, 8<<20)
	sinkAddr := testbed.ClosedPort(t)
	metrics := testbed.Addr("127.0.0.1", testbed.FreePort(t, "127.0.0.1"))
	policy := sinkPolicy("127.0.0.1", int(sinkAddr.Port()), ", min-free-space: "+floor) + "queue: {retry: [1s]}\n"
	r := newRelay(t, relayOptions{Policy: policy, Spool: filepath.Join(mnt, "spool"), Metrics: metrics})
	r.Start()
	if code, body := readyz(t, metrics); code != http.StatusOK {
		t.Fatalf("/readyz on an empty spool: %d %s", code, body)
	}

	acked := map[string]string{} // queue ID -> subject
	var refusals []outcome
	for i := 0; len(refusals) < 3; i++ {
		if i == 100 {
			t.Fatalf("100 messages of 200 KB accepted on an 8 MB file system: the disk never filled")
		}
		subject := fmt.Sprintf("full %d", i)
		o := sendMail(r.Addr, "alice@sender.test", "bob@dest.test", message(subject, 200<<10))
		if id := o.Accepted(); id != "" {
			acked[id] = subject
			continue
		}
		refusals = append(refusals, o)
		switch {
		case o.Err != nil:
			t.Errorf("message %d: the connection failed instead of a 452 4.3.1: %v", i, o)
		case o.Reply.Code != 452 || !strings.HasPrefix(o.Reply.Text, "4.3.1 "):
			t.Errorf("message %d refused with %v, want 452 4.3.1", i, o)
		case floorFirst && o.Stage != "MAIL":
			t.Errorf("message %d refused at %s (%v): with a free-space floor the refusal comes at MAIL, before the disk is full", i, o.Stage, o)
		case o.Stage != "MAIL" && o.Stage != ".":
			t.Errorf("message %d refused at %s (%v), want MAIL or the end of DATA", i, o.Stage, o)
		}
	}
	code, body := readyz(t, metrics)
	if floorFirst && code != http.StatusServiceUnavailable {
		t.Errorf("/readyz below the free-space floor: %d %q, want 503", code, body)
	}
	var stages []string
	for _, o := range refusals {
		stages = append(stages, o.String())
	}
	t.Logf("min-free-space %s: %d messages of 200 KB acknowledged, then refused: %s; /readyz %d %q", floor, len(acked), strings.Join(stages, "; "), code, body)

	// Nothing was acknowledged that is not on disk.
	files := msgFiles(t, r.Spool)
	for id := range acked {
		if _, ok := files[id]; !ok {
			t.Errorf("%s was acknowledged but has no file in msg/", id)
		}
	}
	for id := range files {
		if _, ok := acked[id]; !ok {
			t.Errorf("msg/ holds %s, which no client got a 250 for", id)
		}
	}

	if !floorFirst {
		// A crash on the full disk: the relay starts again on it, with
		// every acknowledged message still queued.
		r.Kill9()
		r.Start()
		files := msgFiles(t, r.Spool)
		for id := range acked {
			if _, ok := files[id]; !ok {
				t.Errorf("%s is gone after a restart on the full disk", id)
			}
		}
	}

	// The destination comes up: everything acknowledged drains.
	sink := smtpbed.StartSink(t, smtpbed.SinkOptions{Port: int(sinkAddr.Port())})
	delivered := func(recs []logRecord, id string) bool {
		return len(find(recs, "delivery", "id", id, "status", "sent")) > 0
	}
	drained := r.PollLog(60*time.Second, func(recs []logRecord) bool {
		for id := range acked {
			if !delivered(recs, id) {
				return false
			}
		}
		return len(msgFiles(t, r.Spool)) == 0
	})
	if !drained {
		recs := r.Records()
		for id, subject := range acked {
			if !delivered(recs, id) {
				t.Errorf("%s (%q) was acknowledged but not delivered within 60 s of the destination coming up", id, subject)
			}
		}
		t.Errorf("msg/ still holds %d messages", len(msgFiles(t, r.Spool)))
	}
	got := map[string]int{}
	for _, m := range sink.Messages(t) {
		if s := seqSubjectAny(m.Data); s != "" {
			got[s]++
		}
	}
	for id, subject := range acked {
		if got[subject] == 0 {
			t.Errorf("%s (%q) was delivered by the log but is not at the sink", id, subject)
		}
	}
	if code, body := readyz(t, metrics); code != http.StatusOK {
		t.Errorf("/readyz after the spool drained: %d %q, want 200", code, body)
	}
	if left, _ := os.ReadDir(filepath.Join(r.Spool, "tmp")); len(left) > 0 {
		t.Errorf("tmp/ still holds %d files after the refusals and the drain", len(left))
	}
}

// seqSubjectAny is the Subject of a dumped message whose END line arrived
// ("" otherwise).
func seqSubjectAny(data string) string {
	_, rest, ok := strings.Cut(data, "\nSubject: ")
	if !ok {
		return ""
	}
	subject, _, _ := strings.Cut(rest, "\n")
	if !strings.Contains(data, "\nEND "+subject+"\n") {
		return ""
	}
	return subject
}
