package imapd

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"mailfountain.dev/mailfountain/runtime/auth"
	"mailfountain.dev/mailfountain/runtime/connlimit"
	"mailfountain.dev/mailfountain/runtime/maildir"
)

// specialUse are the folders made on a mailbox's first IMAP login, with
// the RFC 6154 attribute LIST gives them.
var specialUse = []struct {
	name string
	attr imap.MailboxAttr
}{
	{"Sent", imap.MailboxAttrSent},
	{"Drafts", imap.MailboxAttrDrafts},
	{"Trash", imap.MailboxAttrTrash},
	{"Junk", imap.MailboxAttrJunk},
}

func specialUseOf(name string) imap.MailboxAttr {
	for _, su := range specialUse {
		if su.name == name {
			return su.attr
		}
	}
	if name == "Archives" {
		return imap.MailboxAttrArchive
	}
	return ""
}

// session is one IMAP connection.
type session struct {
	in     *instance
	conn   *imapserver.Conn
	remote netip.Addr

	authTimer *time.Timer
	authed    atomic.Bool
	failures  int

	user *auth.Principal
	root string
	mbox *maildir.Mailbox
	sel  *selection

	mu       sync.Mutex
	closed   bool
	idleDone chan struct{} // closed when the current Idle returns
	byes     sync.WaitGroup
	endOnce  sync.Once
}

var _ imapserver.SessionIMAP4rev2 = (*session)(nil)
var _ imapserver.SessionAppendLimit = (*session)(nil)

func (in *instance) newSession(c *imapserver.Conn) *session {
	sess := &session{in: in, conn: c, remote: connlimit.AddrOf(c.NetConn().RemoteAddr())}
	in.mu.Lock()
	in.sessions[sess] = struct{}{}
	in.mu.Unlock()
	sess.authTimer = time.AfterFunc(in.srv.cfg.AuthTimeout, func() {
		if !sess.authed.Load() {
			sess.bye("Autologout: authentication took too long")
		}
	})
	return sess
}

// bye ends the session with an untagged BYE. It runs apart from the
// command being handled, which may hold the connection's writer (as
// AUTHENTICATE does while it calls Login); Close waits for it.
func (s *session) bye(text string) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.byes.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.byes.Done()
		s.conn.Bye(text)
	}()
}

func (s *session) Close() error {
	s.authTimer.Stop()
	s.mu.Lock()
	s.closed = true
	idle := s.idleDone
	s.mu.Unlock()
	if idle != nil {
		<-idle // imapserver may close a session while its Idle still returns
	}
	s.byes.Wait()
	s.sel = nil
	s.endOnce.Do(func() {
		s.in.mu.Lock()
		delete(s.in.sessions, s)
		s.in.mu.Unlock()
		s.in.conns.Done()
	})
	return nil
}

// AppendLimit is the settings' largest message, that of SMTP too, so that
// a draft saved can be sent. imapserver asks at each CAPABILITY, APPEND
// and STATUS: a new value applies to open sessions.
func (s *session) AppendLimit() uint32 {
	set := s.in.srv.cfg.Settings.Load()
	return uint32(min(set.MessageLimit(), math.MaxUint32)) // APPENDLIMIT is a 32-bit number
}

