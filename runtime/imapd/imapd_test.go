package imapd

import (
	"bytes"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"mailfountain.dev/mailfountain/runtime/maildir"
	"mailfountain.dev/mailfountain/runtime/testenv"
)

func listNames(t *testing.T, c *imapclient.Client, ref, pattern string, options *imap.ListOptions) map[string][]imap.MailboxAttr {
	t.Helper()
	l, err := c.List(ref, pattern, options).Collect()
	if err != nil {
		t.Fatalf("LIST %q %q: %v", ref, pattern, err)
	}
	m := make(map[string][]imap.MailboxAttr)
	for _, d := range l {
		if d.Delim != '/' {
			t.Errorf("LIST %q: delimiter %q", d.Mailbox, d.Delim)
		}
		m[d.Mailbox] = d.Attrs
	}
	return m
}

func keys[V any](m map[string]V) []string {
	var l []string
	for k := range m {
		l = append(l, k)
	}
	slices.Sort(l)
	return l
}

func imapCode(err error) imap.ResponseCode {
	var ie *imap.Error
	if errors.As(err, &ie) {
		return ie.Code
	}
	return ""
}

func imapErrType(err error) imap.StatusResponseType {
	var ie *imap.Error
	if errors.As(err, &ie) {
		return ie.Type
	}
	return ""
}

func TestFolders(t *testing.T) {
	e := newEnv(t)
	e.start()
	c := e.login(nil)

	// First login: the special-use folders, subscribed.
	got := listNames(t, c, "", "*", nil)
	if want := []string{"Drafts", "INBOX", "Junk", "Sent", "Trash"}; !slices.Equal(keys(got), want) {
		t.Fatalf("LIST * = %v, want %v", keys(got), want)
	}
	for name, attr := range map[string]imap.MailboxAttr{"Sent": imap.MailboxAttrSent, "Drafts": imap.MailboxAttrDrafts, "Trash": imap.MailboxAttrTrash, "Junk": imap.MailboxAttrJunk} {
		if !slices.Contains(got[name], attr) {
			t.Errorf("LIST %s: attributes %v lack %s", name, got[name], attr)
		}
	}
	lsub := listNames(t, c, "", "*", &imap.ListOptions{SelectSubscribed: true})
	if want := []string{"Drafts", "INBOX", "Junk", "Sent", "Trash"}; !slices.Equal(keys(lsub), want) {
		t.Errorf("LIST (SUBSCRIBED) = %v, want %v", keys(lsub), want)
	}
	if su := listNames(t, c, "", "*", &imap.ListOptions{SelectSpecialUse: true}); !slices.Equal(keys(su), []string{"Drafts", "Junk", "Sent", "Trash"}) {
		t.Errorf("LIST (SPECIAL-USE) = %v", keys(su))
	}

	steps := []struct {
		name string
		do   func() error
		code imap.ResponseCode // "" for OK
	}{
		{"create nested", func() error { return c.Create("Archives/2009", nil).Wait() }, ""},
		{"create with trailing delimiter", func() error { return c.Create("Clients/", nil).Wait() }, ""},
		{"create existing", func() error { return c.Create("Archives/2009", nil).Wait() }, imap.ResponseCodeAlreadyExists},
		{"create inbox", func() error { return c.Create("inbox", nil).Wait() }, imap.ResponseCodeAlreadyExists},
		{"subscribe child", func() error { return c.Subscribe("Archives/2009").Wait() }, ""},
		{"subscribe missing", func() error { return c.Subscribe("Nowhere").Wait() }, imap.ResponseCodeNonExistent},
		{"rename parent", func() error { return c.Rename("Archives", "Old", nil).Wait() }, ""},
		{"rename missing", func() error { return c.Rename("Nowhere", "Else", nil).Wait() }, imap.ResponseCodeNonExistent},
		{"rename onto existing", func() error { return c.Rename("Clients", "Sent", nil).Wait() }, imap.ResponseCodeAlreadyExists},
		{"delete inbox", func() error { return c.Delete("INBOX").Wait() }, imap.ResponseCodeCannot},
		{"delete missing", func() error { return c.Delete("Nowhere").Wait() }, imap.ResponseCodeNonExistent},
		{"delete", func() error { return c.Delete("Clients").Wait() }, ""},
		{"unsubscribe", func() error { return c.Unsubscribe("Junk").Wait() }, ""},
		{"select missing", func() error { _, err := c.Select("Nowhere", nil).Wait(); return err }, imap.ResponseCodeNonExistent},
	}
	for _, st := range steps {
		err := st.do()
		if st.code == "" && err != nil {
			t.Errorf("%s: %v", st.name, err)
		}
		if st.code != "" && imapCode(err) != st.code {
			t.Errorf("%s: %v, want NO [%s]", st.name, err, st.code)
		}
	}

	got = listNames(t, c, "", "*", nil)
	if want := []string{"Drafts", "INBOX", "Junk", "Old", "Old/2009", "Sent", "Trash"}; !slices.Equal(keys(got), want) {
		t.Errorf("LIST * = %v, want %v", keys(got), want)
	}
	if !slices.Contains(got["Old"], imap.MailboxAttrHasChildren) || !slices.Contains(got["Old/2009"], imap.MailboxAttrHasNoChildren) {
		t.Errorf("children attributes: Old %v, Old/2009 %v", got["Old"], got["Old/2009"])
	}
	if top := listNames(t, c, "", "%", nil); slices.Contains(keys(top), "Old/2009") || !slices.Contains(keys(top), "Old") {
		t.Errorf("LIST %% = %v", keys(top))
	}
	if sub := listNames(t, c, "Old/", "%", nil); !slices.Equal(keys(sub), []string{"Old/2009"}) {
		t.Errorf("LIST Old/ %% = %v", keys(sub))
	}
	if inbox := listNames(t, c, "", "inbox", nil); !slices.Equal(keys(inbox), []string{"INBOX"}) {
		t.Errorf("LIST inbox = %v", keys(inbox))
	}
	// LIST "" "": the delimiter.
	if l, err := c.List("", "", nil).Collect(); err != nil || len(l) != 1 || l[0].Delim != '/' || l[0].Mailbox != "" {
		t.Errorf("LIST \"\" \"\" = %+v, %v", l, err)
	}

	// Subscriptions follow the rename and outlive the session.
	c.Logout().Wait()
	c = e.login(nil)
	lsub = listNames(t, c, "", "*", &imap.ListOptions{SelectSubscribed: true})
	if want := []string{"Drafts", "INBOX", "Old/2009", "Sent", "Trash"}; !slices.Equal(keys(lsub), want) {
		t.Errorf("after reconnecting, subscribed %v, want %v", keys(lsub), want)
	}
	b, err := os.ReadFile(filepath.Join(e.root("rene"), subscriptionsFile))
	if err != nil || string(b) != "Drafts\nINBOX\nOld/2009\nSent\nTrash\n" {
		t.Errorf("subscriptions file %q, %v", b, err)
	}
	// LSUB, the IMAP4rev1 way.
	r := dialRaw(t, e.tlsAddr, true)
	r.cmd("LOGIN %s %s", testUser, testPassword)
	lines, st := r.cmd(`LSUB "" "*"`)
	var names []string
	for _, l := range lines {
		if i := strings.Index(l, `) "/" `); strings.HasPrefix(l, "* LSUB (") && i > 0 {
			names = append(names, strings.Trim(l[i+6:], `"`))
		}
	}
	if want := []string{"INBOX", "Drafts", "Old/2009", "Sent", "Trash"}; !strings.HasPrefix(st, "OK") || !slices.Equal(names, want) {
		t.Errorf("LSUB = %q %q, want %q", lines, st, want)
	}
	// A deleted special folder is not made again at the next login.
	if err := c.Delete("Junk").Wait(); err != nil {
		t.Fatal(err)
	}
	c.Logout().Wait()
	c = e.login(nil)
	if got := listNames(t, c, "", "Junk", nil); len(got) != 0 {
		t.Errorf("Junk made again: %v", got)
	}
}

