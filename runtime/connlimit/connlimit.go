// Package connlimit admits the connections of a server: it accepts them
// through passing failures, and bounds those it holds in all and per
// client address, so that one client cannot take every slot.
package connlimit

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"
)

// Why a connection is refused.
const (
	TooMany       = "too many connections, try later"
	TooManyFromIP = "too many connections from your address, try later"
)

// Limiter counts the open connections of a server, or of a pool of its
// listeners (smtpd's MX and submission have one each). Safe for
// concurrent use; the listeners of one pool share one Limiter.
type Limiter struct {
	max, perIP int
	// exemptLoopback leaves loopback clients out of the per-address limit
	// (they still count in all): on the box, they are local programs.
	exemptLoopback bool

	mu    sync.Mutex
	total int
	byIP  map[netip.Addr]int
}

// New returns a limiter of max connections in all and perIP per client
// address.
func New(max, perIP int) *Limiter {
	return &Limiter{max: max, perIP: perIP, byIP: map[netip.Addr]int{}}
}

// ExemptLoopback leaves loopback clients out of the per-address limit.
func (l *Limiter) ExemptLoopback() *Limiter {
	l.exemptLoopback = true
	return l
}

// Admit counts a new connection from remote and returns "", or says why
// it is refused (TooMany, TooManyFromIP) without counting it. An admitted
// connection must be released once.
func (l *Limiter) Admit(remote netip.Addr) string {
	remote = remote.Unmap()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.total >= l.max {
		return TooMany
	}
	if !(l.exemptLoopback && remote.IsLoopback()) && l.byIP[remote] >= l.perIP {
		return TooManyFromIP
	}
	l.total++
	l.byIP[remote]++
	return ""
}

// Release forgets a connection Admit counted.
func (l *Limiter) Release(remote netip.Addr) {
	remote = remote.Unmap()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if l.byIP[remote]--; l.byIP[remote] <= 0 {
		delete(l.byIP, remote)
	}
}

// Open returns the number of connections counted.
func (l *Limiter) Open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

// Accept returns the next connection of ln. A failure that passes (out of
// file descriptors and the like) is waited out, the pause growing to a
// second as net/http does, rather than give up the port; retrying, if not
// nil, hears of each. Any other failure, or ctx done, is returned.
func Accept(ctx context.Context, ln net.Listener, retrying func(err error, delay time.Duration)) (net.Conn, error) {
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err == nil {
			return c, nil
		}
		var t interface{ Temporary() bool }
		if ctx.Err() != nil || !errors.As(err, &t) || !t.Temporary() {
			return nil, err
		}
		delay = min(max(2*delay, 5*time.Millisecond), time.Second)
		if retrying != nil {
			retrying(err, delay)
		}
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return nil, err
		}
	}
}

// AddrOf is the client address of a connection's remote address, as
// Admit counts it: IPv4 unmapped, without an IPv6 zone (which names our
// interface, and which no LAN prefix matches). It is the zero Addr if a
// holds no IP address.
func AddrOf(a net.Addr) netip.Addr {
	if ta, ok := a.(*net.TCPAddr); ok {
		ip, _ := netip.AddrFromSlice(ta.IP)
		return ip.Unmap()
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().WithZone("").Unmap()
}
