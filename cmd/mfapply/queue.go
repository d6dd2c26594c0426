package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"mailfountain.dev/mailfountain/runtime/applier"
	"mailfountain.dev/mailfountain/runtime/control"
	"mailfountain.dev/mailfountain/runtime/queue"
)

// queueBackend is what `mfapply queue` needs of the outbound queue: the
// control socket's QueueAdmin. *control.QueueClient is the daemon's queue
// behind its control socket; *queue.Queue, opened on the data directory
// when no daemon runs, has the same methods.
type queueBackend = control.QueueAdmin

var (
	_ queueBackend = (*control.QueueClient)(nil)
	_ queueBackend = (*queue.Queue)(nil)
)

// openQueue returns the daemon's queue when one serves the data
// directory, else the queue opened here, and what closes it.
func (c *cli) openQueue(ctx context.Context) (queueBackend, func() error, error) {
	cl, err := control.Dial(c.dataDir)
	if err == nil {
		return cl.Queue(), cl.Close, nil
	}
	if !errors.Is(err, control.ErrNoDaemon) {
		return nil, nil, err
	}
	return c.openQueueHere(ctx)
}

// openQueueHere opens the queue of the data directory in this process,
// when no daemon runs: its admin methods work on a queue that does not
// send. A missing data directory is an error, not a new empty queue.
func (c *cli) openQueueHere(ctx context.Context) (queueBackend, func() error, error) {
	if _, err := os.Stat(c.dataDir); errors.Is(err, fs.ErrNotExist) {
		return nil, nil, fmt.Errorf("no data directory %s: nothing was applied there (--data DIR or MAILFOUNTAIN_DATA)", c.dataDir)
	}
	q, err := queue.Open(ctx, queue.Config{Dir: queue.Dir(c.dataDir)})
	if err != nil {
		return nil, nil, fmt.Errorf("open the queue of %s: %w", c.dataDir, err)
	}
	return q, q.Close, nil
}

// queueAction is a command that changes a message, with the line it
// prints when done; ok is false for another word.
func queueAction(sub string) (do func(q queueBackend, ctx context.Context, id string) error, done string, ok bool) {
	switch sub {
	case "hold":
		return queueBackend.Hold, "held %s", true
	case "release":
		return queueBackend.Release, "released %s", true
	case "retry":
		return queueBackend.Retry, "retrying %s now", true
	case "delete":
		return queueBackend.Delete, "deleted %s", true
	}
	return nil, "", false
}

// queueCmd is `mfapply queue list|show ID|hold ID|release ID|retry ID|delete ID`.
func (c *cli) queueCmd(ctx context.Context, args []string) int {
	fs := c.flags("queue")
	operands, code := c.parse(fs, args, 1, 2)
	if code >= 0 {
		return code
	}
	sub := operands[0]
	do, done, isAction := queueAction(sub)
	switch {
	case sub == "list":
		if len(operands) > 1 {
			return c.usageError("queue", "queue list takes no argument")
		}
	case sub == "show" || isAction:
		if len(operands) != 2 {
			return c.usageError("queue", fmt.Sprintf("queue %s takes one message ID (see mfapply queue list)", sub))
		}
		if err := control.CheckQueueID(operands[1]); err != nil {
			return c.usageError("queue", err.Error())
		}
	default:
		return c.usageError("queue", fmt.Sprintf("unknown queue command %q: list, show, hold, release, retry or delete", sub))
	}
	cmd := "queue " + sub
	q, closeQueue, err := c.openQueue(ctx)
	if err != nil {
		return c.fail(cmd, err)
	}
	defer closeQueue()
	if sub == "list" {
		return c.queueList(ctx, q)
	}
	id := operands[1]
	if sub == "show" {
		info, err := q.Show(ctx, id)
		if err != nil {
			return c.fail(cmd, queueError(id, err))
		}
		if c.json {
			info.Recipients = nonNil(info.Recipients)
			return c.printJSON(info)
		}
		printQueueMessage(c.stdout, info, time.Now())
		return exitOK
	}
	if err := do(q, ctx, id); err != nil {
		return c.fail(cmd, queueError(id, err))
	}
	if c.json {
		return c.printJSON(struct {
			ID     string `json:"id"`
			Action string `json:"action"`
		}{id, sub})
	}
	fmt.Fprintf(c.stdout, done+"\n", id)
	return exitOK
}

// queueError says which id is unknown; other errors are kept as they are.
func queueError(id string, err error) error {
	if errors.Is(err, queue.ErrNotFound) {
		return fmt.Errorf("no message %s in the queue", id)
	}
	return err
}

// tableBlock is how many rows of the list are aligned together: the table
// is written as it comes, so that a long queue is not held in memory.
const tableBlock = 1000