func TestStatusAndRenameInbox(t *testing.T) {
	e := newEnv(t)
	e.start()
	c := e.login(nil)
	msgs := []string{testMessage(1, "one", "first"), testMessage(2, "two", "second")}
	for _, m := range msgs {
		e.deliver(m)
	}
	st, err := c.Status("INBOX", &imap.StatusOptions{NumMessages: true, UIDNext: true, UIDValidity: true, NumUnseen: true, NumDeleted: true, Size: true}).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if *st.NumMessages != 2 || *st.NumUnseen != 2 || *st.NumDeleted != 0 || *st.Size != int64(len(msgs[0])+len(msgs[1])) || st.UIDNext != 3 || st.UIDValidity == 0 {
		t.Errorf("STATUS INBOX = messages %d unseen %d deleted %d size %d uidnext %d uidvalidity %d",
			*st.NumMessages, *st.NumUnseen, *st.NumDeleted, *st.Size, st.UIDNext, st.UIDValidity)
	}
	if _, err := c.Status("Nowhere", &imap.StatusOptions{NumMessages: true}).Wait(); imapCode(err) != imap.ResponseCodeNonExistent {
		t.Errorf("STATUS Nowhere: %v", err)
	}

	// RFC 3501: renaming INBOX moves its messages to the new folder.
	if err := c.Rename("INBOX", "Old mail", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]uint32{"INBOX": 0, "Old mail": 2} {
		st, err := c.Status(name, &imap.StatusOptions{NumMessages: true}).Wait()
		if err != nil || *st.NumMessages != want {
			t.Errorf("after RENAME INBOX, %s has %v messages (%v), want %d", name, st, err, want)
		}
	}
}