// Login checks the address and password (LOGIN and AUTHENTICATE PLAIN;
// imapserver has already refused them without TLS unless allowed).
func (s *session) Login(username, password string) error {
	srv := s.in.srv
	ctx, cancel := context.WithTimeout(s.in.ctx, 30*time.Second)
	defer cancel()
	p, err := srv.cfg.Auth.Login(ctx, "imap", s.remote, username, password)
	if err != nil {
		s.failures++
		var resp error
		switch {
		case errors.Is(err, auth.ErrBadCredentials):
			srv.log.Info("imap: login failed", "remote", s.remote, "user", username)
			resp = imapserver.ErrAuthFailed
		case errors.Is(err, auth.ErrTooManyFailures):
			srv.log.Info("imap: login refused, too many failures", "remote", s.remote, "user", username)
			resp = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeUnavailable,
				Text: "Too many failed logins, try again later"}
		default:
			srv.log.Warn("imap: login", "remote", s.remote, "user", username, "err", err)
			resp = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeUnavailable,
				Text: "Temporary failure, try again later"}
		}
		if s.failures >= srv.cfg.MaxLoginFailures {
			s.bye("Too many failed logins")
		}
		return resp
	}
	root := srv.cfg.MailboxPath(p.Domain, p.Account)
	mbox, err := srv.cfg.Maildir.Open(root)
	if err != nil {
		srv.log.Error("imap: open mailbox", "user", p.Address, "err", err)
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeUnavailable,
			Text: "Mailbox unavailable, try again later"}
	}
	s.user, s.root, s.mbox = p, root, mbox
	if err := s.firstLogin(); err != nil {
		srv.log.Warn("imap: prepare mailbox", "user", p.Address, "err", err)
	}
	s.authed.Store(true)
	s.authTimer.Stop()
	srv.log.Info("imap: login", "remote", s.remote, "user", p.Address)
	return nil
}

// firstLogin makes the special-use folders and subscribes to them on the
// mailbox's first IMAP login; the subscriptions file marks it done, so a
// folder the user deletes stays deleted.
func (s *session) firstLogin() error {
	mu := s.in.srv.subscriptionsLock(s.root)
	mu.Lock()
	defer mu.Unlock()
	_, exists, err := loadSubscriptions(s.root)
	if err != nil || exists {
		return err
	}
	subs := []string{maildir.Inbox}
	for _, su := range specialUse {
		if err := s.mbox.Create(su.name); err != nil && !errors.Is(err, maildir.ErrExists) {
			return fmt.Errorf("create %s: %w", su.name, err)
		}
		subs = append(subs, su.name)
	}
	return saveSubscriptions(s.root, subs)
}

// folderError turns a maildir error into the IMAP answer.
func folderError(err error, noFolder imap.ResponseCode) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, maildir.ErrNoFolder):
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: noFolder, Text: "No such mailbox"}
	case errors.Is(err, maildir.ErrExists):
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeAlreadyExists, Text: "Mailbox already exists"}
	case errors.Is(err, maildir.ErrInbox):
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot, Text: "INBOX cannot be deleted"}
	case errors.Is(err, maildir.ErrName):
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot, Text: "Invalid mailbox name"}
	case errors.Is(err, maildir.ErrNoMessage):
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCode("EXPUNGEISSUED"), Text: "Some messages were expunged"}
	}
	return err
}

// canonName is the folder name as maildir knows it: INBOX in capitals, no
// trailing delimiter.
func canonName(name string) string {
	name = strings.TrimRight(name, string(maildir.Delimiter))
	if strings.EqualFold(name, maildir.Inbox) {
		return maildir.Inbox
	}
	return name
}

func (s *session) folder(name string, noFolder imap.ResponseCode) (*maildir.Folder, error) {
	f, err := s.mbox.Folder(canonName(name))
	if err != nil {
		return nil, folderError(fmt.Errorf("open folder: %w", err), noFolder)
	}
	return f, nil
}

func (s *session) Select(name string, options *imap.SelectOptions) (*imap.SelectData, error) {
	f, err := s.folder(name, imap.ResponseCodeNonExistent)
	if err != nil {
		return nil, err
	}
	snap, err := f.Sync()
	if err != nil {
		return nil, fmt.Errorf("select %s: %w", f.Name(), err)
	}
	s.sel = newSelection(s, f, snap, options.ReadOnly)
	data := &imap.SelectData{
		Flags:       mailboxFlags(snap.Keywords),
		NumMessages: uint32(len(s.sel.msgs)),
		UIDNext:     imap.UID(snap.UIDNext),
		UIDValidity: snap.UIDValidity,
	}
	data.PermanentFlags = []imap.Flag{}
	if !options.ReadOnly {
		data.PermanentFlags = permanentFlags(snap.Keywords)
	}
	for i, m := range s.sel.msgs {
		if !hasFlag(m.flags, maildir.FlagSeen) {
			data.FirstUnseenSeqNum = uint32(i + 1)
			break
		}
	}
	return data, nil
}

func (s *session) Unselect() error {
	s.sel = nil
	return nil
}

