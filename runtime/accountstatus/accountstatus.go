// Package accountstatus reports, per account, what the manual's account
// table shows (6.4.1): last login, number of messages and their total
// size. It reads the store and the mailboxes' file names, never a
// message: the admin does not read users' mail (manual 4.3).
package accountstatus

import (
	"context"
	"fmt"
	"time"

	"mailfountain.dev/mailfountain/runtime/maildir"
	"mailfountain.dev/mailfountain/runtime/store"
)

// Account is the status of one account.
type Account struct {
	Domain      string     `json:"domain"`
	ID          string     `json:"id"`
	Name        string     `json:"name"`
	LastLogin   *time.Time `json:"last_login"`             // nil: never
	LastService string     `json:"last_service,omitempty"` // of the last login
	Messages    int        `json:"messages"`
	Bytes       int64      `json:"bytes"`
}

// List returns the status of the accounts of domain, or of every domain
// if domain is empty; an error wrapping store.ErrNotFound if the box has
// no such domain.
func List(ctx context.Context, st *store.Store, domain string) ([]Account, error) {
	if domain != "" {
		if _, err := st.Domain(ctx, domain); err != nil {
			return nil, fmt.Errorf("account status: %w", err)
		}
	}
	logins, err := st.AccountLogins(ctx, domain)
	if err != nil {
		return nil, fmt.Errorf("account status: %w", err)
	}
	out := make([]Account, len(logins))
	for i, l := range logins {
		a := Account{Domain: l.Domain, ID: l.ID, Name: l.Name}
		if l.LastLogin != nil {
			at := l.LastLogin.At
			a.LastLogin, a.LastService = &at, l.LastLogin.Service
		}
		u, err := maildir.MailboxUsage(st.MailboxPath(l.Domain, l.ID))
		if err != nil {
			return nil, fmt.Errorf("account status of %s@%s: %w", l.ID, l.Domain, err)
		}
		a.Messages, a.Bytes = u.Messages, u.Bytes
		out[i] = a
	}
	return out, nil
}