func TestFetch(t *testing.T) {
	e := newEnv(t)
	e.start()
	plain := testMessage(1, "Réunion lundi", "Bonjour René,\r\nÀ lundi.")
	multi := "From: bob@example.org\r\nTo: rene@ma-societe.fr\r\nSubject: =?utf-8?q?Pi=C3=A8ce_jointe?=\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\n" +
		"--XX\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nVoir la pièce jointe.\r\n" +
		"--XX\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=devis.pdf\r\n\r\nJVBERi0xLjQK\r\n" +
		"--XX--\r\n"
	e.deliver(plain)
	e.deliver(multi)
	c := e.login(nil)
	sel := e.selectInbox(c)
	if sel.NumMessages != 2 || sel.UIDNext != 3 || sel.UIDValidity == 0 {
		t.Fatalf("SELECT = %+v", sel)
	}
	if !slices.Contains(sel.PermanentFlags, imap.FlagSeen) || !slices.Contains(sel.PermanentFlags, imap.FlagWildcard) {
		t.Errorf("PERMANENTFLAGS %v", sel.PermanentFlags)
	}

	subject := &imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"Subject"}, Peek: true}
	start := &imap.FetchItemBodySection{Peek: true, Partial: &imap.SectionPartial{Offset: 0, Size: 10}}
	part1 := &imap.FetchItemBodySection{Part: []int{1}, Peek: true}
	msgs, err := c.Fetch(imap.SeqSetNum(1, 2), &imap.FetchOptions{
		UID: true, Flags: true, Envelope: true, RFC822Size: true, InternalDate: true,
		BodyStructure: &imap.FetchItemBodyStructure{Extended: true},
		BodySection:   []*imap.FetchItemBodySection{subject, start, part1},
	}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 2 {
		t.Fatalf("FETCH 1:2 gave %d messages", len(msgs))
	}
	m1, m2 := msgs[0], msgs[1]
	if m1.UID != 1 || m2.UID != 2 || m1.RFC822Size != int64(len(plain)) || m2.RFC822Size != int64(len(multi)) {
		t.Errorf("UIDs %d %d sizes %d %d", m1.UID, m2.UID, m1.RFC822Size, m2.RFC822Size)
	}
	if len(m1.Flags) != 0 {
		t.Errorf("new message flags %v", m1.Flags)
	}
	if m1.Envelope == nil || m1.Envelope.Subject != "Réunion lundi" || m1.Envelope.MessageID != "m1@example.org" ||
		len(m1.Envelope.From) != 1 || m1.Envelope.From[0].Addr() != "alice@example.org" || m1.Envelope.From[0].Name != "Alice Martin" {
		t.Errorf("envelope %+v", m1.Envelope)
	}
	if m2.Envelope == nil || m2.Envelope.Subject != "Pièce jointe" {
		t.Errorf("encoded subject: %+v", m2.Envelope)
	}
	if time.Since(m1.InternalDate) > time.Minute {
		t.Errorf("INTERNALDATE %v", m1.InternalDate)
	}
	if got := string(m1.FindBodySection(subject)); got != "Subject: Réunion lundi\r\n\r\n" {
		t.Errorf("BODY[HEADER.FIELDS (Subject)] = %q", got)
	}
	if got := string(m1.FindBodySection(start)); got != plain[:10] {
		t.Errorf("BODY[]<0.10> = %q", got)
	}
	if got := string(m2.FindBodySection(part1)); got != "Voir la pièce jointe." {
		t.Errorf("BODY[1] = %q", got)
	}
	if mp, ok := m2.BodyStructure.(*imap.BodyStructureMultiPart); !ok || mp.Subtype != "mixed" || len(mp.Children) != 2 {
		t.Errorf("BODYSTRUCTURE %#v", m2.BodyStructure)
	} else if att, ok := mp.Children[1].(*imap.BodyStructureSinglePart); !ok || att.Type != "application" || att.Subtype != "pdf" ||
		att.Extended == nil || att.Extended.Disposition == nil || att.Extended.Disposition.Params["filename"] != "devis.pdf" {
		t.Errorf("attachment structure %#v", mp.Children[1])
	}
	if got := e.folder("rene", "INBOX"); hasSeen(t, got, 1) {
		t.Error("BODY.PEEK set \\Seen")
	}

	// BODY[] without PEEK: the whole message as stored, and \Seen.
	full := &imap.FetchItemBodySection{}
	msgs, err = c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{full}}).Collect()
	if err != nil || len(msgs) != 1 {
		t.Fatalf("FETCH 1 BODY[]: %v %v", msgs, err)
	}
	if got := string(msgs[0].FindBodySection(full)); got != plain {
		t.Errorf("BODY[] = %q, want %q", got, plain)
	}
	if !slices.Contains(msgs[0].Flags, imap.FlagSeen) {
		t.Errorf("FETCH BODY[] answered flags %v, want \\Seen", msgs[0].Flags)
	}
	if !hasSeen(t, e.folder("rene", "INBOX"), 1) {
		t.Error("\\Seen not stored")
	}

	// EXAMINE: read-only, BODY[] does not set \Seen, STORE is refused.
	if _, err := c.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Fetch(imap.SeqSetNum(2), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{full}}).Collect(); err != nil {
		t.Fatal(err)
	}
	if hasSeen(t, e.folder("rene", "INBOX"), 2) {
		t.Error("BODY[] in EXAMINE set \\Seen")
	}
	if _, err := c.Store(imap.SeqSetNum(2), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagFlagged}}, nil).Collect(); err == nil {
		t.Error("STORE in EXAMINE accepted")
	}
}

func seqNums(s imap.NumSet) []uint32 {
	set, _ := s.(imap.SeqSet)
	nums, _ := set.Nums()
	return nums
}

func uidNums(s imap.NumSet) []imap.UID {
	set, _ := s.(imap.UIDSet)
	nums, _ := set.Nums()
	return nums
}

func hasSeen(t *testing.T, f *maildir.Folder, uid uint32) bool {
	t.Helper()
	snap, err := f.Sync()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range snap.Messages {
		if m.UID == uid {
			return slices.Contains(m.Flags, maildir.FlagSeen)
		}
	}
	t.Fatalf("no message %d", uid)
	return false
}

