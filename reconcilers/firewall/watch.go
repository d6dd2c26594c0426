package firewall

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Watch implements reconcilers.Watcher: it listens to the kernel's
// nftables events (the NFNLGRP_NFTABLES multicast group: every table,
// chain, rule and set added or deleted, then the transaction's new
// generation) and notifies when a transaction touched our table and was
// not one of the reconciler's own batches. So a change by hand is put
// right at once rather than at the next resync. Without box hardware it
// listens to nothing.
//
// When the socket overflows (events lost) it notifies too: the reconcile
// reads the generation and sees for itself.
func (r *Reconciler) Watch(ctx context.Context, notify func()) error {
	if r.cfg.Skip != "" {
		<-ctx.Done()
		return nil
	}
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, nil)
	if err != nil {
		return fmt.Errorf("watch nftables: %w", err)
	}
	if err := c.JoinGroup(unix.NFNLGRP_NFTABLES); err != nil {
		c.Close()
		return fmt.Errorf("watch nftables: %w", err)
	}
	// Closing the socket ends the Receive below; this goroutine ends
	// with Watch.
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		select {
		case <-ctx.Done():
		case <-stop:
		}
		c.Close()
	}()

	touched := false
	for {
		msgs, err := c.Receive()
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, unix.ENOBUFS) {
			touched = false
			notify()
			continue
		}
		if err != nil {
			return fmt.Errorf("watch nftables: %w", err)
		}
		for _, m := range msgs {
			if m.Header.Type == nftMsg(unix.NFT_MSG_NEWGEN) {
				if touched && !r.ownGen(genOf(m)) {
					notify()
				}
				touched = false
				continue
			}
			touched = touched || concernsTable(m)
		}
	}
}

// ownGen reports whether gen is the generation of the reconciler's last
// batch: its own change, nothing to look at.
func (r *Reconciler) ownGen(gen uint32) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lastGen != 0 && gen == r.lastGen
}

// concernsTable reports whether an nftables event is about an object of
// our table: the table's, chain's, rule's, set's or object's table
// attribute (type 1 in each) names it, in family inet.
func concernsTable(m netlink.Message) bool {
	if m.Header.Type>>8 != unix.NFNL_SUBSYS_NFTABLES || len(m.Data) < 4 || m.Data[0] != byte(TableFamily) {
		return false
	}
	ad, err := netlink.NewAttributeDecoder(m.Data[4:])
	if err != nil {
		return false
	}
	for ad.Next() {
		if ad.Type() == unix.NFTA_TABLE_NAME {
			return ad.String() == TableName
		}
	}
	return false
}

// genOf reads the generation of a NEWGEN event, 0 when it has none.
func genOf(m netlink.Message) uint32 {
	if len(m.Data) < 4 {
		return 0
	}
	ad, err := netlink.NewAttributeDecoder(m.Data[4:])
	if err != nil {
		return 0
	}
	ad.ByteOrder = binary.BigEndian
	for ad.Next() {
		if ad.Type() == unix.NFTA_GEN_ID {
			return ad.Uint32()
		}
	}
	return 0
}
