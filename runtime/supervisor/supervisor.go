// Package supervisor starts, reconfigures and stops the servers of the box
// as the applied document wants them.
//
// Each server kind (SMTP, POP3, IMAP, DNS, DHCP) is one Kind: a rule
// that reads the document and says whether the server is wanted, on which
// endpoints (listen addresses) and with which configuration, and a
// function that builds an instance of it. After every apply the daemon
// calls Converge with the applied document: what is wanted and not running
// starts, what runs and is no longer wanted stops, what runs with another
// configuration is built anew.
//
// A reload drops no session, as Caddy's does: an endpoint whose address
// stays keeps its listener, and the new instance gets every connection
// accepted from the moment it is started; only then does the old one stop
// getting any. The old instance finishes its sessions, which end by their
// own deadlines (Kind.Drain bounds the wait), then it is stopped. When an
// address changes, the new one is bound before the old listener closes. A
// failure to bind or to build is logged and reported in Status, leaves the
// other servers alone, and is tried again at the next Converge.
//
// A datagram endpoint (DNS over UDP) has no sessions: each instance reads
// its own socket, bound with SO_REUSEPORT so that the new one is bound
// before the old one closes; the old one stops as soon as it is replaced.
package supervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"mailfountain.dev/mailfountain/schema"
)

// DefaultDrain bounds how long an old instance may finish its sessions
// unless its Kind says otherwise: SMTP's session lifetime, and the idle
// time after which IMAP and POP3 end a session anyway. At its end the
// instance is stopped as at the daemon's exit.
const DefaultDrain = 30 * time.Minute

// Endpoint is one listen address of a server.
type Endpoint struct {
	// Name names the endpoint in logs and status, and is the listen flag
	// that overrides its address: "smtp", "submissions", "imaps"...
	// Names are unique across kinds.
	Name string
	// Addr is the address to listen on ("host:port"); "" does not serve
	// it.
	Addr string
	// NoKeepAlive turns TCP keep-alives off on its connections.
	NoKeepAlive bool
	// Network is "tcp" (also when empty) or "udp": a datagram endpoint,
	// served by a PacketInstance.
	Network string
	// Device binds a datagram endpoint to one interface
	// (SO_BINDTODEVICE), over IPv4: the DHCP server hears and answers
	// only the LAN, with broadcasts to clients that have no address yet
	// (Go's datagram sockets may broadcast).
	Device string
}

// isPacket says whether ep is a datagram endpoint.
func (ep Endpoint) isPacket() bool { return ep.Network == "udp" }

// Spec is how the document wants a server to run.
type Spec struct {
	Endpoints []Endpoint
	// Config is what an instance is built from, besides the addresses:
	// when it changes, a new instance replaces the running one. Settings
	// the servers read live (mailconf.Live) do not belong here.
	Config string
}

// Kind is one server the box may run: one entry of the registry that the
// daemon gives New.
type Kind struct {
	// Name names the server in logs and status: "smtp", "dns".
	Name string
	// Want reads an applied document (never nil) and returns the spec of
	// the server, or, when the document does not want it, why not
	// ("no domain"). It must not keep st.
	Want func(st *schema.State) (spec Spec, off string)
	// Build returns a new instance for spec.
	Build func(ctx context.Context, spec Spec) (Instance, error)
	// Drain bounds how long a replaced or stopped instance may finish its
	// sessions; zero is DefaultDrain.
	Drain time.Duration
}

// Instance is a server built for one Spec. It holds nothing that needs
// closing besides what its Serve calls hold.
type Instance interface {
	// Serve serves the endpoint of that name on ln until ctx is done, then
	// closes its sessions and returns. It may stop accepting earlier: when
	// ln is closed, and nothing else closes ln. Returning while ctx is not
	// done is a failure.
	Serve(ctx context.Context, endpoint string, ln net.Listener) error
}

// PacketInstance is an Instance that serves datagram endpoints too (DNS
// over UDP).
type PacketInstance interface {
	Instance
	// ServePacket serves the endpoint of that name on pc until ctx is
	// done, then returns. The supervisor closes pc once ctx is done, which
	// ends a read in progress; ServePacket may close it too (the socket is
	// its own). There are no sessions to drain: a replaced instance stops
	// as soon as its successor reads.
	ServePacket(ctx context.Context, endpoint string, pc net.PacketConn) error
}

// Off is the listen address that turns an endpoint off.
const Off = "off"

// IsOff says whether addr turns an endpoint off: Off, in any case, or "".
func IsOff(addr string) bool { return addr == "" || strings.EqualFold(addr, Off) }

