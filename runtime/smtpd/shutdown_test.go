package smtpd

import (
	"net"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestShutdown(t *testing.T) {
	t.Parallel()
	t.Run("in-flight data finishes", func(t *testing.T) {
		e := newEnv(t, func(c *Config) { c.ShutdownGrace = 5 * time.Second })
		idle := dialRaw(t, e.mx)
		idle.reply()
		idle.expect("EHLO client.test", "250 ")
		busy := dialData(t, e.mx)
		busy.send("Subject: in flight\r\n")
		time.Sleep(100 * time.Millisecond) // the server is in Data

		start := time.Now()
		e.cancel()
		idle.closed()
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("idle connection closed %v after the shutdown began", d)
		}
		if c, err := net.DialTimeout("tcp", e.mx, time.Second); err == nil {
			c.Close()
			t.Error("the listener still accepts connections")
		}
		busy.send("\r\nstill there\r\n.")
		busy.expectReply("250 2.0.0 OK id=")
		busy.closed()
		if d := time.Since(start); d > 4*time.Second {
			t.Errorf("connection closed %v after the shutdown began, not after its message", d)
		}
		e.wantMailbox("example.test", "alice", 1)
	})
	t.Run("grace ends", func(t *testing.T) {
		e := newEnv(t, func(c *Config) { c.ShutdownGrace = 300 * time.Millisecond })
		busy := dialData(t, e.mx)
		busy.send("Subject: too slow\r\n")
		time.Sleep(100 * time.Millisecond)
		start := time.Now()
		e.stop()
		if d := time.Since(start); d > 4*time.Second {
			t.Errorf("Serve returned %v after the shutdown began, grace 300ms", d)
		}
		if lines := busy.closed(); len(lines) > 0 && strings.HasPrefix(lines[0], "250") {
			t.Fatalf("message accepted after the grace: %q", lines)
		}
		e.wantMailbox("example.test", "alice", 0)
	})
}

// TestNoGoroutineLeft runs alone (not parallel): after a server served
// and stopped, with clients that left connections open, every goroutine
// it started has ended.
func TestNoGoroutineLeft(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Run("serve", func(t *testing.T) {
		e := newEnv(t, nil)
		if err := send(e.client(e.mx, plain), "a@remote.test", []string{"alice@example.test"}, testMessage("leak")); err != nil {
			t.Fatal(err)
		}
		e.submit("alice@example.test", alicePassword)
		idle := dialRaw(t, e.subs) // a TLS handshake that never starts
		_ = idle
		e.stop()
	})
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines, %d before:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
}
