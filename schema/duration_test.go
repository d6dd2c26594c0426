package schema

import (
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		err  string
	}{
		{"0", 0, ""},
		{"0s", 0, ""},
		{"1s", time.Second, ""},
		{"5m", 5 * time.Minute, ""},
		{"1h", time.Hour, ""},
		{"5d", 5 * 24 * time.Hour, ""},
		{"1h30m", 90 * time.Minute, ""},
		{"1d12h", 36 * time.Hour, ""},
		{"90s", 90 * time.Second, ""},
		{"007m", 7 * time.Minute, ""},
		{"", 0, "empty"},
		{"5", 0, "expected a duration"},
		{"m", 0, "expected a duration"},
		{"5ms", 0, "expected a duration"},
		{"1.5h", 0, "expected a duration"},
		{"-1h", 0, "expected a duration"},
		{" 1h", 0, "expected a duration"},
		{"1h ", 0, "expected a duration"},
		{"1H", 0, "expected a duration"},
		{"00", 0, "expected a duration"},
		{"106751d", 106751 * 24 * time.Hour, ""},
		{"106752d", 0, "too long"},
		{"9223372036s", 9223372036 * time.Second, ""},
		{"9223372037s", 0, "too long"},
		{"99999999999999999999s", 0, "too long"},
		{"106751d23h47m16s", 106751*24*time.Hour + 23*time.Hour + 47*time.Minute + 16*time.Second, ""},
		{"106751d23h47m17s", 0, "too long"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseDuration(tt.in)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("ParseDuration(%q) = %v, %v; want an error with %q", tt.in, got, err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseDuration(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
			}
			if back, err := ParseDuration(FormatDuration(got)); err != nil || back != got {
				t.Errorf("FormatDuration(%v) = %q, which reads back as %v, %v", got, FormatDuration(got), back, err)
			}
		})
	}
}

func TestFormatDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "0", time.Second: "1s", 90 * time.Second: "1m30s", 5 * 24 * time.Hour: "5d",
		26*time.Hour + time.Second: "1d2h1s", 1500 * time.Millisecond: "1s",
	} {
		if got := FormatDuration(d); got != want {
			t.Errorf("FormatDuration(%v) = %q, want %q", d, got, want)
		}
	}
}

// TestDurationPatternInSchema checks that the CUE schema's #Duration is
// DurationPattern, so that the schema and ParseDuration accept one
// language (FuzzParseDuration checks the parser against the pattern).
func TestDurationPatternInSchema(t *testing.T) {
	m := regexp.MustCompile(`(?m)^#Duration:\s*=~"(.*)"$`).FindSubmatch(Schema())
	if m == nil {
		t.Fatal("no #Duration in mailfountain.cue")
	}
	if got := strings.ReplaceAll(string(m[1]), `\\`, `\`); got != DurationPattern {
		t.Errorf("mailfountain.cue's #Duration is %q, DurationPattern %q", got, DurationPattern)
	}
}

// FuzzParseDuration checks that ParseDuration accepts exactly the
// strings DurationPattern matches (those too long for a time.Duration
// aside), and that what it reads formats back to the same duration.
func FuzzParseDuration(f *testing.F) {
	for _, s := range []string{"0", "5m", "1h30m", "5d", "", "5", "1.5h", "0s0m", "9223372037s", "1d1d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDuration(s)
		matches := durationRE.MatchString(s)
		switch {
		case err == nil && !matches:
			t.Fatalf("ParseDuration(%q) = %v, but the pattern refuses it", s, d)
		case err != nil && matches && !strings.Contains(err.Error(), "too long"):
			t.Fatalf("ParseDuration(%q): %v, but the pattern accepts it", s, err)
		case err == nil && d < 0:
			t.Fatalf("ParseDuration(%q) = %v < 0", s, d)
		case err == nil:
			if back, err := ParseDuration(FormatDuration(d)); err != nil || back != d {
				t.Fatalf("ParseDuration(%q) = %v; formatted %q reads back as %v, %v", s, d, FormatDuration(d), back, err)
			}
		}
	})
}
