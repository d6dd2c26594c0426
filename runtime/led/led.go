// Package led drives the box's front LED (manual 5) for as long as
// mailfountaind runs: it derives the pattern from the daemon's state
// (PatternOf), shows it through a Driver, blinks it step by step when the
// hardware cannot blink it by itself, and turns the LED off when stopped.
//
// Drivers: Sysfs, a LED of the kernel's class (/sys/class/leds/NAME, a
// real box), and File, the virtual profile's LED, a file of the data
// directory holding the pattern's name, so that tests and people can see
// it. Which one runs, or none without box hardware, is the caller's
// choice (cmd/mailfountaind).
package led

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"mailfountain.dev/mailfountain/hw"
	"mailfountain.dev/mailfountain/reconcilers"
)

// DefaultPoll is Config.Poll's default: how often the loop reads the
// daemon's state. A quarter of a second is soon enough for a person
// looking at the box, and the read (the daemon's Health) copies one slice.
const DefaultPoll = 250 * time.Millisecond

// State is what decides the pattern.
type State struct {
	// Setup: the box is not configured yet (daemon.Status.Setup).
	Setup bool
	// Failed: a reconciler failed in the last apply or resync.
	Failed bool
}

// PatternOf returns the pattern of a running daemon in state s. A failure
// wins over setup mode: it is what needs someone's attention, and the
// wizard's own applies can fail too.
func PatternOf(s State) hw.Pattern {
	switch {
	case s.Failed:
		return hw.PatternError
	case s.Setup:
		return hw.PatternSetup
	}
	return hw.PatternSteady
}

// Failed reports whether one of the statuses of an apply or resync is a
// failure: the reconciler that failed, or one that could not be put back.
func Failed(statuses []reconcilers.Status) bool {
	for _, s := range statuses {
		if s.State == reconcilers.StateFailed || s.State == reconcilers.StateRollbackFailed {
			return true
		}
	}
	return false
}

// Source gives the daemon's state; cmd/mailfountaind adapts the daemon's
// Status.
type Source interface {
	LEDState() State
}

// Driver shows patterns on one LED.
type Driver interface {
	// Show starts showing p, replacing the pattern shown before. It
	// reports whether the driver shows p by itself; when it does not (a
	// blinking pattern that the hardware cannot blink), the loop blinks
	// it with Set, step by step.
	Show(p hw.Pattern) (shown bool, err error)
	// Set switches the LED on or off.
	Set(on bool) error
}

// Metrics hears the pattern shown; *metrics.Metrics is one.
type Metrics interface {
	LEDPattern(pattern string)
}

type noMetrics struct{}

func (noMetrics) LEDPattern(string) {}

// Config is how a Loop runs.
type Config struct {
	Driver Driver
	Source Source
	// Poll is how often the state is read; zero is DefaultPoll.
	Poll   time.Duration
	Logger *slog.Logger
	// Metrics, if not nil, hears each pattern shown.
	Metrics Metrics
}

// Loop drives one LED; Run it as a daemon component.
type Loop struct {
	cfg     Config
	showing atomic.Pointer[hw.Pattern]
}

// New returns a loop; the LED shows nothing of it until Run.
func New(cfg Config) *Loop {
	if cfg.Poll <= 0 {
		cfg.Poll = DefaultPoll
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = noMetrics{}
	}
	l := &Loop{cfg: cfg}
	off := hw.PatternOff
	l.showing.Store(&off)
	return l
}

// Showing returns the pattern the LED shows. Safe for concurrent use.
func (l *Loop) Showing() hw.Pattern { return *l.showing.Load() }

// Name is the loop's name as a daemon component.
func (l *Loop) Name() string { return "led" }

// Run shows the daemon's state until ctx is done, then turns the LED off.
// A LED that cannot be driven is logged, never a reason to stop: the box
// serves mail without it; the loop tries again at each poll.
func (l *Loop) Run(ctx context.Context) error {
	poll := time.NewTicker(l.cfg.Poll)
	defer poll.Stop()
	// step times the blinking that the loop does itself; stopped while
	// the driver shows the pattern by itself.
	step := time.NewTimer(time.Hour)
	step.Stop()
	defer step.Stop()

	var (
		cur   hw.Pattern
		steps []hw.Step // the steps the loop blinks; nil when the driver shows cur
		i     int
		retry bool // the driver failed to show cur
	)
	for {
		if p := PatternOf(l.cfg.Source.LEDState()); p != cur || retry {
			changed := p != cur
			cur, steps, i = p, nil, 0
			step.Stop()
			shown, err := l.show(p, changed)
			retry = err != nil
			if err == nil && !shown && len(p.Steps()) > 0 {
				steps = p.Steps()
				l.set(steps[0].On)
				step.Reset(steps[0].For)
			}
		}
		select {
		case <-ctx.Done():
			step.Stop()
			l.show(hw.PatternOff, true)
			return nil
		case <-poll.C:
		case <-step.C:
			if steps == nil {
				continue
			}
			i = (i + 1) % len(steps)
			l.set(steps[i].On)
			step.Reset(steps[i].For)
		}
	}
}

// show asks the driver to show p and reports whether it does by itself;
// changed is false when it tries again after a failure, which it logs
// once.
func (l *Loop) show(p hw.Pattern, changed bool) (bool, error) {
	l.showing.Store(&p)
	if changed {
		l.cfg.Metrics.LEDPattern(string(p))
	}
	shown, err := l.cfg.Driver.Show(p)
	switch {
	case err != nil && changed:
		l.cfg.Logger.Warn("front LED: show pattern; trying again", "pattern", string(p), "err", err)
	case err != nil:
		l.cfg.Logger.Debug("front LED: show pattern", "pattern", string(p), "err", err)
	case changed:
		l.cfg.Logger.Info("front LED", "pattern", string(p))
	default:
		l.cfg.Logger.Info("front LED: shown at last", "pattern", string(p))
	}
	return shown, err
}

func (l *Loop) set(on bool) {
	if err := l.cfg.Driver.Set(on); err != nil {
		l.cfg.Logger.Debug("front LED: set", "on", on, "err", err)
	}
}
