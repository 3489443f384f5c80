package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
)

// point is one sample of the engine process.
type point struct {
	Label      string `json:"label,omitempty"` // baseline, end, closed, settled; empty during the run
	Done       int64  `json:"done"`            // messages with a result
	ElapsedNS  int64  `json:"elapsed_ns"`      // since the first Deliver
	RSSKB      int64  `json:"rss_kb"`          // VmRSS
	AnonKB     int64  `json:"anon_kb"`         // RssAnon: heap, stacks, runtime metadata
	FileKB     int64  `json:"file_kb"`         // RssFile: the executable's and libraries' pages touched
	HeapLive   uint64 `json:"heap_live"`       // live heap marked by the last GC
	HeapObj    uint64 `json:"heap_obj"`        // heap bytes in objects now, garbage not yet swept included
	GoTotal    uint64 `json:"go_total"`        // every byte the Go runtime has mapped
	GCs        uint64 `json:"gcs"`             // completed GC cycles
	Goroutines int    `json:"goroutines"`
	FDs        int    `json:"fds"`
	ScrapeNS   int64  `json:"scrape_ns,omitempty"` // reg.Gather, with -metrics
}

// runtimeNames are read with runtime/metrics, which (unlike
// runtime.ReadMemStats) does not stop the world, so sampling in the middle
// of the run does not stall the deliveries.
var runtimeNames = []string{
	"/gc/heap/live:bytes",
	"/memory/classes/heap/objects:bytes",
	"/memory/classes/total:bytes",
	"/gc/cycles/total:gc-cycles",
}

// probe samples this process: memory, goroutines and open files.
func probe() (point, error) {
	var p point
	rs := make([]metrics.Sample, len(runtimeNames))
	for i, n := range runtimeNames {
		rs[i].Name = n
	}
	metrics.Read(rs)
	for i, dst := range []*uint64{&p.HeapLive, &p.HeapObj, &p.GoTotal, &p.GCs} {
		if rs[i].Value.Kind() != metrics.KindUint64 {
			return p, fmt.Errorf("runtime/metrics %s: not supported by this Go", rs[i].Name)
		}
		*dst = rs[i].Value.Uint64()
	}
	p.Goroutines = runtime.NumGoroutine()
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return p, fmt.Errorf("probe: %w", err)
	}
	for _, f := range []struct {
		key string
		dst *int64
	}{{"VmRSS", &p.RSSKB}, {"RssAnon", &p.AnonKB}, {"RssFile", &p.FileKB}} {
		if *f.dst, err = statusKB(status, f.key); err != nil {
			return p, fmt.Errorf("probe: /proc/self/status: %w", err)
		}
	}
	if p.FDs, err = openFiles(); err != nil {
		return p, fmt.Errorf("probe: %w", err)
	}
	return p, nil
}

// statusKB reads the line of key ("VmRSS:    12345 kB") in
// /proc/PID/status (proc(5)).
func statusKB(status []byte, key string) (int64, error) {
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		f := bytes.Fields(sc.Bytes())
		if len(f) == 3 && string(f[0]) == key+":" && string(f[2]) == "kB" {
			return strconv.ParseInt(string(f[1]), 10, 64)
		}
	}
	return 0, fmt.Errorf("no %s line", key)
}

// openFiles counts this process's open file descriptors, less the one
// that reads the directory.
func openFiles() (int, error) {
	d, err := os.Open("/proc/self/fd")
	if err != nil {
		return 0, err
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return 0, fmt.Errorf("/proc/self/fd: %w", err)
	}
	return len(names) - 1, nil
}
