package imapd

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"mailfountain.dev/mailfountain/runtime/mailconf"
)

// TestAppendLimitFollowsSettings: APPENDLIMIT, STATUS APPENDLIMIT and the
// APPEND refusal are the settings' MaxMessageBytes (SMTP's SIZE), read at
// each command, so that a new value applies to open sessions too.
func TestAppendLimitFollowsSettings(t *testing.T) {
	e := newEnv(t)
	e.start()
	r := e.loginRaw()
	limitNow := func() (caps, status string) {
		lines, _ := r.cmd("CAPABILITY")
		for _, c := range strings.Fields(strings.Join(lines, " ")) {
			if v, ok := strings.CutPrefix(c, "APPENDLIMIT="); ok {
				caps = v
			}
		}
		lines, _ = r.cmd("STATUS INBOX (APPENDLIMIT)")
		return caps, strings.Join(lines, " ")
	}
	def := strconv.Itoa(mailconf.DefaultMaxMessageBytes)
	if caps, status := limitNow(); caps != def || !strings.Contains(status, "APPENDLIMIT "+def) {
		t.Errorf("default: CAPABILITY APPENDLIMIT=%s, %s; want %s", caps, status, def)
	}

	e.setMessageLimit(4000)
	if caps, status := limitNow(); caps != "4000" || !strings.Contains(status, "APPENDLIMIT 4000") {
		t.Errorf("after the change: CAPABILITY APPENDLIMIT=%s, %s; want 4000", caps, status)
	}
	msg := testMessage(1, "Brouillon", strings.Repeat("a", 4000))
	if _, st := r.cmd("APPEND Drafts {%d}", len(msg)); !strings.HasPrefix(st, "NO [TOOBIG]") {
		t.Errorf("APPEND of %d bytes over a limit of 4000: %q", len(msg), st)
	}

	e.setMessageLimit(8000)
	fmt.Fprintf(r.conn, "b APPEND Drafts {%d}\r\n", len(msg))
	if l := r.line(); !strings.HasPrefix(l, "+") {
		t.Fatalf("APPEND of %d bytes under a limit of 8000: %q", len(msg), l)
	}
	fmt.Fprintf(r.conn, "%s\r\n", msg)
	if _, st := r.answer("b", 5*time.Second); !strings.HasPrefix(st, "OK") {
		t.Errorf("APPEND: %q", st)
	}
}
