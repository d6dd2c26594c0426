package smtpout

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/netip"
	"strings"
	"testing"
)

func TestReadReply(t *testing.T) {
	cases := []struct {
		in       string
		code     int
		enhanced string
		raw      string
		err      bool
	}{
		{in: "250 2.1.0 Ok\r\n", code: 250, enhanced: "2.1.0", raw: "250 2.1.0 Ok"},
		{in: "220\r\n", code: 220, raw: "220"},
		{in: "250-mx.example\r\n250-PIPELINING\r\n250 SIZE 100\r\n", code: 250, raw: "250-mx.example\n250-PIPELINING\n250 SIZE 100"},
		{in: "550-5.1.1 no such\n550 5.1.1 user\n", code: 550, enhanced: "5.1.1", raw: "550-5.1.1 no such\n550 5.1.1 user"},
		{in: "451 5.1.1 class disagrees\r\n", code: 451, raw: "451 5.1.1 class disagrees"},
		{in: "354 3.0.0 not enhanced\r\n", code: 354, raw: "354 3.0.0 not enhanced"},
		{in: "554 5.7.1\r\n", code: 554, enhanced: "5.7.1", raw: "554 5.7.1"},
		{in: "550 5.1234.1 too long\r\n", code: 550, raw: "550 5.1234.1 too long"},
		{in: "250 bell\x07 and \xff\r\n", code: 250, raw: "250 bell? and \uFFFD"},
		{in: "250-one\r\n251 two\r\n", err: true},
		{in: "250-one\r\n", err: true}, // the connection ends within the reply
		{in: "25\r\n", err: true},
		{in: "hello\r\n", err: true},
		{in: "650 no such class\r\n", err: true},
		{in: "250_x\r\n", err: true},
		{in: "250 " + strings.Repeat("x", maxReplyLine) + "\r\n", err: true},
		{in: strings.Repeat("250-x\r\n", maxReplyLines+1) + "250 x\r\n", err: true},
	}
	for _, c := range cases {
		rp, err := readReply(bufio.NewReaderSize(strings.NewReader(c.in), 512))
		if (err != nil) != c.err {
			t.Errorf("%q: error %v, want error %v", c.in, err, c.err)
			continue
		}
		if c.err {
			continue
		}
		if rp.Code != c.code || rp.Enhanced != c.enhanced || rp.Raw != c.raw {
			t.Errorf("%q: got %d %q %q, want %d %q %q", c.in, rp.Code, rp.Enhanced, rp.Raw, c.code, c.enhanced, c.raw)
		}
	}
}

func FuzzReadReply(f *testing.F) {
	for _, s := range []string{"250 2.1.0 Ok\r\n", "250-a\r\n250-PIPELINING\r\n250 SIZE 10\r\n", "550-5.1.1 x\n550 y\n", "4", "421\r\n", "250-\r\n250 \r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bufio.NewReaderSize(bytes.NewReader(in), 64)
		rp, err := readReply(r)
		if err != nil {
			if !errors.Is(err, errBadReply) && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		if rp.Code < 200 || rp.Code > 599 || len(rp.Lines) == 0 || len(rp.Lines) > maxReplyLines {
			t.Fatalf("bad reply %+v", rp)
		}
		lines := strings.Split(rp.Raw, "\n")
		if len(lines) != len(rp.Lines) {
			t.Fatalf("%d raw lines, %d texts", len(lines), len(rp.Lines))
		}
		for _, l := range lines {
			if strings.ContainsAny(l, "\r\x00") || len(l) > maxReplyLine*3 {
				t.Fatalf("raw line %q", l)
			}
		}
		if rp.Enhanced != "" && rp.Enhanced[0] != rp.Raw[0] {
			t.Fatalf("enhanced %q for %q", rp.Enhanced, rp.Raw)
		}
		// What was read is read again the same.
		again, err := readReply(bufio.NewReader(strings.NewReader(strings.ReplaceAll(rp.Raw, "\n", "\r\n") + "\r\n")))
		if err != nil || again.Raw != rp.Raw || again.Code != rp.Code || again.Enhanced != rp.Enhanced {
			t.Fatalf("re-read %q: %+v %v", rp.Raw, again, err)
		}
		_ = blockAnswer(rp, netip.MustParseAddr("192.0.2.7"))
	})
}

