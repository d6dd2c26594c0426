package reconcilers_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"mailfountain.dev/mailfountain/reconcilers"
)

// watchedLease is the fake network whose link reports its own events.
type watchedLease struct {
	lease
	events chan int // each receive is a burst of that many events
}

func (w *watchedLease) Watch(ctx context.Context, notify func()) error {
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case n := <-w.events:
			for range n {
				notify()
			}
		}
	}
}

// expiring asks to run again after every observation, like a certificate
// about to expire.
type expiring struct {
	fake
	after time.Duration
}

func (e *expiring) RequeueAfter(reconcilers.Live) time.Duration { return e.after }

func TestTriggers(t *testing.T) {
	j := &journal{}
	net := &watchedLease{lease: lease{j: j, addr: "192.0.2.1"}, events: make(chan int)}
	dns := &zone{j: j}
	cert := &expiring{fake: fake{name: "mail", j: j, live: "v1"}, after: time.Hour}
	other := &fake{name: "accounts", j: j, live: "v1"}
	e := reconcilers.NewEngine(other, net, dns, cert)

	ctx, cancel := context.WithCancel(context.Background())
	// A wide window: a loaded machine must not split a burst.
	tr := e.Triggers(200 * time.Millisecond)
	var wg sync.WaitGroup
	wg.Go(func() { tr.Run(ctx) })
	defer func() {
		cancel()
		wg.Wait()
	}()
	next := func(what string) []string {
		t.Helper()
		select {
		case got := <-tr.C():
			return got
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: no trigger", what)
			return nil
		}
	}
	quiet := func(what string) {
		t.Helper()
		select {
		case got := <-tr.C():
			t.Fatalf("%s: triggered %q", what, got)
		case <-time.After(500 * time.Millisecond):
		}
	}

	// A burst of link events: one run, of net and of dns that reads its
	// address; not of the whole box.
	net.events <- 20
	if got, want := next("link events"), []string{"net", "dns"}; !slices.Equal(got, want) {
		t.Fatalf("link events triggered %q, want %q", got, want)
	}
	quiet("after the burst")

	// The certificate asks, when observed, to run again in an hour: not
	// now. Observed asking for 20 ms, it comes due, alone (nothing reads
	// its facts), and once.
	if _, err := e.Plan(ctx, doc("v1")); err != nil {
		t.Fatal(err)
	}
	quiet("requeue in an hour")
	cert.after = 20 * time.Millisecond
	if _, err := e.PlanOnly(ctx, doc("v1"), []string{"mail"}); err != nil {
		t.Fatal(err)
	}
	if got, want := next("requeue"), []string{"mail"}; !slices.Equal(got, want) {
		t.Fatalf("requeue triggered %q, want %q", got, want)
	}
	quiet("a requeue is taken once")

	// Events of two sources within the window coalesce into one run.
	cert.after = 0
	net.events <- 1
	tr.Notify("mail")
	if got, want := next("two sources"), []string{"net", "dns", "mail"}; !slices.Equal(got, want) {
		t.Fatalf("two sources triggered %q, want %q", got, want)
	}
}
