package imapd

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"mailfountain.dev/mailfountain/runtime/maildir"
)

// selection is a session's view of its selected folder. Its message list
// gives the sequence numbers the client knows; it changes only where IMAP
// lets the server say so (EXISTS at any response, EXPUNGE outside FETCH,
// STORE and SEARCH), by comparing it with a fresh Sync of the folder.
type selection struct {
	sess      *session
	folder    *maildir.Folder
	validity  uint32
	readOnly  bool
	msgs      []viewMsg // msgs[i] is sequence number i+1, by UID
	searchRes imap.UIDSet
	keywords  []string // the folder's, as the client was last told (FLAGS)
}

type viewMsg struct {
	uid imap.UID
	// flags are the system flags and keywords, sorted, as maildir gives
	// them; the slice may be a snapshot's, shared: replaced, never
	// modified.
	flags []string
	size  int64
	date  time.Time
}

func newSelection(sess *session, f *maildir.Folder, snap *maildir.Snapshot, readOnly bool) *selection {
	sel := &selection{sess: sess, folder: f, validity: snap.UIDValidity, readOnly: readOnly,
		msgs: make([]viewMsg, 0, len(snap.Messages)), keywords: snap.Keywords}
	for _, m := range snap.Messages {
		sel.msgs = append(sel.msgs, newViewMsg(m))
	}
	return sel
}

func newViewMsg(m maildir.Message) viewMsg {
	return viewMsg{uid: imap.UID(m.UID), flags: m.Flags, size: m.Size, date: m.Date}
}

func (sel *selection) maxUID() imap.UID {
	if len(sel.msgs) == 0 {
		return 0
	}
	return sel.msgs[len(sel.msgs)-1].uid
}

func (sel *selection) sync() (map[imap.UID]*maildir.Message, *maildir.Snapshot, error) {
	snap, err := sel.folder.Sync()
	if errors.Is(err, maildir.ErrNoFolder) {
		// Deleted or renamed by another session: as if emptied.
		return map[imap.UID]*maildir.Message{}, &maildir.Snapshot{}, nil
	}
	if err != nil {
		return nil, nil, &syncError{err}
	}
	cur := make(map[imap.UID]*maildir.Message, len(snap.Messages))
	for i := range snap.Messages {
		cur[imap.UID(snap.Messages[i].UID)] = &snap.Messages[i]
	}
	return cur, snap, nil
}

// syncError is a failure to read the folder, as opposed to one to write
// to the client.
type syncError struct{ err error }

func (e *syncError) Error() string { return e.err.Error() }
func (e *syncError) Unwrap() error { return e.err }

type expungeWriter interface {
	WriteExpunge(seqNum uint32) error
}

// update reports to the client what changed in the folder since its view:
// messages gone (if allowed now), new keywords, new messages, changed
// flags.
func (sel *selection) update(w *imapserver.UpdateWriter, allowExpunge bool) error {
	cur, snap, err := sel.sync()
	if err != nil {
		return err
	}
	if snap.UIDValidity != 0 && snap.UIDValidity != sel.validity {
		// The folder was deleted and made again: the client's UIDs mean
		// nothing now, and IMAP has no way to say so but to end.
		sel.sess.bye("Mailbox UIDVALIDITY changed")
		return nil
	}
	if allowExpunge {
		if err := sel.dropGone(w, cur); err != nil {
			return err
		}
	}
	// A keyword another session (or this one) used first: FLAGS before
	// the FETCH that shows it.
	if snap.UIDValidity != 0 && !slices.Equal(snap.Keywords, sel.keywords) {
		sel.keywords = snap.Keywords
		if err := w.WriteMailboxFlags(mailboxFlags(sel.keywords)); err != nil {
			return err
		}
	}
	for i := range sel.msgs {
		m := &sel.msgs[i]
		if now, ok := cur[m.uid]; ok && !slices.Equal(now.Flags, m.flags) {
			m.flags = now.Flags
			if err := w.WriteMessageFlags(uint32(i+1), m.uid, imapFlags(m.flags)); err != nil {
				return err
			}
		}
	}
	last, added := sel.maxUID(), false
	for _, m := range snap.Messages {
		if imap.UID(m.UID) > last {
			sel.msgs = append(sel.msgs, newViewMsg(m))
			added = true
		}
	}
	if added {
		return w.WriteNumMessages(uint32(len(sel.msgs)))
	}
	return nil
}