// TestBlockAnswer: real-world answers that refuse the box's address, and
// answers that refuse a recipient or a message, which must not count.
func TestBlockAnswer(t *testing.T) {
	local := netip.MustParseAddr("192.0.2.7")
	cases := []struct {
		reply   string
		blocked bool
	}{
		{"554 5.7.1 Service unavailable; Client host [192.0.2.7] blocked using zen.spamhaus.org; https://www.spamhaus.org/query/ip/192.0.2.7", true},
		{"550 5.7.1 Service unavailable; client [192.0.2.7] blocked using b.barracudacentral.org", true},
		{"550-5.7.1 [192.0.2.7] The IP you're using to send mail is not authorized to\n550-5.7.1 send email directly to our servers. Please use the SMTP relay at your\n550 5.7.1 service provider instead.", true},
		{"554 5.7.1 <unknown[192.0.2.7]>: Client host rejected: Access denied", true},
		{"550 5.7.606 Access denied, banned sending IP [192.0.2.7]. To request removal from this list please visit https://sender.office.com/", true},
		{"550 5.7.1 Mail from 192.0.2.7 refused by blackhole list", true},
		{"554 Your access to this mail system has been rejected due to the sending MTA's poor reputation.", true},
		{"550 5.7.1 Our system has detected that this message is likely unsolicited mail. To reduce the amount of spam sent to Gmail, this message has been blocked.", true},
		{"554 5.7.1 Rejected: 192.0.2.7 listed at bl.spamcop.net", true},
		{"550 Denied by policy: your IP is on our RBL", true},
		{"554 5.7.1 Client host 192.0.2.7 is listed in a DNSBL", true},
		{"550 5.7.1 Connection not permitted from this address", true},
		{"554 192.0.2.7 refused", true},
		{"550 5.1.1 <bob@dest.test>: Recipient address rejected: User unknown in virtual mailbox table", false},
		{"552 5.2.2 Mailbox full", false},
		{"550-5.1.1 The email account that you tried to reach does not exist.\n550 5.1.1 https://support.google.com/mail/?p=NoSuchUser", false},
		{"554 5.7.1 <bob@dest.test>: Relay access denied", false},
		{"550 5.7.1 Message rejected as spam by Content Filtering", false},
		{"554 5.6.0 Message contains a virus", false},
		{"450 4.7.1 Client host [192.0.2.7] blocked using zen.spamhaus.org", false}, // 4xx: retried as is
		{"550 5.1.1 user 192.0.2.71 unknown", false},                                // another address
		{"552 5.3.4 Message size exceeds fixed limit", false},
	}
	for _, c := range cases {
		rp, err := readReply(bufio.NewReader(strings.NewReader(strings.ReplaceAll(c.reply, "\n", "\r\n") + "\r\n")))
		if err != nil {
			t.Fatalf("%q: %v", c.reply, err)
		}
		if got := blockAnswer(rp, local); got != c.blocked {
			t.Errorf("%q: blocked %v, want %v", c.reply, got, c.blocked)
		}
	}
}

func TestWriteMessage(t *testing.T) {
	for in, want := range map[string]string{
		"a\r\nb\r\n":          "a\r\nb\r\n.\r\n",
		"a\nb":                "a\r\nb\r\n.\r\n",
		".x\r\n..y\r\nz.\r\n": "..x\r\n...y\r\nz.\r\n.\r\n",
		".":                   "..\r\n.\r\n",
		"":                    ".\r\n",
		"a\r\n.\r\nb\r\n":     "a\r\n..\r\nb\r\n.\r\n",
	} {
		var b bytes.Buffer
		w := bufio.NewWriter(&b)
		if err := writeMessage(w, strings.NewReader(in)); err != nil {
			t.Fatal(err)
		}
		if b.String() != want {
			t.Errorf("%q: got %q, want %q", in, b.String(), want)
		}
	}
	// A line longer than the read buffer, split by it.
	long := strings.Repeat("x", 70000) + "\r\n.after\r\n"
	var b bytes.Buffer
	w := bufio.NewWriter(&b)
	if err := writeMessage(w, strings.NewReader(long)); err != nil {
		t.Fatal(err)
	}
	if want := strings.Repeat("x", 70000) + "\r\n..after\r\n.\r\n"; b.String() != want {
		t.Errorf("long line: got %d bytes", b.Len())
	}
}
