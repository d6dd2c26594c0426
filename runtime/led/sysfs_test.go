package led

import (
	"os"
	"path/filepath"
	"testing"
	"testing/synctest"
	"time"

	"mailfountain.dev/mailfountain/hw"
)

// sysfsLED lays out a directory like /sys/class/leds/NAME: brightness,
// max_brightness, and trigger listing the kernel's triggers; delay_on and
// delay_off exist when the timer trigger does (the kernel makes them when
// it is selected; here they are there from the start).
func sysfsLED(t *testing.T, triggers string, timerFiles bool) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "mailfountain:green:status")
	files := map[string]string{"brightness": "0\n", "max_brightness": "255\n", "trigger": triggers + "\n"}
	if timerFiles {
		files["delay_on"], files["delay_off"] = "500\n", "500\n"
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, v := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func attr(t *testing.T, dir, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestSysfsShow(t *testing.T) {
	tests := []struct {
		name       string
		triggers   string
		timerFiles bool
		p          hw.Pattern
		shown      bool
		want       map[string]string
	}{
		{"steady", "[none] timer heartbeat", true, hw.PatternSteady, true,
			map[string]string{"trigger": "none", "brightness": "255"}},
		{"off", "none [timer] heartbeat", true, hw.PatternOff, true,
			map[string]string{"trigger": "none", "brightness": "0"}},
		{"error by the kernel's timer", "[none] timer heartbeat", true, hw.PatternError, true,
			map[string]string{"trigger": "timer", "delay_on": "125", "delay_off": "125"}},
		{"error, the timer trigger already selected", "none [timer] heartbeat", true, hw.PatternError, true,
			map[string]string{"trigger": "timer", "delay_on": "125", "delay_off": "125"}},
		{"error without the timer trigger: blinked by the loop", "[none] heartbeat", false, hw.PatternError, false,
			map[string]string{"trigger": "none"}},
		{"setup is no regular blink: blinked by the loop", "[none] timer", true, hw.PatternSetup, false,
			map[string]string{"trigger": "none"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := sysfsLED(t, tt.triggers, tt.timerFiles)
			s, err := NewSysfs(dir)
			if err != nil {
				t.Fatal(err)
			}
			shown, err := s.Show(tt.p)
			if err != nil || shown != tt.shown {
				t.Fatalf("Show(%s) = %v, %v; want %v", tt.p, shown, err, tt.shown)
			}
			for name, want := range tt.want {
				if got := attr(t, dir, name); got != want {
					t.Errorf("%s = %q, want %q", name, got, want)
				}
			}
		})
	}
}

func TestSysfsErrors(t *testing.T) {
	if _, err := NewSysfs(filepath.Join(t.TempDir(), "nosuchled")); err == nil {
		t.Error("NewSysfs of a missing LED: no error")
	}
	// The trigger listed, but no delay attributes: a write never creates
	// an attribute.
	dir := sysfsLED(t, "[none] timer", false)
	s, err := NewSysfs(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Show(hw.PatternError); err == nil {
		t.Error("Show with no delay_on: no error")
	}
	if _, err := os.Stat(filepath.Join(dir, "delay_on")); !os.IsNotExist(err) {
		t.Errorf("delay_on created: %v", err)
	}
}

// TestSysfsBlinkedByTheLoop: setup on a sysfs LED is blinked through its
// brightness, and the LED is dark once the loop stops.
func TestSysfsBlinkedByTheLoop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := sysfsLED(t, "[none] timer", true)
		s, err := NewSysfs(dir)
		if err != nil {
			t.Fatal(err)
		}
		_, stop := runLoop(t, Config{Driver: s, Source: &source{s: State{Setup: true}}})
		want := []struct {
			at         time.Duration
			brightness string
		}{
			{100 * time.Millisecond, "255"}, // first blink
			{400 * time.Millisecond, "0"},
			{700 * time.Millisecond, "255"}, // second
			{2 * time.Second, "0"},          // the pause
			{4900 * time.Millisecond, "0"},
			{5100 * time.Millisecond, "255"}, // the next period
		}
		start := time.Now()
		for _, w := range want {
			time.Sleep(w.at - time.Since(start))
			synctest.Wait()
			if got := attr(t, dir, "brightness"); got != w.brightness {
				t.Errorf("at %v: brightness %q, want %q", w.at, got, w.brightness)
			}
		}
		stop()
		if got := attr(t, dir, "brightness"); got != "0" {
			t.Errorf("after stop: brightness %q, want 0", got)
		}
		if got := attr(t, dir, "trigger"); got != "none" {
			t.Errorf("trigger %q, want none", got)
		}
	})
}