// dropGone removes from the view the messages no longer in cur, with an
// EXPUNGE each, from the highest sequence number down so that each number
// sent is still the one the client knows.
func (sel *selection) dropGone(w expungeWriter, cur map[imap.UID]*maildir.Message) error {
	for i := len(sel.msgs) - 1; i >= 0; i-- {
		if _, ok := cur[sel.msgs[i].uid]; ok {
			continue
		}
		sel.msgs = slices.Delete(sel.msgs, i, i+1)
		if err := w.WriteExpunge(uint32(i + 1)); err != nil {
			return err
		}
	}
	return nil
}

// resolve returns the indexes in the view of the messages of numSet.
func (sel *selection) resolve(numSet imap.NumSet) []int {
	if imap.IsSearchRes(numSet) {
		numSet = sel.searchRes
	}
	var idx []int
	switch set := numSet.(type) {
	case imap.SeqSet:
		set = staticSeqSet(set, uint32(len(sel.msgs)))
		for i := range sel.msgs {
			if set.Contains(uint32(i + 1)) {
				idx = append(idx, i)
			}
		}
	case imap.UIDSet:
		set = staticUIDSet(set, sel.maxUID())
		for i, m := range sel.msgs {
			if set.Contains(m.uid) {
				idx = append(idx, i)
			}
		}
	}
	return idx
}

// staticSeqSet replaces "*" (0) by the largest number; a copy, since the
// set may be the saved search result.
func staticSeqSet(set imap.SeqSet, max uint32) imap.SeqSet {
	out := slices.Clone(set)
	for i := range out {
		staticRange(&out[i].Start, &out[i].Stop, max)
	}
	return out
}

func staticUIDSet(set imap.UIDSet, max imap.UID) imap.UIDSet {
	out := slices.Clone(set)
	for i := range out {
		staticRange((*uint32)(&out[i].Start), (*uint32)(&out[i].Stop), uint32(max))
	}
	return out
}

func staticRange(start, stop *uint32, max uint32) {
	if *start == 0 {
		*start = max
	}
	if *stop == 0 {
		*stop = max
	}
	if *start > *stop {
		*start, *stop = *stop, *start
	}
}

func readOnlyError() error {
	return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCode("READ-ONLY"), Text: "Mailbox is read-only"}
}

// readMessage reads a message whole; nil if it is gone.
func (sel *selection) readMessage(uid imap.UID, size int64) ([]byte, error) {
	rc, err := sel.folder.Open(uint32(uid))
	if errors.Is(err, maildir.ErrNoMessage) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open message %d of %s: %w", uid, sel.folder.Name(), err)
	}
	defer rc.Close()
	buf := bytes.NewBuffer(make([]byte, 0, size+bytes.MinRead))
	if _, err := buf.ReadFrom(rc); err != nil {
		return nil, fmt.Errorf("read message %d of %s: %w", uid, sel.folder.Name(), err)
	}
	return buf.Bytes(), nil
}

func (sel *selection) fetch(w *imapserver.FetchWriter, numSet imap.NumSet, options *imap.FetchOptions) error {
	markSeen := false
	if !sel.readOnly {
		for _, bs := range options.BodySection {
			markSeen = markSeen || !bs.Peek
		}
		for _, bs := range options.BinarySection {
			markSeen = markSeen || !bs.Peek
		}
	}
	needContent := options.Envelope || options.BodyStructure != nil || len(options.BodySection) > 0 ||
		len(options.BinarySection) > 0 || len(options.BinarySectionSize) > 0

	for _, i := range sel.resolve(numSet) {
		m := &sel.msgs[i]
		var raw []byte
		if needContent {
			var err error
			if raw, err = sel.readMessage(m.uid, m.size); err != nil {
				return err
			}
			if raw == nil {
				continue // expunged elsewhere; the EXPUNGE comes later
			}
		}
		flagsChanged := false
		if markSeen && !hasFlag(m.flags, maildir.FlagSeen) {
			got, err := sel.folder.StoreFlags([]uint32{uint32(m.uid)}, maildir.FlagsAdd, []string{maildir.FlagSeen})
			if err != nil {
				return fmt.Errorf("set \\Seen on message %d of %s: %w", m.uid, sel.folder.Name(), err)
			}
			flags, ok := got[uint32(m.uid)]
			if !ok {
				continue // expunged elsewhere
			}
			m.flags, flagsChanged = flags, true
		}
		if err := writeFetch(w.CreateMessage(uint32(i+1)), m, raw, options, flagsChanged); err != nil {
			return err
		}
	}
	return nil
}

