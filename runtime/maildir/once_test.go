package maildir

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
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
)

// testKey is the DeliverOnce key of a message made by msg(body).
func testKey(body string) string {
	sum := sha256.Sum256([]byte("from\x00rcpt\x00" + body))
	return hex.EncodeToString(sum[:16])
}

// onceRoots are n mailboxes where Recover looks for recent deliveries.
func onceRoots(data string, n int) []string {
	var roots []string
	for i := range n {
		roots = append(roots, filepath.Join(data, "mail", "example.org", "box"+strconv.Itoa(i)))
	}
	return roots
}

func deliverOnce(t testing.TB, s *Store, roots []string, body string) bool {
	t.Helper()
	dup, err := s.DeliverOnce(context.Background(), roots, testKey(body), bytes.NewReader(msg(body)))
	if err != nil {
		t.Fatal(err)
	}
	return dup
}

func recoverStore(t testing.TB, data string) *Store {
	t.Helper()
	s := newStore(t, data)
	if err := s.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestDeliverOnceCrash stops DeliverOnce at each of its steps, as a crash
// would, restarts, and sends the message again, as the client that never
// had its 250 does: every mailbox has it once. After the commit point
// the second DeliverOnce writes nothing, before it, it delivers.
func TestDeliverOnceCrash(t *testing.T) {
	for _, mode := range crashModes {
		steps := crashSteps(t, mode.nroots, mode.noTmpfile)
		committed := false
		for _, step := range steps {
			if step == mode.commits {
				committed = true
			}
			for _, reader := range []bool{false, true} {
				name := mode.name + "/" + step
				if reader {
					// A reader (IMAP IDLE) took the message into cur/
					// before the crash: Recover finds it there too.
					name += "/read"
				}
				t.Run(name, func(t *testing.T) {
					data := t.TempDir()
					roots := onceRoots(data, mode.nroots)
					s := newStore(t, data)
					s.noTmpfile.Store(mode.noTmpfile)
					deliverOnce(t, s, roots, "before")
					s.crash = func(st string) error {
						if st == step {
							return errCrash
						}
						return nil
					}
					_, err := s.DeliverOnce(context.Background(), roots, testKey("m"), bytes.NewReader(msg("m")))
					if !errors.Is(err, errCrash) {
						t.Fatalf("DeliverOnce: %v", err)
					}
					if reader {
						syncF(t, folder(t, openBox(t, newStore(t, data), roots[0]), Inbox))
					}
					s = recoverStore(t, data)
					s.noTmpfile.Store(mode.noTmpfile)
					dup := deliverOnce(t, s, roots, "m")
					if dup != committed {
						t.Errorf("duplicate = %v, want %v", dup, committed)
					}
					for _, r := range roots {
						if got := bodies(t, r); got["m"] != 1 || got["before"] != 1 || len(got) != 2 {
							t.Errorf("%s: %v, want m and before once", r, got)
						}
					}
					// The entry is consumed: the same message sent again
					// later is a new one.
					if deliverOnce(t, s, roots, "m") {
						t.Error("second resend taken for a duplicate")
					}
					for _, r := range roots {
						if got := bodies(t, r); got["m"] != 2 {
							t.Errorf("%s after a genuine resend: %v", r, got)
						}
					}
					if left := files(t, s.spool); len(left) != 0 {
						t.Errorf("spool left with %v", left)
					}
				})
			}
		}
		if !committed {
			t.Errorf("%s: no %s step in %v", mode.name, mode.commits, steps)
		}
	}
}

func TestDeliverOnce(t *testing.T) {
	key := testKey("m")
	ctx := context.Background()
	tests := []struct {
		name   string
		before []int // the roots the message reached before the crash
		again  []int // the roots it is sent to again
		age    time.Duration
		after  time.Duration // from Recover to the resend
		dup    bool
		want   []int // copies in each root, by index, at the end
	}{
		{"not seen", nil, []int{0}, 0, 0, false, []int{1, 0}},
		{"seen", []int{0}, []int{0}, 0, 0, true, []int{1, 0}},
		{"seen in both", []int{0, 1}, []int{0, 1}, 0, 0, true, []int{1, 1}},
		{"seen in one of two", []int{0}, []int{0, 1}, 0, 0, false, []int{1, 1}},
		{"seen in more", []int{0, 1}, []int{1}, 0, 0, true, []int{1, 1}},
		{"seen elsewhere", []int{1}, []int{0}, 0, 0, false, []int{1, 1}},
		{"old", []int{0}, []int{0}, 2 * time.Hour, 0, false, []int{2, 0}},
		{"old, within the window", []int{0}, []int{0}, 50 * time.Minute, 0, true, []int{1, 0}},
		{"expired", []int{0}, []int{0}, 0, time.Hour + time.Second, false, []int{2, 0}},
		{"not yet expired", []int{0}, []int{0}, 0, 59 * time.Minute, true, []int{1, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := t.TempDir()
			roots := onceRoots(data, 2)
			s := newStore(t, data)
			for _, i := range tt.before {
				if dup := deliverOnce(t, s, roots[i:i+1], "m"); dup {
					t.Fatal("first delivery taken for a duplicate")
				}
			}
			// The clock moves on (the crash, the restart).
			now := time.Now().Add(tt.age)
			s = newStore(t, data)
			s.clock = func() time.Time { return now }
			if err := s.Recover(ctx); err != nil {
				t.Fatal(err)
			}
			now = now.Add(tt.after)
			var again []string
			for _, i := range tt.again {
				again = append(again, roots[i])
			}
			dup, err := s.DeliverOnce(ctx, again, key, bytes.NewReader(msg("m")))
			if err != nil || dup != tt.dup {
				t.Errorf("DeliverOnce = %v, %v; want %v", dup, err, tt.dup)
			}
			for i, r := range roots {
				if got := bodies(t, r)["m"]; got != tt.want[i] {
					t.Errorf("root %d has %d copies, want %d", i, got, tt.want[i])
				}
			}
		})
	}
}

// TestDeliverOnceRelative: a data directory given relative to the working
// directory, and roots given in another spelling, still match what
// Recover found.
func TestDeliverOnceRelative(t *testing.T) {
	data := t.TempDir()
	t.Chdir(data)
	s, err := New(".", nil)
	if err != nil {
		t.Fatal(err)
	}
	rel := []string{"mail/example.org/box0", "./mail/example.org/box1/"}
	deliverOnce(t, s, rel, "m")
	s = recoverStore(t, data) // absolute this time
	if !deliverOnce(t, s, onceRoots(data, 2), "m") {
		t.Error("resend with absolute roots not recognised")
	}
	deliverOnce(t, s, rel, "n")
	s, err = New(".", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !deliverOnce(t, s, rel, "n") {
		t.Error("resend with relative roots not recognised")
	}
	for _, r := range onceRoots(data, 2) {
		if got := bodies(t, r); got["m"] != 1 || got["n"] != 1 {
			t.Errorf("%s: %v", r, got)
		}
	}
}

func TestDeliverOnceRefused(t *testing.T) {
	data := t.TempDir()
	s := newStore(t, data)
	roots := onceRoots(data, 1)
	for _, key := range []string{
		"", "0123456789abcde", strings.Repeat("a", 65), "0123456789ABCDEF",
		"0123456789abcdeg", "0123456789abcdef,S=1", "../0123456789abcdef", "0123456789abcdef:2,",
	} {
		if _, err := s.DeliverOnce(context.Background(), roots, key, bytes.NewReader(msg("m"))); err == nil {
			t.Errorf("key %q accepted", key)
		}
	}
	if _, err := s.DeliverOnce(context.Background(), nil, testKey("m"), bytes.NewReader(msg("m"))); err == nil {
		t.Error("no roots: no error")
	}
	if got := bodies(t, roots[0]); len(got) != 0 {
		t.Errorf("delivered %v", got)
	}
}

// TestDeliverOnceNames: the key is in the file name, and the name's
// other fields still work: size (Usage, RFC822.SIZE), the stable Maildir
// key (UIDL, UIDs) across flag changes.
func TestDeliverOnceNames(t *testing.T) {
	for _, nroots := range []int{1, 2} {
		t.Run(strconv.Itoa(nroots), func(t *testing.T) {
			data := t.TempDir()
			s := newStore(t, data)
			roots := onceRoots(data, nroots)
			deliverOnce(t, s, roots, "keyed")
			deliver(t, s, roots, "plain")
			m := msg("keyed")
			for _, r := range roots {
				u, err := MailboxUsage(r)
				if err != nil || u.Messages != 2 || u.Bytes != int64(len(m)+len(msg("plain"))) {
					t.Errorf("usage %+v, %v", u, err)
				}
				in := folder(t, openBox(t, s, r), Inbox)
				snap := syncF(t, in)
				var keyed *Message
				for i, mm := range snap.Messages {
					if bodyOf(read(t, in, mm.UID)) == "keyed" {
						keyed = &snap.Messages[i]
					} else if strings.Contains(mm.Key, ",K=") {
						t.Errorf("plain message named %q", mm.Key)
					}
				}
				if keyed == nil {
					t.Fatal("keyed message missing")
				}
				if !strings.HasSuffix(keyed.Key, fmt.Sprintf(",S=%d,K=%s", len(m), testKey("keyed"))) || keyFromName(keyed.Key) != testKey("keyed") {
					t.Errorf("key %q", keyed.Key)
				}
				if keyed.Size != int64(len(m)) {
					t.Errorf("size %d, want %d", keyed.Size, len(m))
				}
				if err := setFlags(in, keyed.UID, FlagSeen); err != nil {
					t.Fatal(err)
				}
				snap2 := syncF(t, in)
				if len(snap2.Messages) != 2 || snap2.Messages[0].Key != snap.Messages[0].Key || snap2.Messages[1].Key != snap.Messages[1].Key {
					t.Errorf("keys changed with the flags: %+v, then %+v", snap.Messages, snap2.Messages)
				}
			}
		})
	}
}

func TestNameFields(t *testing.T) {
	key := "0123456789abcdef0123456789abcdef"
	tests := []struct {
		name string
		key  string
		size int64 // -1: none
		sec  int64 // -1: none
	}{
		{deliveredName("1700000000.M1P2Q3R0000abcd", 42, key), key, 42, 1700000000},
		{deliveredName("1700000000.M1P2Q3R0000abcd", 42, "") + ":2,S", "", 42, 1700000000},
		{"1700000000.M1P2,S=7,K=" + key + ":2,RS", key, 7, 1700000000},
		{"1700000000.M1P2,K=" + key + ",S=7,W=9", key, 7, 1700000000},
		{"1700000000.M1P2,S=7,K=" + strings.ToUpper(key), "", 7, 1700000000},
		{"1700000000.M1P2,S=7,K=abc", "", 7, 1700000000},
		{"1700000000.M1P2,S=7,K=", "", 7, 1700000000},
		{"x,S=7,K=" + key, key, 7, -1},
		{"host.example,K=" + key + ":2,", key, -1, -1},
		{"", "", -1, -1},
	}
	for _, tt := range tests {
		if got := keyFromName(tt.name); got != tt.key {
			t.Errorf("keyFromName(%q) = %q, want %q", tt.name, got, tt.key)
		}
		k, _ := splitName(tt.name)
		size, ok := sizeFromKey(k)
		if !ok {
			size = -1
		}
		if size != tt.size {
			t.Errorf("sizeFromKey(%q) = %d, want %d", k, size, tt.size)
		}
		sec, ok := timeFromName(tt.name)
		if !ok {
			sec = -1
		}
		if sec != tt.sec {
			t.Errorf("timeFromName(%q) = %d, want %d", tt.name, sec, tt.sec)
		}
	}
}

// FuzzNameFields: the fields read from a file name (the names in a
// Maildir are anyone's) are either absent or valid, and those written
// read back.
func FuzzNameFields(f *testing.F) {
	f.Add("1700000000.M1P2Q3R0000abcd,S=42,K=0123456789abcdef:2,S", int64(42), "0123456789abcdef")
	f.Add("x,K=,S=", int64(0), "")
	f.Add("99999999999999999999.x", int64(1), "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff")
	f.Fuzz(func(t *testing.T, name string, size int64, key string) {
		if k := keyFromName(name); k != "" && !validKey(k) {
			t.Errorf("keyFromName(%q) = %q", name, k)
		}
		if sec, ok := timeFromName(name); ok && sec < 0 {
			t.Errorf("timeFromName(%q) = %d", name, sec)
		}
		if size < 0 || !validKey(key) {
			return
		}
		n := deliveredName("1700000000.M1P2Q3R0000abcd", size, key)
		k, _ := splitName(n + ":2,S")
		if got := keyFromName(n + ":2,S"); got != key {
			t.Errorf("key of %q = %q", n, got)
		}
		if got, ok := sizeFromKey(k); !ok || got != size {
			t.Errorf("size of %q = %d, %v", n, got, ok)
		}
	})
}

// TestDirSyncer: concurrent callers share runs of the fsync, and each
// returns only after a run that started after its call.
func TestDirSyncer(t *testing.T) {
	ds := newDirSyncer()
	var changes atomic.Int64 // a counter of changes, as a clock
	var mu sync.Mutex
	var runs int
	var lastDone int64 = -1 // changes when the last finished run started
	fsync := func() error {
		began := changes.Load()
		time.Sleep(2 * time.Millisecond)
		mu.Lock()
		runs++
		lastDone = max(lastDone, began)
		mu.Unlock()
		return nil
	}
	const n = 50
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			for range 5 {
				c := changes.Add(1)
				if err := ds.sync(fsync); err != nil {
					t.Error(err)
				}
				mu.Lock()
				covered := lastDone >= c
				mu.Unlock()
				if !covered {
					t.Errorf("change %d returned before a sync that saw it", c)
				}
			}
		})
	}
	wg.Wait()
	if runs >= n*5/2 {
		t.Errorf("%d fsyncs for %d changes", runs, n*5)
	}
	t.Logf("%d fsyncs for %d changes", runs, n*5)

	// A failure is reported to those whose change it should have saved,
	// not to those that come after.
	fail := errors.New("EIO")
	if err := ds.sync(func() error { return fail }); !errors.Is(err, fail) {
		t.Errorf("failed sync: %v", err)
	}
	if err := ds.sync(func() error { return nil }); err != nil {
		t.Errorf("sync after a failure: %v", err)
	}
}

