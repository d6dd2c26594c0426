package imapd

import (
	"fmt"
	"maps"
	"strings"
	"testing"

	"mailfountain.dev/mailfountain/runtime/connlimit"
	"mailfountain.dev/mailfountain/runtime/metrics/metricstest"
)

// TestMetrics: each admitted connection and each refused one reaches the
// hooks once, with its listener and the limit that refused it.
func TestMetrics(t *testing.T) {
	e := newEnv(t)
	e.limits.MaxConns, e.limits.MaxConnsPerIP = 3, 2
	m := &metricstest.Counts{}
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
	if got := m.Counts(); !maps.Equal(got, want) {
		t.Errorf("metrics: got %v, want %v", fmt.Sprint(got), fmt.Sprint(want))
	}
}