// Config is how a Supervisor runs.
type Config struct {
	// Listen overrides the addresses of endpoints, by name (the listen
	// flags): Off or "" turns one off.
	Listen map[string]string
	Logger *slog.Logger
}

// States of a ServerStatus.
const (
	StateServing  = "serving"
	StateDraining = "draining" // replaced or stopped, finishing its sessions
	StateFailed   = "failed"
	StateOff      = "off"
)

// ServerStatus is the state of one endpoint of a server.
type ServerStatus struct {
	Server   string `json:"server"`
	Endpoint string `json:"endpoint,omitempty"`
	// Addr is the bound address when serving or draining, else the
	// address wanted.
	Addr  string `json:"addr,omitempty"`
	State string `json:"state"`
	// Reason says why a server is off.
	Reason string `json:"reason,omitempty"`
	// Error is the last failure; a serving endpoint that failed to move
	// to a new address serves on at the old one, with the error.
	Error string `json:"error,omitempty"`
	// Sessions is the number of open sessions of a draining instance.
	Sessions int       `json:"sessions,omitempty"`
	Since    time.Time `json:"since"`
}

// Supervisor runs the servers of its kinds. Converge, Status, Failing
// and Stop are safe for concurrent use.
type Supervisor struct {
	cfg    Config
	log    *slog.Logger
	ctx    context.Context // ends every serving: cancelled by Stop
	cancel context.CancelFunc
	wg     sync.WaitGroup // servings, drains, accept loops
	pool   *pool

	convergeMu sync.Mutex // one Converge at a time

	mu       sync.Mutex
	kinds    []*kindState
	draining map[*serving]struct{}
}

type kindState struct {
	k Kind
	// Under Supervisor.mu.
	gen      int      // the instance's number: bumped by each build
	inst     Instance // nil until built
	config   string   // Spec.Config of inst
	off      string   // why not wanted; "" when wanted
	buildErr error
	eps      map[string]*endpointState
	order    []string // endpoint names, in the order of the spec
}

type endpointState struct {
	want Endpoint
	off  string // why this endpoint is off
	sv   *serving
	err  error // last failure to bind or serve
}

// serving is one Serve call: an instance serving an endpoint.
type serving struct {
	ks     *kindState
	gen    int
	ep     Endpoint
	l      *shared
	h      *handle
	cancel context.CancelFunc
	done   chan struct{} // closed when Serve returned
	since  time.Time
	// retired is set, under Supervisor.mu, once the supervisor stops
	// handing it connections: whatever Serve returns then is no failure.
	retired bool
}

// New returns a supervisor of kinds, running nothing until Converge.
// Stop must be called to end it.
func New(cfg Config, kinds ...Kind) (*Supervisor, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Supervisor{cfg: cfg, log: cfg.Logger, ctx: ctx, cancel: cancel, draining: map[*serving]struct{}{}}
	s.pool = &pool{ctx: ctx, log: cfg.Logger, wg: &s.wg, lns: map[string]*shared{}}
	names := map[string]bool{}
	for _, k := range kinds {
		if k.Name == "" || k.Want == nil || k.Build == nil {
			cancel()
			return nil, fmt.Errorf("new supervisor: kind %q needs a name, a Want rule and a Build function", k.Name)
		}
		if names[k.Name] {
			cancel()
			return nil, fmt.Errorf("new supervisor: kind %q twice", k.Name)
		}
		names[k.Name] = true
		if k.Drain <= 0 {
			k.Drain = DefaultDrain
		}
		s.kinds = append(s.kinds, &kindState{k: k, eps: map[string]*endpointState{}})
	}
	return s, nil
}

// Converge makes the running servers those st wants; nil st (no document
// applied yet) wants none. It returns once every new instance serves;
// replaced ones finish their sessions in the background.
func (s *Supervisor) Converge(ctx context.Context, st *schema.State) {
	s.convergeMu.Lock()
	defer s.convergeMu.Unlock()
	if s.ctx.Err() != nil {
		return
	}
	changed := false
	seen := map[string]string{} // endpoint name → kind
	for _, ks := range s.kinds {
		if s.convergeKind(ctx, ks, st, seen) {
			changed = true
		}
	}
	if changed {
		s.logServing()
	}
}

