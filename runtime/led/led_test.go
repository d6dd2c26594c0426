package led

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"mailfountain.dev/mailfountain/hw"
	"mailfountain.dev/mailfountain/reconcilers"
)

func TestPatternOf(t *testing.T) {
	tests := []struct {
		name string
		s    State
		want hw.Pattern
	}{
		{"configured", State{}, hw.PatternSteady},
		{"setup", State{Setup: true}, hw.PatternSetup},
		{"failed", State{Failed: true}, hw.PatternError},
		{"failed in setup", State{Setup: true, Failed: true}, hw.PatternError},
	}
	for _, tt := range tests {
		if got := PatternOf(tt.s); got != tt.want {
			t.Errorf("%s: PatternOf(%+v) = %s, want %s", tt.name, tt.s, got, tt.want)
		}
	}
}

func TestFailed(t *testing.T) {
	st := func(states ...string) []reconcilers.Status {
		var out []reconcilers.Status
		for i, s := range states {
			out = append(out, reconcilers.Status{Reconciler: string(rune('a' + i)), State: s})
		}
		return out
	}
	tests := []struct {
		name     string
		statuses []reconcilers.Status
		want     bool
	}{
		{"none yet", nil, false},
		{"in sync", st(reconcilers.StateInSync, reconcilers.StateInSync), false},
		{"changed", st(reconcilers.StateChanged, reconcilers.StateInSync), false},
		{"skipped (no box hardware)", st("skipped", reconcilers.StateInSync), false},
		{"one failed, the others rolled back", st(reconcilers.StateRolledBack, reconcilers.StateFailed, reconcilers.StateNotApplied), true},
		{"rollback failed", st(reconcilers.StateRollbackFailed, reconcilers.StateFailed), true},
	}
	for _, tt := range tests {
		if got := Failed(tt.statuses); got != tt.want {
			t.Errorf("%s: Failed = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// source is a daemon whose state the test sets.
type source struct {
	mu sync.Mutex
	s  State
}

func (s *source) LEDState() State {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.s
}

func (s *source) set(st State) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.s = st
}

// recorder is a LED that cannot blink by itself: it records what it was
// asked, with the time since start (the bubble's fake clock).
type recorder struct {
	start time.Time
	mu    sync.Mutex
	shown []hw.Pattern
	sets  []setAt
}

type setAt struct {
	at time.Duration
	on bool
}

func (r *recorder) Show(p hw.Pattern) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.shown = append(r.shown, p)
	return len(p.Steps()) == 0, nil
}

func (r *recorder) Set(on bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sets = append(r.sets, setAt{time.Since(r.start), on})
	return nil
}

func (r *recorder) took() ([]hw.Pattern, []setAt) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]hw.Pattern(nil), r.shown...), append([]setAt(nil), r.sets...)
}

// runLoop runs a loop until the returned stop is called; stop waits for
// it to return.
func runLoop(t *testing.T, cfg Config) (l *Loop, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	l = New(cfg)
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	return l, func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
}

// TestSetupBlinksThreeTimesEveryFiveSeconds: on a LED that cannot blink
// by itself, the loop lights it 3 times in each 5 s period, then leaves
// it dark until the next period (manual 5); the fake clock of a synctest
// bubble makes the times exact.
func TestSetupBlinksThreeTimesEveryFiveSeconds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{start: time.Now()}
		src := &source{s: State{Setup: true}}
		_, stop := runLoop(t, Config{Driver: rec, Source: src})
		time.Sleep(3*hw.SetupPeriod - time.Millisecond)
		synctest.Wait()
		stop()

		shown, sets := rec.took()
		if len(shown) != 2 || shown[0] != hw.PatternSetup || shown[1] != hw.PatternOff {
			t.Errorf("patterns shown = %v, want [setup off]", shown)
		}
		for period := range 3 {
			base := time.Duration(period) * hw.SetupPeriod
			var ons []time.Duration
			var lastOff time.Duration
			for i, s := range sets {
				if s.at < base || s.at >= base+hw.SetupPeriod {
					continue
				}
				if i > 0 && sets[i-1].on == s.on {
					t.Errorf("period %d: set %v twice in a row at %v", period, s.on, s.at)
				}
				if s.on {
					ons = append(ons, s.at-base)
				} else {
					lastOff = s.at - base
				}
			}
			if len(ons) != hw.SetupBlinks {
				t.Fatalf("period %d: lit %d times (%v), want %d; sets %v", period, len(ons), ons, hw.SetupBlinks, sets)
			}
			// The blinks come first, then a pause of more than half the
			// period tells the groups apart.
			if ons[0] != 0 || lastOff > 2*time.Second || hw.SetupPeriod-lastOff < 2500*time.Millisecond {
				t.Errorf("period %d: lit at %v, dark from %v until the next period: want 3 blinks then a long pause", period, ons, lastOff)
			}
		}
	})
}

