package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"mailfountain.dev/mailfountain/runtime/applier"
	"mailfountain.dev/mailfountain/runtime/control"
	"mailfountain.dev/mailfountain/runtime/daemon"
)

// archive is `mfapply archive list|restore|purge`.
func (c *cli) archive(ctx context.Context, args []string) int {
	fs := c.flags("archive")
	yes := fs.Bool("yes", false, "")
	fs.BoolVar(yes, "y", false, "")
	olderThan := fs.String("older-than", "", "")
	operands, code := c.parse(fs, args, 1, 1<<20)
	if code >= 0 {
		return code
	}
	sub, names := operands[0], operands[1:]
	switch sub {
	case "list":
		if len(names) > 0 || *olderThan != "" || *yes {
			return c.usageError("archive", "archive list takes no argument")
		}
		return c.archiveList(ctx)
	case "restore":
		if code := c.noJSON("archive"); code >= 0 {
			return code
		}
		if len(names) != 1 || *olderThan != "" {
			return c.usageError("archive", "archive restore takes one archive NAME (see mfapply archive list)")
		}
		return c.archiveRestore(ctx, names[0])
	case "purge":
		if code := c.noJSON("archive"); code >= 0 {
			return code
		}
		var age time.Duration
		switch {
		case len(names) == 0 && *olderThan == "":
			return c.usageError("archive", "archive purge needs archive NAMEs or --older-than AGE")
		case len(names) > 0 && *olderThan != "":
			return c.usageError("archive", "give archive NAMEs or --older-than AGE, not both")
		case *olderThan != "":
			var err error
			if age, err = parseAge(*olderThan); err != nil {
				return c.usageError("archive", err.Error())
			}
		}
		return c.archivePurge(ctx, names, age, *yes)
	}
	return c.usageError("archive", fmt.Sprintf("unknown archive command %q: list, restore or purge", sub))
}

