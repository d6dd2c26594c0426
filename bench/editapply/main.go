// Command editapply times, for bench/edit-apply.sh, how long an edit of the
// watched state file takes to be applied by a real mailfountaind.
//
//	editapply -daemon BIN -doc FILE [-edits N] [-save rename|truncate|both]
//	          [-gap D] [-seed S] [-timeout D] [-log FILE]
//
// It copies FILE into a fresh directory, runs BIN on it (no mail server
// listening, no resync), waits for the first apply, then makes N edits, each
// the name of one account chosen at random, saved the way editors save: a
// new file renamed over the old one (vim, VS Code, sed -i) or the file
// truncated and written again in place (nano, vim with backupcopy=yes). It
// times each edit from the end of the save (the rename, or the close after
// the write) until the daemon logs "state applied" with the next version
// number, and prints, per way of saving, the edits, p50, p90, min and max in
// milliseconds:
//
//	save=rename edits=20 p50_ms=41 p90_ms=57 min_ms=35 max_ms=63
//
// An edit that the daemon does not apply within -timeout, or that it finds
// invalid, ends the run with an error and the end of the daemon's log.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "editapply:", err)
		os.Exit(1)
	}
}

type options struct {
	daemon, doc, logPath string
	edits                int
	saves                []string
	gap, timeout         time.Duration
	seed                 uint64
}

func run(args []string) error {
	fs := flag.NewFlagSet("editapply", flag.ContinueOnError)
	var o options
	fs.StringVar(&o.daemon, "daemon", "", "mailfountaind binary (required)")
	fs.StringVar(&o.doc, "doc", "", "state document to run it on (required)")
	fs.StringVar(&o.logPath, "log", "", "file to copy the daemon's log to")
	fs.IntVar(&o.edits, "edits", 20, "edits per way of saving")
	save := fs.String("save", "both", "how the file is saved: rename, truncate or both")
	fs.DurationVar(&o.gap, "gap", 200*time.Millisecond, "pause after an edit is applied, before the next")
	fs.DurationVar(&o.timeout, "timeout", 5*time.Minute, "how long to wait for one apply (the first included)")
	fs.Uint64Var(&o.seed, "seed", 1, "seed of the choice of accounts")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.daemon == "" || o.doc == "" || o.edits < 1 {
		return errors.New("usage: editapply -daemon BIN -doc FILE [-edits N] [-save rename|truncate|both]")
	}
	switch *save {
	case "both":
		o.saves = []string{"rename", "truncate"}
	case "rename", "truncate":
		o.saves = []string{*save}
	default:
		return fmt.Errorf("-save %q: want rename, truncate or both", *save)
	}
	return bench(o)
}

// logLine is one line of the daemon's log and when it was read.
type logLine struct {
	text string
	at   time.Time
}

var (
	appliedRE = regexp.MustCompile(`msg="state applied[^"]*"(?: version=(\d+))?`)
	failedRE  = regexp.MustCompile(`msg="(invalid state|apply state failed|state not applied)`)
)

