package imapd

import (
	"bytes"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
)

var sampleMessages = []string{
	testMessage(1, "Réunion", "Bonjour"),
	"From: bob@example.org\r\nSubject: x\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\n" +
		"--XX\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nVoir.\r\n" +
		"--XX\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\nContent-Type: multipart/alternative; boundary=YY\r\n\r\n" +
		"--YY\r\nContent-Type: text/plain\r\n\r\na\r\n--YY\r\nContent-Type: text/html\r\nContent-Language: fr, en\r\n\r\n<b>a</b>\r\n--YY--\r\n" +
		"--XX\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=a.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n" +
		"--XX--\r\n",
	"Subject: no body",
	"",
}

// TestBodyStructureAsImapserver: on ordinary messages, the bounded walk
// gives what imapserver's gives.
func TestBodyStructureAsImapserver(t *testing.T) {
	for _, m := range sampleMessages {
		want := imapserver.ExtractBodyStructure(strings.NewReader(m))
		if got := bodyStructure([]byte(m)); !reflect.DeepEqual(got, want) {
			t.Errorf("%q:\ngot  %#v\nwant %#v", m, got, want)
		}
	}
}

// nested is a message nested n times, as multiparts or as message/rfc822.
func nested(n int, kind string) string {
	var b strings.Builder
	b.WriteString("From: a@example.org\r\nSubject: deep\r\n")
	for i := range n {
		if kind == "multipart" {
			fmt.Fprintf(&b, "Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n", i, i)
		} else {
			b.WriteString("Content-Type: message/rfc822\r\n\r\n")
		}
	}
	b.WriteString("Content-Type: text/plain\r\n\r\nneedle\r\n")
	return b.String()
}

func depthOf(bs imap.BodyStructure) int {
	switch bs := bs.(type) {
	case *imap.BodyStructureMultiPart:
		d := 0
		for _, c := range bs.Children {
			d = max(d, depthOf(c))
		}
		return d + 1
	case *imap.BodyStructureSinglePart:
		if bs.MessageRFC822 != nil {
			return depthOf(bs.MessageRFC822.BodyStructure) + 1
		}
	}
	return 1
}

// checkStructure verifies what imapserver's writer needs: extended data
// everywhere, no multipart without parts.
func checkStructure(t *testing.T, bs imap.BodyStructure) {
	t.Helper()
	switch bs := bs.(type) {
	case *imap.BodyStructureMultiPart:
		if len(bs.Children) == 0 || bs.Extended == nil {
			t.Fatalf("bad multipart %#v", bs)
		}
		for _, c := range bs.Children {
			checkStructure(t, c)
		}
	case *imap.BodyStructureSinglePart:
		if bs.Extended == nil {
			t.Fatalf("single part without extended data %#v", bs)
		}
		if bs.MessageRFC822 != nil {
			checkStructure(t, bs.MessageRFC822.BodyStructure)
		}
	default:
		t.Fatalf("body structure %T", bs)
	}
}

// TestDeepMessage: a message nested 10000 times is described to the
// depth limit, quickly, and the session goes on.
func TestDeepMessage(t *testing.T) {
	for _, kind := range []string{"multipart", "message"} {
		m := nested(10000, kind)
		start := time.Now()
		bs := bodyStructure([]byte(m))
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("%s: %v to walk", kind, d)
		}
		checkStructure(t, bs)
		if d := depthOf(bs); d > maxMIMEDepth+2 {
			t.Errorf("%s: depth %d", kind, d)
		}
		start = time.Now()
		matchText([]byte(m), "needle", false)
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("%s: %v to search", kind, d)
		}
	}

	e := newEnv(t)
	e.start()
	e.deliver(nested(10000, "multipart"))
	e.deliver("From: a@example.org\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\nno parts at all\r\n")
	c := e.login(nil)
	e.selectInbox(c)
	msgs, err := c.Fetch(imap.SeqSetNum(1, 2), &imap.FetchOptions{
		BodyStructure: &imap.FetchItemBodyStructure{Extended: true},
		BodySection:   []*imap.FetchItemBodySection{{Part: []int{1, 1, 1}, Peek: true}},
	}).Collect()
	if err != nil || len(msgs) != 2 {
		t.Fatalf("FETCH BODYSTRUCTURE: %v %v", msgs, err)
	}
	if _, err := c.Search(&imap.SearchCriteria{Body: []string{"needle"}}, nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Noop().Wait(); err != nil {
		t.Errorf("session after deep messages: %v", err)
	}
}

// FuzzMessage: any message can be described, searched and cut into
// sections without a panic; ordinary ones as imapserver describes them.
func FuzzMessage(f *testing.F) {
	for _, m := range sampleMessages {
		f.Add([]byte(m))
	}
	f.Add([]byte(nested(40, "multipart")))
	f.Add([]byte(nested(40, "message")))
	f.Add([]byte("Content-Type: multipart/mixed; boundary=x\r\n\r\n--x--\r\n"))
	sections := []*imap.FetchItemBodySection{
		{Specifier: imap.PartSpecifierHeader},
		{Specifier: imap.PartSpecifierText},
		{Part: []int{1}},
		{Part: []int{2, 1}, Specifier: imap.PartSpecifierMIME},
		{Part: []int{2}, Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"Subject"}},
		{Partial: &imap.SectionPartial{Offset: 3, Size: 10}},
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		bs := bodyStructure(raw)
		checkStructure(t, bs)
		if depthOf(bs) > maxMIMEDepth+2 {
			t.Fatalf("depth %d", depthOf(bs))
		}
		if depthOf(bs) < 8 {
			want := imapserver.ExtractBodyStructure(bytes.NewReader(raw))
			if emptyMultipart(want) {
				return
			}
			if !reflect.DeepEqual(bs, want) {
				t.Fatalf("got  %#v\nwant %#v", bs, want)
			}
		}
		envelope(raw)
		matchText(raw, "a", true)
		for _, s := range sections {
			bodySection(raw, s)
		}
		binarySection(raw, &imap.FetchItemBinarySection{Part: []int{1}})
	})
}

func emptyMultipart(bs imap.BodyStructure) bool {
	switch bs := bs.(type) {
	case *imap.BodyStructureMultiPart:
		if len(bs.Children) == 0 {
			return true
		}
		for _, c := range bs.Children {
			if emptyMultipart(c) {
				return true
			}
		}
	case *imap.BodyStructureSinglePart:
		if bs.MessageRFC822 != nil {
			return emptyMultipart(bs.MessageRFC822.BodyStructure)
		}
	}
	return false
}
