package hw

import "time"

// Pattern is what the box's front LED shows (manual 5).
type Pattern string

// The LED's patterns. PatternNone is not one the LED shows: it is the
// status of a machine without box hardware, whose LED nothing drives.
const (
	// PatternOff: the daemon is stopped.
	PatternOff Pattern = "off"
	// PatternSetup: the box is not configured yet, before the first-boot
	// wizard has finished: 3 blinks every 5 seconds (manual 5).
	PatternSetup Pattern = "setup"
	// PatternSteady: the box runs its applied document: steady on.
	PatternSteady Pattern = "steady"
	// PatternError: the last apply or resync had a reconciler that
	// failed: fast continuous blinking, unlike setup's groups of three.
	PatternError Pattern = "error"
	// PatternNone: no LED is driven (no box hardware).
	PatternNone Pattern = "none"
)

// Step is one stretch of a blinking pattern: the LED on or off for a
// while.
type Step struct {
	On  bool
	For time.Duration
}

// The timings of the blinking patterns. Setup's three blinks take 1.5 s
// and the LED stays dark for the rest of the 5 s period, so that the
// groups of three are told apart; error blinks 4 times a second, too fast
// to be counted, so that it is not mistaken for setup.
const (
	SetupPeriod = 5 * time.Second
	SetupBlinks = 3
	setupOn     = 300 * time.Millisecond
	setupOff    = 300 * time.Millisecond
	errorOn     = 125 * time.Millisecond
	errorOff    = 125 * time.Millisecond
)

// Steps returns one period of a blinking pattern, repeated for as long as
// the LED shows it; nil for a pattern that does not blink (steady, off,
// none), whose LED is Lit or not.
func (p Pattern) Steps() []Step {
	switch p {
	case PatternSetup:
		var s []Step
		for range SetupBlinks {
			s = append(s, Step{On: true, For: setupOn}, Step{On: false, For: setupOff})
		}
		// The last blink's dark time stretches to the end of the period.
		s[len(s)-1].For = SetupPeriod - SetupBlinks*setupOn - (SetupBlinks-1)*setupOff
		return s
	case PatternError:
		return []Step{{On: true, For: errorOn}, {On: false, For: errorOff}}
	}
	return nil
}

// Lit reports whether a pattern that does not blink lights the LED.
func (p Pattern) Lit() bool { return p == PatternSteady }

// Regular reports whether a blinking pattern is a plain on/off cycle, as
// the kernel's "timer" LED trigger blinks (delay_on, delay_off).
func (p Pattern) Regular() (on, off time.Duration, ok bool) {
	s := p.Steps()
	if len(s) != 2 || !s[0].On || s[1].On {
		return 0, 0, false
	}
	return s[0].For, s[1].For, true
}

// Describe is the pattern in words, for mfapply status.
func (p Pattern) Describe() string {
	switch p {
	case PatternOff:
		return "off (the daemon is stopped)"
	case PatternSetup:
		return "setup: blinks 3 times every 5 seconds (not configured yet: no administrator password)"
	case PatternSteady:
		return "steady (normal)"
	case PatternError:
		return "error: blinks fast (a reconciler failed)"
	case PatternNone:
		return "none (no box hardware)"
	}
	return string(p)
}
