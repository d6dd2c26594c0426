package imapd

import (
	"fmt"
	"maps"
	"strings"
	"sync"
	"testing"

	"mailfountain.dev/mailfountain/runtime/connlimit"
)

// countingMetrics counts the calls of the Metrics hooks by their
// arguments.
type countingMetrics struct {
	mu sync.Mutex
	n  map[string]int
}

func (m *countingMetrics) add(s string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.n == nil {
		m.n = map[string]int{}
	}
	m.n[s]++
}

func (m *countingMetrics) Session(service string)         { m.add("session " + service) }
func (m *countingMetrics) Refused(service, reason string) { m.add("refused " + service + " " + reason) }

// TestMetrics: each admitted connection and each refused one reaches the
// hooks once, with its listener and the limit that refused it.
func TestMetrics(t *testing.T) {
	e := newEnv(t)
	e.limits.MaxConns, e.limits.MaxConnsPerIP = 3, 2
	m := &countingMetrics{}
	e.metrics = m
	e.start()
	a := dialRaw(t, e.addr, false)
	b := dialRaw(t, e.tlsAddr, true)
	over := dialRaw(t, e.addr, false)
	if !strings.HasPrefix(over.greeting, "* BYE") {
		t.Fatalf("over the limit, greeting %q", over.greeting)
	}
	for _, c := range []*raw{a, b, over} {
		c.conn.Close()
	}
	e.shutdown() // Serve has returned: every hook was called
	want := map[string]int{
		"session imap":  1,
		"session imaps": 1,
		"refused imap " + connlimit.TooManyFromIP: 1,
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if !maps.Equal(m.n, want) {
		t.Errorf("metrics: got %v, want %v", fmt.Sprint(m.n), fmt.Sprint(want))
	}
}