func writeFetch(rw *imapserver.FetchResponseWriter, m *viewMsg, raw []byte, options *imap.FetchOptions, flagsChanged bool) error {
	rw.WriteUID(m.uid)
	if options.Flags || flagsChanged {
		rw.WriteFlags(imapFlags(m.flags))
	}
	if options.InternalDate {
		rw.WriteInternalDate(m.date)
	}
	if options.RFC822Size {
		rw.WriteRFC822Size(m.size)
	}
	if options.Envelope {
		rw.WriteEnvelope(envelope(raw))
	}
	if options.BodyStructure != nil {
		rw.WriteBodyStructure(bodyStructure(raw))
	}
	writeLiteral := func(wc io.WriteCloser, b []byte) error {
		_, werr := wc.Write(b)
		if cerr := wc.Close(); werr == nil {
			werr = cerr
		}
		return werr
	}
	for _, bs := range options.BodySection {
		b := bodySection(raw, bs)
		if err := writeLiteral(rw.WriteBodySection(bs, int64(len(b))), b); err != nil {
			return err
		}
	}
	for _, bs := range options.BinarySection {
		b := binarySection(raw, bs)
		if err := writeLiteral(rw.WriteBinarySection(bs, int64(len(b))), b); err != nil {
			return err
		}
	}
	for _, bss := range options.BinarySectionSize {
		b := binarySection(raw, &imap.FetchItemBinarySection{Part: bss.Part})
		rw.WriteBinarySectionSize(bss, uint32(len(b)))
	}
	return rw.Close()
}

func (sel *selection) store(w *imapserver.FetchWriter, numSet imap.NumSet, store *imap.StoreFlags) error {
	if sel.readOnly {
		return readOnlyError()
	}
	idx := sel.resolve(numSet)
	uids := make([]uint32, len(idx))
	for j, i := range idx {
		uids[j] = uint32(sel.msgs[i].uid)
	}
	op := maildir.FlagsSet
	switch store.Op {
	case imap.StoreFlagsAdd:
		op = maildir.FlagsAdd
	case imap.StoreFlagsDel:
		op = maildir.FlagsRemove
	}
	// maildir applies the change to the flags on disk, not to the view's,
	// so as not to undo what another session did meanwhile.
	got, err := sel.folder.StoreFlags(uids, op, clientFlags(store.Flags))
	if err != nil {
		return flagError(fmt.Errorf("store flags in %s: %w", sel.folder.Name(), err))
	}
	for _, i := range idx {
		m := &sel.msgs[i]
		flags, ok := got[uint32(m.uid)]
		if !ok {
			continue // expunged elsewhere
		}
		m.flags = flags
		if !store.Silent {
			rw := w.CreateMessage(uint32(i + 1))
			rw.WriteUID(m.uid)
			rw.WriteFlags(imapFlags(flags))
			if err := rw.Close(); err != nil {
				return err
			}
		}
	}
	return nil
}

func (sel *selection) expunge(w *imapserver.ExpungeWriter, uids *imap.UIDSet) error {
	if sel.readOnly {
		return nil // CLOSE after EXAMINE expunges nothing
	}
	cur, _, err := sel.sync()
	if err != nil {
		return err
	}
	var del []uint32
	for _, m := range sel.msgs {
		if uids != nil && !uids.Contains(m.uid) {
			continue
		}
		if now, ok := cur[m.uid]; ok && hasFlag(now.Flags, maildir.FlagDeleted) {
			del = append(del, uint32(m.uid))
			delete(cur, m.uid)
		}
	}
	if len(del) > 0 {
		if err := sel.folder.Expunge(del); err != nil {
			return fmt.Errorf("expunge %s: %w", sel.folder.Name(), err)
		}
	}
	return sel.dropGone(w, cur)
}

