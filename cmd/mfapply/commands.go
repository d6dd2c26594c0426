package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"mailfountain.dev/mailfountain/reconcilers"
	"mailfountain.dev/mailfountain/runtime/applier"
	"mailfountain.dev/mailfountain/runtime/store"
	"mailfountain.dev/mailfountain/schema"
)

func (c *cli) validate(_ context.Context, args []string) int {
	fs := c.flags("validate")
	path := fs.String("f", "", "")
	if _, code := c.parse(fs, args, 0, 0); code >= 0 {
		return code
	}
	if *path == "" {
		return c.usageError("validate", "missing -f PATH")
	}
	srcs, err := schema.ReadSources(*path)
	if err != nil {
		return c.fail("validate", err)
	}
	st, err := schema.Load(srcs)
	if err != nil {
		return c.fail("validate", err)
	}
	accounts := 0
	for _, d := range st.Domains {
		accounts += len(d.Accounts)
	}
	if c.json {
		return c.printJSON(struct {
			Valid    bool     `json:"valid"`
			Domains  int      `json:"domains"`
			Accounts int      `json:"accounts"`
			Warnings []string `json:"warnings"`
		}{true, len(st.Domains), accounts, warnings(st)})
	}
	fmt.Fprintf(c.stdout, "valid: %s, %s\n", plural(len(st.Domains), "domain"), plural(accounts, "account"))
	c.warn("validate", st)
	return exitOK
}

func (c *cli) plan(ctx context.Context, args []string) int {
	fs := c.flags("plan")
	path := fs.String("f", "", "")
	out := fs.String("out", "", "")
	if _, code := c.parse(fs, args, 0, 0); code >= 0 {
		return code
	}
	if *path == "" {
		return c.usageError("plan", "missing -f PATH")
	}
	srcs, err := schema.ReadSources(*path)
	if err != nil {
		return c.fail("plan", err)
	}
	b, err := c.open(ctx, false)
	if err != nil {
		return c.fail("plan", err)
	}
	defer b.Close()
	p, err := b.Plan(ctx, srcs)
	if err != nil {
		return c.fail("plan", err)
	}
	if *out != "" {
		if err := b.WritePlanFile(p, *out); err != nil {
			return c.fail("plan", err)
		}
	}
	code := exitOK
	if hasChanges(p) {
		code = exitChanges
	}
	if c.json {
		if c.printJSON(planJSON(p, *out)) != exitOK {
			return exitFail
		}
		return code
	}
	c.warn("plan", p.State)
	c.printPlan(p)
	if *out != "" {
		fmt.Fprintf(c.stdout, "plan saved to %s; apply it with: mfapply apply %s\n", *out, *out)
	}
	return code
}

func (c *cli) apply(ctx context.Context, args []string) int {
	fs := c.flags("apply")
	path := fs.String("f", "", "")
	message := fs.String("m", "", "")
	yes := fs.Bool("yes", false, "")
	fs.BoolVar(yes, "y", false, "")
	within := fs.Duration("confirm-within", 0, "")
	operands, code := c.parse(fs, args, 0, 1)
	if code >= 0 {
		return code
	}
	switch {
	case *path == "" && len(operands) == 0:
		return c.usageError("apply", "missing -f PATH or a saved plan FILE")
	case *path != "" && len(operands) > 0:
		return c.usageError("apply", "give -f PATH or a saved plan FILE, not both")
	}
	if code := c.checkWithin(fs, "apply", *within); code >= 0 {
		return code
	}
	var srcs []schema.Source
	if *path != "" {
		var err error
		if srcs, err = schema.ReadSources(*path); err != nil {
			return c.fail("apply", err)
		}
	}
	b, err := c.openFor(ctx, "apply", false, *within)
	if err != nil {
		return c.fail("apply", err)
	}
	defer b.Close()

	var p *applier.Plan
	if srcs != nil {
		if p, err = b.Plan(ctx, srcs); err != nil {
			return c.fail("apply", err)
		}
	} else {
		file := operands[0]
		if p, err = b.ReadPlanFile(file); err == nil {
			err = b.Verify(ctx, p)
		}
		if err != nil {
			if errors.Is(err, applier.ErrStale) {
				return c.fail("apply", fmt.Errorf("refusing to apply the saved plan %s: %w", file, err))
			}
			return c.fail("apply", err)
		}
	}
	return c.confirmAndApply(ctx, "apply", b, p, *yes, *message, "mfapply", *within)
}

