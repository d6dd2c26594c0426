// Package live hands a server what a reconciler last published for
// it (the DNS server's zones, the DHCP server's settings): a value that is
// never changed once published, replaced whole, with a channel that tells
// a reader when the next one comes. It owns nothing else.
package live

import "sync"

// Value is the latest *T published. The zero Value holds none.
type Value[T any] struct {
	mu      sync.Mutex
	cur     *T
	changed chan struct{} // closed by the next Publish
}

// Publish makes v the value being served; v must not be changed after.
func (p *Value[T]) Publish(v *T) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cur = v
	if p.changed != nil {
		close(p.changed)
		p.changed = nil
	}
}

// Load returns the value being served (nil before the first Publish),
// and a channel closed when another is published.
func (p *Value[T]) Load() (*T, <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.changed == nil {
		p.changed = make(chan struct{})
	}
	return p.cur, p.changed
}
