package network

import (
	"context"
	"log/slog"
	"sync"

	"mailfountain.dev/mailfountain/runtime/wanlink"
	"mailfountain.dev/mailfountain/schema"
)

// WANLink is a WAN link that Watch runs: the DHCP client
// (runtime/dhcpclient) or PPPoE (runtime/pppoe).
type WANLink interface {
	// Run keeps the link up until ctx is done (renewing, restarting
	// itself), then takes it down.
	Run(ctx context.Context) error
	// State is the link's state: its address, gateway and DNS when up.
	State() wanlink.State
	// Changed is closed when the state moves; call it again for the next
	// move.
	Changed() <-chan struct{}
}

// links runs the WAN link that Apply asks for, inside Watch.
type links struct {
	log  *slog.Logger
	make func(spec linkSpec, wan schema.WAN) (WANLink, error)

	mu       sync.Mutex
	watching bool
	want     linkSpec
	wantLink WANLink         // made by Apply, started by the watch loop
	wake     chan struct{}   // capacity 1: want moved
	waiters  []chan struct{} // closed once the watch loop switched
	cur      WANLink
	curSpec  linkSpec
	// The PPPoE user names of the wanted and the running link, for the
	// status (a linkSpec's Account holds the password's source too).
	wantUser, curUser string
}

// ask makes l, of spec, the link to run (nil for none), as user (PPPoE's
// user name); the watch loop stops the running one and starts it. The
// channel returned is closed once it did (at once when no watch loop
// runs).
func (ls *links) ask(spec linkSpec, l WANLink, user string) <-chan struct{} {
	done := make(chan struct{})
	ls.mu.Lock()
	ls.want, ls.wantLink, ls.wantUser = spec, l, user
	if ls.watching {
		ls.waiters = append(ls.waiters, done)
	} else {
		close(done)
	}
	ls.mu.Unlock()
	select {
	case ls.wake <- struct{}{}:
	default:
	}
	return done
}

// served closes the channels of the asks served so far.
func (ls *links) served() {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	for _, w := range ls.waiters {
		close(w)
	}
	ls.waiters = nil
}

// running is the link the watch loop runs and its state, and whether a
// watch loop runs at all.
func (ls *links) running() (spec linkSpec, st wanlink.State, watching bool) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if ls.cur != nil {
		st = ls.cur.State()
	}
	return ls.curSpec, st, ls.watching
}

// status is the running link as the status shows it; the wanted one,
// not started yet, while the watch loop switches (false when neither is
// a link: a static WAN, server mode).
func (ls *links) status() (wanlink.Status, bool) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if ls.cur != nil && ls.want == ls.curSpec {
		return wanlink.Status{Method: ls.curSpec.Method, Port: ls.curSpec.Interface, Account: ls.curUser, State: ls.cur.State()}, true
	}
	if ls.want.Method == "" {
		return wanlink.Status{}, false
	}
	return wanlink.Status{Method: ls.want.Method, Port: ls.want.Interface, Account: ls.wantUser,
		State: wanlink.State{Detail: "starting"}}, true
}

// runner is a running link: its cancel and its end.
type runner struct {
	cancel context.CancelFunc
	done   chan struct{}
}

func (r *runner) stop() {
	if r != nil {
		r.cancel()
		<-r.done
	}
}

// changed is the running link's Changed, nil when none runs.
func (ls *links) changed() <-chan struct{} {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if ls.cur == nil {
		return nil
	}
	return ls.cur.Changed()
}

// switchTo stops the running link, if any, and starts the wanted one
// when they differ (moved); it returns the runner of the link now
// running (nil for none) and its Changed.
func (ls *links) switchTo(ctx context.Context, old *runner) (run *runner, changed <-chan struct{}, moved bool) {
	ls.mu.Lock()
	want, l, user := ls.want, ls.wantLink, ls.wantUser
	same := want == ls.curSpec && (ls.cur != nil || want.Method == "")
	ls.mu.Unlock()
	if same {
		return old, ls.changed(), false
	}
	old.stop()
	ls.mu.Lock()
	ls.cur, ls.curSpec = nil, linkSpec{}
	ls.mu.Unlock()
	if want.Method == "" || l == nil {
		ls.log.Info("wan link stopped")
		return nil, nil, true
	}
	lctx, cancel := context.WithCancel(ctx)
	run = &runner{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(run.done)
		if err := l.Run(lctx); err != nil {
			ls.log.Error("the wan link stopped", "link", want, "err", err)
		}
	}()
	ls.mu.Lock()
	ls.cur, ls.curSpec, ls.curUser = l, want, user
	ls.mu.Unlock()
	ls.log.Info("wan link started", "link", want)
	return run, l.Changed(), true
}