func (c *cli) rollback(ctx context.Context, args []string) int {
	fs := c.flags("rollback")
	message := fs.String("m", "", "")
	yes := fs.Bool("yes", false, "")
	fs.BoolVar(yes, "y", false, "")
	within := fs.Duration("confirm-within", 0, "")
	operands, code := c.parse(fs, args, 1, 1)
	if code >= 0 {
		return code
	}
	n, ok := c.versionArg("rollback", operands[0])
	if !ok {
		return exitFail
	}
	if code := c.checkWithin(fs, "rollback", *within); code >= 0 {
		return code
	}
	b, err := c.openFor(ctx, "rollback", true, *within)
	if err != nil {
		return c.fail("rollback", err)
	}
	defer b.Close()
	p, err := b.PlanRollback(ctx, n)
	if err != nil {
		return c.fail("rollback", err)
	}
	if *message == "" {
		*message = fmt.Sprintf("rollback to version %d", n)
	}
	if !c.json {
		fmt.Fprintf(c.stdout, "rollback to version %d:\n", n)
	}
	return c.confirmAndApply(ctx, "rollback", b, p, *yes, *message, applier.OriginRollback, *within)
}

// confirmAndApply shows p, asks unless yes, applies and reports. With
// within, it applies under confirmation (applyPlan).
func (c *cli) confirmAndApply(ctx context.Context, cmd string, b backend, p *applier.Plan, yes bool, message, origin string, within time.Duration) int {
	if c.json {
		return c.confirmAndApplyJSON(ctx, cmd, b, p, yes, message, origin, within)
	}
	c.printPlan(p)
	if !hasChanges(p) && within == 0 {
		return exitOK
	}
	// Without changes, an apply under confirmation only moves the
	// deadline of a pending one: nothing to ask.
	if !yes && hasChanges(p) {
		if !c.stdinTTY {
			return c.fail(cmd, errors.New("refusing to apply without confirmation: no terminal to ask on (use --yes)"))
		}
		fmt.Fprint(c.stderr, "Apply these changes? [y/N] ")
		line, _ := bufio.NewReader(c.stdin).ReadString('\n')
		if a := strings.ToLower(strings.TrimSpace(line)); a != "y" && a != "yes" {
			fmt.Fprintln(c.stderr, "cancelled: nothing applied")
			return exitFail
		}
	}
	res, err := applyPlan(ctx, b, p, message, origin, within)
	if res != nil {
		if hasChanges(p) {
			c.printResult(res)
			c.printNotCarriedOut(res, p)
		}
		c.printConfirmResult(res, within)
	}
	if err != nil {
		return c.fail(cmd, err)
	}
	return exitOK
}

