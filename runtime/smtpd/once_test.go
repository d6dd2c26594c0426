package smtpd

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"mailfountain.dev/mailfountain/runtime/maildir"
)

// specKey is the delivery key as the package documentation defines it,
// computed here apart from the server's code.
func specKey(from string, rcpts []string, data string) string {
	b := append([]byte(from), 0)
	for _, r := range rcpts {
		b = append(append(b, r...), 0)
	}
	sum := sha256.Sum256(append(b, data...))
	return hex.EncodeToString(sum[:])[:32]
}

// sendRaw sends one message over rc (after EHLO) and returns the id of
// its 250 reply.
func sendRaw(t *testing.T, rc *rawClient, from string, rcpts []string, data string) string {
	t.Helper()
	rc.expect("MAIL FROM:<"+from+">", "250 ")
	for _, r := range rcpts {
		rc.expect("RCPT TO:<"+r+">", "250 ")
	}
	rc.expect("DATA", "354 ")
	rc.send(data + ".")
	got := rc.expectReply("250 2.0.0 OK id=")
	return strings.TrimPrefix(got, "250 2.0.0 OK id=")
}

// TestRetryAfterCrash: a delivery reached the mailboxes, then the box
// crashed before the client had its 250. After the restart (a new
// maildir.Store on the same directory, recovered) the client sends the
// message again: each mailbox keeps one copy, the client gets its 250.
// Another message, and the same one sent once more, are delivered.
func TestRetryAfterCrash(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name  string
		rcpts []string
		// before are the mailboxes the delivery reached before the crash
		// (all of them, but in the "partial" case); after are all those
		// the recipients reach.
		before, after []string
	}{
		{"one mailbox", []string{"alice@example.test"}, []string{"alice"}, []string{"alice"}},
		{"two mailboxes", []string{"Alice@Example.test", "bob@example.test"}, []string{"alice", "bob"}, []string{"alice", "bob"}},
		{"redirection", []string{"team@example.test"}, []string{"alice", "bob"}, []string{"alice", "bob"}},
		{"partial", []string{"alice@example.test", "bob@example.test"}, []string{"alice"}, []string{"alice", "bob"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			dir := t.TempDir()
			root := func(id string) string { return filepath.Join(dir, "mail", "example.test", id) }
			const from = "Sender@Remote.test"
			data := testMessage("retried")
			key := specKey(from, c.rcpts, data)

			// The process before the crash: its delivery went through,
			// the 250 did not.
			before, err := maildir.New(dir, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := before.Recover(ctx); err != nil {
				t.Fatal(err)
			}
			var roots []string
			for _, id := range c.before {
				roots = append(roots, root(id))
			}
			first := "Return-Path: <" + from + ">\r\nReceived: from client.test (localhost [127.0.0.1])\r\n" +
				"\tby " + testHost + " (MailFountain) with ESMTP id before.1;\r\n\tMon, 1 Jan 2024 00:00:00 +0000\r\n" + data
			if dup, err := before.DeliverOnce(ctx, roots, key, strings.NewReader(first)); err != nil || dup {
				t.Fatalf("delivery before the crash: duplicate %v, %v", dup, err)
			}

			// The restart.
			e := newEnvIn(t, dir, func(cfg *Config) {
				md, err := maildir.New(dir, nil)
				if err != nil {
					t.Fatal(err)
				}
				if err := md.Recover(ctx); err != nil {
					t.Fatal(err)
				}
				cfg.Deliverer = md
			})
			for _, id := range c.after {
				if got := e.st.MailboxPath("example.test", id); got != root(id) {
					t.Fatalf("mailbox root %s, the test assumed %s", got, root(id))
				}
			}
			// count checks, in each mailbox, how many messages there are
			// and how many of them are the retried one.
			count := func(step string, want func(id string) (total, retried int)) {
				t.Helper()
				for _, id := range c.after {
					msgs := e.mailbox("example.test", id)
					n := 0
					for _, m := range msgs {
						if strings.HasSuffix(m, data) {
							n++
						}
					}
					total, retried := want(id)
					if len(msgs) != total || n != retried {
						t.Fatalf("%s: %s holds %d messages, %d of them the retried one; want %d and %d",
							step, id, len(msgs), n, total, retried)
					}
				}
			}
			had := func(id string) int {
				if slices.Contains(c.before, id) {
					return 1
				}
				return 0
			}
			rc := dialRaw(t, e.mx)
			rc.reply()
			rc.expect("EHLO client.test", "250 ")

			// Another message from the same client, to the same
			// recipients, is no duplicate.
			otherID := sendRaw(t, rc, from, c.rcpts, testMessage("other"))
			count("another message", func(id string) (int, int) { return had(id) + 1, had(id) })

			// The retry: one copy of it in each mailbox.
			retryID := sendRaw(t, rc, from, c.rcpts, data)
			count("retry", func(string) (int, int) { return 2, 1 })
			logs := e.logs.String()
			dupLine := `msg="duplicate of a delivery made before a restart; not delivered again" id=` + retryID + " "
			wantDup := len(c.before) == len(c.after)
			if strings.Contains(logs, dupLine) != wantDup {
				t.Errorf("duplicate logged: %v, want %v:\n%s", !wantDup, wantDup, logs)
			}
			if strings.Contains(logs, `msg="smtp message accepted" id=`+retryID+" ") == wantDup {
				t.Errorf("retry logged as delivered: %v, want %v:\n%s", wantDup, !wantDup, logs)
			}
			if wantDup && !strings.Contains(logs, "key="+key) {
				t.Errorf("duplicate logged without its key %s:\n%s", key, logs)
			}
			if !strings.Contains(logs, `msg="smtp message accepted" id=`+otherID+" ") {
				t.Errorf("the other message is not logged as delivered:\n%s", logs)
			}

			// The same message once more: the client means it.
			sendRaw(t, rc, from, c.rcpts, data)
			count("sent again", func(string) (int, int) { return 3, 2 })
		})
	}
}

