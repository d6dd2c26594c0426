package queue

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"mailfountain.dev/mailfountain/runtime/dsn"
	"mailfountain.dev/mailfountain/runtime/smtpout"
)

// The crash test runs the test binary as a child (TestCrashChild) that
// enqueues and delivers with a sender and a notifier that log to files,
// and kills itself with SIGKILL the Nth time it reaches a named point of
// the queue. A second child, not killed, enqueues again what the first
// did not acknowledge (as a client that lost the 250 does, with the same
// key) and drains the queue. Then every acknowledged recipient must have
// been accepted once, every refused one bounced, and a recipient accepted
// twice only when the kill came in the documented window ("sent":
// between the remote's 250 and the record).

const (
	crashMessages = 12
	envCrashDir   = "MFQUEUE_CRASH_DIR"
	envCrashAt    = "MFQUEUE_CRASH_AT"
	envCrashN     = "MFQUEUE_CRASH_N"
)

func TestCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("runs children")
	}
	for _, tc := range []struct {
		point  string
		n      int
		window bool // the one window: a duplicate is allowed
	}{
		{"enqueue-written", 4, false},
		{"enqueue-renamed", 4, false},
		{"sent", 5, true},
		{"recorded", 5, false},
		{"bounce-notified", 2, false},
		{"deferred-recorded", 3, false},
	} {
		t.Run(tc.point, func(t *testing.T) {
			dir := t.TempDir()
			out, err := crashChild(t, dir, tc.point, tc.n)
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ProcessState.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
				t.Fatalf("the child was not killed at %s (%v):\n%s", tc.point, err, out)
			}
			if out, err := crashChild(t, dir, "", 0); err != nil {
				t.Fatalf("restart: %v\n%s", err, out)
			}
			sent := lines(t, filepath.Join(dir, "sent.log"))
			counts := map[string]int{}
			for _, r := range sent {
				counts[r]++
			}
			var dups []string
			for i := range crashMessages {
				for _, kind := range []string{"ok", "temp"} {
					r := fmt.Sprintf("%s-%d@d%d.example", kind, i, i%3)
					switch c := counts[r]; {
					case c == 0:
						t.Errorf("%s never accepted: lost", r)
					case c > 1:
						dups = append(dups, r)
					}
				}
				if counts[fmt.Sprintf("perm-%d@d%d.example", i, i%3)] != 0 {
					t.Errorf("perm-%d accepted", i)
				}
			}
			// With one send at a time, the window holds one message's
			// recipients of one domain: at most two.
			if len(dups) > 0 && (!tc.window || len(dups) > 2) {
				t.Errorf("sent twice: %v", dups)
			}
			if tc.window {
				t.Logf("killed in the window: sent twice %v", dups)
			}
			// One bounce per message, by key; a key may be handed twice.
			keys := map[string]bool{}
			for _, k := range lines(t, filepath.Join(dir, "notify.log")) {
				keys[k] = true
			}
			if len(keys) != crashMessages {
				t.Errorf("%d bounces, want %d: %v", len(keys), crashMessages, keys)
			}
		})
	}
}

func crashChild(t *testing.T, dir, point string, n int) (string, error) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), envCrashDir+"="+dir, envCrashAt+"="+point, envCrashN+"="+strconv.Itoa(n))
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func lines(t *testing.T, path string) []string {
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return strings.Fields(string(b))
}

// appendLine appends one line with one write: a kill cannot cut it.
func appendLine(path, line string) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		panic(err)
	}
	defer f.Close()
	if _, err := f.WriteString(line + "\n"); err != nil {
		panic(err)
	}
}

// logSender accepts ok-*, refuses perm-* for good and temp-* once (a file
// remembers it across the children), and logs what it accepted before it
// answers.
type logSender struct {
	dir string
	// inWindow counts the sends from their start to the queue's record
	// of them (the crash point "recorded"): a kill meanwhile, wherever
	// it comes from, falls in the documented window of that send.
	inWindow *atomic.Int64
	// gate is held by a kill outside the window while it waits for the
	// windows open to close: no send opens one meanwhile.
	gate *sync.Mutex
}