func (s *session) Create(name string, options *imap.CreateOptions) error {
	name = canonName(name)
	if name == "" {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot, Text: "Invalid mailbox name"}
	}
	if name == maildir.Inbox {
		return folderError(maildir.ErrExists, "")
	}
	return folderError(s.mbox.Create(name), "")
}

func (s *session) Delete(name string) error {
	name = canonName(name)
	if name == maildir.Inbox {
		return folderError(maildir.ErrInbox, "")
	}
	return folderError(s.mbox.Delete(name), imap.ResponseCodeNonExistent)
}

// Rename renames a folder and its children, and their subscriptions.
// Renaming INBOX moves its messages to the new folder, as RFC 3501 says,
// and leaves it empty.
func (s *session) Rename(oldName, newName string, options *imap.RenameOptions) error {
	oldName, newName = canonName(oldName), canonName(newName)
	if newName == maildir.Inbox {
		return folderError(maildir.ErrExists, "")
	}
	if newName == "" {
		return folderError(maildir.ErrName, "")
	}
	if oldName == maildir.Inbox {
		return s.renameInbox(newName)
	}
	if err := s.mbox.Rename(oldName, newName); err != nil {
		return folderError(err, imap.ResponseCodeNonExistent)
	}
	return s.updateSubscriptions(func(subs []string) []string {
		for i, name := range subs {
			if name == oldName {
				subs[i] = newName
			} else if rest, ok := strings.CutPrefix(name, oldName+string(maildir.Delimiter)); ok {
				subs[i] = newName + string(maildir.Delimiter) + rest
			}
		}
		return subs
	})
}

func (s *session) renameInbox(newName string) error {
	if err := s.mbox.Create(newName); err != nil {
		return folderError(err, "")
	}
	inbox, err := s.folder(maildir.Inbox, imap.ResponseCodeNonExistent)
	if err != nil {
		return err
	}
	dst, err := s.folder(newName, imap.ResponseCodeNonExistent)
	if err != nil {
		return err
	}
	snap, err := inbox.Sync()
	if err != nil {
		return fmt.Errorf("rename INBOX: %w", err)
	}
	uids := make([]uint32, len(snap.Messages))
	for i, m := range snap.Messages {
		uids[i] = m.UID
	}
	if len(uids) == 0 {
		return nil
	}
	if _, err := inbox.Copy(uids, dst); err != nil {
		return fmt.Errorf("rename INBOX: %w", err)
	}
	if err := inbox.Expunge(uids); err != nil {
		return fmt.Errorf("rename INBOX: %w", err)
	}
	return nil
}

func (s *session) Subscribe(name string) error {
	name = canonName(name)
	names, err := s.mbox.Folders()
	if err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	if !slices.Contains(names, name) {
		return folderError(maildir.ErrNoFolder, imap.ResponseCodeNonExistent)
	}
	return s.updateSubscriptions(func(subs []string) []string {
		return append(subs, name)
	})
}

func (s *session) Unsubscribe(name string) error {
	name = canonName(name)
	return s.updateSubscriptions(func(subs []string) []string {
		return slices.DeleteFunc(subs, func(n string) bool { return n == name })
	})
}

func (s *session) updateSubscriptions(change func([]string) []string) error {
	mu := s.in.srv.subscriptionsLock(s.root)
	mu.Lock()
	defer mu.Unlock()
	subs, _, err := loadSubscriptions(s.root)
	if err != nil {
		return err
	}
	return saveSubscriptions(s.root, change(subs))
}

func (s *session) subscriptions() (map[string]bool, error) {
	mu := s.in.srv.subscriptionsLock(s.root)
	mu.Lock()
	subs, _, err := loadSubscriptions(s.root)
	mu.Unlock()
	if err != nil {
		return nil, err
	}
	m := make(map[string]bool, len(subs))
	for _, n := range subs {
		m[n] = true
	}
	return m, nil
}

func matchPatterns(name, ref string, patterns []string) bool {
	for _, p := range patterns {
		if imapserver.MatchList(name, maildir.Delimiter, ref, p) {
			return true
		}
		// INBOX matches in any case.
		if name == maildir.Inbox && imapserver.MatchList("inbox", maildir.Delimiter, strings.ToLower(ref), strings.ToLower(p)) {
			return true
		}
	}
	return false
}