func bench(o options) error {
	doc, err := os.ReadFile(o.doc)
	if err != nil {
		return err
	}
	if len(accountNames(doc)) == 0 {
		return fmt.Errorf("%s: no account name of the form gendoc writes (name: \"User N of domain D\")", o.doc)
	}
	work, err := os.MkdirTemp("", "editapply-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	state := filepath.Join(work, "state.yaml")
	if err := os.WriteFile(state, doc, 0o600); err != nil {
		return err
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := exec.CommandContext(ctx, o.daemon, "--data", filepath.Join(work, "data"), "-f", state, "--resync", "0",
		"--smtp", "off", "--submission", "off", "--submissions", "off",
		"--pop3", "off", "--pop3s", "off", "--imap", "off", "--imaps", "off")
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 30 * time.Second
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	var logCopy io.Writer = io.Discard
	if o.logPath != "" {
		f, err := os.Create(o.logPath)
		if err != nil {
			return err
		}
		defer f.Close()
		logCopy = f
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", o.daemon, err)
	}
	lines := make(chan logLine, 1024)
	var tail []string // the last lines, for errors
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 16<<20)
		for sc.Scan() {
			lines <- logLine{text: sc.Text(), at: time.Now()}
		}
	}()
	defer func() {
		cancel()
		for range lines { // until the daemon closes its stderr
		}
		cmd.Wait()
	}()

	// waitApplied waits for the "state applied" line of a version after
	// prev and returns its number and when it was read.
	waitApplied := func(prev int) (int, time.Time, error) {
		deadline := time.After(o.timeout)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					return 0, time.Time{}, fmt.Errorf("the daemon stopped; its log ends with:\n%s", strings.Join(tail, "\n"))
				}
				fmt.Fprintln(logCopy, l.text)
				tail = append(tail, l.text)
				if len(tail) > 15 {
					tail = tail[1:]
				}
				if failedRE.MatchString(l.text) {
					return 0, time.Time{}, fmt.Errorf("the daemon did not apply the edit:\n%s", strings.Join(tail, "\n"))
				}
				m := appliedRE.FindStringSubmatch(l.text)
				if m == nil {
					continue
				}
				v, _ := strconv.Atoi(m[1]) // "state applied: no changes" has no version
				if v > prev {
					return v, l.at, nil
				}
			case <-deadline:
				return 0, time.Time{}, fmt.Errorf("no apply after version %d within %s; the daemon's log ends with:\n%s", prev, o.timeout, strings.Join(tail, "\n"))
			}
		}
	}

	t0 := time.Now()
	version, _, err := waitApplied(0)
	if err != nil {
		return fmt.Errorf("first apply: %w", err)
	}
	fmt.Printf("first apply: version %d in %d ms (start included)\n", version, time.Since(t0).Milliseconds())

	rng := rand.New(rand.NewPCG(o.seed, 0))
	edit := 0
	for _, how := range o.saves {
		var took []time.Duration
		for range o.edits {
			edit++
			doc = editName(doc, rng, edit)
			if err := save(state, doc, how); err != nil {
				return fmt.Errorf("save edit %d: %w", edit, err)
			}
			saved := time.Now()
			v, at, err := waitApplied(version)
			if err != nil {
				return fmt.Errorf("edit %d (save by %s): %w", edit, how, err)
			}
			version = v
			took = append(took, at.Sub(saved))
			time.Sleep(o.gap)
		}
		fmt.Println(summary(how, took))
	}
	return nil
}

// nameRE matches the quoted name of an account as gendoc writes it.
var nameRE = regexp.MustCompile(`(?m)^ +name: "(User \d+ of domain \d+)[^"\n]*"$`)

// accountNames returns the positions of the account names of doc: for each,
// the start and end of the quoted value and of its stable part.
func accountNames(doc []byte) [][]int {
	return nameRE.FindAllSubmatchIndex(doc, -1)
}

// editName gives one account, chosen with rng, the name "User N of domain
// D (edit K)".
func editName(doc []byte, rng *rand.Rand, k int) []byte {
	ms := accountNames(doc)
	m := ms[rng.IntN(len(ms))]
	start, end := m[0], m[1]
	base := string(doc[m[2]:m[3]])
	line := doc[start:end]
	indent := line[:len(line)-len(strings.TrimLeft(string(line), " "))]
	repl := fmt.Sprintf("%sname: \"%s (edit %d)\"", indent, base, k)
	out := make([]byte, 0, len(doc)+len(repl))
	out = append(out, doc[:start]...)
	out = append(out, repl...)
	return append(out, doc[end:]...)
}

// save writes data to path as an editor does: "rename" writes a new file
// beside it and renames it over path; "truncate" truncates path and writes
// it in place.
func save(path string, data []byte, how string) error {
	switch how {
	case "rename":
		tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".swp")
		if err := os.WriteFile(tmp, data, 0o600); err != nil {
			return err
		}
		return os.Rename(tmp, path)
	case "truncate":
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
		if err != nil {
			return err
		}
		if _, err := f.Write(data); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	}
	return fmt.Errorf("unknown way of saving %q", how)
}

// summary is one line of figures, in milliseconds.
func summary(how string, took []time.Duration) string {
	s := slices.Clone(took)
	slices.Sort(s)
	ms := func(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) }
	return fmt.Sprintf("save=%s edits=%d p50_ms=%s p90_ms=%s min_ms=%s max_ms=%s",
		how, len(s), ms(percentile(s, 50)), ms(percentile(s, 90)), ms(s[0]), ms(s[len(s)-1]))
}

// percentile is the nearest-rank percentile p of sorted.
func percentile(sorted []time.Duration, p int) time.Duration {
	rank := (p*len(sorted) + 99) / 100
	if rank < 1 {
		rank = 1
	}
	return sorted[rank-1]
}
