package daemon

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"mailfountain.dev/mailfountain/runtime/supervisor"
	"mailfountain.dev/mailfountain/schema"
)

// greeter is the test-only server: it greets each client and closes.
type greeter struct{}

func (greeter) Serve(ctx context.Context, _ string, ln net.Listener) error {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	for {
		c, err := ln.Accept()
		if err != nil {
			return nil
		}
		io.WriteString(c, "hello\n")
		c.Close()
	}
}

// delegatedKind is wanted when a domain is delegated: the rule the DNS
// server will have.
var delegatedKind = supervisor.Kind{
	Name: "test",
	Want: func(st *schema.State) (supervisor.Spec, string) {
		if !slices.ContainsFunc(st.Domains, func(d schema.Domain) bool { return d.DNS.Delegated }) {
			return supervisor.Spec{}, "no delegated domain"
		}
		return supervisor.Spec{Endpoints: []supervisor.Endpoint{{Name: "test", Addr: "127.0.0.1:0"}}}, ""
	},
	Build: func(context.Context, supervisor.Spec) (supervisor.Instance, error) { return greeter{}, nil },
}

func delegatedDoc(delegated bool) string {
	return fmt.Sprintf("system: {model: M500}\nnetwork: {mode: router, wan: {method: dhcp}}\nsmtp: {mode: direct}\n"+
		"domains:\n  - name: a.example\n    dns: {delegated: %v}\n", delegated)
}

// TestServersFollowTheDocument: the test server is started by the apply
// that delegates a domain, stopped by the next, and started again by a
// rollback made through the applier (as mfapply does through the control
// socket), which the daemon did not make itself.
func TestServersFollowTheDocument(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state.yaml")
	saveByRename(t, state, delegatedDoc(false))
	r := startDaemonWith(t, filepath.Join(dir, "data"), state, -1, nil, func(l *slog.Logger) *supervisor.Supervisor {
		s, err := supervisor.New(supervisor.Config{Logger: l}, delegatedKind)
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
	server := func() supervisor.ServerStatus {
		ss := r.d.Status().Servers
		if len(ss) != 1 {
			t.Fatalf("servers in the status: %+v", ss)
		}
		return ss[0]
	}
	waitServer := func(what, state string) supervisor.ServerStatus {
		t.Helper()
		waitFor(t, what, func() bool { return server().State == state })
		return server()
	}
	greets := func(addr string) error {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		b, err := io.ReadAll(c)
		if string(b) != "hello\n" {
			return fmt.Errorf("read %q, %v", b, err)
		}
		return nil
	}

	waitVersions(t, r, 1)
	// Off from the start ("no document applied yet"): wait for the reason
	// the first apply gives, which comes after its version is recorded.
	waitFor(t, "the status after the first apply", func() bool {
		s := server()
		return s.State == supervisor.StateOff && s.Reason == "no delegated domain"
	})

	saveByRename(t, state, delegatedDoc(true))
	waitVersions(t, r, 2)
	s := waitServer("the server started by the apply that delegates", supervisor.StateServing)
	if err := greets(s.Addr); err != nil {
		t.Fatalf("the server on %s: %v", s.Addr, err)
	}
	addr := s.Addr

	saveByRename(t, state, delegatedDoc(false))
	waitVersions(t, r, 3)
	waitServer("the server stopped by the next apply", supervisor.StateOff)
	waitFor(t, "the listener closed", func() bool { return greets(addr) != nil })

	p, err := r.app.PlanRollback(t.Context(), 2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.app.Apply(t.Context(), p, "rollback", ""); err != nil {
		t.Fatal(err)
	}
	s = waitServer("the server started by the rollback", supervisor.StateServing)
	if err := greets(s.Addr); err != nil {
		t.Fatalf("the server on %s: %v", s.Addr, err)
	}
	if !strings.Contains(r.logs.String(), "msg=started component=test") {
		t.Errorf("no start logged:\n%s", r.logs)
	}
}