func flagsOf(t *testing.T, f *maildir.Folder) map[uint32][]string {
	t.Helper()
	snap, err := f.Sync()
	if err != nil {
		t.Fatal(err)
	}
	m := make(map[uint32][]string)
	for _, msg := range snap.Messages {
		m[msg.UID] = msg.Flags
	}
	return m
}

func sortedFlags(flags []string) []string {
	out := slices.Clone(flags)
	slices.Sort(out)
	return slices.Compact(out)
}

func TestStore(t *testing.T) {
	e := newEnv(t)
	e.start()
	for i := 1; i <= 3; i++ {
		e.deliver(testMessage(i, "s", "b"))
	}
	c := e.login(nil)
	e.selectInbox(c)
	steps := []struct {
		set    imap.SeqSet
		op     imap.StoreFlagsOp
		flags  []imap.Flag
		silent bool
		want   map[uint32][]string
	}{
		{imap.SeqSetNum(1), imap.StoreFlagsAdd, []imap.Flag{imap.FlagFlagged, "$Label1", imap.FlagAnswered}, false,
			map[uint32][]string{1: {"$Label1", `\Answered`, `\Flagged`}, 2: nil, 3: nil}},
		{imap.SeqSetNum(1), imap.StoreFlagsDel, []imap.Flag{imap.FlagAnswered, "$LABEL1"}, false,
			map[uint32][]string{1: {`\Flagged`}, 2: nil, 3: nil}},
		{imap.SeqSet{{Start: 2, Stop: 0}}, imap.StoreFlagsSet, []imap.Flag{"\\seen", imap.FlagDraft, "$Junk"}, true,
			map[uint32][]string{1: {`\Flagged`}, 2: {"$Junk", `\Draft`, `\Seen`}, 3: {"$Junk", `\Draft`, `\Seen`}}},
		{imap.SeqSetNum(3), imap.StoreFlagsSet, nil, false,
			map[uint32][]string{1: {`\Flagged`}, 2: {"$Junk", `\Draft`, `\Seen`}, 3: nil}},
		{imap.SeqSetNum(1, 2), imap.StoreFlagsAdd, []imap.Flag{imap.FlagDeleted, "$junk"}, false,
			map[uint32][]string{1: {"$Junk", `\Deleted`, `\Flagged`}, 2: {"$Junk", `\Deleted`, `\Draft`, `\Seen`}, 3: nil}},
	}
	for i, st := range steps {
		res, err := c.Store(st.set, &imap.StoreFlags{Op: st.op, Flags: st.flags, Silent: st.silent}, nil).Collect()
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if st.silent != (len(res) == 0) {
			t.Errorf("step %d: silent %v, %d FETCH responses", i, st.silent, len(res))
		}
		for _, r := range res {
			want := imapFlags(st.want[uint32(r.UID)])
			if !slices.Equal(r.Flags, want) {
				t.Errorf("step %d: message %d answered %v, want %v", i, r.UID, r.Flags, want)
			}
		}
		got := flagsOf(t, e.folder("rene", "INBOX"))
		for uid, want := range st.want {
			if !slices.Equal(sortedFlags(got[uid]), want) && !(len(got[uid]) == 0 && len(want) == 0) {
				t.Errorf("step %d: message %d stored %v, want %v", i, uid, got[uid], want)
			}
		}
	}
}