func (s *session) List(w *imapserver.ListWriter, ref string, patterns []string, options *imap.ListOptions) error {
	if len(patterns) == 0 {
		// LIST "" "": the hierarchy delimiter.
		return w.WriteList(&imap.ListData{Attrs: []imap.MailboxAttr{imap.MailboxAttrNoSelect}, Delim: maildir.Delimiter})
	}
	folders, err := s.mbox.Folders()
	if err != nil {
		return fmt.Errorf("list folders: %w", err)
	}
	subs, err := s.subscriptions()
	if err != nil {
		return err
	}
	exists := make(map[string]bool, len(folders))
	for _, f := range folders {
		exists[f] = true
	}
	// Every name is listed, the parents of existing folders included even
	// when they do not exist themselves (\Noselect), and, when listing
	// subscriptions, the subscribed names that no longer exist.
	names := make(map[string]bool)
	hasChildren := make(map[string]bool)
	subChild := make(map[string]bool) // has a subscribed descendant
	addWithParents := func(name string) {
		names[name] = true
		for i := strings.LastIndexByte(name, maildir.Delimiter); i > 0; i = strings.LastIndexByte(name[:i], maildir.Delimiter) {
			hasChildren[name[:i]] = true
			if subs[name] {
				subChild[name[:i]] = true
			}
			names[name[:i]] = true
		}
	}
	for _, f := range folders {
		addWithParents(f)
	}
	if options.SelectSubscribed {
		for n := range subs {
			addWithParents(n)
		}
	}
	sorted := make([]string, 0, len(names))
	for n := range names {
		sorted = append(sorted, n)
	}
	sort.Slice(sorted, func(i, j int) bool {
		// INBOX first, as maildir lists it.
		if (sorted[i] == maildir.Inbox) != (sorted[j] == maildir.Inbox) {
			return sorted[i] == maildir.Inbox
		}
		return sorted[i] < sorted[j]
	})

	for _, name := range sorted {
		if !matchPatterns(name, ref, patterns) {
			continue
		}
		data := &imap.ListData{Mailbox: name, Delim: maildir.Delimiter}
		if options.SelectSubscribed && !subs[name] {
			if !options.SelectRecursiveMatch || !subChild[name] {
				continue
			}
			data.ChildInfo = &imap.ListDataChildInfo{Subscribed: true}
		}
		su := specialUseOf(name)
		if options.SelectSpecialUse && su == "" {
			continue
		}
		if !exists[name] {
			if options.SelectSubscribed && subs[name] && !hasChildren[name] {
				data.Attrs = append(data.Attrs, imap.MailboxAttrNonExistent)
			} else {
				data.Attrs = append(data.Attrs, imap.MailboxAttrNoSelect)
			}
		}
		if hasChildren[name] {
			data.Attrs = append(data.Attrs, imap.MailboxAttrHasChildren)
		} else {
			data.Attrs = append(data.Attrs, imap.MailboxAttrHasNoChildren)
		}
		if subs[name] && (options.ReturnSubscribed || options.SelectSubscribed) {
			data.Attrs = append(data.Attrs, imap.MailboxAttrSubscribed)
		}
		if su != "" && exists[name] {
			data.Attrs = append(data.Attrs, su)
		}
		if options.ReturnStatus != nil && exists[name] {
			if st, err := s.Status(name, options.ReturnStatus); err == nil {
				data.Status = st
			}
		}
		if err := w.WriteList(data); err != nil {
			return err
		}
	}
	return nil
}