func (c *cli) history(ctx context.Context, args []string) int {
	fs := c.flags("history")
	if _, code := c.parse(fs, args, 0, 0); code >= 0 {
		return code
	}
	b, err := c.open(ctx, true)
	if err != nil {
		return c.fail("history", err)
	}
	defer b.Close()
	vs, err := b.History(ctx)
	if err != nil {
		return c.fail("history", err)
	}
	pending, err := b.PendingConfirm(ctx)
	if err != nil {
		return c.fail("history", err)
	}
	if c.json {
		out := make([]versionJSON, len(vs))
		for i, v := range vs {
			out[i] = versionJSON{N: v.N, Created: v.Created, Message: v.Message, Origin: v.Origin, StateHash: v.StateHash,
				Unconfirmed: pending != nil && pending.Version == v.N}
		}
		return c.printJSON(out)
	}
	if len(vs) == 0 {
		fmt.Fprintln(c.stdout, "no versions: nothing applied yet")
		return exitOK
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VERSION\tCREATED\tORIGIN\tSTATE\tMESSAGE")
	for _, v := range vs {
		hash := v.StateHash
		if len(hash) > 12 {
			hash = hash[:12]
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", v.N, v.Created.Local().Format("2006-01-02 15:04:05"), v.Origin, hash, oneLine(v.Message))
	}
	tw.Flush()
	c.printPending(pending)
	return exitOK
}

func (c *cli) show(ctx context.Context, args []string) int {
	fs := c.flags("show")
	operands, code := c.parse(fs, args, 1, 1)
	if code >= 0 {
		return code
	}
	n, ok := c.versionArg("show", operands[0])
	if !ok {
		return exitFail
	}
	b, err := c.open(ctx, true)
	if err != nil {
		return c.fail("show", err)
	}
	defer b.Close()
	v, err := b.Show(ctx, n)
	if err != nil {
		return c.fail("show", err)
	}
	if c.json {
		// The stored state is canonical JSON already; indent it for people.
		var buf bytes.Buffer
		if err := json.Indent(&buf, v.State, "", "  "); err != nil {
			return c.fail("show", fmt.Errorf("state of version %d: %w", n, err))
		}
		buf.WriteByte('\n')
		c.stdout.Write(buf.Bytes())
		return exitOK
	}
	for i, s := range v.Sources {
		// One file prints as it was, so that show N > file gives it back.
		if len(v.Sources) > 1 {
			if i > 0 {
				fmt.Fprintln(c.stdout)
			}
			fmt.Fprintf(c.stdout, "# ==> %s <==\n", s.Name)
		}
		c.stdout.Write(s.Data)
		if len(s.Data) > 0 && s.Data[len(s.Data)-1] != '\n' {
			fmt.Fprintln(c.stdout)
		}
	}
	return exitOK
}

func (c *cli) diff(ctx context.Context, args []string) int {
	fs := c.flags("diff")
	operands, code := c.parse(fs, args, 1, 2)
	if code >= 0 {
		return code
	}
	n, ok := c.versionArg("diff", operands[0])
	if !ok {
		return exitFail
	}
	m := 0
	if len(operands) == 2 {
		if m, ok = c.versionArg("diff", operands[1]); !ok {
			return exitFail
		}
	}
	b, err := c.open(ctx, true)
	if err != nil {
		return c.fail("diff", err)
	}
	defer b.Close()
	cs, err := b.Diff(ctx, n, m)
	if err != nil {
		return c.fail("diff", err)
	}
	if c.json {
		out := make([]changeJSON, len(cs))
		for i, ch := range cs {
			out[i] = changeJSON{Op: ch.Op, Kind: ch.Kind, Name: ch.Name, Changed: nonNil(ch.Changed)}
		}
		return c.printJSON(out)
	}
	if len(cs) == 0 {
		fmt.Fprintln(c.stdout, "no differences")
		return exitOK
	}
	for _, ch := range cs {
		line := fmt.Sprintf("%s %s %s", ch.Op, ch.Kind, ch.Name)
		if len(ch.Changed) > 0 {
			line += " (" + strings.Join(ch.Changed, ", ") + ")"
		}
		fmt.Fprintln(c.stdout, c.paint(ch.Op, line))
	}
	return exitOK
}

func (c *cli) backup(ctx context.Context, args []string) int {
	fs := c.flags("backup")
	operands, code := c.parse(fs, args, 2, 2)
	if code >= 0 {
		return code
	}
	if code := c.noJSON("backup"); code >= 0 {
		return code
	}
	switch operands[0] {
	case "export":
		return c.export(ctx, operands[1])
	case "import":
		return c.importBackup(ctx, operands[1])
	}
	return c.usageError("backup", fmt.Sprintf("unknown backup command %q: export or import", operands[0]))
}

func (c *cli) export(ctx context.Context, file string) int {
	if file == "-" && c.stdoutTTY {
		return c.fail("backup export", errors.New("refusing to write an archive to a terminal"))
	}
	b, err := c.open(ctx, true)
	if err != nil {
		return c.fail("backup export", err)
	}
	defer b.Close()
	if file == "-" {
		if err := b.Export(ctx, c.stdout); err != nil {
			return c.fail("backup export", err)
		}
		return exitOK
	}
	// Written aside and renamed: a failed export leaves no half archive
	// that looks like a backup. 0600: the documents may hold secrets.
	tmp, err := os.CreateTemp(filepath.Dir(file), "."+filepath.Base(file)+".*")
	if err != nil {
		return c.fail("backup export", err)
	}
	defer os.Remove(tmp.Name()) // fails harmlessly once renamed
	err = b.Export(ctx, tmp)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), file)
	}
	if err != nil {
		return c.fail("backup export", fmt.Errorf("export to %s: %w", file, err))
	}
	fmt.Fprintf(c.stdout, "exported: %s\n", file)
	return exitOK
}

func (c *cli) importBackup(ctx context.Context, file string) int {
	f, err := os.Open(file)
	if err != nil {
		return c.fail("backup import", err)
	}
	defer f.Close()
	b, err := c.open(ctx, false)
	if err != nil {
		return c.fail("backup import", err)
	}
	defer b.Close()
	if err := b.Import(ctx, f); err != nil {
		return c.fail("backup import", fmt.Errorf("import %s: %w", file, err))
	}
	fmt.Fprintf(c.stdout, "imported: %s\n", file)
	return exitOK
}