func TestSearch(t *testing.T) {
	e := newEnv(t)
	e.start()
	e.deliver(testMessage(1, "Facture mars", "Montant: 120 EUR"))
	e.deliver(testMessage(2, "Réunion", "Salle B, à 10h"))
	e.deliver("From: =?iso-8859-1?q?Andr=E9?= <andre@example.org>\r\nTo: rene@ma-societe.fr\r\nSubject: Latin-1\r\n" +
		"Date: Tue, 10 Mar 2026 09:00:00 +0000\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" +
		"Voil=E0 l'=E9t=E9\r\n")
	c := e.login(nil)
	e.selectInbox(c) // takes the delivered messages in: UIDs 1 to 3
	old := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	big := testMessage(4, "Gros", strings.Repeat("x", 5000))
	ac := c.Append("INBOX", int64(len(big)), &imap.AppendOptions{Flags: []imap.Flag{imap.FlagSeen, imap.FlagFlagged}, Time: old})
	ac.Write([]byte(big))
	ac.Close()
	if _, err := ac.Wait(); err != nil {
		t.Fatal(err)
	}
	e.selectInbox(c)
	day := func(y int, m time.Month, d int) time.Time { return time.Date(y, m, d, 0, 0, 0, 0, time.UTC) }
	today := time.Now()
	tests := []struct {
		name     string
		criteria imap.SearchCriteria
		want     []uint32
	}{
		{"all", imap.SearchCriteria{}, []uint32{1, 2, 3, 4}},
		{"flagged", imap.SearchCriteria{Flag: []imap.Flag{imap.FlagFlagged}}, []uint32{4}},
		{"unseen", imap.SearchCriteria{NotFlag: []imap.Flag{imap.FlagSeen}}, []uint32{1, 2, 3}},
		{"keyword", imap.SearchCriteria{Flag: []imap.Flag{"$Label1"}}, nil},
		{"subject", imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: "facture"}}}, []uint32{1}},
		{"subject, UTF-8", imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: "réunion"}}}, []uint32{2}},
		{"from, encoded name", imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "From", Value: "andré"}}}, []uint32{3}},
		{"header present", imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Content-Transfer-Encoding", Value: ""}}}, []uint32{3}},
		{"body", imap.SearchCriteria{Body: []string{"montant"}}, []uint32{1}},
		{"body, Latin-1 decoded", imap.SearchCriteria{Body: []string{"l'été"}}, []uint32{3}},
		{"body is not header", imap.SearchCriteria{Body: []string{"facture"}}, nil},
		{"text in header", imap.SearchCriteria{Text: []string{"facture"}}, []uint32{1}},
		{"larger", imap.SearchCriteria{Larger: 1000}, []uint32{4}},
		{"smaller", imap.SearchCriteria{Smaller: 1000}, []uint32{1, 2, 3}},
		{"before (internal date)", imap.SearchCriteria{Before: day(2021, 1, 1)}, []uint32{4}},
		{"on", imap.SearchCriteria{Since: day(2020, 1, 2), Before: day(2020, 1, 3)}, []uint32{4}},
		{"since today", imap.SearchCriteria{Since: day(today.Year(), today.Month(), today.Day()).Add(-24 * time.Hour)}, []uint32{1, 2, 3}},
		{"sent since", imap.SearchCriteria{SentSince: day(2026, 3, 3)}, []uint32{3, 4}},
		{"sent before", imap.SearchCriteria{SentBefore: day(2026, 3, 2)}, []uint32{1}},
		{"seq set", imap.SearchCriteria{SeqNum: []imap.SeqSet{{{Start: 2, Stop: 0}}}}, []uint32{2, 3, 4}},
		{"uid set", imap.SearchCriteria{UID: []imap.UIDSet{imap.UIDSetNum(1, 3)}}, []uint32{1, 3}},
		{"not", imap.SearchCriteria{Not: []imap.SearchCriteria{{Body: []string{"montant"}}}}, []uint32{2, 3, 4}},
		{"or", imap.SearchCriteria{Or: [][2]imap.SearchCriteria{{{Flag: []imap.Flag{imap.FlagFlagged}}, {Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: "latin"}}}}}}, []uint32{3, 4}},
		{"and", imap.SearchCriteria{NotFlag: []imap.Flag{imap.FlagSeen}, Body: []string{"salle"}}, []uint32{2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data, err := c.Search(&tt.criteria, nil).Wait()
			if err != nil {
				t.Fatal(err)
			}
			got := seqNums(data.All)
			if !slices.Equal(got, tt.want) {
				t.Errorf("SEARCH = %v, want %v", got, tt.want)
			}
		})
	}
	// UID SEARCH answers UIDs; after expunging 1, sequence numbers and UIDs
	// differ.
	if err := c.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}, Silent: true}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Expunge().Collect(); err != nil {
		t.Fatal(err)
	}
	data, err := c.UIDSearch(&imap.SearchCriteria{Flag: []imap.Flag{imap.FlagFlagged}}, nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if uids, _ := data.All.(imap.UIDSet).Nums(); !slices.Equal(uids, []imap.UID{4}) {
		t.Errorf("UID SEARCH FLAGGED = %v", uids)
	}
	data, err = c.Search(&imap.SearchCriteria{Flag: []imap.Flag{imap.FlagFlagged}}, nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if seqs := seqNums(data.All); !slices.Equal(seqs, []uint32{3}) {
		t.Errorf("SEARCH FLAGGED after expunge = %v", seqs)
	}
}

func TestCopyMoveExpunge(t *testing.T) {
	e := newEnv(t)
	e.start()
	for i := 1; i <= 4; i++ {
		e.deliver(testMessage(i, "m", "b"))
	}
	c := e.login(nil)
	e.selectInbox(c)
	if err := c.Create("Archives", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Store(imap.SeqSetNum(2), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagFlagged}, Silent: true}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	cp, err := c.Copy(imap.SeqSetNum(1, 2), "Archives").Wait()
	if err != nil {
		t.Fatal(err)
	}
	if src := uidNums(cp.SourceUIDs); !slices.Equal(src, []imap.UID{1, 2}) {
		t.Errorf("COPYUID source %v", src)
	}
	if dst := uidNums(cp.DestUIDs); !slices.Equal(dst, []imap.UID{1, 2}) || cp.UIDValidity == 0 {
		t.Errorf("COPYUID dest %v validity %d", dst, cp.UIDValidity)
	}
	if got := flagsOf(t, e.folder("rene", "Archives")); !slices.Equal(got[2], []string{maildir.FlagFlagged}) || len(got) != 2 {
		t.Errorf("copied flags %v", got)
	}
	if _, err := c.Copy(imap.SeqSetNum(1), "Nowhere").Wait(); imapCode(err) != imap.ResponseCodeTryCreate {
		t.Errorf("COPY to a missing folder: %v", err)
	}

	// MOVE 3 to Trash: COPYUID and EXPUNGE 3.
	var expunged []uint32
	mv, err := c.Move(imap.SeqSetNum(3), "Trash").Wait()
	if err != nil {
		t.Fatal(err)
	}
	if dst := uidNums(mv.DestUIDs); !slices.Equal(dst, []imap.UID{1}) {
		t.Errorf("MOVE dest UIDs %v", dst)
	}
	if n := c.Mailbox().NumMessages; n != 3 {
		t.Errorf("after MOVE the client counts %d messages", n)
	}
	if st, _ := c.Status("Trash", &imap.StatusOptions{NumMessages: true}).Wait(); st == nil || *st.NumMessages != 1 {
		t.Errorf("Trash after MOVE: %+v", st)
	}

	// EXPUNGE removes the \Deleted ones; UID EXPUNGE only those named.
	if err := c.Store(imap.SeqSetNum(1, 3), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}, Silent: true}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	expunged, err = c.UIDExpunge(imap.UIDSetNum(4)).Collect()
	if err != nil || !slices.Equal(expunged, []uint32{3}) {
		t.Errorf("UID EXPUNGE 4 = %v, %v; want [3]", expunged, err)
	}
	expunged, err = c.Expunge().Collect()
	if err != nil || !slices.Equal(expunged, []uint32{1}) {
		t.Errorf("EXPUNGE = %v, %v; want [1]", expunged, err)
	}
	msgs, err := c.Fetch(imap.SeqSetNum(1, 0), &imap.FetchOptions{UID: true}).Collect()
	if err != nil || len(msgs) != 1 || msgs[0].UID != 2 {
		t.Errorf("left %v %v, want UID 2", msgs, err)
	}

	// CLOSE expunges too; UNSELECT does not.
	if err := c.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}, Silent: true}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Unselect().Wait(); err != nil {
		t.Fatal(err)
	}
	if n := len(flagsOf(t, e.folder("rene", "INBOX"))); n != 1 {
		t.Errorf("after UNSELECT %d messages, want 1", n)
	}
	e.selectInbox(c)
	if err := c.UnselectAndExpunge().Wait(); err != nil {
		t.Fatal(err)
	}
	if n := len(flagsOf(t, e.folder("rene", "INBOX"))); n != 0 {
		t.Errorf("after CLOSE %d messages, want 0", n)
	}
}

