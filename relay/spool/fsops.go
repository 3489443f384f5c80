package spool

import (
	"errors"
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// fsOps are the file-system calls the write paths (and the scan's
// openat) make, one field per step, so that in-package tests can fail
// each step or record the order of steps. Production code uses [osFS].
type fsOps struct {
	create  func(path string) (*os.File, error)                  // new file, O_EXCL, 0600
	write   func(f *os.File, p []byte) (int, error)              // envelope and body
	pwrite  func(f *os.File, p []byte, off int64) (int, error)   // the header, last
	fsync   func(f *os.File) error                               // the message file
	rename  func(from, to string) error                          // tmp -> msg, state tmp -> state
	dirsync func(dir string) error                               // fsync of a directory
	mkdir   func(dir string) error                               // a hashed subdirectory; EEXIST is fine
	remove  func(path string) error                              // cleanup, Remove
	openat  func(dirfd int, name string, flags int) (int, error) // Scan's opens, mode 0
}

// osFS is the real file system.
func osFS() fsOps {
	return fsOps{
		create: func(path string) (*os.File, error) {
			return os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		},
		write:  func(f *os.File, p []byte) (int, error) { return f.Write(p) },
		pwrite: func(f *os.File, p []byte, off int64) (int, error) { return f.WriteAt(p, off) },
		fsync:  func(f *os.File) error { return f.Sync() },
		rename: os.Rename,
		dirsync: func(dir string) error {
			d, err := os.Open(dir)
			if err != nil {
				return err
			}
			err = d.Sync()
			if cerr := d.Close(); err == nil {
				err = cerr
			}
			return err
		},
		mkdir:  func(dir string) error { return os.Mkdir(dir, 0o700) },
		remove: os.Remove,
		openat: func(dirfd int, name string, flags int) (int, error) { return unix.Openat(dirfd, name, flags, 0) },
	}
}

// ErrNoSpace is wrapped by write errors caused by a full file system or
// an exhausted quota (ENOSPC, EDQUOT); the listener answers them with
// 452 4.3.1 and other I/O errors with 451 4.3.0.
var ErrNoSpace = errors.New("the spool's file system is full: free disk space or raise the quota")

// ErrCorrupt is wrapped by the errors for a message file that fails
// validation; the file has been moved to corrupt/ (unless the spool is
// read-only) and the message will not be delivered.
var ErrCorrupt = errors.New("damaged spool file")

// ErrClosed is returned by the methods of a closed [Spool].
var ErrClosed = errors.New("spool is closed")

// ErrReadOnly is returned by the write methods of a spool opened with
// [OpenReadOnly].
var ErrReadOnly = errors.New("spool is open read-only (stop the daemon or use it to change the queue)")

// isNoSpace reports whether err says the disk or the quota is full.
func isNoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// classify adds [ErrNoSpace] to err when it is a disk-full error.
func classify(err error) error {
	if err != nil && isNoSpace(err) && !errors.Is(err, ErrNoSpace) {
		return fmt.Errorf("%w; %w", err, ErrNoSpace)
	}
	return err
}
