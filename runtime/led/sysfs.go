package led

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"mailfountain.dev/mailfountain/hw"
)

// Sysfs is a LED of the kernel's LED class, the directory
// /sys/class/leds/NAME: its brightness (0 to max_brightness) and its
// trigger. A regular blink (hw.Pattern.Regular) is left to the kernel's
// "timer" trigger when the kernel has it (delay_on, delay_off in ms), so
// that the LED keeps blinking even if the daemon is starved; other
// patterns are blinked by the loop through brightness, trigger "none".
type Sysfs struct {
	dir   string
	max   int  // max_brightness
	timer bool // the "timer" trigger is available
}

// NewSysfs opens the LED of the directory dir.
func NewSysfs(dir string) (*Sysfs, error) {
	s := &Sysfs{dir: dir, max: 1}
	if _, err := os.Stat(filepath.Join(dir, "brightness")); err != nil {
		return nil, fmt.Errorf("open LED %s: %w", dir, err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "max_brightness")); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && n > 0 {
			s.max = n
		}
	}
	// trigger lists the kernel's triggers, the current one in brackets:
	// "none [timer] heartbeat".
	if b, err := os.ReadFile(filepath.Join(dir, "trigger")); err == nil {
		for _, t := range bytes.Fields(b) {
			if string(bytes.Trim(t, "[]")) == "timer" {
				s.timer = true
			}
		}
	}
	return s, nil
}

// Show shows steady and off with the brightness, a regular blink with
// the timer trigger if the kernel has it; it leaves the other blinking
// patterns to the loop.
func (s *Sysfs) Show(p hw.Pattern) (bool, error) {
	if on, off, ok := p.Regular(); ok && s.timer {
		// delay_on and delay_off appear once the trigger is set.
		if err := s.write("trigger", "timer"); err != nil {
			return false, err
		}
		if err := s.write("delay_on", strconv.FormatInt(on.Milliseconds(), 10)); err != nil {
			return false, err
		}
		return true, s.write("delay_off", strconv.FormatInt(off.Milliseconds(), 10))
	}
	// Any other trigger would fight the loop over the brightness.
	if err := s.write("trigger", "none"); err != nil {
		return false, err
	}
	if len(p.Steps()) > 0 {
		return false, nil
	}
	return true, s.Set(p.Lit())
}

// Set switches the LED on (max_brightness) or off.
func (s *Sysfs) Set(on bool) error {
	v := 0
	if on {
		v = s.max
	}
	return s.write("brightness", strconv.Itoa(v))
}

// write writes one attribute; it never creates one (sysfs has no such
// thing: a missing attribute is an error).
func (s *Sysfs) write(name, value string) error {
	path := filepath.Join(s.dir, name)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return fmt.Errorf("LED: %w", err)
	}
	_, err = f.WriteString(value)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("LED: write %s: %w", path, err)
	}
	return nil
}