func TestAppend(t *testing.T) {
	e := newEnv(t)
	e.setMessageLimit(4096)
	e.start()
	c := e.login(nil)
	if !c.Caps().Has("APPENDLIMIT=4096") {
		t.Errorf("capabilities %v lack APPENDLIMIT=4096", c.Caps())
	}
	date := time.Date(2024, 2, 29, 13, 14, 15, 0, time.FixedZone("", 3600))
	msg := testMessage(1, "Brouillon", "pas fini")
	ac := c.Append("Drafts", int64(len(msg)), &imap.AppendOptions{Flags: []imap.Flag{imap.FlagDraft, imap.FlagSeen}, Time: date})
	ac.Write([]byte(msg))
	ac.Close()
	res, err := ac.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if res.UID != 1 || res.UIDValidity == 0 {
		t.Errorf("APPENDUID %+v", res)
	}
	if _, err := c.Select("Drafts", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	full := &imap.FetchItemBodySection{Peek: true}
	msgs, err := c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{Flags: true, InternalDate: true, RFC822Size: true, BodySection: []*imap.FetchItemBodySection{full}}).Collect()
	if err != nil || len(msgs) != 1 {
		t.Fatal(msgs, err)
	}
	m := msgs[0]
	if !m.InternalDate.Equal(date) || !slices.Equal(m.Flags, []imap.Flag{imap.FlagDraft, imap.FlagSeen}) || m.RFC822Size != int64(len(msg)) {
		t.Errorf("appended: date %v flags %v size %d", m.InternalDate, m.Flags, m.RFC822Size)
	}
	if !bytes.Equal(m.FindBodySection(full), []byte(msg)) {
		t.Errorf("appended content %q", m.FindBodySection(full))
	}

	ac = c.Append("Nowhere", int64(len(msg)), nil)
	ac.Write([]byte(msg))
	ac.Close()
	if _, err := ac.Wait(); imapCode(err) != imap.ResponseCodeTryCreate {
		t.Errorf("APPEND to a missing folder: %v", err)
	}

	// Too large: refused before the client sends it.
	r := dialRaw(t, e.tlsAddr, true)
	r.cmd("LOGIN %s %s", testUser, testPassword)
	if _, st := r.cmd("APPEND INBOX {5000}"); !strings.HasPrefix(st, "NO [TOOBIG]") {
		t.Errorf("APPEND of 5000 bytes: %q", st)
	}
	if _, st := r.cmd("NOOP"); !strings.HasPrefix(st, "OK") {
		t.Errorf("session after a refused APPEND: %q", st)
	}
}

