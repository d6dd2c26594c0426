package hw

import (
	"testing"
	"time"
)

func TestPatternSteps(t *testing.T) {
	tests := []struct {
		p       Pattern
		ons     int
		period  time.Duration
		regular bool
		lit     bool
	}{
		{PatternSetup, SetupBlinks, SetupPeriod, false, false},
		{PatternError, 1, 250 * time.Millisecond, true, false},
		{PatternSteady, 0, 0, false, true},
		{PatternOff, 0, 0, false, false},
		{PatternNone, 0, 0, false, false},
	}
	for _, tt := range tests {
		steps := tt.p.Steps()
		ons, period := 0, time.Duration(0)
		for i, s := range steps {
			if s.On != (i%2 == 0) || s.For <= 0 {
				t.Errorf("%s: step %d = %+v: want on and off in turn, from on, each for a while", tt.p, i, s)
			}
			if s.On {
				ons++
			}
			period += s.For
		}
		if ons != tt.ons || period != tt.period {
			t.Errorf("%s: %d blinks in %v, want %d in %v", tt.p, ons, period, tt.ons, tt.period)
		}
		if _, _, ok := tt.p.Regular(); ok != tt.regular {
			t.Errorf("%s: Regular = %v", tt.p, ok)
		}
		if tt.p.Lit() != tt.lit {
			t.Errorf("%s: Lit = %v", tt.p, tt.p.Lit())
		}
		if tt.p.Describe() == string(tt.p) {
			t.Errorf("%s: no words", tt.p)
		}
	}
	// Setup's blinks come first, the pause after: the groups of three
	// stand apart.
	s := PatternSetup.Steps()
	if last := s[len(s)-1]; last.On || last.For < SetupPeriod/2 {
		t.Errorf("setup ends with %+v: want a pause of at least half the period", last)
	}
}
