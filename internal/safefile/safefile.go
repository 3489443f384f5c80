// Package safefile reads the files a policy names (lists, zone files,
// secrets, the policy itself) with two guards: the file must be a regular
// file, and it must not be larger than a cap.
//
// A path a policy names may be anything: a FIFO blocks a plain open until a
// writer appears, and /dev/zero or /dev/urandom never end. Open uses
// O_NONBLOCK so that opening a FIFO cannot block, refuses whatever fstat
// says is not a regular file, and the readers stop one byte past the cap,
// so a file that grows while it is read is refused too.
package safefile

import (
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
)

// ErrNotRegular is wrapped by the errors of [Open] and [Read] for a path
// that is a directory, a device, a FIFO or a socket.
var ErrNotRegular = errors.New("not a regular file")

// ErrTooLarge is wrapped by the errors of [Read] and [Reader] reads for a
// file larger than the cap.
var ErrTooLarge = errors.New("file too large")

// Open opens path for reading without blocking on special files and
// returns it only when it is a regular file. Errors wrap the *os.PathError
// of the failing call, or [ErrNotRegular].
func Open(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%s: %w (%s)", path, ErrNotRegular, kind(fi.Mode()))
	}
	return f, nil
}

// kind names a non-regular file type for messages.
func kind(m os.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&os.ModeNamedPipe != 0:
		return "a FIFO"
	case m&os.ModeSocket != 0:
		return "a socket"
	case m&os.ModeDevice != 0:
		return "a device"
	}
	return "a special file"
}

// Read returns the contents of the regular file at path, refusing files
// larger than max bytes.
func Read(path string, max int64) ([]byte, error) {
	f, err := Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(Reader(f, path, max))
	if err != nil {
		return nil, err
	}
	return b, nil
}

// Reader returns a reader of r that fails with [ErrTooLarge] once more
// than max bytes have been read. name is the file name for the message.
func Reader(r io.Reader, name string, max int64) io.Reader {
	return &capped{r: r, name: name, max: max, left: max}
}

type capped struct {
	r    io.Reader
	name string
	max  int64
	left int64
}

func (c *capped) Read(p []byte) (int, error) {
	if c.left < 0 {
		return 0, c.tooLarge()
	}
	if int64(len(p)) > c.left+1 {
		p = p[:c.left+1]
	}
	n, err := c.r.Read(p)
	c.left -= int64(n)
	if c.left < 0 {
		return n, c.tooLarge()
	}
	return n, err
}

func (c *capped) tooLarge() error {
	return fmt.Errorf("%s: %w (the limit is %d bytes)", c.name, ErrTooLarge, c.max)
}