func (s *session) Status(name string, options *imap.StatusOptions) (*imap.StatusData, error) {
	f, err := s.folder(name, imap.ResponseCodeNonExistent)
	if err != nil {
		return nil, err
	}
	snap, err := f.Sync()
	if err != nil {
		return nil, fmt.Errorf("status %s: %w", f.Name(), err)
	}
	var unseen, deleted uint32
	var size, deletedSize int64
	for _, m := range snap.Messages {
		size += m.Size
		if !hasFlag(m.Flags, maildir.FlagSeen) {
			unseen++
		}
		if hasFlag(m.Flags, maildir.FlagDeleted) {
			deleted++
			deletedSize += m.Size
		}
	}
	n := uint32(len(snap.Messages))
	var recent uint32
	limit := s.AppendLimit()
	data := &imap.StatusData{Mailbox: f.Name(), UIDNext: imap.UID(snap.UIDNext), UIDValidity: snap.UIDValidity}
	if options.NumMessages {
		data.NumMessages = &n
	}
	if options.NumUnseen {
		data.NumUnseen = &unseen
	}
	if options.NumDeleted {
		data.NumDeleted = &deleted
	}
	if options.Size {
		data.Size = &size
	}
	if options.AppendLimit {
		data.AppendLimit = &limit
	}
	if options.DeletedStorage {
		data.DeletedStorage = &deletedSize
	}
	if options.NumRecent {
		data.NumRecent = &recent
	}
	return data, nil
}

func (s *session) Append(name string, r imap.LiteralReader, options *imap.AppendOptions) (*imap.AppendData, error) {
	f, err := s.folder(name, imap.ResponseCodeTryCreate)
	if err != nil {
		return nil, err
	}
	date := options.Time
	if date.IsZero() {
		date = time.Now()
	}
	uid, err := f.Append(r, clientFlags(options.Flags), date)
	if err != nil {
		return nil, flagError(fmt.Errorf("append to %s: %w", f.Name(), err))
	}
	snap, err := f.Sync()
	if err != nil {
		return nil, fmt.Errorf("append to %s: %w", f.Name(), err)
	}
	return &imap.AppendData{UID: imap.UID(uid), UIDValidity: snap.UIDValidity}, nil
}

func (s *session) Namespace() (*imap.NamespaceData, error) {
	return &imap.NamespaceData{Personal: []imap.NamespaceDescriptor{{Prefix: "", Delim: maildir.Delimiter}}}, nil
}

// Poll reports the changes after each command. A folder that cannot be
// read now is reported later: imapserver would end the session on an
// error here.
func (s *session) Poll(w *imapserver.UpdateWriter, allowExpunge bool) error {
	if s.sel == nil {
		return nil
	}
	err := s.sel.update(w, allowExpunge)
	if se := (*syncError)(nil); errors.As(err, &se) {
		s.in.srv.log.Warn("imap: poll", "user", s.user.Address, "err", err)
		return nil
	}
	return err
}

// Idle looks for changes every PollInterval and reports them until stop.
func (s *session) Idle(w *imapserver.UpdateWriter, stop <-chan struct{}) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	done := make(chan struct{})
	s.idleDone = done
	s.mu.Unlock()
	defer close(done)

	if s.sel == nil {
		<-stop
		return nil
	}
	t := time.NewTicker(s.in.srv.cfg.PollInterval)
	defer t.Stop()
	for {
		if err := s.sel.update(w, true); err != nil {
			return err
		}
		select {
		case <-stop:
			return nil
		case <-t.C:
		}
	}
}

// Expunge, Search, Fetch, Store, Copy and Move work on the selection.

func (s *session) Expunge(w *imapserver.ExpungeWriter, uids *imap.UIDSet) error {
	return s.sel.expunge(w, uids)
}

func (s *session) Search(kind imapserver.NumKind, criteria *imap.SearchCriteria, options *imap.SearchOptions) (*imap.SearchData, error) {
	return s.sel.search(kind, criteria, options)
}

func (s *session) Fetch(w *imapserver.FetchWriter, numSet imap.NumSet, options *imap.FetchOptions) error {
	return s.sel.fetch(w, numSet, options)
}

func (s *session) Store(w *imapserver.FetchWriter, numSet imap.NumSet, flags *imap.StoreFlags, options *imap.StoreOptions) error {
	return s.sel.store(w, numSet, flags)
}

func (s *session) Copy(numSet imap.NumSet, dest string) (*imap.CopyData, error) {
	return s.sel.copy(numSet, dest)
}

func (s *session) Move(w *imapserver.MoveWriter, numSet imap.NumSet, dest string) error {
	return s.sel.move(w, numSet, dest)
}
