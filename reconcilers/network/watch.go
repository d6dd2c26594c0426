package network

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
)

// watchBox is Watch with box hardware, for the daemon's whole life: it
// runs the WAN link that Apply asks for (and stops it, which releases a
// lease, when Apply asks for another or ctx is done), and notifies when
// the link's state moves (a lease got, renewed elsewhere, lost), when
// netlink tells of a change to the managed links, their addresses or
// routes (a port set down, an address deleted by hand), and, as a
// backstop for a lost event, when what it sees every `every` moved. The
// run that follows corrects the drift.
func (r *Reconciler) watchBox(ctx context.Context, every time.Duration, notify func()) error {
	ls := r.links
	ls.mu.Lock()
	ls.watching = true
	ls.mu.Unlock()
	var run *runner
	defer func() {
		run.stop()
		ls.mu.Lock()
		ls.watching, ls.cur, ls.curSpec = false, nil, linkSpec{}
		ls.mu.Unlock()
		ls.served()
	}()
	// A run with the watch loop present: Plan asks for the document's
	// link, which nothing runs yet.
	notify()

	events := make(chan struct{}, 1)
	var wg sync.WaitGroup
	defer wg.Wait()
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	r.subscribe(sctx, &wg, events)

	look := func() string {
		a, _ := r.host.RouteAddress(ctx)
		rs, err := r.host.Resolvers()
		n, nerr := observeNet(r.ports)
		b, _ := json.Marshal(n) // plain data: cannot fail
		return fmt.Sprintf("%s %v %v %s %v", a, rs, err, b, nerr)
	}
	last := look()
	t := time.NewTicker(every)
	defer t.Stop()
	var changed <-chan struct{}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-ls.wake:
			var moved bool
			run, changed, moved = ls.switchTo(ctx, run)
			ls.served()
			if moved {
				notify()
			}
			continue
		case <-changed:
			changed = ls.changed()
			r.log.Info("wan link moved", "state", fmt.Sprintf("%+v", ls.cur.State()))
		case <-events:
		case <-t.C:
			now := look()
			if now == last {
				continue
			}
			last = now
		}
		notify()
	}
}

// subscribe forwards netlink's link, address and route updates about the
// managed links to events (one pending at most: bursts coalesce), until
// ctx is done. Without a subscription (it failed) the poll still sees
// what moved.
func (r *Reconciler) subscribe(ctx context.Context, wg *sync.WaitGroup, events chan<- struct{}) {
	managed := r.ports.managed()
	linkCh := make(chan netlink.LinkUpdate, 64)
	addrCh := make(chan netlink.AddrUpdate, 64)
	routeCh := make(chan netlink.RouteUpdate, 64)
	onErr := func(err error) {
		if ctx.Err() == nil { // a closed subscription says so too
			r.log.Warn("netlink subscription", "err", err)
		}
	}
	if err := netlink.LinkSubscribeWithOptions(linkCh, ctx.Done(), netlink.LinkSubscribeOptions{ErrorCallback: onErr, ListExisting: true}); err != nil {
		r.log.Warn("subscribe to link updates", "err", err)
		linkCh = nil
	}
	if err := netlink.AddrSubscribeWithOptions(addrCh, ctx.Done(), netlink.AddrSubscribeOptions{ErrorCallback: onErr}); err != nil {
		r.log.Warn("subscribe to address updates", "err", err)
		addrCh = nil
	}
	if err := netlink.RouteSubscribeWithOptions(routeCh, ctx.Done(), netlink.RouteSubscribeOptions{ErrorCallback: onErr}); err != nil {
		r.log.Warn("subscribe to route updates", "err", err)
		routeCh = nil
	}
	wg.Go(func() {
		ours := map[int]bool{} // the managed links' indexes, from the link updates
		poke := func() {
			select {
			case events <- struct{}{}:
			default:
			}
		}
		// Until netlink closes the channels, which it does once ctx is
		// done: a subscription blocked on a full channel would not end.
		for linkCh != nil || addrCh != nil || routeCh != nil {
			select {
			case u, ok := <-linkCh:
				if !ok {
					linkCh = nil
					continue
				}
				if a := u.Attrs(); slices.Contains(managed, a.Name) {
					ours[a.Index] = true
					poke()
				}
			case u, ok := <-addrCh:
				if !ok {
					addrCh = nil
					continue
				}
				if ours[u.LinkIndex] && u.LinkAddress.IP.To4() != nil {
					poke()
				}
			case u, ok := <-routeCh:
				if !ok {
					routeCh = nil
					continue
				}
				if ours[u.LinkIndex] && (u.Dst == nil || isDefault(u.Dst)) {
					poke()
				}
			}
		}
	})
}
