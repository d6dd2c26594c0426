package maildir

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// defaultRetryWindow is how long before Recover a delivery may have been
// cut off from its acknowledgement and still be recognised when the
// client sends it again, and how long after Recover it is.
const defaultRetryWindow = time.Hour

// DeliverOnce is Deliver for a message the SMTP server identifies by key: a digest of
// what the client sent (envelope and data), so that a client sending it again after a
// crash is recognised. If Recover found that a delivery with this key reached every
// root in the moments before the crash (the client may never have had its 250),
// DeliverOnce writes nothing and reports duplicate=true — once per key.
//
// key is 16 to 64 lowercase hex digits; it is recorded in the message's
// file name (",K=<key>" in its Maildir key, before ":2,") and in the
// journal of a delivery to several roots. "In the moments before the
// crash" is the retry window (an hour) before Recover, and Recover's
// findings are used for that long after it. If Recover found the key in
// some of the roots only, the message goes to the others (duplicate is
// then false). The entry is consumed either way: the same message sent
// again later is delivered again.
func (s *Store) DeliverOnce(ctx context.Context, roots []string, key string, msg io.Reader) (duplicate bool, err error) {
	if !validKey(key) {
		return false, fmt.Errorf("deliver: invalid key %q", key)
	}
	distinct, err := distinctRoots(roots)
	if err != nil {
		return false, err
	}
	if err := ctx.Err(); err != nil {
		return false, fmt.Errorf("deliver: %w", err)
	}
	s.recovering.RLock()
	defer s.recovering.RUnlock()
	todo, had := s.takeRecent(key, distinct)
	if len(todo) == 0 {
		s.log.Info("maildir: delivered before the restart, not again", "key", key, "mailboxes", distinct)
		return true, nil
	}
	if err := s.deliver(ctx, todo, key, msg); err != nil {
		if had != nil {
			s.putBackRecent(key, had) // the client will try again
		}
		return false, err
	}
	return false, nil
}

// recentKeys maps a DeliverOnce key to the mailbox roots (absolute) that
// have a message of that key.
type recentKeys map[string][]string

func (r recentKeys) add(key, root string) {
	if !slices.Contains(r[key], root) {
		r[key] = append(r[key], root)
	}
}

// absRoot is how recentKeys names a root: absolute, so that a root given
// relative to the working directory matches the one Recover found.
func absRoot(root string) string {
	if abs, err := filepath.Abs(root); err == nil {
		return abs
	}
	return filepath.Clean(root)
}

// setRecent installs what Recover found.
func (s *Store) setRecent(r recentKeys, until time.Time) {
	s.recentMu.Lock()
	defer s.recentMu.Unlock()
	if len(r) == 0 {
		r = nil
	}
	s.recent, s.recentUntil = r, until
	if len(r) > 0 {
		s.log.Info("recover: recent deliveries a client may send again", "keys", len(r), "until", until)
	}
}

// takeRecent consumes the entry of key and returns the roots of distinct
// that lack the message, and the roots of the entry consumed (nil if
// there was none).
func (s *Store) takeRecent(key string, distinct []string) (todo, had []string) {
	s.recentMu.Lock()
	defer s.recentMu.Unlock()
	if s.recent == nil {
		return distinct, nil
	}
	if !s.now().Before(s.recentUntil) {
		s.recent = nil // expired, all at once
		return distinct, nil
	}
	had, ok := s.recent[key]
	if !ok {
		return distinct, nil
	}
	delete(s.recent, key)
	for _, r := range distinct {
		if !slices.Contains(had, absRoot(r)) {
			todo = append(todo, r)
		}
	}
	return todo, had
}

// putBackRecent restores an entry takeRecent consumed, after a failed
// delivery.
func (s *Store) putBackRecent(key string, roots []string) {
	s.recentMu.Lock()
	defer s.recentMu.Unlock()
	if s.recent != nil && s.now().Before(s.recentUntil) {
		if _, ok := s.recent[key]; !ok {
			s.recent[key] = roots
		}
	}
}

// scanRecent adds to r the keyed messages delivered since into the
// inboxes, DATA/mail/*/*/{new,cur}. A directory not changed since (its
// mtime) is not listed, and the time of a message is read from its name:
// a few stats per mailbox, and the listing of the busy ones. cur/ is
// listed too because a reader takes a message into it at once.
func (s *Store) scanRecent(ctx context.Context, since time.Time, r recentKeys) error {
	domains, err := readNames(s.mail)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("scan recent deliveries: %w", err)
	}
	sinceSec := since.Unix()
	for _, d := range domains {
		if d[0] == '.' {
			continue
		}
		ids, err := readNames(filepath.Join(s.mail, d))
		if err != nil {
			continue // not a directory, or gone
		}
		for _, id := range ids {
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("scan recent deliveries: %w", err)
			}
			if id[0] == '.' {
				continue
			}
			root := filepath.Join(s.mail, d, id)
			for _, sub := range [...]string{"new", "cur"} {
				dir := filepath.Join(root, sub)
				if fi, err := os.Stat(dir); err != nil || !fi.IsDir() || fi.ModTime().Before(since) {
					continue
				}
				names, err := readNames(dir)
				if err != nil {
					continue
				}
				for _, n := range names {
					key := keyFromName(n)
					if key == "" {
						continue
					}
					// The name's time is when the delivery began; the
					// file is a little younger.
					if sec, ok := timeFromName(n); ok {
						if sec+1 < sinceSec {
							continue
						}
					} else if fi, err := os.Stat(filepath.Join(dir, n)); err != nil || fi.ModTime().Before(since) {
						continue
					}
					r.add(key, root)
				}
			}
		}
	}
	return nil
}