// TestStableUIDs restarts the server and the maildir store on the same
// data directory: UIDs, UIDVALIDITY and flags stay.
func TestStableUIDs(t *testing.T) {
	e := newEnv(t)
	e.start()
	for i := 1; i <= 3; i++ {
		e.deliver(testMessage(i, "m", "b"))
	}
	c := e.login(nil)
	sel1 := e.selectInbox(c)
	if err := c.Store(imap.SeqSetNum(2), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}, Silent: true}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Expunge().Collect(); err != nil {
		t.Fatal(err)
	}
	if err := c.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagAnswered}, Silent: true}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	c.Close()
	e.shutdown()

	e.start()
	e.deliver(testMessage(4, "m", "b"))
	c = e.login(nil)
	sel2 := e.selectInbox(c)
	if sel2.UIDValidity != sel1.UIDValidity || sel2.UIDNext != 5 || sel2.NumMessages != 3 {
		t.Errorf("after restart: UIDVALIDITY %d (was %d), UIDNEXT %d, %d messages", sel2.UIDValidity, sel1.UIDValidity, sel2.UIDNext, sel2.NumMessages)
	}
	msgs, err := c.Fetch(imap.SeqSetNum(1, 2, 3), &imap.FetchOptions{UID: true, Flags: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	var uids []imap.UID
	for _, m := range msgs {
		uids = append(uids, m.UID)
	}
	if !slices.Equal(uids, []imap.UID{1, 3, 4}) {
		t.Errorf("UIDs after restart %v, want [1 3 4]", uids)
	}
	if len(msgs) > 0 && !slices.Equal(msgs[0].Flags, []imap.Flag{imap.FlagAnswered}) {
		t.Errorf("flags after restart %v", msgs[0].Flags)
	}
}

// TestIdleDelivery: a message delivered while a client idles shows up as
// EXISTS within about two seconds.
func TestIdleDelivery(t *testing.T) {
	e := newEnv(t)
	e.limits.PollInterval = time.Second
	e.start()
	e.deliver(testMessage(1, "m", "b"))
	exists := make(chan uint32, 10)
	expunged := make(chan uint32, 10)
	fetched := make(chan fetchedFlags, 10)
	c := e.login(&imapclient.Options{UnilateralDataHandler: &imapclient.UnilateralDataHandler{
		Mailbox: func(d *imapclient.UnilateralDataMailbox) {
			if d.NumMessages != nil {
				exists <- *d.NumMessages
			}
		},
		Expunge: func(seq uint32) { expunged <- seq },
		Fetch: func(m *imapclient.FetchMessageData) {
			buf, err := m.Collect()
			if err == nil {
				fetched <- fetchedFlags{buf.SeqNum, buf.Flags}
			}
		},
	}})
	e.selectInbox(c)
	idle, err := c.Idle()
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	start := time.Now()
	e.deliver(testMessage(2, "m", "b"))
	select {
	case n := <-exists:
		if n != 2 {
			t.Errorf("EXISTS %d, want 2", n)
		}
		// A poll a second, and some slack for a loaded machine.
		if d := time.Since(start); d > 2500*time.Millisecond {
			t.Errorf("EXISTS after %v", d)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("no EXISTS while idling")
	}
	// A flag set and a message deleted elsewhere show too.
	f := e.folder("rene", "INBOX")
	if _, err := f.StoreFlags([]uint32{2}, maildir.FlagsSet, []string{maildir.FlagSeen}); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-fetched:
		if m.seq != 2 || !slices.Equal(m.flags, []imap.Flag{imap.FlagSeen}) {
			t.Errorf("FETCH while idling: %+v", m)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("no FETCH FLAGS while idling")
	}
	if err := f.Expunge([]uint32{1}); err != nil {
		t.Fatal(err)
	}
	select {
	case n := <-expunged:
		if n != 1 {
			t.Errorf("EXPUNGE %d while idling, want 1", n)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("no EXPUNGE while idling")
	}
	if err := idle.Close(); err != nil {
		t.Fatal(err)
	}
	if err := idle.Wait(); err != nil {
		t.Fatal(err)
	}
	msgs, err := c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{UID: true}).Collect()
	if err != nil || len(msgs) != 1 || msgs[0].UID != 2 {
		t.Errorf("FETCH 1 after IDLE: %v %v", msgs, err)
	}
}

type fetchedFlags struct {
	seq   uint32
	flags []imap.Flag
}

// TestChangesFromElsewhere: what POP3 (another Folder handle) or another
// IMAP session does shows at the next NOOP, and sequence numbers do not
// move in between.
func TestChangesFromElsewhere(t *testing.T) {
	e := newEnv(t)
	e.start()
	for i := 1; i <= 3; i++ {
		e.deliver(testMessage(i, "m", "b"))
	}
	r := dialRaw(t, e.tlsAddr, true)
	r.cmd("LOGIN %s %s", testUser, testPassword)
	if _, st := r.cmd("SELECT INBOX"); !strings.HasPrefix(st, "OK") {
		t.Fatal(st)
	}

	// Message 2 is deleted as POP3 would; FETCH may not send EXPUNGE, so
	// sequence numbers stay until NOOP.
	if err := e.folder("rene", "INBOX").Expunge([]uint32{2}); err != nil {
		t.Fatal(err)
	}
	lines, st := r.cmd("FETCH 1:* (UID)")
	if !strings.HasPrefix(st, "OK") {
		t.Fatal(st)
	}
	for _, l := range lines {
		if strings.Contains(l, "EXPUNGE") {
			t.Errorf("EXPUNGE during FETCH: %q", lines)
		}
	}
	if want := []string{"* 1 FETCH (UID 1)", "* 2 FETCH (UID 2)", "* 3 FETCH (UID 3)"}; !slices.Equal(lines, want) {
		t.Errorf("FETCH 1:* (UID) = %q, want %q", lines, want)
	}
	// Its content is gone: no answer for it rather than a wrong one.
	lines, _ = r.cmd("FETCH 2 (BODY.PEEK[])")
	if len(lines) != 0 {
		t.Errorf("FETCH of a message expunged elsewhere: %q", lines)
	}
	lines, st = r.cmd("NOOP")
	if !strings.HasPrefix(st, "OK") || !slices.Equal(lines, []string{"* 2 EXPUNGE"}) {
		t.Errorf("NOOP = %q %q, want * 2 EXPUNGE", lines, st)
	}
	lines, _ = r.cmd("FETCH 1:* (UID)")
	if want := []string{"* 1 FETCH (UID 1)", "* 2 FETCH (UID 3)"}; !slices.Equal(lines, want) {
		t.Errorf("after NOOP, FETCH 1:* (UID) = %q, want %q", lines, want)
	}

	// Another IMAP session sets a flag and expunges; new mail arrives.
	c := e.login(nil)
	e.selectInbox(c)
	if err := c.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagFlagged}, Silent: true}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Store(imap.SeqSetNum(2), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}, Silent: true}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Expunge().Collect(); err != nil {
		t.Fatal(err)
	}
	e.deliver(testMessage(4, "m", "b"))
	lines, _ = r.cmd("NOOP")
	want := []string{"* 2 EXPUNGE", "* 1 FETCH (UID 1 FLAGS (\\Flagged))", "* 2 EXISTS"}
	if !slices.Equal(lines, want) {
		t.Errorf("NOOP = %q, want %q", lines, want)
	}
	lines, _ = r.cmd("UID FETCH 1:* (FLAGS)")
	if want := []string{"* 1 FETCH (UID 1 FLAGS (\\Flagged))", "* 2 FETCH (UID 4 FLAGS ())"}; !slices.Equal(lines, want) {
		t.Errorf("UID FETCH 1:* = %q, want %q", lines, want)
	}
}