// versionArg parses a version number operand.
func (c *cli) versionArg(cmd, s string) (int, bool) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		c.usageError(cmd, fmt.Sprintf("version %q: want a version number (see mfapply history)", s))
		return 0, false
	}
	return n, true
}

// hasChanges reports whether applying p does anything: changes to the
// live state, or a document to record as a new version.
func hasChanges(p *applier.Plan) bool {
	return p.NewVersion || !planEmpty(p.Engine)
}

func planEmpty(p *reconcilers.Plan) bool {
	if p == nil {
		return true
	}
	for _, s := range p.Steps {
		if len(s.Changes) > 0 {
			return false
		}
	}
	return true
}

func oneLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + " …"
	}
	return s
}

// JSON forms of the read commands' output; their field names are an
// interface, like the command names.
type versionJSON struct {
	N         int       `json:"n"`
	Created   time.Time `json:"created"`
	Message   string    `json:"message"`
	Origin    string    `json:"origin"`
	StateHash string    `json:"state_hash"`
	// Unconfirmed marks the version that waits for its confirmation.
	Unconfirmed bool `json:"unconfirmed,omitempty"`
}

type changeJSON struct {
	Op      string   `json:"op"`
	Kind    string   `json:"kind"`
	Name    string   `json:"name"`
	Changed []string `json:"changed"`
}

type stepJSON struct {
	Reconciler  string               `json:"reconciler"`
	Fingerprint string               `json:"fingerprint"`
	Changes     []reconcilers.Change `json:"changes"`
}

type planOutput struct {
	Changes     bool       `json:"changes"`
	BaseVersion int        `json:"base_version"`
	StateHash   string     `json:"state_hash"`
	NewVersion  bool       `json:"new_version"`
	Steps       []stepJSON `json:"steps"`
	// Unapplied are the changed fields that no reconciler applies yet.
	Unapplied []unappliedJSON `json:"unapplied"`
	Saved     string          `json:"saved,omitempty"`
	Warnings  []string        `json:"warnings"`
	// Archive is what the plan does to mail (archive.go).
	Archive *applier.ArchivePlan `json:"archive"`
}

func planJSON(p *applier.Plan, saved string) planOutput {
	out := planOutput{Changes: hasChanges(p), BaseVersion: p.BaseVersion, StateHash: p.StateHash, NewVersion: p.NewVersion, Steps: []stepJSON{}, Unapplied: unappliedList(p.Unapplied), Saved: saved, Warnings: warnings(p.State), Archive: archivePlanJSON(p)}
	if p.Engine != nil {
		for _, s := range p.Engine.Steps {
			out.Steps = append(out.Steps, stepJSON{Reconciler: s.Reconciler, Fingerprint: s.Fingerprint, Changes: nonNil(s.Changes)})
		}
	}
	return out
}

func (c *cli) status(ctx context.Context, args []string) int {
	fs := c.flags("status")
	operands, code := c.parse(fs, args, 0, 2)
	if code >= 0 {
		return code
	}
	if len(operands) == 0 {
		return c.daemonStatus(ctx)
	}
	if operands[0] == "servers" && len(operands) == 1 {
		return c.statusServers(ctx)
	}
	if operands[0] != "accounts" {
		return c.usageError("status", fmt.Sprintf("unknown status %q: accounts or servers", operands[0]))
	}
	domain := ""
	if len(operands) == 2 {
		domain = strings.ToLower(operands[1])
	}
	b, err := c.open(ctx, true)
	if err != nil {
		return c.fail("status accounts", err)
	}
	defer b.Close()
	as, err := b.AccountStatus(ctx, domain)
	if errors.Is(err, store.ErrNotFound) {
		err = fmt.Errorf("no domain %s on this box", domain)
	}
	if err != nil {
		return c.fail("status accounts", err)
	}
	if c.json {
		return c.printJSON(nonNil(as))
	}
	if len(as) == 0 {
		fmt.Fprintln(c.stdout, "no accounts")
		return exitOK
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ACCOUNT\tNAME\tLAST LOGIN\tMESSAGES\tSIZE")
	for _, a := range as {
		last := "N/A"
		if a.LastLogin != nil {
			last = a.LastLogin.Local().Format("2006-01-02 15:04:05") + " (" + a.LastService + ")"
		}
		fmt.Fprintf(tw, "%s@%s\t%s\t%s\t%d\t%s\n", a.ID, a.Domain, oneLine(a.Name), last, a.Messages, applier.HumanBytes(a.Bytes))
	}
	tw.Flush()
	return exitOK
}