func (s logSender) Send(ctx context.Context, m *smtpout.Message) []smtpout.Result {
	s.gate.Lock()
	s.inWindow.Add(1)
	s.gate.Unlock()
	res := make([]smtpout.Result, len(m.Rcpts))
	for i, r := range m.Rcpts {
		res[i] = smtpout.Result{Rcpt: r, Code: 250, Text: "250 ok"}
		switch {
		case strings.HasPrefix(r, "perm"):
			res[i] = smtpout.Result{Rcpt: r, Code: 550, Text: "550 5.1.1 no", Permanent: true}
			continue
		case strings.HasPrefix(r, "temp"):
			mark := filepath.Join(s.dir, "tried-"+r)
			if _, err := os.Stat(mark); err != nil {
				os.WriteFile(mark, nil, 0o600)
				res[i] = smtpout.Result{Rcpt: r, Code: 451, Text: "451 later"}
				continue
			}
		}
		appendLine(filepath.Join(s.dir, "sent.log"), r)
	}
	return res
}

type logNotifier struct{ dir string }

func (n logNotifier) Notify(ctx context.Context, key string, m *dsn.Message) error {
	appendLine(filepath.Join(n.dir, "notify.log"), key)
	return nil
}

func TestCrashChild(t *testing.T) {
	dir := os.Getenv(envCrashDir)
	if dir == "" {
		t.Skip("run by TestCrash")
	}
	point := os.Getenv(envCrashAt)
	n, _ := strconv.Atoi(os.Getenv(envCrashN))
	var mu, gate sync.Mutex
	seen := 0
	var inWindow atomic.Int64
	cfg := Config{
		Dir:           filepath.Join(dir, "queue"),
		Sender:        logSender{dir: dir, inWindow: &inWindow, gate: &gate},
		Notifier:      logNotifier{dir},
		Hostname:      func() string { return "mail.box.example" },
		MaxConcurrent: 1, // one send in the window at a time
		Settings: func() Settings {
			return Settings{MinBackoff: 10 * time.Millisecond, MaxBackoff: 10 * time.Millisecond, Lifetime: time.Hour}
		},
		crash: func(p string) {
			if p == "recorded" {
				inWindow.Add(-1)
			}
			if p != point {
				return
			}
			mu.Lock()
			seen++
			kill := seen == n
			mu.Unlock()
			if !kill {
				return
			}
			if p != "sent" {
				// Another goroutine's send in its window would make a
				// kill here a kill in that window: only the point "sent"
				// may be one. New sends wait; the open windows close.
				gate.Lock()
				for inWindow.Load() > 0 {
					time.Sleep(time.Millisecond)
				}
			}
			syscall.Kill(syscall.Getpid(), syscall.SIGKILL)
			select {}
		},
	}
	q, err := Open(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- q.Run(ctx) }()
	acked := map[string]bool{}
	for _, k := range lines(t, filepath.Join(dir, "acked.log")) {
		acked[k] = true
	}
	for i := range crashMessages {
		key := fmt.Sprintf("k%d", i)
		if acked[key] {
			continue
		}
		d := fmt.Sprintf("d%d.example", i%3)
		env := Envelope{
			From:  "a@box.example",
			Rcpts: []string{"ok-" + strconv.Itoa(i) + "@" + d, "perm-" + strconv.Itoa(i) + "@" + d, "temp-" + strconv.Itoa(i) + "@" + d},
			Key:   key,
		}
		if _, err := q.Enqueue(t.Context(), env, strings.NewReader(testMsg)); err != nil {
			t.Fatal(err)
		}
		appendLine(filepath.Join(dir, "acked.log"), key)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		n := 0
		q.List(t.Context(), func(Info) bool { n++; return true })
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d messages left", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
