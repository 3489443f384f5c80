package safefile

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestReadRegular(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if err := os.WriteFile(p, []byte("hello\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := Read(p, 6)
	if err != nil || string(b) != "hello\n" {
		t.Fatalf("Read at the cap = %q, %v", b, err)
	}
	if _, err := Read(p, 5); !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "5 bytes") {
		t.Fatalf("Read over the cap: %v, want ErrTooLarge naming the limit", err)
	}
	if _, err := Read(filepath.Join(dir, "missing"), 10); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
}

// TestSpecialFiles: devices, directories and FIFOs are refused at once; a
// FIFO without a writer must not block the open.
func TestSpecialFiles(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ path, kind string }{
		{"/dev/zero", "device"},
		{"/dev/urandom", "device"},
		{dir, "directory"},
		{fifo, "FIFO"},
	} {
		_, err := Read(tc.path, 1<<20)
		if !errors.Is(err, ErrNotRegular) || !strings.Contains(err.Error(), tc.kind) {
			t.Errorf("Read(%s) = %v, want ErrNotRegular naming a %s", tc.path, err, tc.kind)
		}
	}
}

// TestReaderCap: a stream that never ends stops one byte past the cap.
func TestReaderCap(t *testing.T) {
	f, err := os.Open("/dev/zero")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 1<<16)
	r := Reader(f, "/dev/zero", 100000)
	total := 0
	for {
		n, err := r.Read(buf)
		total += n
		if err != nil {
			if !errors.Is(err, ErrTooLarge) {
				t.Fatalf("error %v, want ErrTooLarge", err)
			}
			break
		}
	}
	if total != 100001 {
		t.Errorf("read %d bytes, want the cap plus one", total)
	}
}
