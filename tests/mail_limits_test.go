package tests

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestMailOneMessageLimit: SMTP's SIZE and IMAP's APPENDLIMIT are the
// document's smtp.max_message_mb, so that a draft saved over IMAP can be
// sent; a new value applies to both without a restart, to an IMAP
// session already open too.
func TestMailOneMessageLimit(t *testing.T) {
	t.Parallel()
	needTool(t, "python3")
	d := startMail(t, stateOpts{}, "smtp", "imaps")
	p := startPy(t, d)
	p.imapLogin("open", "imaps", addr("rene.ricard"), renePassword)

	limits := func() (size, appendLimit string) {
		t.Helper()
		p.connect("s", "smtp")
		if code, msg := p.call("s", "ehlo", "mx.sender.example").reply(); code != 250 {
			t.Fatalf("EHLO: %d %s", code, msg)
		}
		var features map[string]string
		json.Unmarshal(p.attr("s", "esmtp_features").Value, &features)
		p.drop("s")
		_, caps := p.must("open", "capability").imap()
		for _, c := range strings.Fields(strings.Join(caps, " ")) {
			if v, ok := strings.CutPrefix(c, "APPENDLIMIT="); ok {
				appendLimit = v
			}
		}
		return features["size"], appendLimit
	}
	if size, al := limits(); size != "26214400" || al != size {
		t.Errorf("default: SIZE %q, APPENDLIMIT %q; want both 26214400 (25 MB)", size, al)
	}
	d.setState(t, stateOpts{MaxMessageMB: 10}, 2)
	if size, al := limits(); size != "10485760" || al != size {
		t.Errorf("max_message_mb 10: SIZE %q, APPENDLIMIT %q; want both 10485760", size, al)
	}
	p.logout("open")
}
