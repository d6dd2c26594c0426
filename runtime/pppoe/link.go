package pppoe

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"

	"mailfountain.dev/mailfountain/runtime/wanlink"
)

// Metrics hears what the link does, for the daemon's metrics;
// *metrics.Metrics is one. The calls come from Run's goroutine.
type Metrics interface {
	// PPPoESession: a session came up (pppd ran ip-up).
	PPPoESession()
	// PPPoERestart: pppd exited (or could not start) and is started
	// again after the backoff.
	PPPoERestart()
	// PPPoEUp: the link is up (a session is up) or down.
	PPPoEUp(up bool)
}

// Link is the box's PPPoE WAN link: pppd and its PPPoE plugin, supervised.
// Run runs it; State and Changed tell the network reconciler what it has.
type Link struct {
	cfg Config
	log *slog.Logger
	m   Metrics

	// Hooks of the tests: the clock, the wait before a restart, the
	// random draw of the jitter.
	now   func() time.Time
	sleep func(ctx context.Context, d time.Duration) error
	rand  func() float64

	mu      sync.Mutex
	state   wanlink.State
	changed chan struct{}
}

// New returns the link of cfg, not running: Run runs it. A nil logger
// discards; m may be nil.
func New(cfg Config, logger *slog.Logger, m Metrics) *Link {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if m == nil {
		m = noMetrics{}
	}
	return &Link{
		cfg:     cfg.withDefaults(),
		log:     logger,
		m:       m,
		now:     time.Now,
		sleep:   sleepCtx,
		rand:    rand.Float64,
		state:   wanlink.State{Interface: IfName},
		changed: make(chan struct{}, 1),
	}
}

type noMetrics struct{}

func (noMetrics) PPPoESession()   {}
func (noMetrics) PPPoERestart()   {}
func (noMetrics) PPPoEUp(up bool) {}

// State is the link's state now.
func (l *Link) State() wanlink.State {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.state
	s.DNS = slices.Clone(s.DNS)
	return s
}

// Changed signals that State moved: it has one slot, filled at each change
// and not refilled before it is read, so a reader that reads State after
// each receive sees the latest and misses none. One reader only.
func (l *Link) Changed() <-chan struct{} { return l.changed }

// setState sets the state and signals the change, if there is one (a
// new Detail or Until alone is none: they are only shown).
func (l *Link) setState(s wanlink.State) {
	l.mu.Lock()
	old := l.state
	same := old.Up == s.Up && old.Address == s.Address && old.Gateway == s.Gateway &&
		slices.Equal(old.DNS, s.DNS) && old.Interface == s.Interface
	if !same {
		s.Since = l.now()
		l.state = s
	} else {
		l.state.Detail, l.state.Until = s.Detail, s.Until
	}
	l.mu.Unlock()
	if same {
		return
	}
	if old.Up != s.Up {
		l.m.PPPoEUp(s.Up)
	}
	if s.Up {
		l.m.PPPoESession()
		l.log.Info("pppoe session up", "interface", s.Interface, "address", s.Address, "gateway", s.Gateway, "dns", s.DNS)
	} else if old.Up {
		l.log.Info("pppoe session down", "interface", old.Interface, "address", old.Address)
	}
	select {
	case l.changed <- struct{}{}:
	default:
	}
}

// down sets the link down (no session).
func (l *Link) down() { l.setState(wanlink.State{Interface: IfName}) }

// Run runs pppd until ctx is done, and again, after a backoff, each time it
// exits; then it stops pppd (SIGTERM, SIGKILL after Config.StopGrace) and
// returns nil. It returns an error at once only for a Config that Validate
// refuses. A password file that cannot be read is retried like an exit of
// pppd. The link is down when Run returns. One Run at a time.
func (l *Link) Run(ctx context.Context) error {
	if err := l.cfg.Validate(); err != nil {
		return err
	}
	if err := os.MkdirAll(l.cfg.Dir, 0o700); err != nil {
		return fmt.Errorf("pppoe: %w", err)
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("pppoe: watch %s: %w", l.cfg.Dir, err)
	}
	defer w.Close()
	if err := w.Add(l.cfg.Dir); err != nil {
		return fmt.Errorf("pppoe: watch %s: %w", l.cfg.Dir, err)
	}
	defer l.down()

	var backoff time.Duration
	for {
		start := l.now()
		err := l.session(ctx, w)
		if ctx.Err() != nil {
			return nil
		}
		lasted := l.now().Sub(start)
		if lasted >= l.cfg.StableAfter {
			backoff = 0 // a session that lasted: the line was fine
		}
		backoff = l.nextBackoff(backoff)
		wait := l.jitter(backoff)
		l.m.PPPoERestart()
		// The status tells why there is no session, and when pppd runs
		// again.
		l.setState(wanlink.State{Interface: IfName, Detail: err.Error(), Until: l.now().Add(wait)})
		l.log.Warn("pppoe: pppd is not running; starting it again", "err", err, "lasted", lasted.Round(time.Millisecond), "after", wait.Round(time.Millisecond))
		if l.sleep(ctx, wait) != nil {
			return nil
		}
	}
}