// parseAge parses --older-than: a number of days ("90d"), of weeks
// ("2w"), or a Go duration ("36h").
func parseAge(s string) (time.Duration, error) {
	bad := fmt.Errorf("--older-than %q: want an age like 90d (days), 2w (weeks) or 36h", s)
	if n, ok := strings.CutSuffix(s, "d"); ok {
		return ageOf(n, 24*time.Hour, bad)
	}
	if n, ok := strings.CutSuffix(s, "w"); ok {
		return ageOf(n, 7*24*time.Hour, bad)
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 || d > maxAge {
		return 0, bad
	}
	return d, nil
}

// maxAge bounds --older-than, far below where a Duration overflows.
const maxAge = 100 * 365 * 24 * time.Hour

func ageOf(n string, unit time.Duration, bad error) (time.Duration, error) {
	v, err := strconv.Atoi(n)
	if err != nil || v <= 0 || time.Duration(v) > maxAge/unit || strconv.Itoa(v) != n {
		return 0, bad
	}
	return time.Duration(v) * unit, nil
}

func (c *cli) archiveList(ctx context.Context) int {
	b, err := c.open(ctx, true)
	if err != nil {
		return c.fail("archive list", err)
	}
	defer b.Close()
	as, err := b.Archives(ctx)
	if err != nil {
		return c.fail("archive list", err)
	}
	if c.json {
		return c.printJSON(nonNil(as))
	}
	if len(as) == 0 {
		fmt.Fprintln(c.stdout, "no archives: no removed account left mail")
		return exitOK
	}
	c.printArchives(c.stdout, as, true)
	return exitOK
}

// printArchives prints archives as a table with their totals.
func (c *cli) printArchives(w io.Writer, as []applier.ArchiveInfo, newest bool) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ARCHIVE\tACCOUNT\tARCHIVED\tMESSAGES\tSIZE")
	var msgs int
	var size int64
	for _, a := range as {
		name := a.Name
		if newest && a.Newest {
			name += " *"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", name, a.Account, a.Archived.Local().Format("2006-01-02 15:04:05"), a.Messages, applier.HumanBytes(a.Bytes))
		msgs += a.Messages
		size += a.Bytes
	}
	fmt.Fprintf(tw, "total: %s\t\t\t%d\t%s\n", applier.Count(len(as), "archive", "archives"), msgs, applier.HumanBytes(size))
	tw.Flush()
	if newest {
		fmt.Fprintln(w, "* the newest archive of its account: it comes back if the account is created again (a rollback, or the same id added back)")
	}
}

func (c *cli) archiveRestore(ctx context.Context, name string) int {
	b, err := c.open(ctx, true)
	if err != nil {
		return c.fail("archive restore", err)
	}
	defer b.Close()
	a, err := b.RestoreArchive(ctx, name)
	if err != nil {
		return c.fail("archive restore", err)
	}
	fmt.Fprintf(c.stdout, "restored: %s is the mailbox of %s again (%s, %s)\n", name, a.Account, applier.Count(a.Messages, "message", "messages"), applier.HumanBytes(a.Bytes))
	return exitOK
}

func (c *cli) archivePurge(ctx context.Context, names []string, age time.Duration, yes bool) int {
	b, err := c.open(ctx, true)
	if err != nil {
		return c.fail("archive purge", err)
	}
	defer b.Close()
	all, err := b.Archives(ctx)
	if err != nil {
		return c.fail("archive purge", err)
	}
	var chosen []applier.ArchiveInfo
	if age > 0 {
		before := time.Now().Add(-age)
		for _, a := range all {
			if a.Archived.Before(before) {
				chosen = append(chosen, a)
			}
		}
		if len(chosen) == 0 {
			fmt.Fprintf(c.stdout, "no archive is older than %s: nothing to purge\n", age)
			return exitOK
		}
	} else {
		for _, n := range names {
			i := indexArchive(all, n)
			if i < 0 {
				return c.fail("archive purge", fmt.Errorf("no archive %s (see mfapply archive list): nothing purged", n))
			}
			if indexArchive(chosen, n) < 0 {
				chosen = append(chosen, all[i])
			}
		}
	}
	fmt.Fprintln(c.stdout, "to purge, for good:")
	c.printArchives(c.stdout, chosen, false)
	if !yes {
		if !c.stdinTTY {
			return c.fail("archive purge", errors.New("refusing to delete mail without confirmation: no terminal to ask on (use --yes)"))
		}
		fmt.Fprint(c.stderr, "Delete these archives and the mail they hold, for good? [y/N] ")
		line, _ := bufio.NewReader(c.stdin).ReadString('\n')
		if a := strings.ToLower(strings.TrimSpace(line)); a != "y" && a != "yes" {
			fmt.Fprintln(c.stderr, "cancelled: nothing purged")
			return exitFail
		}
	}
	for i, a := range chosen {
		if _, err := b.PurgeArchive(ctx, a.Name); err != nil {
			return c.fail("archive purge", fmt.Errorf("%w (%d of %d archives purged)", err, i, len(chosen)))
		}
		fmt.Fprintf(c.stdout, "purged: %s\n", a.Name)
	}
	return exitOK
}

func indexArchive(as []applier.ArchiveInfo, name string) int {
	for i, a := range as {
		if a.Name == name {
			return i
		}
	}
	return -1
}

// printArchivePlan prints what a plan does to mail: the mailboxes it
// archives, with what they hold, those it restores, and why the daemon's
// file watcher would hold it.
func (c *cli) printArchivePlan(p *applier.Plan) {
	ap := p.Archive
	if ap == nil {
		return
	}
	w := c.stdout
	for _, d := range ap.RemovedDomains {
		fmt.Fprintln(w, c.paint("-", fmt.Sprintf("removes the domain %s and all its accounts", d)))
	}
	if len(ap.RemovedAccounts) > 0 {
		fmt.Fprintf(w, "archive: the mailboxes of the %s removed move to the archive, kept until purged (mfapply archive list):\n",
			applier.Count(len(ap.RemovedAccounts), "account", "accounts"))
		printMailboxes(w, "  ", ap.RemovedAccounts, ap.Messages, ap.Bytes)
	}
	if len(ap.Restored) > 0 {
		fmt.Fprintln(w, "restore: these accounts come back with their archived mailboxes:")
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		for _, m := range ap.Restored {
			fmt.Fprintf(tw, "  %s\t%s\t%s\tfrom %s\n", m.Account, applier.Count(m.Messages, "message", "messages"), applier.HumanBytes(m.Bytes), m.Archive)
		}
		tw.Flush()
	}
	for _, r := range applier.HoldReasons(p) {
		fmt.Fprintf(w, "warning: %s; mailfountaind's file watcher holds such an edit for a person to apply\n", r)
	}
}

// printMailboxes prints accounts' mailboxes, one a line, and their total.
func printMailboxes(w io.Writer, indent string, ms []applier.MailboxSummary, messages int, bytes int64) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, m := range ms {
		fmt.Fprintf(tw, "%s%s\t%s\t%s\n", indent, m.Account, applier.Count(m.Messages, "message", "messages"), applier.HumanBytes(m.Bytes))
	}
	fmt.Fprintf(tw, "%stotal\t%s\t%s\n", indent, applier.Count(messages, "message", "messages"), applier.HumanBytes(bytes))
	tw.Flush()
}

// archivePlanJSON is p's archive plan for --json, never null.
func archivePlanJSON(p *applier.Plan) *applier.ArchivePlan {
	if p.Archive != nil {
		return p.Archive
	}
	return &applier.ArchivePlan{RemovedDomains: []string{}, RemovedAccounts: []applier.MailboxSummary{}, Restored: []applier.MailboxSummary{}}
}

// applyOutput is what apply and rollback print with --json.
type applyOutput struct {
	Plan     planOutput     `json:"plan"`
	Applied  bool           `json:"applied"`
	Version  int            `json:"version"`
	Statuses []statusOutput `json:"statuses"`
	Error    string         `json:"error,omitempty"`
	// Pending is the confirmation this apply (--confirm-within) waits
	// for; Confirmed the version whose confirmation it gave.
	Pending   *applier.PendingConfirm `json:"pending,omitempty"`
	Confirmed int                     `json:"confirmed,omitempty"`
}

