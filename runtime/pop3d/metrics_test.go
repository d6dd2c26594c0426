package pop3d

import (
	"fmt"
	"maps"
	"net"
	"testing"
	"time"

	"mailfountain.dev/mailfountain/runtime/connlimit"
	"mailfountain.dev/mailfountain/runtime/metrics/metricstest"
)

// TestMetrics: each admitted connection and each refused one reaches the
// hooks once, with its listener and the limit that refused it.
func TestMetrics(t *testing.T) {
	m := &metricstest.Counts{}
	e := newEnv(t, envOptions{cfg: func(c *Config) {
		c.MaxConns, c.MaxConnsPerIP = 10, 2
		c.Metrics = m
	}})
	c1, c2 := e.dialGreeted(), e.dialGreeted()
	c3 := e.dial(e.addr)
	if got := c3.line(); got != "-ERR [SYS/TEMP] "+connlimit.TooManyFromIP {
		t.Fatalf("third connection: %q", got)
	}
	c3.closed()
	c4, err := net.Dial("tcp", e.tlsAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c4.Close()
	c4.SetReadDeadline(time.Now().Add(5 * time.Second))
	c4.Read(make([]byte, 1)) // the close
	for _, c := range []*client{c1, c2} {
		c.write("QUIT\r\n")
		c.line()
		c.closed()
	}
	e.stop() // Serve has returned: every hook was called
	want := map[string]int{
		"session pop3": 2,
		"refused pop3 " + connlimit.TooManyFromIP:  1,
		"refused pop3s " + connlimit.TooManyFromIP: 1,
	}
	if got := m.Counts(); !maps.Equal(got, want) {
		t.Errorf("metrics: got %v, want %v", fmt.Sprint(got), fmt.Sprint(want))
	}
}