func (s *Supervisor) convergeKind(ctx context.Context, ks *kindState, st *schema.State, seen map[string]string) (changed bool) {
	spec, off := Spec{}, "no document applied yet"
	if st != nil {
		spec, off = ks.k.Want(st)
	}
	var want []Endpoint
	offEps := map[string]string{}
	var order []string
	if off == "" {
		for _, ep := range spec.Endpoints {
			if a, ok := s.cfg.Listen[ep.Name]; ok {
				ep.Addr = a
			}
			order = append(order, ep.Name)
			if IsOff(ep.Addr) {
				offEps[ep.Name] = "turned off by --" + ep.Name
				continue
			}
			want = append(want, ep)
		}
		if len(want) == 0 {
			off = "every endpoint is turned off"
		}
	}

	s.mu.Lock()
	if off != "" {
		defer s.mu.Unlock()
		if ks.off == "" && ks.inst != nil {
			s.log.Info("stopping server: the document does not want it", "server", ks.k.Name, "reason", off)
		}
		for _, name := range ks.order {
			if es := ks.eps[name]; es.sv != nil {
				s.retire(es.sv)
				changed = true
			}
		}
		ks.off, ks.inst, ks.config, ks.buildErr, ks.eps, ks.order = off, nil, "", nil, map[string]*endpointState{}, nil
		return changed
	}
	ks.off = ""
	inst, gen := ks.inst, ks.gen
	rebuild := inst == nil || ks.config != spec.Config
	s.mu.Unlock()

	if rebuild {
		ni, err := ks.k.Build(ctx, spec)
		if err != nil {
			err = fmt.Errorf("build %s server: %w", ks.k.Name, err)
			s.log.Error("server not started; the running one, if any, is kept", "server", ks.k.Name, "err", err)
			s.mu.Lock()
			ks.buildErr = err
			s.mu.Unlock()
			return false
		}
		inst = ni
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if rebuild {
		ks.gen++
		gen = ks.gen
		ks.inst, ks.config = inst, spec.Config
		if ks.order != nil {
			s.log.Info("server configuration changed: new instance", "server", ks.k.Name)
		}
	}
	ks.buildErr = nil
	wanted := map[string]bool{}
	for _, ep := range want {
		wanted[ep.Name] = true
		es := ks.eps[ep.Name]
		if es == nil {
			es = &endpointState{}
			ks.eps[ep.Name] = es
		}
		es.want, es.off = ep, ""
		if k, dup := seen[ep.Name]; dup {
			es.err = fmt.Errorf("endpoint %s is declared by the %s server too", ep.Name, k)
			continue
		}
		seen[ep.Name] = ks.k.Name
		if sv := es.sv; sv != nil && sv.gen == gen && sv.ep.Addr == ep.Addr {
			continue
		}
		l, err := s.pool.acquire(ctx, ep)
		if err != nil {
			if es.err == nil || es.err.Error() != err.Error() {
				s.log.Error("server not started", "server", ep.Name, "addr", ep.Addr, "err", err)
			}
			es.err = err
			continue
		}
		// The new serving takes the connections before the old one stops
		// getting them.
		sv := s.serve(ks, inst, gen, ep, l)
		if es.sv != nil {
			s.retire(es.sv)
		}
		es.sv, es.err = sv, nil
		changed = true
	}
	for name, es := range ks.eps {
		if wanted[name] {
			continue
		}
		if es.sv != nil {
			s.retire(es.sv)
			changed = true
		}
		delete(ks.eps, name)
	}
	for name, why := range offEps {
		ks.eps[name] = &endpointState{want: Endpoint{Name: name}, off: why}
	}
	ks.order = order
	return changed
}

// serve starts a serving of ep by inst on l. Called with s.mu held.
func (s *Supervisor) serve(ks *kindState, inst Instance, gen int, ep Endpoint, l *shared) *serving {
	ctx, cancel := context.WithCancel(s.ctx)
	sv := &serving{ks: ks, gen: gen, ep: ep, l: l, cancel: cancel, done: make(chan struct{}), since: time.Now().UTC()}
	if l.pc == nil {
		sv.h = l.newHandle()
	}
	// Two lines that the end-to-end tests read: the address bound, then
	// the server started.
	s.log.Info("listening", "server", ep.Name, "addr", l.addr())
	s.log.Info("started", "component", ep.Name, "kind", ks.k.Name)
	s.wg.Go(func() {
		defer close(sv.done)
		var err error
		if l.pc == nil {
			err = inst.Serve(ctx, ep.Name, sv.h)
		} else if pi, ok := inst.(PacketInstance); ok {
			err = pi.ServePacket(ctx, ep.Name, l.pc)
		} else {
			err = fmt.Errorf("the %s server serves no datagram endpoint", ks.k.Name)
		}
		s.ended(sv, err)
	})
	return sv
}

// ended records the end of a Serve call that was not asked for.
func (s *Supervisor) ended(sv *serving, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sv.retired || s.ctx.Err() != nil {
		return
	}
	if err == nil {
		err = errors.New("stopped on its own")
	}
	err = fmt.Errorf("serve %s on %s: %w", sv.ep.Name, sv.l.addr(), err)
	s.log.Error("server failed; it starts again at the next apply or resync", "server", sv.ep.Name, "err", err)
	sv.retired = true
	if sv.h != nil {
		sv.h.Close()
	}
	sv.cancel()
	s.pool.release(sv.l)
	if es := sv.ks.eps[sv.ep.Name]; es != nil && es.sv == sv {
		es.sv, es.err = nil, err
	}
}

// retire hands sv no more connections and lets go of its listener, then,
// in the background, waits until its sessions end (or its kind's Drain
// passes) and stops it. Called with s.mu held.
func (s *Supervisor) retire(sv *serving) {
	sv.retired = true
	if sv.h == nil {
		// A datagram serving has no sessions: it stops now; closing its
		// socket ends the read in progress.
		sv.cancel()
		s.pool.release(sv.l)
		s.wg.Go(func() {
			<-sv.done
			s.log.Info("stopped", "server", sv.ep.Name, "addr", sv.l.addr())
		})
		return
	}
	sv.h.detach()
	s.pool.release(sv.l)
	s.draining[sv] = struct{}{}
	s.wg.Go(func() {
		timer := time.NewTimer(sv.ks.k.Drain)
		defer timer.Stop()
		select {
		case <-sv.h.drained:
		case <-sv.done:
		case <-timer.C:
			s.log.Warn("drain time over: closing the sessions left", "server", sv.ep.Name, "sessions", sv.h.sessions(), "drain", sv.ks.k.Drain.String())
		case <-s.ctx.Done():
		}
		sv.cancel()
		<-sv.done
		s.mu.Lock()
		delete(s.draining, sv)
		s.mu.Unlock()
		s.log.Info("stopped", "server", sv.ep.Name, "addr", sv.l.addr())
	})
}

// logServing logs the endpoints served, one attribute each.
func (s *Supervisor) logServing() {
	var attrs []any
	for _, st := range s.Status() {
		if st.Endpoint != "" && st.State != StateDraining {
			v := st.State
			if st.State == StateServing {
				v = st.Addr
			}
			attrs = append(attrs, slog.String(st.Endpoint, v))
		}
	}
	s.log.Info("servers", attrs...)
}

// Status lists each kind's endpoints, then the draining instances.
func (s *Supervisor) Status() []ServerStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.statusLocked()
}

