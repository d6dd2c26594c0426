package smtpout

import (
	"sync"
	"time"
)

// pool keeps idle sessions by target key, for a while, to send the next
// message to the same host over the same connection.
type pool struct {
	max     int
	timeout time.Duration

	mu     sync.Mutex
	idle   map[string][]*session // most recently used last
	closed bool
}

func newPool(max int, timeout time.Duration) *pool {
	return &pool{max: max, timeout: timeout, idle: map[string][]*session{}}
}

// get takes the most recently used idle session of key, or nil.
func (p *pool) get(key string) *session {
	now := time.Now()
	var expired []*session
	defer func() {
		for _, sc := range expired {
			sc.close()
		}
	}()
	p.mu.Lock()
	defer p.mu.Unlock()
	l := p.idle[key]
	for len(l) > 0 {
		sc := l[len(l)-1]
		l = l[:len(l)-1]
		if now.Sub(sc.idle) < p.timeout {
			p.store(key, l)
			return sc
		}
		expired = append(expired, sc)
	}
	p.store(key, l)
	return nil
}

func (p *pool) store(key string, l []*session) {
	if len(l) == 0 {
		delete(p.idle, key)
	} else {
		p.idle[key] = l
	}
}

// put keeps sc idle, or closes it when its host has enough idle ones.
func (p *pool) put(sc *session) {
	sc.idle = time.Now()
	key := sc.t.key()
	p.mu.Lock()
	if p.closed || len(p.idle[key]) >= p.max {
		p.mu.Unlock()
		sc.close()
		return
	}
	p.idle[key] = append(p.idle[key], sc)
	p.mu.Unlock()
}

// reap closes the sessions idle for longer than the timeout.
func (p *pool) reap(now time.Time) {
	var expired []*session
	p.mu.Lock()
	for key, l := range p.idle {
		kept := l[:0]
		for _, sc := range l {
			if now.Sub(sc.idle) >= p.timeout {
				expired = append(expired, sc)
			} else {
				kept = append(kept, sc)
			}
		}
		p.store(key, kept)
	}
	p.mu.Unlock()
	for _, sc := range expired {
		sc.close()
	}
}

// closeAll closes every idle session; later puts close theirs.
func (p *pool) closeAll() {
	p.mu.Lock()
	p.closed = true
	all := p.idle
	p.idle = map[string][]*session{}
	p.mu.Unlock()
	for _, l := range all {
		for _, sc := range l {
			sc.close()
		}
	}
}
