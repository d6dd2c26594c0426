package schema

import (
	"fmt"
	"regexp"
	"time"
)

// DurationPattern is the language of the document's durations, as the
// CUE schema's #Duration writes it: "0", or numbers each followed by its
// unit, s, m, h or d (a day is 24 hours): "5m", "1h30m", "5d". Go's
// time.ParseDuration knows no days, hence ParseDuration. The schema's
// test checks that mailfountain.cue holds this very pattern.
const DurationPattern = `^(0|([0-9]+[smhd])+)$`

var durationRE = regexp.MustCompile(DurationPattern)

// ParseDuration reads a duration of the document (DurationPattern). It
// refuses what the pattern refuses, and a duration too long for a
// time.Duration (about 290 years).
func ParseDuration(s string) (time.Duration, error) {
	if s == "0" {
		return 0, nil
	}
	if s == "" {
		return 0, fmt.Errorf("expected a duration such as 5m, 1h30m or 5d; got an empty string")
	}
	var total time.Duration
	for i := 0; i < len(s); {
		j := i
		var n time.Duration
		for ; j < len(s) && s[j] >= '0' && s[j] <= '9'; j++ {
			d := time.Duration(s[j] - '0')
			if n > (maxDuration-d)/10 {
				return 0, fmt.Errorf("duration %q is too long", s)
			}
			n = n*10 + d
		}
		if j == i || j == len(s) {
			return 0, fmt.Errorf("expected a duration such as 5m, 1h30m or 5d; got %q", s)
		}
		var unit time.Duration
		switch s[j] {
		case 's':
			unit = time.Second
		case 'm':
			unit = time.Minute
		case 'h':
			unit = time.Hour
		case 'd':
			unit = 24 * time.Hour
		default:
			return 0, fmt.Errorf("expected a duration such as 5m, 1h30m or 5d (units s, m, h, d); got %q", s)
		}
		if n > maxDuration/unit || total > maxDuration-n*unit {
			return 0, fmt.Errorf("duration %q is too long", s)
		}
		total += n * unit
		i = j + 1
	}
	return total, nil
}

const maxDuration = time.Duration(1<<63 - 1)

// FormatDuration writes d in the document's language, the largest units
// first ("1d2h", "90s" stays "1m30s"); "0" for zero. Sub-second parts,
// which the document cannot express, are dropped.
func FormatDuration(d time.Duration) string {
	if d < time.Second {
		return "0"
	}
	var out []byte
	for _, u := range []struct {
		c byte
		d time.Duration
	}{{'d', 24 * time.Hour}, {'h', time.Hour}, {'m', time.Minute}, {'s', time.Second}} {
		if n := d / u.d; n > 0 {
			out = fmt.Appendf(out, "%d%c", n, u.c)
			d -= n * u.d
		}
	}
	return string(out)
}
