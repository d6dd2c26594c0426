package tests

import (
	"fmt"
	"io"
	"net"
	"net/smtp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// crashMsg is a message of the crash test and what its sender knows.
type crashMsg struct {
	seq     string   // X-Seq header, unique
	rcpts   []string // RCPT TO addresses
	targets []string // the mailboxes (account ids) it must reach
	started bool     // MAIL FROM was sent
	acked   bool     // 250 after DATA
	retried bool     // sent again after the restart: in flight at the kill
}

// crashTargets are the recipient mixes of the crash test.
var crashTargets = []struct {
	rcpts   []string
	targets []string
}{
	{[]string{addr("rene.ricard")}, []string{"rene.ricard"}},
	{[]string{addr("support")}, []string{"andre.mouve", "charline.durand", "thomas.petit"}},
	{[]string{addr("rene"), addr("support")}, []string{"rene.ricard", "andre.mouve", "charline.durand", "thomas.petit"}},
}

func (m *crashMsg) text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "From: <crash@sender.example>\r\nTo: <%s>\r\nSubject: crash %s\r\nMessage-ID: <%s@crash.test.example>\r\nX-Seq: %s\r\n\r\n", m.rcpts[0], m.seq, m.seq, m.seq)
	// A few KB, so that a kill often falls inside DATA.
	for i := range 40 + len(m.seq)%40 {
		fmt.Fprintf(&b, "%s line %03d: the quick brown fox jumps over the lazy dog\r\n", m.seq, i)
	}
	return b.String()
}

// crashClient is an SMTP client that keeps its connection between
// messages, as a sending MTA does.
type crashClient struct {
	address string
	c       *smtp.Client
}

func (cc *crashClient) close() {
	if cc.c != nil {
		cc.c.Close()
		cc.c = nil
	}
}

// send sends m; started is set once MAIL FROM is on the wire.
func (cc *crashClient) send(m *crashMsg) error {
	if cc.c == nil {
		conn, err := net.DialTimeout("tcp", cc.address, 5*time.Second)
		if err != nil {
			return err
		}
		conn.SetDeadline(time.Now().Add(60 * time.Second))
		c, err := smtp.NewClient(conn, "127.0.0.1")
		if err != nil {
			conn.Close()
			return err
		}
		if err := c.Hello("crash.sender.example"); err != nil {
			c.Close()
			return err
		}
		cc.c = c
	} else if err := cc.c.Reset(); err != nil {
		cc.close()
		return err
	}
	err := func() error {
		m.started = true
		if err := cc.c.Mail("crash@sender.example"); err != nil {
			return fmt.Errorf("MAIL: %w", err)
		}
		for _, r := range m.rcpts {
			if err := cc.c.Rcpt(r); err != nil {
				return fmt.Errorf("RCPT %s: %w", r, err)
			}
		}
		w, err := cc.c.Data()
		if err != nil {
			return fmt.Errorf("DATA: %w", err)
		}
		if _, err := io.WriteString(w, m.text()); err != nil {
			return fmt.Errorf("DATA: %w", err)
		}
		if err := w.Close(); err != nil {
			return fmt.Errorf("end of DATA: %w", err)
		}
		return nil
	}()
	if err != nil {
		cc.close()
		return err
	}
	m.acked = true
	return nil
}

