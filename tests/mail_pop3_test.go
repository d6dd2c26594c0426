package tests

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// popStat is a poplib stat() result.
func popStat(t *testing.T, r pyResult) (count, size int) {
	t.Helper()
	var v []int
	if !r.OK || json.Unmarshal(r.Value, &v) != nil || len(v) != 2 {
		t.Fatalf("STAT: %s", r)
	}
	return v[0], v[1]
}

// popListing parses the lines of LIST or UIDL: message number → value.
func popListing(t *testing.T, what string, r pyResult) map[int]string {
	t.Helper()
	resp, lines := r.lines()
	if !strings.HasPrefix(resp, "+OK") {
		t.Fatalf("%s: %s", what, r)
	}
	out := map[int]string{}
	for _, l := range lines {
		n, v, ok := strings.Cut(l, " ")
		i, err := strconv.Atoi(n)
		if !ok || err != nil {
			t.Fatalf("%s: bad line %q", what, l)
		}
		out[i] = v
	}
	return out
}

// TestMailPOP3: python's poplib over STLS and POP3S: the commands of RFC
// 1939 against the Maildir on disk, deletion on QUIT only, the lock.
func TestMailPOP3(t *testing.T) {
	t.Parallel()
	needTool(t, "python3")
	d := startMail(t, stateOpts{}, "smtp", "pop3", "pop3s")
	const box = "thomas.petit"
	for i := 1; i <= 3; i++ {
		body := fmt.Sprintf("first line of %d\n.leading dot\nthird line\n", i)
		sendMX(t, d.addr("smtp"), "bob@sender.example", []string{addr(box)}, message("bob@sender.example", addr(box), fmt.Sprintf("pop-%d", i), body))
	}
	files := d.inbox(t, box)
	if len(files) != 3 {
		t.Fatalf("%d messages in %s, want 3", len(files), box)
	}
	bySubject := map[string]stored{}
	total := 0
	for _, f := range files {
		bySubject[f.header("Subject")] = f
		total += len(f.data)
	}

	p := startPy(t, d)

	// Before STLS, with legacy_plain_auth false: STLS offered, no login.
	p.connect("pre", "pop3")
	var capa map[string]any
	json.Unmarshal(p.call("pre", "capa").Value, &capa)
	if _, ok := capa["STLS"]; !ok {
		t.Errorf("CAPA before STLS %v: no STLS", capa)
	}
	ru := p.call("pre", "user", addr(box))
	rp := p.call("pre", "pass_", thomasPassword)
	if ru.OK && rp.OK {
		t.Errorf("USER/PASS accepted without TLS (legacy_plain_auth false): %s, %s", ru, rp)
	}
	p.drop("pre")

	// A wrong password.
	p.connect("bad", "pop3s")
	p.call("bad", "user", addr(box))
	if r := p.call("bad", "pass_", "wrong-password"); r.OK || !strings.HasPrefix(r.Msg, "-ERR") {
		t.Errorf("PASS with a wrong password: %s, want -ERR", r)
	}
	p.drop("bad")

	// STLS, then the transaction state.
	p.popLogin("a", "pop3", addr(box), thomasPassword)
	if n, size := popStat(t, p.call("a", "stat")); n != 3 || size != total {
		t.Errorf("STAT: %d %d, want 3 %d (the sizes of the files)", n, size, total)
	}
	list := popListing(t, "LIST", p.call("a", "list"))
	uidl := popListing(t, "UIDL", p.call("a", "uidl"))
	if len(list) != 3 || len(uidl) != 3 {
		t.Fatalf("LIST %v, UIDL %v: want 3 messages", list, uidl)
	}
	subjects := map[int]string{} // message number → Subject
	seen := map[string]bool{}
	for n := 1; n <= 3; n++ {
		resp, lines := p.call("a", "retr", n).lines()
		if !strings.HasPrefix(resp, "+OK") {
			t.Fatalf("RETR %d: %s", n, resp)
		}
		got := strings.Join(lines, "\r\n") + "\r\n"
		var f stored
		for _, l := range lines {
			if s, ok := strings.CutPrefix(l, "Subject: "); ok {
				f, subjects[n] = bySubject[s], s
				break
			}
		}
		if f.data == nil {
			t.Fatalf("RETR %d: not one of the messages delivered:\n%s", n, got)
		}
		if got != string(f.data) {
			t.Errorf("RETR %d differs from %s:\n%q\nwant\n%q", n, f.path, got, f.data)
		}
		if list[n] != strconv.Itoa(len(f.data)) {
			t.Errorf("LIST %d: %s octets, the file has %d", n, list[n], len(f.data))
		}
		if uidl[n] == "" || seen[uidl[n]] {
			t.Errorf("UIDL %d: %q, empty or not unique (%v)", n, uidl[n], uidl)
		}
		seen[uidl[n]] = true
	}
	// TOP n 0: the header and the blank line; TOP n 1: one body line.
	resp, top0 := p.call("a", "top", 2, 0).lines()
	if !strings.HasPrefix(resp, "+OK") || !slices.Contains(top0, "Subject: "+subjects[2]) || slices.Contains(top0, "first line of 2") {
		t.Errorf("TOP 2 0: %s %q, want the header of %s without its body", resp, top0, subjects[2])
	}
	_, top1 := p.call("a", "top", 2, 1).lines()
	body2 := strings.TrimPrefix(subjects[2], "pop-")
	if !slices.Contains(top1, "first line of "+body2) || slices.Contains(top1, ".leading dot") || slices.Contains(top1, "third line") {
		t.Errorf("TOP 2 1: %q, want the header and the first body line only", top1)
	}

	// DELE hides the message at once; QUIT removes it.
	if r := p.call("a", "dele", 1); !r.OK {
		t.Fatalf("DELE 1: %s", r)
	}
	deleted := bySubject[subjects[1]]
	if n, size := popStat(t, p.call("a", "stat")); n != 2 || size != total-len(deleted.data) {
		t.Errorf("STAT after DELE 1: %d %d, want 2 %d", n, size, total-len(deleted.data))
	}
	if r := p.call("a", "retr", 1); r.OK {
		t.Errorf("RETR of a deleted message: %s, want -ERR", r)
	}
	if len(d.inbox(t, box)) != 3 {
		t.Errorf("DELE removed the file before QUIT")
	}
	if r := p.call("a", "quit"); !r.OK || !strings.HasPrefix(r.str(), "+OK") {
		t.Fatalf("QUIT: %s", r)
	}
	after := d.inbox(t, box)
	if len(after) != 2 || len(withHeader(after, "Subject", subjects[1])) != 0 {
		t.Fatalf("after DELE 1 and QUIT the inbox holds %d messages (%s still there: %v), want 2 without it",
			len(after), subjects[1], len(withHeader(after, "Subject", subjects[1])) != 0)
	}

	// POP3S: the same unique ids; DELE then a dropped connection keeps
	// the message.
	p.popLogin("b", "pop3s", addr(box), thomasPassword)
	uidlB := popListing(t, "UIDL", p.call("b", "uidl"))
	var left, leftB []string
	for n, u := range uidl {
		if n != 1 {
			left = append(left, u)
		}
	}
	for _, u := range uidlB {
		leftB = append(leftB, u)
	}
	slices.Sort(left)
	slices.Sort(leftB)
	if !slices.Equal(left, leftB) {
		t.Errorf("UIDL in a new session %v, want the same ids as before %v", leftB, left)
	}
	if r := p.call("b", "dele", 1); !r.OK {
		t.Fatalf("DELE 1: %s", r)
	}
	p.drop("b")

	// The lock: a second session while one is open is refused. The first
	// may still be closing on the server's side: a real client retries.
	loginRetry := func(c string) {
		t.Helper()
		waitFor(t, "a POP3 login after the last session ended", func() error {
			p.connect(c, "pop3s")
			p.call(c, "user", addr(box))
			r := p.call(c, "pass_", thomasPassword)
			if r.OK {
				return nil
			}
			p.drop(c)
			if strings.Contains(r.Msg, "[IN-USE]") {
				return errors.New(r.Msg)
			}
			t.Fatalf("PASS: %s", r)
			return nil
		})
	}
	loginRetry("c")
	if n, _ := popStat(t, p.call("c", "stat")); n != 2 || len(d.inbox(t, box)) != 2 {
		t.Errorf("after DELE and a dropped connection: STAT %d, %d files, want 2 and 2", n, len(d.inbox(t, box)))
	}
	p.connect("d", "pop3s")
	p.call("d", "user", addr(box))
	if r := p.call("d", "pass_", thomasPassword); r.OK || !strings.HasPrefix(r.Msg, "-ERR [IN-USE]") {
		t.Errorf("a second session while one is open: %s, want -ERR [IN-USE]", r)
	}
	p.drop("d")
	if r := p.call("c", "quit"); !r.OK {
		t.Errorf("QUIT: %s", r)
	}
	loginRetry("e")
	p.call("e", "quit")
}
