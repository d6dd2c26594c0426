package supervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"mailfountain.dev/mailfountain/runtime/connlimit"
)

// pool holds the bound listeners, one per endpoint and address, with the
// number of servings that use each: a new instance of a server takes the
// listener of the old one instead of binding the address again, and the
// listener closes when the last serving lets go of it.
type pool struct {
	ctx context.Context // the supervisor's: ends the accept loops' retries
	log *slog.Logger
	wg  *sync.WaitGroup // the supervisor's: owns the accept loops

	mu  sync.Mutex
	lns map[string]*shared
}

func poolKey(ep Endpoint) string { return ep.Name + "\x00" + ep.Addr }

// acquire returns the listener of ep, binding ep.Addr if no serving holds
// it yet.
func (p *pool) acquire(ctx context.Context, ep Endpoint) (*shared, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if ep.isPacket() {
		return p.bindPacket(ctx, ep)
	}
	if l, ok := p.lns[poolKey(ep)]; ok {
		l.refs++
		return l, nil
	}
	// SMTP sessions end by their own timeouts: TCP keep-alives would only
	// cost system calls. POP3 and IMAP sessions may idle for long (IDLE)
	// and keep them.
	lc := net.ListenConfig{}
	if ep.NoKeepAlive {
		lc.KeepAlive = -1
	}
	ln, err := lc.Listen(ctx, "tcp", ep.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", ep.Addr, err)
	}
	l := &shared{key: poolKey(ep), ep: ep.Name, ln: ln, refs: 1}
	p.lns[l.key] = l
	p.wg.Go(func() { l.acceptLoop(p.ctx, p.log) })
	return l, nil
}

// bindPacket binds a datagram endpoint. A socket is never shared: each
// serving has its own, bound with SO_REUSEPORT, so that a new instance
// binds the address while the old one still reads, and the old socket
// closes when it is retired (the datagrams queued on it are lost, as UDP
// allows: clients ask again). With a Device, it is bound to that
// interface; Go's datagram sockets may broadcast (SO_BROADCAST) in any
// case. Called with p.mu held.
func (p *pool) bindPacket(ctx context.Context, ep Endpoint) (*shared, error) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
			if serr == nil && ep.Device != "" {
				serr = unix.BindToDevice(int(fd), ep.Device)
			}
		})
		return errors.Join(err, serr)
	}}
	network := "udp"
	if ep.Device != "" {
		// DHCP is IPv4's: its broadcasts are sent from an IPv4 socket.
		network = "udp4"
	}
	pc, err := lc.ListenPacket(ctx, network, ep.Addr)
	if err != nil {
		if ep.Device != "" {
			return nil, fmt.Errorf("listen on udp %s on %s: %w", ep.Addr, ep.Device, err)
		}
		return nil, fmt.Errorf("listen on udp %s: %w", ep.Addr, err)
	}
	l := &shared{ep: ep.Name, pc: pc, refs: 1}
	l.key = fmt.Sprintf("%s\x00%p", poolKey(ep), l)
	p.lns[l.key] = l
	return l, nil
}

// release lets go of l; the last release closes it.
func (p *pool) release(l *shared) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if l.refs--; l.refs > 0 {
		return
	}
	delete(p.lns, l.key)
	l.close()
}

// closeAll closes every listener, whoever holds them: the supervisor stops.
func (p *pool) closeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for k, l := range p.lns {
		l.close()
		delete(p.lns, k)
	}
}

// shared is a bound listener. One goroutine accepts its connections and
// hands each to the current handle: the serving that took it last. The
// servers never see the listener itself, so none can close it under the
// others.
type shared struct {
	key, ep string
	ln      net.Listener
	pc      net.PacketConn // instead of ln, for a datagram endpoint
	refs    int            // under pool.mu

	mu  sync.Mutex
	cur *handle
}

func (l *shared) addr() string {
	if l.pc != nil {
		return l.pc.LocalAddr().String()
	}
	return l.ln.Addr().String()
}

func (l *shared) close() {
	if l.pc != nil {
		l.pc.Close()
		return
	}
	l.ln.Close()
}

