package control

import (
	"testing"

	"mailfountain.dev/mailfountain/runtime/supervisor"
)

// TestServers: the socket lists the daemon's servers as the daemon gives
// them, and none before it does.
func TestServers(t *testing.T) {
	d := startDaemon(t, t.TempDir())
	c := dial(t, d.dir)
	ss, err := c.Servers(t.Context())
	if err != nil || ss == nil || len(ss) != 0 {
		t.Fatalf("servers before the daemon gives them: %+v, %v; want an empty list", ss, err)
	}
	want := []supervisor.ServerStatus{
		{Server: "smtp", Endpoint: "smtp", Addr: "127.0.0.1:25", State: supervisor.StateServing},
		{Server: "imap", State: supervisor.StateOff, Reason: "no domain"},
	}
	d.srv.ServeServers(func() []supervisor.ServerStatus { return want })
	ss, err = c.Servers(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(ss) != len(want) {
		t.Fatalf("servers %+v, want %+v", ss, want)
	}
	for i := range want {
		if ss[i] != want[i] {
			t.Errorf("server %d: %+v, want %+v", i, ss[i], want[i])
		}
	}
}
