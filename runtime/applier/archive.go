package applier

import (
	"context"
	"fmt"
	"time"

	"mailfountain.dev/mailfountain/runtime/maildir"
	"mailfountain.dev/mailfountain/runtime/store"
)

// ArchiveInfo is an archived mailbox, as mfapply archive list shows it.
type ArchiveInfo struct {
	// Name is how mfapply archive restore and purge name it:
	// DOMAIN/ACCOUNT-TIME, its path under DATA/archive.
	Name     string    `json:"name"`
	Account  string    `json:"account"` // id@domain
	Archived time.Time `json:"archived"`
	Messages int       `json:"messages"`
	Bytes    int64     `json:"bytes"`
	// Newest: the archive that comes back when the account is created
	// again (a rollback, or the same id added again).
	Newest bool `json:"newest"`
}

func archiveInfo(a store.Archive) (ArchiveInfo, error) {
	u, err := maildir.MailboxUsage(a.Path)
	if err != nil {
		return ArchiveInfo{}, fmt.Errorf("what the archive %s holds: %w", a.Name, err)
	}
	return ArchiveInfo{Name: a.Name, Account: a.Account + "@" + a.Domain, Archived: a.Archived, Messages: u.Messages, Bytes: u.Bytes}, nil
}

// Archives lists the archived mailboxes by domain, account, then oldest
// first, with what each holds.
func (a *Applier) Archives(ctx context.Context) ([]ArchiveInfo, error) {
	as, err := a.store.Archives("", "")
	if err != nil {
		return nil, err
	}
	out := make([]ArchiveInfo, 0, len(as))
	for i, arch := range as {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		info, err := archiveInfo(arch)
		if err != nil {
			return nil, err
		}
		info.Newest = i == len(as)-1 || as[i+1].Domain != arch.Domain || as[i+1].Account != arch.Account
		out = append(out, info)
	}
	return out, nil
}

// RestoreArchive brings the archive named name back as the mailbox of its
// account, which must exist; a mailbox that holds mail is never
// overwritten, an empty one moves to the archive in its place
// (store.RestoreArchive). It returns what was restored.
func (a *Applier) RestoreArchive(ctx context.Context, name string) (*ArchiveInfo, error) {
	unlock, err := a.lock(ctx)
	if err != nil {
		return nil, fmt.Errorf("restore archive %s: %w", name, err)
	}
	defer unlock()
	arch, err := store.ParseArchiveName(name)
	if err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	moves, err := a.store.RestoreArchive(ctx, name)
	if err != nil {
		return nil, err
	}
	for _, m := range moves {
		if !m.Restored {
			a.logger.Info("empty mailbox archived to make way for a restore", "account", m.Account+"@"+m.Domain, "path", m.To)
		}
	}
	to := a.store.MailboxPath(arch.Domain, arch.Account)
	a.logger.Info("archive restored", "archive", name, "account", arch.Account+"@"+arch.Domain, "path", to)
	u, err := maildir.MailboxUsage(to)
	if err != nil {
		return nil, fmt.Errorf("what the restored mailbox %s holds: %w", to, err)
	}
	return &ArchiveInfo{Name: name, Account: arch.Account + "@" + arch.Domain, Archived: arch.Archived, Messages: u.Messages, Bytes: u.Bytes}, nil
}

// PurgeArchive deletes the archive named name and the mail it holds, for
// good, and returns what it held. Only a person's explicit command (mfapply
// archive purge) calls it: nothing else deletes mail.
func (a *Applier) PurgeArchive(ctx context.Context, name string) (*ArchiveInfo, error) {
	unlock, err := a.lock(ctx)
	if err != nil {
		return nil, fmt.Errorf("purge archive %s: %w", name, err)
	}
	defer unlock()
	arch, err := store.ParseArchiveName(name)
	if err != nil {
		return nil, fmt.Errorf("purge: %w", err)
	}
	as, err := a.store.Archives(arch.Domain, arch.Account)
	if err != nil {
		return nil, err
	}
	var info *ArchiveInfo
	for _, x := range as {
		if x.Name == name {
			i, err := archiveInfo(x)
			if err != nil {
				return nil, err
			}
			info = &i
		}
	}
	if info == nil {
		return nil, fmt.Errorf("purge: archive %s: %w (see mfapply archive list)", name, store.ErrNotFound)
	}
	if err := a.store.PurgeArchive(name); err != nil {
		return nil, err
	}
	a.logger.Warn("archive purged: its mail is deleted", "archive", name, "messages", info.Messages, "bytes", info.Bytes)
	return info, nil
}