// TestHelperOnce is the child of TestDeliverOnceKill: workers deliver
// numbered messages with DeliverOnce until the process is killed, each
// number printed once DeliverOnce returned (the client had its 250).
func TestHelperOnce(t *testing.T) {
	data := os.Getenv("MAILDIR_ONCE_DATA")
	if data == "" {
		t.Skip("helper process only")
	}
	nroots, _ := strconv.Atoi(os.Getenv("MAILDIR_ONCE_ROOTS"))
	workers, _ := strconv.Atoi(os.Getenv("MAILDIR_ONCE_WORKERS"))
	s, err := New(data, nil)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	s.noTmpfile.Store(os.Getenv("MAILDIR_ONCE_TMP") != "")
	roots := onceRoots(data, nroots)
	var next atomic.Int64
	var out sync.Mutex
	for range workers {
		go func() {
			for {
				n := strconv.FormatInt(next.Add(1), 10)
				if _, err := s.DeliverOnce(context.Background(), roots, testKey(n), bytes.NewReader(msg(n))); err != nil {
					fmt.Println("error", err)
					os.Exit(2)
				}
				out.Lock()
				fmt.Println(n)
				out.Unlock()
			}
		}()
	}
	select {}
}

// TestDeliverOnceKill kills a process delivering with DeliverOnce with
// SIGKILL; after Recover, every number it had not acknowledged is sent
// again with its key, as SMTP clients do: then every mailbox has every
// number exactly once, none missing, none twice.
func TestDeliverOnceKill(t *testing.T) {
	if testing.Short() {
		t.Skip("re-executes the test binary")
	}
	runs := []struct {
		name    string
		roots   int
		workers int
		tmp     bool
		after   time.Duration
	}{
		{"3 roots", 3, 1, false, 250 * time.Millisecond},
		{"3 roots, concurrent", 3, 4, false, 180 * time.Millisecond},
		{"1 root, concurrent", 1, 8, false, 200 * time.Millisecond},
		{"1 root through tmp, concurrent", 1, 8, true, 150 * time.Millisecond},
	}
	for _, run := range runs {
		t.Run(run.name, func(t *testing.T) {
			data := t.TempDir()
			cmd := exec.Command(os.Args[0], "-test.run=^TestHelperOnce$")
			cmd.Env = append(os.Environ(), "MAILDIR_ONCE_DATA="+data,
				"MAILDIR_ONCE_ROOTS="+strconv.Itoa(run.roots), "MAILDIR_ONCE_WORKERS="+strconv.Itoa(run.workers))
			if run.tmp {
				cmd.Env = append(cmd.Env, "MAILDIR_ONCE_TMP=1")
			}
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			lines := make(chan string)
			go func() {
				defer close(lines)
				sc := bufio.NewScanner(out)
				for sc.Scan() {
					lines <- sc.Text()
				}
			}()
			printed := map[int]bool{}
			maxPrinted := 0
			var kill <-chan time.Time
			timeout := time.After(30 * time.Second)
		loop:
			for {
				select {
				case l, ok := <-lines:
					if !ok {
						break loop
					}
					n, err := strconv.Atoi(l)
					if err != nil {
						t.Fatalf("child: %s", l)
					}
					printed[n] = true
					maxPrinted = max(maxPrinted, n)
					if kill == nil {
						kill = time.After(run.after)
					}
				case <-kill:
					kill = nil
					if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
						t.Fatal(err)
					}
				case <-timeout:
					cmd.Process.Kill()
					t.Fatal("child delivered nothing")
				}
			}
			cmd.Wait()
			if len(printed) == 0 {
				t.Fatal("nothing acknowledged")
			}
			// Numbers above maxPrinted+workers were never begun.
			last := maxPrinted + run.workers
			s := recoverStore(t, data)
			roots := onceRoots(data, run.roots)
			dups := 0
			for n := 1; n <= last; n++ {
				if printed[n] {
					continue
				}
				if deliverOnce(t, s, roots, strconv.Itoa(n)) {
					dups++
				}
			}
			t.Logf("%d acknowledged before the kill, %d resent, of which %d already delivered", len(printed), last-len(printed), dups)
			for _, r := range roots {
				got := bodies(t, r)
				for n := 1; n <= last; n++ {
					if c := got[strconv.Itoa(n)]; c != 1 {
						t.Errorf("%d is %d times in %s", n, c, r)
					}
				}
				if len(got) != last {
					t.Errorf("%s has %d distinct messages, want %d", r, len(got), last)
				}
			}
			if left := files(t, s.spool); len(left) != 0 {
				t.Errorf("spool left with %v", left)
			}
		})
	}
}
