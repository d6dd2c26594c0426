package applier

import (
	"fmt"
	"os"
	"strings"

	"mailfountain.dev/mailfountain/reconcilers"
	"mailfountain.dev/mailfountain/runtime/maildir"
	"mailfountain.dev/mailfountain/runtime/store"
	"mailfountain.dev/mailfountain/schema"
)

// ArchivePlan is what applying a plan does to mail, for a person to see
// before applying it and for the mass-deletion rule (HoldReasons): the
// domains it removes, the accounts it removes, whose mailboxes move to the
// archive, with what they hold, and the accounts it creates whose archived
// mailbox comes back.
type ArchivePlan struct {
	RemovedDomains  []string         `json:"removed_domains"`
	RemovedAccounts []MailboxSummary `json:"removed_accounts"`
	// Messages and Bytes are the totals of RemovedAccounts: the mail that
	// goes to the archive.
	Messages int              `json:"messages"`
	Bytes    int64            `json:"bytes"`
	Restored []MailboxSummary `json:"restored"`

	// AccountsKept counts the accounts of the live directory that the plan
	// keeps.
	AccountsKept int `json:"accounts_kept"`
	// MailboxesWithMail counts the removed accounts whose mailbox holds
	// mail; KeptWithMail the kept ones, counted only up to
	// MailboxesWithMail (enough to tell whether the removed ones are more
	// than half): exact when it is lower.
	MailboxesWithMail int `json:"mailboxes_with_mail"`
	KeptWithMail      int `json:"kept_with_mail"`
}

// MailboxSummary is one account's mailbox in an ArchivePlan.
type MailboxSummary struct {
	Account  string `json:"account"` // id@domain
	Messages int    `json:"messages"`
	Bytes    int64  `json:"bytes"`
	// Archive is the name of the archive that comes back (Restored only).
	Archive string `json:"archive,omitempty"`
}

// Empty reports whether the plan removes nothing and restores nothing.
func (ap *ArchivePlan) Empty() bool {
	return ap == nil || len(ap.RemovedDomains) == 0 && len(ap.RemovedAccounts) == 0 && len(ap.Restored) == 0
}

// HoldReasons is the mass-deletion rule of automatic sources (the file
// watcher, and any later one: git): the reasons to hold p instead of
// applying it, none when it may be applied. p is held when it removes a
// domain, removes every account, or removes more than half of the
// mailboxes that hold mail (exactly half is applied). A person applies a
// held plan with mfapply after seeing what it archives.
func HoldReasons(p *Plan) []string {
	if p == nil || p.Archive == nil {
		return nil
	}
	ap := p.Archive
	var why []string
	switch n := len(ap.RemovedDomains); {
	case n == 1:
		why = append(why, fmt.Sprintf("it removes the domain %s", ap.RemovedDomains[0]))
	case n > 1:
		why = append(why, fmt.Sprintf("it removes %d domains: %s", n, strings.Join(ap.RemovedDomains, ", ")))
	}
	if n := len(ap.RemovedAccounts); n > 0 && ap.AccountsKept == 0 {
		why = append(why, fmt.Sprintf("it removes all the accounts (%d)", n))
	}
	if r := ap.MailboxesWithMail; r > ap.KeptWithMail {
		why = append(why, fmt.Sprintf("it removes %s with mail out of %d, more than half (%s, %s, go to the archive)",
			Count(r, "mailbox", "mailboxes"), r+ap.KeptWithMail, Count(ap.Messages, "message", "messages"), HumanBytes(ap.Bytes)))
	}
	return why
}