// TestErrorBlinksFast: the error pattern blinks without pause, several
// times a second.
func TestErrorBlinksFast(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{start: time.Now()}
		src := &source{s: State{Failed: true}}
		_, stop := runLoop(t, Config{Driver: rec, Source: src})
		time.Sleep(5*time.Second - time.Millisecond)
		synctest.Wait()
		stop()
		_, sets := rec.took()
		ons := 0
		for _, s := range sets {
			if s.on {
				ons++
			}
		}
		if ons != 20 {
			t.Errorf("lit %d times in 5 s, want 20 (4 a second)", ons)
		}
	})
}

// TestLoopFollowsTheState: the file LED says the pattern of the state as
// it changes, and off once the loop stops; Showing says the same.
func TestLoopFollowsTheState(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "led")
		src := &source{s: State{Setup: true}}
		m := &patterns{}
		l, stop := runLoop(t, Config{Driver: NewFile(path), Source: src, Metrics: m})
		check := func(want hw.Pattern) {
			t.Helper()
			time.Sleep(DefaultPoll)
			synctest.Wait()
			b, err := os.ReadFile(path)
			if err != nil || string(b) != string(want)+"\n" {
				t.Errorf("LED file = %q, %v; want %q", b, err, want+"\n")
			}
			if got := l.Showing(); got != want {
				t.Errorf("Showing = %s, want %s", got, want)
			}
		}
		check(hw.PatternSetup)
		src.set(State{})
		check(hw.PatternSteady)
		src.set(State{Failed: true})
		check(hw.PatternError)
		src.set(State{})
		check(hw.PatternSteady)
		stop()
		if b, _ := os.ReadFile(path); string(b) != "off\n" {
			t.Errorf("LED file after stop = %q, want off", b)
		}
		if got := l.Showing(); got != hw.PatternOff {
			t.Errorf("Showing after stop = %s", got)
		}
		if got := strings.Join(m.took(), " "); got != "setup steady error steady off" {
			t.Errorf("metrics heard %q", got)
		}
	})
}

type patterns struct {
	mu sync.Mutex
	ps []string
}

func (p *patterns) LEDPattern(s string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.ps = append(p.ps, s)
}

func (p *patterns) took() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.ps...)
}

// flaky is a LED whose first shows fail.
type flaky struct {
	mu    sync.Mutex
	fails int
	shown []hw.Pattern
}

func (f *flaky) Show(p hw.Pattern) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fails > 0 {
		f.fails--
		return false, errors.New("write brightness: device busy")
	}
	f.shown = append(f.shown, p)
	return true, nil
}

func (f *flaky) Set(bool) error { return nil }

// TestLoopTriesAgain: a pattern the LED failed to show is shown at a
// later poll, without a change of state.
func TestLoopTriesAgain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &flaky{fails: 2}
		_, stop := runLoop(t, Config{Driver: f, Source: &source{s: State{Failed: true}}})
		time.Sleep(3 * DefaultPoll)
		synctest.Wait()
		f.mu.Lock()
		got := slices.Clone(f.shown)
		f.mu.Unlock()
		if !slices.Equal(got, []hw.Pattern{hw.PatternError}) {
			t.Errorf("shown %v after two failures, want [error]", got)
		}
		stop()
	})
}
