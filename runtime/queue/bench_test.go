package queue

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"mailfountain.dev/mailfountain/runtime/smtpout"
)

// nopSender accepts everything at once: the queue's own ceiling.
type nopSender struct{ n atomic.Int64 }

func (s *nopSender) Send(ctx context.Context, m *smtpout.Message) []smtpout.Result {
	res := make([]smtpout.Result, len(m.Rcpts))
	for i, r := range m.Rcpts {
		res[i] = smtpout.Result{Rcpt: r, Code: 250}
	}
	s.n.Add(int64(len(m.Rcpts)))
	return res
}

// blockSender never answers until Run ends: delivery blocked.
type blockSender struct{}

func (blockSender) Send(ctx context.Context, m *smtpout.Message) []smtpout.Result {
	<-ctx.Done()
	return make([]smtpout.Result, len(m.Rcpts))
}

func message(size int) []byte {
	var b bytes.Buffer
	b.WriteString(testMsg[:strings.Index(testMsg, "\r\n\r\n")+4])
	for b.Len() < size {
		b.WriteString("0123456789 abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789\r\n")
	}
	return b.Bytes()[:size]
}

// enqueueMany enqueues n messages of data from workers goroutines (as
// many SMTP sessions), one recipient each at one of 1000 domains.
func enqueueMany(tb testing.TB, q *Queue, n, workers int, data []byte) {
	var wg sync.WaitGroup
	var next atomic.Int64
	for range workers {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				env := Envelope{From: "a@box.example", Rcpts: []string{fmt.Sprintf("u%d@d%d.example", i, i%1000)}}
				if _, err := q.Enqueue(context.Background(), env, bytes.NewReader(data)); err != nil {
					tb.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// BenchmarkEnqueueDrain: messages of 10 KB enqueued by 32 sessions and
// sent to a sender that accepts at once, until the queue is empty.
func BenchmarkEnqueueDrain(b *testing.B) {
	data := message(10 << 10)
	s := &nopSender{}
	q, err := Open(b.Context(), Config{Dir: b.TempDir(), Sender: s})
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	ctx, cancel := context.WithCancel(b.Context())
	done := make(chan error)
	go func() { done <- q.Run(ctx) }()
	b.ResetTimer()
	start := time.Now()
	enqueueMany(b, q, b.N, 32, data)
	for s.n.Load() < int64(b.N) || q.count.Load() > 0 {
		time.Sleep(time.Millisecond)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
	b.StopTimer()
	cancel()
	<-done
}

// TestMemoryFlat measures the memory of a queue of 10,000 and 100,000
// messages whose delivery is blocked (MFQUEUE_MEMORY=1: it writes 1.1 GB).
func TestMemoryFlat(t *testing.T) {
	if os.Getenv("MFQUEUE_MEMORY") == "" {
		t.Skip("MFQUEUE_MEMORY=1 to run")
	}
	data := message(10 << 10)
	dir := t.TempDir()
	q, err := Open(t.Context(), Config{Dir: dir, Sender: blockSender{}})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- q.Run(ctx) }()
	defer func() { cancel(); <-done }()
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapInuse
	}
	queued := 0
	for _, n := range []int{10_000, 100_000} {
		start := time.Now()
		enqueueMany(t, q, n-queued, 32, data)
		rate := float64(n-queued) / time.Since(start).Seconds()
		queued = n
		waitFor(t, "a full active set", func() bool {
			q.mu.Lock()
			defer q.mu.Unlock()
			return len(q.active) == min(n, q.cfg.MaxActive)
		})
		h := heap()
		t.Logf("%d messages queued (%.0f enqueued/s), %d in memory: Go heap in use %.1f MB, RSS %s, peak RSS %s",
			n, rate, min(n, q.cfg.MaxActive), float64(h)/1e6, procStatus("VmRSS"), procStatus("VmHWM"))
	}
	var seen int
	start := time.Now()
	if err := q.List(t.Context(), func(Info) bool { seen++; return true }); err != nil || seen != queued {
		t.Errorf("List: %d messages, %v", seen, err)
	}
	t.Logf("List of %d messages: %v; Go heap in use after it %.1f MB", seen, time.Since(start), float64(heap())/1e6)
}

func procStatus(field string) string {
	b, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			f := strings.Fields(v)
			if len(f) == 2 {
				kb, _ := strconv.Atoi(f[0])
				return fmt.Sprintf("%.1f MB", float64(kb)/1e3)
			}
		}
	}
	return "?"
}

// Enqueue reuses its file writer and copy buffer: the bytes it
// allocates per message are far below the 96 KB of those buffers
// (measured: about 6 KB; 110 KB before; about 40 KB under -race, whose
// sync.Pool drops a quarter of what it is given).
func TestEnqueueAllocs(t *testing.T) {
	q := openTest(t, Config{})
	data := message(10 << 10)
	env := Envelope{From: "a@box.example", Rcpts: []string{"x@far.example"}}
	q.Enqueue(t.Context(), env, bytes.NewReader(data)) // fills the pools
	const n = 100
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range n {
		if _, err := q.Enqueue(t.Context(), env, bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
	}
	runtime.ReadMemStats(&after)
	if per := (after.TotalAlloc - before.TotalAlloc) / n; per > 64<<10 {
		t.Errorf("Enqueue allocates %d bytes a message", per)
	}
}