// copyUIDs copies the messages of numSet that still exist to dest.
func (sel *selection) copyUIDs(numSet imap.NumSet, dest string) (*imap.CopyData, []uint32, error) {
	dst, err := sel.sess.folder(dest, imap.ResponseCodeTryCreate)
	if err != nil {
		return nil, nil, err
	}
	idx := sel.resolve(numSet)
	if len(idx) == 0 {
		return nil, nil, nil
	}
	cur, _, err := sel.sync()
	if err != nil {
		return nil, nil, err
	}
	var uids []uint32
	for _, i := range idx {
		if _, ok := cur[sel.msgs[i].uid]; ok {
			uids = append(uids, uint32(sel.msgs[i].uid))
		}
	}
	if len(uids) == 0 {
		return nil, nil, folderError(maildir.ErrNoMessage, "")
	}
	newUIDs, err := sel.folder.Copy(uids, dst)
	if err != nil {
		return nil, nil, folderError(flagError(fmt.Errorf("copy from %s to %s: %w", sel.folder.Name(), dst.Name(), err)), "")
	}
	snap, err := dst.Sync()
	if err != nil {
		return nil, nil, fmt.Errorf("copy to %s: %w", dst.Name(), err)
	}
	data := &imap.CopyData{UIDValidity: snap.UIDValidity}
	for i := range uids {
		data.SourceUIDs.AddNum(imap.UID(uids[i]))
		data.DestUIDs.AddNum(imap.UID(newUIDs[i]))
	}
	return data, uids, nil
}

func (sel *selection) copy(numSet imap.NumSet, dest string) (*imap.CopyData, error) {
	data, _, err := sel.copyUIDs(numSet, dest)
	return data, err
}

func (sel *selection) move(w *imapserver.MoveWriter, numSet imap.NumSet, dest string) error {
	if sel.readOnly {
		return readOnlyError()
	}
	if canonName(dest) == sel.folder.Name() {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot, Text: "Source and destination are the same mailbox"}
	}
	data, uids, err := sel.copyUIDs(numSet, dest)
	if err != nil || data == nil {
		return err
	}
	if err := sel.folder.Expunge(uids); err != nil {
		return fmt.Errorf("move from %s: %w", sel.folder.Name(), err)
	}
	if err := w.WriteCopyData(data); err != nil {
		return err
	}
	cur, _, err := sel.sync()
	if err != nil {
		return err
	}
	return sel.dropGone(w, cur)
}

// Flags.

var systemFlagNames = []string{maildir.FlagAnswered, maildir.FlagDeleted, maildir.FlagDraft, maildir.FlagFlagged, maildir.FlagSeen}

// mailboxFlags are the flags of FLAGS: the system flags and the folder's
// keywords.
func mailboxFlags(keywords []string) []imap.Flag {
	return imapFlags(slices.Concat(systemFlagNames, keywords))
}

// permanentFlags are those of PERMANENTFLAGS: all, and \* while the
// folder has room for new keywords.
func permanentFlags(keywords []string) []imap.Flag {
	flags := mailboxFlags(keywords)
	if len(keywords) < maildir.MaxKeywords {
		flags = append(flags, imap.FlagWildcard)
	}
	return flags
}

func imapFlags(flags []string) []imap.Flag {
	out := make([]imap.Flag, len(flags))
	for i, f := range flags {
		out[i] = imap.Flag(f)
	}
	return out
}

func hasFlag(flags []string, f string) bool { return slices.Contains(flags, f) }

// hasFlagFold is hasFlag for a flag as a client spells it: flags are
// case-insensitive (RFC 3501 2.3.2).
func hasFlagFold(flags []string, f string) bool {
	return slices.ContainsFunc(flags, func(g string) bool { return strings.EqualFold(g, f) })
}

// clientFlags are the flags of STORE or APPEND as maildir takes them:
// \Recent, which clients cannot set (RFC 3501 2.3.2), is dropped; maildir
// refuses the flags it cannot store.
func clientFlags(flags []imap.Flag) []string {
	out := make([]string, 0, len(flags))
	for _, f := range flags {
		if !strings.EqualFold(string(f), `\Recent`) {
			out = append(out, string(f))
		}
	}
	return out
}

// flagError turns maildir's refusal of flags into the IMAP answer; other
// errors are left as they are.
func flagError(err error) error {
	switch {
	case errors.Is(err, maildir.ErrFlag):
		return &imap.Error{Type: imap.StatusResponseTypeBad, Code: imap.ResponseCodeClientBug,
			Text: fmt.Sprintf("Invalid flag: system flags and keywords (atoms of at most %d characters) only", maildir.MaxKeywordLen)}
	case errors.Is(err, maildir.ErrKeywordLimit):
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeLimit,
			Text: fmt.Sprintf("This mailbox has too many keywords already (at most %d)", maildir.MaxKeywords)}
	}
	return err
}