type statusOutput struct {
	Reconciler string `json:"reconciler"`
	State      string `json:"state"`
	Error      string `json:"error,omitempty"`
	Changes    int    `json:"changes"`
}

// confirmAndApplyJSON is confirmAndApply with --json: the plan and the
// result as one JSON document on stdout. Asking still happens on the
// terminal, with the plan shown there (on stderr).
func (c *cli) confirmAndApplyJSON(ctx context.Context, cmd string, b backend, p *applier.Plan, yes bool, message, origin string, within time.Duration) int {
	out := applyOutput{Plan: planJSON(p, ""), Statuses: []statusOutput{}}
	if !hasChanges(p) && within == 0 {
		return c.printJSON(out)
	}
	if !yes && hasChanges(p) {
		if !c.stdinTTY {
			return c.fail(cmd, errors.New("refusing to apply without confirmation: no terminal to ask on (use --yes)"))
		}
		stdout := c.stdout
		c.stdout = c.stderr // the plan for the person; stdout is for the JSON
		c.printPlan(p)
		c.stdout = stdout
		fmt.Fprint(c.stderr, "Apply these changes? [y/N] ")
		line, _ := bufio.NewReader(c.stdin).ReadString('\n')
		if a := strings.ToLower(strings.TrimSpace(line)); a != "y" && a != "yes" {
			fmt.Fprintln(c.stderr, "cancelled: nothing applied")
			return exitFail
		}
	}
	res, err := applyPlan(ctx, b, p, message, origin, within)
	if res != nil {
		out.Applied, out.Version = err == nil, res.Version
		out.Pending, out.Confirmed = res.Pending, res.Confirmed
		for _, s := range res.Statuses {
			out.Statuses = append(out.Statuses, statusOutput{Reconciler: s.Reconciler, State: s.State, Error: s.Error, Changes: s.Changes})
		}
	}
	if err != nil {
		out.Error = err.Error()
		c.printJSON(out)
		return exitFail
	}
	return c.printJSON(out)
}

// statusJSON is `mfapply status --json`: the daemon's status, when one
// runs.
type statusJSON struct {
	Running bool `json:"running"`
	*daemon.Status
}

// daemonStatus is `mfapply status`: the daemon's status, with the state
// files it holds, if any.
func (c *cli) daemonStatus(ctx context.Context) int {
	cl, err := control.Dial(c.dataDir)
	if errors.Is(err, control.ErrNoDaemon) {
		return c.statusWithoutDaemon(ctx)
	}
	if err != nil {
		return c.fail("status", err)
	}
	defer cl.Close()
	var st daemon.Status
	if err := cl.Status(ctx, &st); err != nil {
		return c.fail("status", err)
	}
	if c.json {
		return c.printJSON(statusJSON{Running: true, Status: &st})
	}
	w := c.stdout
	fmt.Fprintf(w, "mailfountaind runs on %s, watching %s\n", c.dataDir, st.StatePath)
	fmt.Fprintf(w, "version: %d\n", st.Version)
	if st.LED != "" {
		fmt.Fprintf(w, "front LED: %s\n", st.LED.Describe())
	}
	if st.WAN != nil {
		fmt.Fprintf(w, "WAN link: %s\n", st.WAN.Describe(time.Now()))
	}
	if st.Confirm != nil {
		c.printPending(&st.Confirm.PendingConfirm)
		if st.Confirm.Attempts > 0 {
			next := ""
			if st.Confirm.NextAttempt != nil {
				next = "; next try at " + st.Confirm.NextAttempt.Local().Format("2006-01-02 15:04:05")
			}
			fmt.Fprintf(w, "  the rollback failed %s (last error: %s)%s\n", plural(st.Confirm.Attempts, "time"), oneLine(st.Confirm.LastError), next)
		}
	}
	switch {
	case st.Held != nil:
		h := st.Held
		fmt.Fprintf(w, "state files: held since %s, not applied automatically:\n", h.Since.Local().Format("2006-01-02 15:04:05"))
		for _, r := range h.Reasons {
			fmt.Fprintf(w, "  - %s\n", r)
		}
		if len(h.RemovedAccounts) > 0 {
			fmt.Fprintln(w, "  applying them archives the mailboxes of:")
			printMailboxes(w, "    ", h.RemovedAccounts, h.Messages, h.Bytes)
		}
		fmt.Fprintf(w, "  to apply them, after reading the plan: %s\n", h.Apply)
		fmt.Fprintf(w, "  (hash %s)\n", h.SourcesHash)
	case st.Pending:
		fmt.Fprintf(w, "state files: not applied (%d errors):\n", len(st.Errors))
		for _, e := range st.Errors {
			fmt.Fprintf(w, "  %s\n", e)
		}
	default:
		fmt.Fprintln(w, "state files: applied")
	}
	for _, r := range st.Reconcilers {
		line := fmt.Sprintf("%s: %s", r.Reconciler, r.State)
		if r.Error != "" {
			line += ": " + r.Error
		}
		fmt.Fprintln(w, line)
	}
	c.printUnappliedStatus(st.Unapplied)
	return exitOK
}