// TestShutdown: Serve returns once its context is done, sessions in IDLE
// included, and leaves no goroutine behind.
func TestShutdown(t *testing.T) {
	e := newEnv(t)
	before := runtime.NumGoroutine()
	e.start()
	clients := []*imapclient.Client{e.login(nil), e.login(nil)}
	e.selectInbox(clients[0])
	idle, err := clients[0].Idle()
	if err != nil {
		t.Fatal(err)
	}
	raw := dialRaw(t, e.addr, false) // not logged in
	start := time.Now()
	e.shutdown()
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("shutdown took %v", d)
	}
	if closed, got := raw.closed(2 * time.Second); !closed || !strings.Contains(got, "* BYE") {
		t.Errorf("client at shutdown: closed %v, got %q", closed, got)
	}
	idle.Wait()
	for _, c := range clients {
		c.Close()
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<20)
		t.Errorf("%d goroutines after shutdown, %d before the server started:\n%s", n, before, buf[:runtime.Stack(buf, true)])
	}
}

// TestPythonImaplib runs a client's usual flow with Python's imaplib.
func TestPythonImaplib(t *testing.T) {
	python := testenv.NeedTool(t, "python3")
	e := newEnv(t)
	e.start()
	msg1 := testMessage(1, "Facture mars", "Montant: 120 EUR")
	e.deliver(msg1)
	e.deliver(testMessage(2, "Réunion", "Salle B"))
	e.login(nil).Logout().Wait() // the first login makes Trash
	_, port, _ := net.SplitHostPort(e.addr)
	_, tlsPort, _ := net.SplitHostPort(e.tlsAddr)
	cmd := exec.Command(python, "testdata/flow.py")
	cmd.Env = append(os.Environ(), "IMAP_PORT="+port, "IMAPS_PORT="+tlsPort, "IMAP_USER="+testUser,
		"IMAP_PASSWORD="+testPassword, "MSG1="+msg1, "SIZE1="+strconv.Itoa(len(msg1)))
	out, err := cmd.CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "OK" {
		t.Errorf("imaplib flow: %v\n%s", err, out)
	}
}

// TestSelectedFolderDeleted: another session deletes the selected folder;
// its messages go away like expunged ones.
func TestSelectedFolderDeleted(t *testing.T) {
	e := newEnv(t)
	e.start()
	c := e.login(nil)
	if err := c.Create("Archives", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	msg := testMessage(1, "m", "b")
	ac := c.Append("Archives", int64(len(msg)), nil)
	ac.Write([]byte(msg))
	ac.Close()
	if _, err := ac.Wait(); err != nil {
		t.Fatal(err)
	}
	r := dialRaw(t, e.tlsAddr, true)
	r.cmd("LOGIN %s %s", testUser, testPassword)
	if _, st := r.cmd("SELECT Archives"); !strings.HasPrefix(st, "OK") {
		t.Fatal(st)
	}
	if err := c.Delete("Archives").Wait(); err != nil {
		t.Fatal(err)
	}
	lines, st := r.cmd("NOOP")
	if !strings.HasPrefix(st, "OK") || !slices.Equal(lines, []string{"* 1 EXPUNGE"}) {
		t.Errorf("NOOP in a deleted folder: %q %q", lines, st)
	}
	if _, st := r.cmd("FETCH 1:* (FLAGS)"); !strings.HasPrefix(st, "OK") {
		t.Errorf("FETCH in a deleted folder: %q", st)
	}
}
