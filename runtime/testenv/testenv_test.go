package testenv

import (
	"strings"
	"testing"
)

// recorder is a testing.TB that records how the test would stop.
type recorder struct {
	testing.TB
	fatal, skip string
}

func (r *recorder) Helper()                           {}
func (r *recorder) Fatalf(format string, args ...any) { r.fatal = format }
func (r *recorder) Skip(args ...any)                  { r.skip = args[0].(string) }

func TestNeedTool(t *testing.T) {
	for _, c := range []struct {
		name, ci    string
		path        bool
		fatal, skip bool
	}{
		{"go", "", true, false, false},
		{"go", "true", true, false, false},
		{"no-such-tool-mf", "", false, false, true},
		{"no-such-tool-mf", "false", false, false, true},
		{"no-such-tool-mf", "true", false, true, false},
	} {
		t.Run(c.name+" CI="+c.ci, func(t *testing.T) {
			t.Setenv("CI", c.ci)
			t.Setenv("PATH", "/usr/local/go/bin:/usr/bin:/bin")
			r := &recorder{TB: t}
			p := NeedTool(r, c.name)
			if (p != "") != c.path || (r.fatal != "") != c.fatal || (r.skip != "") != c.skip {
				t.Errorf("path %q, fatal %q, skip %q; want path %v, fatal %v, skip %v", p, r.fatal, r.skip, c.path, c.fatal, c.skip)
			}
			if c.skip && !strings.Contains(r.skip, "no-such-tool-mf is not installed") {
				t.Errorf("skip message %q does not name the tool", r.skip)
			}
		})
	}
}
