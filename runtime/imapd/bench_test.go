package imapd

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
)

// BenchmarkNoop measures a NOOP (a Sync of the folder and its comparison
// with the session's view) and a FETCH of every message's flags in an
// inbox of 2000 messages.
func BenchmarkNoop(b *testing.B) {
	e := newEnv(b)
	e.start()
	roots := []string{e.root("rene")}
	for i := range 2000 {
		if err := e.md.Deliver(context.Background(), roots, strings.NewReader(testMessage(i%9+1, fmt.Sprint("m", i), "b"))); err != nil {
			b.Fatal(err)
		}
	}
	c := e.login(nil)
	if sel := e.selectInbox(c); sel.NumMessages != 2000 {
		b.Fatalf("%d messages", sel.NumMessages)
	}
	b.Run("NOOP", func(b *testing.B) {
		for b.Loop() {
			if err := c.Noop().Wait(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("FETCH 1:* FLAGS", func(b *testing.B) {
		for b.Loop() {
			if _, err := c.Fetch(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{Flags: true}).Collect(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("SEARCH BODY", func(b *testing.B) {
		for b.Loop() {
			if _, err := c.Search(&imap.SearchCriteria{Body: []string{"zzz"}}, nil).Wait(); err != nil {
				b.Fatal(err)
			}
		}
	})
}