func (s *Supervisor) statusLocked() []ServerStatus {
	var out []ServerStatus
	for _, ks := range s.kinds {
		if ks.off != "" || ks.order == nil && ks.buildErr == nil {
			reason := ks.off
			if reason == "" {
				reason = "no document applied yet"
			}
			out = append(out, ServerStatus{Server: ks.k.Name, State: StateOff, Reason: reason})
			continue
		}
		if ks.order == nil {
			out = append(out, ServerStatus{Server: ks.k.Name, State: StateFailed, Error: ks.buildErr.Error()})
			continue
		}
		for _, name := range ks.order {
			es := ks.eps[name]
			st := ServerStatus{Server: ks.k.Name, Endpoint: name}
			switch {
			case es.off != "":
				st.State, st.Reason = StateOff, es.off
			case es.sv != nil:
				st.State, st.Addr, st.Since = StateServing, es.sv.l.addr(), es.sv.since
			default:
				st.State, st.Addr = StateFailed, es.want.Addr
			}
			if es.err != nil {
				st.Error = es.err.Error()
			} else if ks.buildErr != nil {
				st.Error = ks.buildErr.Error()
			}
			out = append(out, st)
		}
	}
	var dr []ServerStatus
	for sv := range s.draining {
		dr = append(dr, ServerStatus{Server: sv.ks.k.Name, Endpoint: sv.ep.Name, Addr: sv.l.addr(), State: StateDraining, Sessions: sv.h.sessions(), Since: sv.since}) // only stream servings drain
	}
	slices.SortFunc(dr, func(a, b ServerStatus) int { return a.Since.Compare(b.Since) })
	return append(out, dr...)
}

// Failing reports whether a wanted server is not serving as wanted: the
// next Converge tries it again even if the document did not change.
func (s *Supervisor) Failing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ks := range s.kinds {
		if ks.off != "" {
			continue
		}
		if ks.buildErr != nil {
			return true
		}
		for _, es := range ks.eps {
			if es.err != nil || es.off == "" && es.sv == nil {
				return true
			}
		}
	}
	return false
}

// Stop stops every server, closing their sessions as at the daemon's
// exit, and returns once all are gone. Converge does nothing after it.
func (s *Supervisor) Stop() {
	s.convergeMu.Lock()
	defer s.convergeMu.Unlock()
	s.cancel()
	s.pool.closeAll()
	s.wg.Wait()
}
