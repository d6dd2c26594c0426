// Package connlimit bounds the connections a server holds: in all, and
// per client address, so that one client cannot take every slot.
package connlimit

import (
	"net/netip"
	"sync"
)

// Why a connection is refused.
const (
	TooMany       = "too many connections, try later"
	TooManyFromIP = "too many connections from your address, try later"
)

// Limiter counts the open connections of a server. Safe for concurrent
// use; the listeners of one server share one Limiter.
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
