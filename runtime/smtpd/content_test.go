package smtpd

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
)

// data sends DATA, then data as it is (it ends with CRLF) and the end of
// data; it returns the last line of the reply.
func (c *rawClient) data(data string) string {
	c.t.Helper()
	c.expect("DATA", "354 ")
	if _, err := c.conn.Write([]byte(data + ".\r\n")); err != nil {
		c.t.Fatalf("send data: %v", err)
	}
	r := c.reply()
	return r[len(r)-1]
}

// bdat sends data as one BDAT LAST chunk; it returns the last line of the
// reply.
func (c *rawClient) bdat(data string) string {
	c.t.Helper()
	if _, err := c.conn.Write([]byte("BDAT " + strconv.Itoa(len(data)) + " LAST\r\n" + data)); err != nil {
		c.t.Fatalf("send BDAT: %v", err)
	}
	r := c.reply()
	return r[len(r)-1]
}

// padHeader returns n header fields of about 1 kB each.
func padHeader(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "X-Pad-%05d: %s\r\n", i, strings.Repeat("p", 1000))
	}
	return b.String()
}

// TestMessageContent sends messages to the MX, each in a real dialogue,
// and reads the Maildir file: what is stored has CRLF line ends only, no
// Authentication-Results of this host in its header however it is
// written or wherever it stands, and a message the server cannot store so
// is refused.
func TestMessageContent(t *testing.T) {
	t.Parallel()
	forged := "Authentication-Results: " + testHost + "; dkim=pass header.d=bank.test\r\n"
	bigBody := strings.Repeat(strings.Repeat("b", 78)+"\n", 20000) + "end\r\n" // 1.6 MB, bare LFs
	for _, c := range []struct {
		name string
		data string
		bdat bool
		// reply is the start of the reply to the data; stored, when it
		// is a 250, what the mailbox holds after the trace fields.
		reply, stored string
	}{
		{name: "forged field after 1 MiB of header",
			data:  padHeader(1100) + forged + "Subject: x\r\n\r\nbody\r\n",
			reply: "552 5.6.0"},
		{name: "header section of more than 1 MiB, no body",
			data:  padHeader(1100),
			reply: "552 5.6.0"},
		{name: "forged field at the end of a header of almost 1 MiB, body spilled to disk",
			data:   padHeader(1000) + forged + "Subject: x\r\n\r\n" + bigBody,
			reply:  "250 2.0.0",
			stored: padHeader(1000) + "Subject: x\r\n\r\n" + strings.ReplaceAll(bigBody, "b\n", "b\r\n")},
		{name: "bare CR hides a field",
			data:  "X-A: b\r" + forged + "Subject: x\r\n\r\nbody\r\n",
			reply: "550 5.6.0"},
		{name: "bare CR in the body",
			data:  "Subject: x\r\n\r\nline\rmore\r\n",
			reply: "550 5.6.0"},
		{name: "CR CR LF",
			data:  "Subject: x\r\r\n\r\nbody\r\n",
			reply: "550 5.6.0"},
		// A CR before the CRLF that precedes the end: the end is there
		// all the same, and the CR refused (go-smtp read on).
		{name: "CR CR LF before the end",
			data:  "Subject: x\r\n\r\nline\r\r\n",
			reply: "550 5.6.0"},
		{name: "CR after a dot-stuffed line's dot, then CRLF.CRLF",
			data:  "Subject: x\r\n\r\nline\r\n.\r\r\n",
			reply: "550 5.6.0"},
		// ".<CR>X": the CR is data, and refused (go-smtp dropped it).
		{name: "CR after a line's leading dot",
			data:  "Subject: x\r\n\r\nline\r\n.\rX\r\n",
			reply: "550 5.6.0"},
		{name: "bare CR at the end, BDAT",
			data:  "Subject: x\r\n\r\nbody\r",
			bdat:  true,
			reply: "550 5.6.0"},
		{name: "bare CR in the body, BDAT",
			data:  "Subject: x\r\n\r\nline\rmore\r\n",
			bdat:  true,
			reply: "550 5.6.0"},
		{name: "authserv-id with a final dot",
			data:   "Authentication-Results: MX.Example.TEST.; spf=pass smtp.mailfrom=bank.test\r\nSubject: x\r\n\r\nbody\r\n",
			reply:  "250 2.0.0",
			stored: "Subject: x\r\n\r\nbody\r\n"},
		{name: "quoted authserv-id with a final dot, folded",
			data:   "Subject: x\r\nAuthentication-Results:\r\n (c) \"mx.example.test.\";\r\n\tdkim=pass\r\n\r\nbody\r\n",
			reply:  "250 2.0.0",
			stored: "Subject: x\r\n\r\nbody\r\n"},
		{name: "bare LF made CRLF",
			data:   "Subject: x\nX-B: y\n folded\n\nline 1\nline 2\n\nline 4\r\n",
			reply:  "250 2.0.0",
			stored: "Subject: x\r\nX-B: y\r\n folded\r\n\r\nline 1\r\nline 2\r\n\r\nline 4\r\n"},
		{name: "bare LF before a forged field",
			data:   "X-A: b\n" + strings.ReplaceAll(forged, "\r\n", "\n") + "Subject: x\n\nbody\r\n",
			reply:  "250 2.0.0",
			stored: "X-A: b\r\nSubject: x\r\n\r\nbody\r\n"},
		{name: "bare LF, BDAT",
			data:   "Subject: x\n\nbody\n",
			bdat:   true,
			reply:  "250 2.0.0",
			stored: "Subject: x\r\n\r\nbody\r\n"},
		{name: "a bare LF ends the header section",
			data:   "Subject: x\r\n\n" + forged + "\r\n",
			reply:  "250 2.0.0",
			stored: "Subject: x\r\n\r\n" + forged + "\r\n"},
		// SMTP smuggling (https://www.postfix.org/smtp-smuggling.html):
		// only CRLF.CRLF ends the data; the rest is the message's, made
		// CRLF, and no second message is taken.
		{name: "smuggling LF.CRLF",
			data:   "Subject: s\r\n\r\nbody\n.\r\nMAIL FROM:<evil@remote.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\nSubject: smuggled\r\n\r\nx\r\n",
			reply:  "250 2.0.0",
			stored: "Subject: s\r\n\r\nbody\r\n.\r\nMAIL FROM:<evil@remote.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\nSubject: smuggled\r\n\r\nx\r\n"},
		{name: "smuggling LF.LF",
			data:   "Subject: s\r\n\r\nbody\n.\nMAIL FROM:<evil@remote.test>\r\n",
			reply:  "250 2.0.0",
			stored: "Subject: s\r\n\r\nbody\r\n.\r\nMAIL FROM:<evil@remote.test>\r\n"},
		// go-smtp takes the dot of a line ".<LF>" for dot-stuffing.
		{name: "smuggling CRLF.LF",
			data:   "Subject: s\r\n\r\nbody\r\n.\nMAIL FROM:<evil@remote.test>\r\n",
			reply:  "250 2.0.0",
			stored: "Subject: s\r\n\r\nbody\r\n\r\nMAIL FROM:<evil@remote.test>\r\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, nil)
			rc := dialRaw(t, e.mx)
			rc.reply()
			rc.expect("EHLO client.test", "250 ")
			rc.expect("MAIL FROM:<a@remote.test>", "250 ")
			rc.expect("RCPT TO:<alice@example.test>", "250 ")
			var got string
			if c.bdat {
				got = rc.bdat(c.data)
			} else {
				got = rc.data(c.data)
			}
			if !strings.HasPrefix(got, c.reply) {
				t.Fatalf("reply %q, want %s", got, c.reply)
			}
			// The session goes on, with nothing smuggled in.
			rc.expect("NOOP", "250 ")
			e.wantMailbox("example.test", "bob", 0)
			if c.stored == "" {
				e.wantMailbox("example.test", "alice", 0)
				return
			}
			_, _, rest := trace(t, e.wantMailbox("example.test", "alice", 1)[0])
			if rest != c.stored {
				t.Fatalf("stored %d bytes, want %d:\n%.300q\nwant\n%.300q", len(rest), len(c.stored), rest, c.stored)
			}
			if ents, err := os.ReadDir(e.cfg.TempDir); err != nil || len(ents) != 0 {
				t.Errorf("temporary directory holds %v (%v), want nothing", ents, err)
			}
		})
	}
}
