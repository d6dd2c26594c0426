package smtpd

import (
	"context"
	"crypto/sha256"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// BenchmarkMXDeliver sends 10 KB messages to the MX from 50 clients at
// once (25 per CPU on the 2-CPU target), each on its own connection,
// through to the Maildir on disk (maildir.Store: two fsyncs a message).
func BenchmarkMXDeliver(b *testing.B) {
	benchMX(b, newEnv(b, nil))
}

// BenchmarkMXReceive is BenchmarkMXDeliver with a deliverer that reads
// the message and drops it: the cost of the SMTP side alone.
func BenchmarkMXReceive(b *testing.B) {
	benchMX(b, newEnv(b, func(c *Config) { c.Deliverer = discardDeliverer{} }))
}

type discardDeliverer struct{}

func (discardDeliverer) DeliverOnce(ctx context.Context, roots []string, key string, msg io.Reader) (bool, error) {
	_, err := io.Copy(io.Discard, msg)
	return false, err
}

func benchMX(b *testing.B, e *env) {
	var sb strings.Builder
	sb.WriteString("From: bench@remote.test\r\nTo: alice@example.test\r\nSubject: bench\r\n\r\n")
	line := strings.Repeat("0123456789", 7) + "abcdefgh\r\n" // 80 bytes
	for sb.Len() < 10<<10 {
		sb.WriteString(line)
	}
	msg := sb.String()
	b.SetBytes(int64(len(msg)))
	b.SetParallelism(max(1, 50/runtime.GOMAXPROCS(0)))
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		c, err := smtp.Dial(e.mx)
		if err != nil {
			b.Error(err)
			return
		}
		defer c.Close()
		if err := c.Hello("bench.test"); err != nil {
			b.Error(err)
			return
		}
		for pb.Next() {
			if err := send(c, "bench@remote.test", []string{"alice@example.test"}, msg); err != nil {
				b.Error(err)
				return
			}
		}
		c.Quit()
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}

// BenchmarkSpool is the server's own work on a 10 KB message once go-smtp
// has read it: spooling with its digest and the scan of its line ends,
// finding the header section and its forged fields, and handing it to a
// Deliverer.
func BenchmarkSpool(b *testing.B) {
	var sb strings.Builder
	sb.WriteString("From: bench@remote.test\r\nTo: alice@example.test\r\nSubject: bench\r\n\r\n")
	line := strings.Repeat("0123456789", 7) + "abcdefgh\r\n" // 80 bytes
	for sb.Len() < 10<<10 {
		sb.WriteString(line)
	}
	msg := sb.String()
	p := &spoolPool{limit: DefaultMemoryBuffer, dir: b.TempDir()}
	sum := sha256.New()
	r := strings.NewReader(msg)
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		r.Reset(msg)
		sum.Reset()
		m, err := p.read(r, sum)
		if err != nil {
			b.Fatal(err)
		}
		hdr, _ := m.header()
		drop := forgedAuthResults(hdr, testHost)
		if _, err := m.reader(nil, drop).WriteTo(io.Discard); err != nil {
			b.Fatal(err)
		}
		m.release()
	}
}