// TestDeliveryKey checks the key the server hands the Deliverer against
// its definition, for the ways a message arrives: DATA (dot-stuffed on
// the wire), BDAT, and a message larger than the memory buffer.
func TestDeliveryKey(t *testing.T) {
	t.Parallel()
	d := &recordingDeliverer{}
	e := newEnv(t, func(c *Config) {
		c.Deliverer = d
		c.MemoryBuffer = 1000
	})
	big := "Subject: big\r\n\r\n" + strings.Repeat(strings.Repeat("y", 78)+"\r\n", 100)
	for _, c := range []struct {
		name, from string
		rcpts      []string
		data       string
		bdat       bool
	}{
		{"plain", "a@remote.test", []string{"alice@example.test"}, "Subject: k\r\n\r\nbody\r\n", false},
		{"dots", "a@remote.test", []string{"alice@example.test"}, "Subject: k\r\n\r\n.body\r\n..\r\n", false},
		{"null sender, two rcpts", "", []string{"Bob@example.test", "alice@example.test"}, "Subject: k\r\n\r\nbody\r\n", false},
		{"rcpt order", "", []string{"alice@example.test", "Bob@example.test"}, "Subject: k\r\n\r\nbody\r\n", false},
		{"bdat", "a@remote.test", []string{"alice@example.test"}, "Subject: k\r\n\r\nbody\r\n", true},
		// The key covers the data as received, bare LFs and all.
		{"bare LF", "a@remote.test", []string{"alice@example.test"}, "Subject: k\n\nbody\r\n", false},
		{"bare LF, bdat", "a@remote.test", []string{"alice@example.test"}, "Subject: k\n\nbody\n", true},
		{"spilled", "a@remote.test", []string{"alice@example.test"}, big, false},
	} {
		rc := dialRaw(t, e.mx)
		rc.reply()
		rc.expect("EHLO client.test", "250 ")
		rc.expect("MAIL FROM:<"+c.from+">", "250 ")
		for _, r := range c.rcpts {
			rc.expect("RCPT TO:<"+r+">", "250 ")
		}
		if c.bdat {
			half := len(c.data) / 2
			rc.send("BDAT " + strconv.Itoa(half) + "\r\n" + c.data[:half] + "BDAT " + strconv.Itoa(len(c.data)-half) + " LAST")
			// The CRLF that send adds after LAST ends the command; the
			// chunk goes right after it.
			rc.conn.Write([]byte(c.data[half:]))
			rc.expectReply("250 ")
		} else {
			rc.expect("DATA", "354 ")
			stuffed := strings.ReplaceAll("\r\n"+c.data, "\r\n.", "\r\n..")[2:]
			rc.send(stuffed + ".")
		}
		rc.expectReply("250 2.0.0 OK id=")
		key, msg := d.last()
		if want := specKey(c.from, c.rcpts, c.data); key != want {
			t.Errorf("%s: key %s, want %s", c.name, key, want)
		}
		if _, _, stored := refLineEnds([]byte(c.data)); !strings.HasSuffix(msg, string(stored)) {
			t.Errorf("%s: delivered %q", c.name, msg)
		}
	}
}
