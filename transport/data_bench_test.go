package transport

import (
	"io"
	"strings"
	"testing"
)

// benchBody is a typical message: short lines, a few leading dots, LF line
// ends (the worst common case: every line end is rewritten).
var benchBody = []byte(strings.Repeat("Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod\n.tempor incididunt\n", 8192))

func BenchmarkDotStuff(b *testing.B) {
	b.SetBytes(int64(len(benchBody)))
	b.ReportAllocs()
	for b.Loop() {
		w := newDataWriter(io.Discard, true)
		// 32 KiB writes, as io.CopyBuffer does.
		for off := 0; off < len(benchBody); off += 32 * 1024 {
			_, _ = w.Write(benchBody[off:min(off+32*1024, len(benchBody))])
		}
		_ = w.Close()
	}
}

func BenchmarkDotStuffCRLF(b *testing.B) {
	crlf := []byte(strings.ReplaceAll(string(benchBody), "\n", "\r\n"))
	b.SetBytes(int64(len(crlf)))
	b.ReportAllocs()
	for b.Loop() {
		w := newDataWriter(io.Discard, true)
		for off := 0; off < len(crlf); off += 32 * 1024 {
			_, _ = w.Write(crlf[off:min(off+32*1024, len(crlf))])
		}
		_ = w.Close()
	}
}