func (l *shared) acceptLoop(ctx context.Context, log *slog.Logger) {
	retrying := func(err error, delay time.Duration) {
		log.Warn("accept", "server", l.ep, "addr", l.addr(), "err", err, "retry_in", delay)
	}
	for {
		c, err := connlimit.Accept(ctx, l.ln, retrying)
		if err != nil {
			// Closed by its last release, or broken: the handles get
			// nothing more; their servers go on with the sessions they
			// have.
			// A broken listener closes its current handle, so that its
			// server returns and the supervisor binds the address again.
			l.mu.Lock()
			h := l.cur
			l.mu.Unlock()
			if h != nil && ctx.Err() == nil {
				log.Error("accept: listener failed", "server", l.ep, "addr", l.addr(), "err", err)
				h.Close()
			}
			return
		}
		l.hand(c)
	}
}

// newHandle returns a handle that gets the connections from now on.
func (l *shared) newHandle() *handle {
	h := &handle{l: l, conns: make(chan net.Conn), stop: make(chan struct{}), closed: make(chan struct{}), drained: make(chan struct{})}
	l.mu.Lock()
	l.cur = h
	l.mu.Unlock()
	return h
}

// hand gives c to the current handle. A handle detached while c waits
// for it passes c on to the one that replaced it; with none, c is closed.
func (l *shared) hand(c net.Conn) {
	for {
		l.mu.Lock()
		h := l.cur
		if h == nil {
			l.mu.Unlock()
			c.Close()
			return
		}
		// Counted before it is handed, under the lock that detach takes:
		// once detached, a handle's count only goes down.
		h.open++
		l.mu.Unlock()
		tc := &trackedConn{Conn: c, h: h}
		select {
		case h.conns <- tc:
			return
		case <-h.stop:
			h.done()
		}
	}
}

// handle is the net.Listener of one serving: connections come from its
// shared listener while it is current; Close closes the handle only.
type handle struct {
	l       *shared
	conns   chan net.Conn
	stop    chan struct{} // closed by detach: no more connections
	closed  chan struct{} // closed by Close: Accept fails
	drained chan struct{} // closed once detached with no connection open

	// Under l.mu.
	open          int // connections handed and not closed
	detached      bool
	closeOnce     sync.Once
	drainedClosed bool
}

// Accept waits for the next connection handed to h.
func (h *handle) Accept() (net.Conn, error) {
	select {
	case c := <-h.conns:
		return c, nil
	case <-h.closed:
		return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: h.l.ln.Addr(), Err: net.ErrClosed}
	}
}

// Close makes Accept fail and hands no more connections to h; the
// connections it has stay open.
func (h *handle) Close() error {
	h.detach()
	h.closeOnce.Do(func() { close(h.closed) })
	return nil
}

func (h *handle) Addr() net.Addr { return h.l.ln.Addr() }

// detach hands no more connections to h: a newer handle gets them, or
// none if h was the last.
func (h *handle) detach() {
	h.l.mu.Lock()
	defer h.l.mu.Unlock()
	if h.detached {
		return
	}
	h.detached = true
	close(h.stop)
	if h.l.cur == h {
		h.l.cur = nil
	}
	h.checkDrained()
}

// done counts one of h's connections closed.
func (h *handle) done() {
	h.l.mu.Lock()
	defer h.l.mu.Unlock()
	h.open--
	h.checkDrained()
}

func (h *handle) checkDrained() {
	if h.detached && h.open == 0 && !h.drainedClosed {
		h.drainedClosed = true
		close(h.drained)
	}
}

// sessions is the number of connections of h still open.
func (h *handle) sessions() int {
	h.l.mu.Lock()
	defer h.l.mu.Unlock()
	return h.open
}

// trackedConn counts down its handle's connections when it closes, which
// is when its server's session ends.
type trackedConn struct {
	net.Conn
	h    *handle
	once sync.Once
}

func (c *trackedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.h.done)
	return err
}

// SetLinger reaches the TCP connection below (pop3d resets a client it
// cuts off).
func (c *trackedConn) SetLinger(sec int) error {
	if tc, ok := c.Conn.(interface{ SetLinger(int) error }); ok {
		return tc.SetLinger(sec)
	}
	return nil
}