// TestMailCrash is the crash test: concurrent senders, kill -9
// of the daemon while they send, a restart on the same data, the
// unacknowledged messages sent again; three times. Then every
// acknowledged message is in each of its mailboxes exactly once, and
// never in only some of them. A message committed just before the kill
// but not acknowledged (RFC 1047's window) is sent again by its client;
// the server recognises it and does not deliver it twice.
func TestMailCrash(t *testing.T) {
	t.Parallel()
	const (
		senders = 12
		cycles  = 3
		sending = time.Second
	)
	d := startMail(t, stateOpts{}, "smtp")
	var all []*crashMsg
	inFlight := 0

	for cycle := range cycles {
		var killed atomic.Bool
		var acks atomic.Int64
		var wg sync.WaitGroup
		sent := make([][]*crashMsg, senders)
		address := d.addr("smtp")
		for w := range senders {
			wg.Go(func() {
				cc := &crashClient{address: address}
				defer cc.close()
				for n := 0; ; n++ {
					mix := crashTargets[(w+n)%len(crashTargets)]
					m := &crashMsg{seq: fmt.Sprintf("c%d-w%02d-%04d", cycle, w, n), rcpts: mix.rcpts, targets: mix.targets}
					err := cc.send(m)
					if m.started {
						sent[w] = append(sent[w], m)
					}
					if m.acked {
						acks.Add(1)
					}
					if err != nil {
						if !killed.Load() {
							t.Errorf("sender %d, message %s, before the kill: %v", w, m.seq, err)
						}
						return
					}
				}
			})
		}
		// About a second of sending; longer on a loaded machine, until
		// every sender has had a few messages acknowledged.
		time.Sleep(sending)
		for deadline := time.Now().Add(15 * time.Second); acks.Load() < 3*senders && time.Now().Before(deadline); {
			time.Sleep(50 * time.Millisecond)
		}
		killed.Store(true)
		d.kill(t)
		wg.Wait()

		acked, unacked := 0, []*crashMsg{}
		for _, ms := range sent {
			for _, m := range ms {
				all = append(all, m)
				if m.acked {
					acked++
				} else {
					unacked = append(unacked, m)
				}
			}
		}
		if acked == 0 {
			t.Fatalf("cycle %d: no message acknowledged in %s: the test proves nothing", cycle, sending)
		}
		inFlight += len(unacked)
		t.Logf("cycle %d: %d messages acknowledged, %d in flight at the kill", cycle, acked, len(unacked))

		// Restart on the same data; a real client sends again what was
		// not acknowledged.
		d.start(t)
		for _, m := range unacked {
			m.retried, m.acked, m.started = true, false, false
			if err := sendPlain(d.addr("smtp"), "crash@sender.example", m.rcpts, m.text()); err != nil {
				t.Errorf("message %s sent again after the restart: %v", m.seq, err)
				continue
			}
			m.acked = true
		}
	}

	// Every copy of every message, per mailbox.
	boxes := []string{"rene.ricard", "andre.mouve", "charline.durand", "thomas.petit", "abuse", "postmaster"}
	copies := map[string]map[string]int{} // X-Seq → account → copies
	for _, id := range boxes {
		for _, f := range d.inbox(t, id) {
			seq := f.header("X-Seq")
			if copies[seq] == nil {
				copies[seq] = map[string]int{}
			}
			copies[seq][id]++
			if !strings.HasSuffix(string(f.data), fmt.Sprintf("%s line %03d: the quick brown fox jumps over the lazy dog\r\n", seq, 40+len(seq)%40-1)) {
				t.Errorf("%s in %s is truncated: %s", seq, id, f.path)
			}
		}
	}
	known := map[string]bool{}
	dups, lost, partial := 0, 0, 0
	for _, m := range all {
		known[m.seq] = true
		if !m.acked {
			continue // a failed retry, reported above
		}
		c := copies[m.seq]
		first := c[m.targets[0]]
		for _, id := range m.targets {
			switch n := c[id]; {
			case n != first:
				partial++
				t.Errorf("message %s: copies per mailbox %v, want the same in each of %v", m.seq, c, m.targets)
			case n == 0:
				lost++
				t.Errorf("message %s acknowledged (retried: %v) but not in %s", m.seq, m.retried, id)
			case n != 1:
				t.Errorf("message %s (retried: %v) is %d times in %s", m.seq, m.retried, n, id)
			}
		}
		if first > 1 {
			dups++
		}
		for id, n := range c {
			if !slices.Contains(m.targets, id) {
				t.Errorf("message %s is %d times in %s, not one of its mailboxes %v", m.seq, n, id, m.targets)
			}
		}
	}
	for seq, c := range copies {
		if !known[seq] {
			t.Errorf("a message no sender sent (X-Seq %q) in %v", seq, c)
		}
	}
	t.Logf("%d messages, %d in flight at the kills and sent again; %d delivered twice, %d lost, %d partial",
		len(all), inFlight, dups, lost, partial)
}