// nextBackoff is the backoff after prev: RestartMin first, then doubled,
// at most RestartMax.
func (l *Link) nextBackoff(prev time.Duration) time.Duration {
	if prev <= 0 {
		return l.cfg.RestartMin
	}
	return min(2*prev, l.cfg.RestartMax)
}

// jitter draws the wait of a backoff d: between its half and itself.
func (l *Link) jitter(d time.Duration) time.Duration {
	return d/2 + time.Duration(l.rand()*float64(d/2))
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// session writes pppd's files, runs pppd until it exits or ctx is done,
// and follows its session through the events its scripts write. The link
// is down when it returns.
func (l *Link) session(ctx context.Context, w *fsnotify.Watcher) error {
	defer l.down()
	password, err := l.cfg.password()
	if err != nil {
		return err
	}
	if err := writeFiles(l.cfg, render(l.cfg, password)); err != nil {
		return err
	}
	events := &eventReader{path: filepath.Join(l.cfg.Dir, eventsFile)}
	if err := os.Remove(events.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("pppoe: %w", err)
	}

	cmd := exec.CommandContext(ctx, l.cfg.PPPD, args(l.cfg)...)
	// pppd needs nothing of the daemon's environment; its scripts get
	// pppd's own.
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	cmd.Dir = "/"
	out := &lineLogger{log: l.log}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = l.cfg.StopGrace
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("pppoe: start pppd: %w", err)
	}
	pid := cmd.Process.Pid
	l.log.Info("pppd started", "pid", pid, "interface", l.cfg.Interface)
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	for {
		select {
		case err := <-exited:
			out.flush()
			return exitError(err)
		case ev, ok := <-w.Events:
			if !ok {
				// The watcher is closed only when Run returns.
				return <-exited
			}
			if filepath.Base(ev.Name) == eventsFile {
				l.readEvents(events, pid)
			}
		case err, ok := <-w.Errors:
			if ok {
				// An overflow may have lost the event of a write: read
				// anyway.
				l.log.Warn("pppoe: watching the events file", "err", err)
				l.readEvents(events, pid)
			}
		}
	}
}

// readEvents applies the new events of pppd pid (a late script of a pppd
// that exited writes a pid that is not pid).
func (l *Link) readEvents(r *eventReader, pid int) {
	evs, errs, err := r.read()
	for _, e := range errs {
		l.log.Warn("pppoe: an event line is not understood", "err", e)
	}
	if err != nil {
		l.log.Warn("pppoe: reading the events file", "err", err)
	}
	for _, ev := range evs {
		if ev.pid != pid {
			continue
		}
		if !ev.up {
			l.down()
			continue
		}
		l.setState(wanlink.State{
			Up:        true,
			Address:   netip.PrefixFrom(ev.local, 32),
			Gateway:   ev.remote,
			DNS:       ev.dns,
			Interface: ev.ifname,
		})
	}
}

// exitError describes how pppd ended, with its exit status's meaning
// (pppd(8), EXIT STATUS).
func exitError(err error) error {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		if err == nil {
			return fmt.Errorf("pppd exited with status 0: %s", exitReasons[0])
		}
		return fmt.Errorf("pppd: %w", err)
	}
	code := ee.ExitCode()
	if code < 0 {
		return fmt.Errorf("pppd: %w", err)
	}
	if code < len(exitReasons) && exitReasons[code] != "" {
		return fmt.Errorf("pppd exited with status %d: %s", code, exitReasons[code])
	}
	return fmt.Errorf("pppd exited with status %d", code)
}

// exitReasons are pppd's exit statuses, briefly.
var exitReasons = [...]string{
	0:  "the link was closed",
	1:  "a fatal error",
	2:  "an error in its options",
	3:  "not run as root",
	4:  "the kernel has no PPP support",
	5:  "a signal ended it",
	6:  "the device could not be locked",
	7:  "the device could not be opened",
	8:  "the connect script failed",
	9:  "the pty command failed",
	10: "the PPP negotiation failed",
	11: "the peer failed to authenticate itself",
	12: "the link was idle",
	13: "the connect time limit was reached",
	14: "callback",
	15: "the peer stopped answering LCP echo requests",
	16: "the modem hung up",
	17: "a loopback was detected",
	18: "the init script failed",
	19: "the ISP refused the username or password",
}

// lineLogger logs pppd's output line by line. exec's copying goroutine
// writes to it, Wait waits for it.
type lineLogger struct {
	log *slog.Logger
	mu  sync.Mutex
	buf []byte
}

// maxLogLine cuts a line that never ends.
const maxLogLine = 4 << 10

func (w *lineLogger) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.emit(w.buf[:i])
		w.buf = w.buf[i+1:]
	}
	if len(w.buf) > maxLogLine {
		w.emit(w.buf)
		w.buf = nil
	}
	return len(p), nil
}

func (w *lineLogger) flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.emit(w.buf)
		w.buf = nil
	}
}

func (w *lineLogger) emit(line []byte) {
	if line = bytes.TrimRight(line, "\r"); len(line) > 0 {
		w.log.Info("pppd", "line", string(line))
	}
}
