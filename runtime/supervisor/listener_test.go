package supervisor

import (
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"
)

// TestTrackedConnLinger: a server that resets a client it cuts off
// (pop3d: SetLinger(0), then Close) still does through the connection the
// supervisor hands it.
func TestTrackedConnLinger(t *testing.T) {
	k := &testKind{}
	s := newSupervisor(t, Config{}, k.kind(time.Minute))
	s.Converge(t.Context(), doc("h", true))
	var l *shared
	s.pool.mu.Lock()
	for _, sh := range s.pool.lns {
		l = sh
	}
	s.pool.mu.Unlock()
	// A handle of our own takes the next connection.
	h := l.newHandle()
	client, err := net.Dial("tcp", l.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	c, err := h.Accept()
	if err != nil {
		t.Fatal(err)
	}
	lc, ok := c.(interface{ SetLinger(int) error })
	if !ok {
		t.Fatalf("%T has no SetLinger", c)
	}
	if err := lc.SetLinger(0); err != nil {
		t.Fatal(err)
	}
	if got := h.sessions(); got != 1 {
		t.Errorf("%d sessions, want 1", got)
	}
	c.Close()
	c.Close() // counted once
	client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := client.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("client read %v, want a reset", err)
	}
	if got := h.sessions(); got != 0 {
		t.Errorf("%d sessions after close, want 0", got)
	}
	h.Close()
	if _, err := h.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept after Close: %v, want net.ErrClosed", err)
	}
	// The supervisor's serving, replaced by h and detached with it, gets
	// nothing: the listener has no current handle and closes what comes.
	c2, err := net.Dial("tcp", l.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	c2.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c2.Read(make([]byte, 1)); err == nil || !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("a connection with no handle: read %v, want it closed", err)
	}
}