// Count writes n and a noun, one or many: "1 message", "3 messages".
func Count(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// HumanBytes writes a size for people: bytes, then KB, MB or GB with one
// decimal.
func HumanBytes(n int64) string {
	switch {
	case n < 1024:
		return fmt.Sprintf("%d B", n)
	case n < 1024*1024:
		return fmt.Sprintf("%.1f KB", float64(n)/1024)
	case n < 1024*1024*1024:
		return fmt.Sprintf("%.1f MB", float64(n)/(1024*1024))
	}
	return fmt.Sprintf("%.1f GB", float64(n)/(1024*1024*1024))
}

// archivePlan reads what the mailboxes that ep moves hold. It reads
// mailboxes (file names only) when ep removes or creates accounts, and
// nothing otherwise.
func (a *Applier) archivePlan(st *schema.State, ep *reconcilers.Plan) (*ArchivePlan, error) {
	ap := &ArchivePlan{RemovedDomains: []string{}, RemovedAccounts: []MailboxSummary{}, Restored: []MailboxSummary{}}
	var removed, created [][2]string
	seen := map[string]bool{}
	if ep != nil {
		for _, s := range ep.Steps {
			for _, c := range s.Changes {
				kind, name, _ := strings.Cut(c.Resource, " ")
				key := string(c.Op) + c.Resource
				if seen[key] || (kind != schema.KindDomain && kind != schema.KindAccount) {
					continue
				}
				seen[key] = true
				if kind == schema.KindDomain {
					if c.Op == reconcilers.Delete {
						ap.RemovedDomains = append(ap.RemovedDomains, name)
					}
					continue
				}
				at := strings.LastIndexByte(name, '@')
				if at < 0 {
					continue
				}
				acc := [2]string{name[at+1:], name[:at]}
				switch c.Op {
				case reconcilers.Delete:
					removed = append(removed, acc)
				case reconcilers.Create:
					created = append(created, acc)
				}
			}
		}
	}
	if len(removed) == 0 && len(created) == 0 && len(ap.RemovedDomains) == 0 {
		if st != nil {
			ap.AccountsKept = countAccounts(st)
		}
		return ap, nil
	}

	for _, acc := range removed {
		u, err := maildir.MailboxUsage(a.store.MailboxPath(acc[0], acc[1]))
		if err != nil {
			return nil, fmt.Errorf("what the mailbox of %s@%s holds: %w", acc[1], acc[0], err)
		}
		ap.RemovedAccounts = append(ap.RemovedAccounts, MailboxSummary{Account: acc[1] + "@" + acc[0], Messages: u.Messages, Bytes: u.Bytes})
		ap.Messages += u.Messages
		ap.Bytes += u.Bytes
		if u.Messages > 0 {
			ap.MailboxesWithMail++
		}
	}

	isCreated := make(map[[2]string]bool, len(created))
	for _, acc := range created {
		isCreated[acc] = true
	}
	if st != nil {
		for _, d := range st.Domains {
			for _, acc := range d.Accounts {
				k := [2]string{d.Name, acc.ID}
				if isCreated[k] {
					continue
				}
				ap.AccountsKept++
				if ap.KeptWithMail >= ap.MailboxesWithMail {
					continue // enough seen to know it is not more than half
				}
				has, err := maildir.MailboxHasMail(a.store.MailboxPath(k[0], k[1]))
				if err != nil {
					return nil, fmt.Errorf("whether the mailbox of %s@%s holds mail: %w", k[1], k[0], err)
				}
				if has {
					ap.KeptWithMail++
				}
			}
		}
	}

	if len(created) > 0 {
		newest, err := a.store.NewestArchives(created)
		if err != nil {
			return nil, err
		}
		for _, acc := range created {
			arch, ok := newest[acc]
			if !ok || mailboxExists(a.store, acc) {
				continue
			}
			info, err := archiveInfo(arch)
			if err != nil {
				return nil, err
			}
			ap.Restored = append(ap.Restored, MailboxSummary{Account: info.Account, Messages: info.Messages, Bytes: info.Bytes, Archive: info.Name})
		}
	}
	return ap, nil
}

func countAccounts(st *schema.State) int {
	n := 0
	for _, d := range st.Domains {
		n += len(d.Accounts)
	}
	return n
}

// mailboxExists reports whether acc ({domain, id}) has a mailbox; an
// account created where one exists keeps it (store.UpdateDirectory).
func mailboxExists(st *store.Store, acc [2]string) bool {
	_, err := os.Lstat(st.MailboxPath(acc[0], acc[1]))
	return err == nil
}