func (c *cli) queueList(ctx context.Context, q queueBackend) int {
	if c.json {
		return c.queueListJSON(ctx, q)
	}
	now := time.Now()
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	var n, held int
	var size int64
	err := q.List(ctx, func(info queue.Info) bool {
		if n%tableBlock == 0 {
			tw.Flush()
			if n == 0 {
				fmt.Fprintln(tw, "ID\tAGE\tSIZE\tSTATE\tNEXT\tFROM\tRCPTS\tLAST ERROR")
			}
		}
		n++
		size += info.Size
		if info.State == queue.Held {
			held++
		}
		pending := 0
		for _, r := range info.Recipients {
			if r.Status == "pending" {
				pending++
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d/%d\t%s\n", info.ID, shortDuration(now.Sub(info.Created)), applier.HumanBytes(info.Size),
			info.State, nextAttempt(info.Next, now), reversePath(info.From), pending, len(info.Recipients), shorten(lastError(info.Recipients), 60))
		return true
	})
	tw.Flush()
	if err != nil {
		return c.fail("queue list", err)
	}
	if n == 0 {
		fmt.Fprintln(c.stdout, "the queue is empty")
		return exitOK
	}
	fmt.Fprintf(c.stdout, "%s, %s; %d held\n", applier.Count(n, "message", "messages"), applier.HumanBytes(size), held)
	return exitOK
}

// queueListJSON writes the list as one JSON array, a message at a time.
// An error after the first message closes the array (stdout stays one
// JSON document) and is told on stderr.
func (c *cli) queueListJSON(ctx context.Context, q queueBackend) int {
	n := 0
	var werr error
	err := q.List(ctx, func(info queue.Info) bool {
		info.Recipients = nonNil(info.Recipients)
		b, err := json.MarshalIndent(info, "  ", "  ")
		if err != nil {
			werr = fmt.Errorf("encode JSON: %w", err)
			return false
		}
		sep := ",\n  "
		if n == 0 {
			sep = "[\n  "
		}
		n++
		if _, werr = io.WriteString(c.stdout, sep+string(b)); werr != nil {
			return false
		}
		return true
	})
	if err == nil {
		err = werr
	}
	if n == 0 {
		if err != nil {
			return c.fail("queue list", err)
		}
		fmt.Fprintln(c.stdout, "[]")
		return exitOK
	}
	fmt.Fprintln(c.stdout, "\n]")
	if err != nil {
		fmt.Fprintf(c.stderr, "mfapply queue list: %v (the list stops at %s)\n", err, applier.Count(n, "message", "messages"))
		return exitFail
	}
	return exitOK
}

// printQueueMessage prints a message and every recipient.
func printQueueMessage(w io.Writer, info *queue.Info, now time.Time) {
	fmt.Fprintf(w, "message %s\n", info.ID)
	fmt.Fprintf(w, "from:       %s\n", reversePath(info.From))
	fmt.Fprintf(w, "size:       %s\n", applier.HumanBytes(info.Size))
	fmt.Fprintf(w, "created:    %s (%s ago)\n", info.Created.Local().Format(time.DateTime), shortDuration(now.Sub(info.Created)))
	state := string(info.State)
	if info.State == queue.Held {
		state += ": not tried until released (mfapply queue release " + info.ID + ")"
	} else if !info.Next.IsZero() {
		state += fmt.Sprintf(", next attempt %s (%s)", info.Next.Local().Format(time.DateTime), nextAttempt(info.Next, now))
	}
	fmt.Fprintf(w, "state:      %s\n", state)
	pending := 0
	for _, r := range info.Recipients {
		if r.Status == "pending" {
			pending++
		}
	}
	fmt.Fprintf(w, "recipients: %d pending of %d\n", pending, len(info.Recipients))
	for _, r := range info.Recipients {
		line := fmt.Sprintf("  %s: %s, %s", r.Addr, r.Status, applier.Count(r.Attempts, "attempt", "attempts"))
		if r.ViaRelay {
			line += ", via smarthost (the destination refused the box's address)"
		}
		fmt.Fprintln(w, line)
		fmt.Fprintf(w, "    sender: %s\n", reversePath(r.From))
		if r.LastError != "" {
			// The remote server's whole answer, its lines kept.
			msg := strings.ReplaceAll(strings.TrimRight(r.LastError, "\r\n"), "\r\n", "\n")
			fmt.Fprintf(w, "    last error: %s\n", strings.ReplaceAll(msg, "\n", "\n      "))
		}
	}
}

// lastError is the error to show for a message in the list: that of its
// first pending recipient that has one, else of any recipient.
func lastError(rs []queue.Recipient) string {
	for _, r := range rs {
		if r.Status == "pending" && r.LastError != "" {
			return r.LastError
		}
	}
	for _, r := range rs {
		if r.LastError != "" {
			return r.LastError
		}
	}
	return ""
}

// shorten keeps the first line of s, at most n characters of it.
func shorten(s string, n int) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		s = s[:i] + " …"
	}
	if utf8.RuneCountInString(s) <= n {
		return dash(s)
	}
	return string([]rune(s)[:n-1]) + "…"
}

// reversePath writes an envelope sender, <> for the null one.
func reversePath(from string) string {
	if from == "" {
		return "<>"
	}
	return from
}

// nextAttempt writes when a message is tried next: "in 4m", "now", or
// "-" for none.
func nextAttempt(next, now time.Time) string {
	switch {
	case next.IsZero():
		return "-"
	case !next.After(now):
		return "now"
	}
	return "in " + shortDuration(next.Sub(now))
}

// shortDuration writes d in at most two units: 45s, 12m, 3h05m, 2d04h.
func shortDuration(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d/time.Minute))
	case d < 24*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d/time.Hour), int(d%time.Hour/time.Minute))
	}
	return fmt.Sprintf("%dd%02dh", int(d/(24*time.Hour)), int(d%(24*time.Hour)/time.Hour))
}
