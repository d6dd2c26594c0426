package maildir

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestDeliver(t *testing.T) {
	tests := []struct {
		name  string
		roots []string // relative to DATA/mail
		want  map[string]int
	}{
		{"one", []string{"a"}, map[string]int{"a": 1}},
		{"three", []string{"a", "b", "c"}, map[string]int{"a": 1, "b": 1, "c": 1}},
		{"duplicates", []string{"a", "b", "a", "b/", "./a"}, map[string]int{"a": 1, "b": 1}},
		{"one twice", []string{"a", "a"}, map[string]int{"a": 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := t.TempDir()
			s := newStore(t, data)
			var roots []string
			for _, r := range tt.roots {
				roots = append(roots, filepath.Join(data, "mail", "example.org", r))
			}
			m := msg("hello")
			if err := s.Deliver(context.Background(), roots, bytes.NewReader(m)); err != nil {
				t.Fatal(err)
			}
			for r, n := range tt.want {
				root := filepath.Join(data, "mail", "example.org", r)
				if got := bodies(t, root)["hello"]; got != n {
					t.Errorf("%s has %d copies, want %d", r, got, n)
				}
				names := files(t, filepath.Join(root, "new"))
				if len(names) != 1 {
					t.Fatalf("%s/new = %v", r, names)
				}
				// Stored byte for byte, size in the name.
				got, err := os.ReadFile(filepath.Join(root, "new", names[0]))
				if err != nil || !bytes.Equal(got, m) {
					t.Errorf("%s: stored %q, %v", r, got, err)
				}
				if !strings.HasSuffix(names[0], fmt.Sprintf(",S=%d", len(m))) || strings.Contains(names[0], ":") {
					t.Errorf("name in new/: %q", names[0])
				}
				if tmp := files(t, filepath.Join(root, "tmp")); len(tmp) != 0 {
					t.Errorf("%s/tmp left with %v", r, tmp)
				}
			}
			if left := files(t, s.spool); len(left) != 0 {
				t.Errorf("spool left with %v", left)
			}
		})
	}
}

func TestDeliverRefused(t *testing.T) {
	s := newStore(t, t.TempDir())
	ctx := context.Background()
	if err := s.Deliver(ctx, nil, strings.NewReader("x")); err == nil {
		t.Error("no roots: no error")
	}
	if err := s.Deliver(ctx, []string{""}, strings.NewReader("x")); err == nil {
		t.Error("empty root: no error")
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.Deliver(cancelled, []string{t.TempDir()}, strings.NewReader("x")); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}

// A reader that fails midway: nothing may be delivered anywhere.
type failingReader struct{ n int }

func (r *failingReader) Read(p []byte) (int, error) {
	if r.n <= 0 {
		return 0, errors.New("connection lost")
	}
	n := min(len(p), r.n)
	for i := range n {
		p[i] = 'x'
	}
	r.n -= n
	return n, nil
}

func TestDeliverReadError(t *testing.T) {
	for _, n := range []int{1, 3} {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			data := t.TempDir()
			s := newStore(t, data)
			var roots []string
			for i := range n {
				roots = append(roots, filepath.Join(data, "mail", strconv.Itoa(i)))
			}
			if err := s.Deliver(context.Background(), roots, &failingReader{n: 5000}); err == nil {
				t.Fatal("no error")
			}
			for _, r := range roots {
				for _, sub := range []string{"tmp", "new", "cur"} {
					if f := files(t, filepath.Join(r, sub)); len(f) != 0 {
						t.Errorf("%s/%s: %v", r, sub, f)
					}
				}
			}
			if left := files(t, s.spool); len(left) != 0 {
				t.Errorf("spool left with %v", left)
			}
		})
	}
}

func TestDeliverConcurrent(t *testing.T) {
	data := t.TempDir()
	s := newStore(t, data)
	root := filepath.Join(data, "mail", "example.org", "bob")
	other := filepath.Join(data, "mail", "example.org", "alice")
	const n = 100
	m := openBox(t, s, root)
	inbox := folder(t, m, Inbox)

	// A reader polls the inbox all along, as an IMAP IDLE would.
	stop := make(chan struct{})
	polled := make(chan error, 1)
	go func() {
		var err error
		defer func() { polled <- err }()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err = inbox.Sync(); err != nil {
				return
			}
		}
	}()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			roots := []string{root}
			if i%4 == 0 {
				roots = append(roots, other) // some go through the journal
			}
			errs <- s.Deliver(context.Background(), roots, bytes.NewReader(msg(strconv.Itoa(i))))
		})
	}
	wg.Wait()
	close(stop)
	if err := <-polled; err != nil {
		t.Fatal(err)
	}
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	snap := syncF(t, inbox)
	if len(snap.Messages) != n {
		t.Fatalf("%d messages, want %d", len(snap.Messages), n)
	}
	seen := map[string]bool{}
	for i, msg := range snap.Messages {
		if i > 0 && msg.UID <= snap.Messages[i-1].UID {
			t.Fatalf("UIDs not increasing: %d after %d", msg.UID, snap.Messages[i-1].UID)
		}
		b := bodyOf(read(t, inbox, msg.UID))
		if seen[b] {
			t.Fatalf("%s twice", b)
		}
		seen[b] = true
	}
	if got := bodies(t, other); len(got) != n/4 {
		t.Errorf("other mailbox has %d messages, want %d", len(got), n/4)
	}
}

// crashSteps delivers once with a hook that records the steps of Deliver.
func crashSteps(t *testing.T, roots int, noTmpfile bool) []string {
	data := t.TempDir()
	s := newStore(t, data)
	s.noTmpfile.Store(noTmpfile)
	var steps []string
	s.crash = func(step string) error { steps = append(steps, step); return nil }
	var rs []string
	for i := range roots {
		rs = append(rs, filepath.Join(data, "mail", strconv.Itoa(i)))
	}
	deliver(t, s, rs, "x")
	return steps
}

var errCrash = errors.New("simulated crash")

// crashModes are the ways Deliver goes: one root through an unnamed file
// linked into new/ (O_TMPFILE) or through tmp/, several through the
// journal. commits names the step after which the message is delivered.
var crashModes = []struct {
	name      string
	nroots    int
	noTmpfile bool
	commits   string
}{
	{"1 root", 1, false, "link"},
	{"1 root through tmp", 1, true, "rename"},
	{"3 roots", 3, false, "journal"},
}

func TestDeliverCrash(t *testing.T) {
	for _, mode := range crashModes {
		steps := crashSteps(t, mode.nroots, mode.noTmpfile)
		if len(steps) < 3 {
			t.Fatalf("steps: %v", steps)
		}
		committed := false
		for _, step := range steps {
			if step == mode.commits {
				committed = true
			}
			t.Run(mode.name+"/"+step, func(t *testing.T) {
				data := t.TempDir()
				var roots []string
				for i := range mode.nroots {
					roots = append(roots, filepath.Join(data, "mail", strconv.Itoa(i)))
				}
				s := newStore(t, data)
				s.noTmpfile.Store(mode.noTmpfile)
				deliver(t, s, roots, "before") // mailboxes with something in them
				s.crash = func(st string) error {
					if st == step {
						return errCrash
					}
					return nil
				}
				if err := s.Deliver(context.Background(), roots, bytes.NewReader(msg("m"))); !errors.Is(err, errCrash) {
					t.Fatalf("Deliver: %v", err)
				}
				if step == "link0" {
					// A reader takes what is already in new/ into cur/
					// before the recovery.
					s2 := newStore(t, data)
					syncF(t, folder(t, openBox(t, s2, roots[0]), Inbox))
				}
				// The process restarts.
				for range 2 { // Recover is idempotent
					s = newStore(t, data)
					if err := s.Recover(context.Background()); err != nil {
						t.Fatal(err)
					}
				}
				want := 0
				if committed {
					want = 1
				}
				for _, r := range roots {
					got := bodies(t, r)
					if got["m"] != want || got["before"] != 1 {
						t.Errorf("%s: %v, want %d of m", r, got, want)
					}
					if mode.nroots > 1 || !mode.noTmpfile {
						if tmp := files(t, filepath.Join(r, "tmp")); len(tmp) != 0 {
							t.Errorf("%s/tmp left with %v", r, tmp)
						}
					}
					// Usage agrees with what is on disk.
					u, err := MailboxUsage(r)
					if err != nil || u.Messages != 1+want {
						t.Errorf("usage %+v, %v", u, err)
					}
				}
				if left := files(t, s.spool); len(left) != 0 {
					t.Errorf("spool left with %v", left)
				}
			})
		}
		if !committed {
			t.Errorf("%s: no %s step in %v", mode.name, mode.commits, steps)
		}
	}
}

// TestRecoverRootGone: a committed delivery to a mailbox archived before
// Recover finishes where it can and does not recreate the archived one.
func TestRecoverRootGone(t *testing.T) {
	data := t.TempDir()
	roots := []string{filepath.Join(data, "mail", "a"), filepath.Join(data, "mail", "b")}
	s := newStore(t, data)
	s.crash = func(st string) error {
		if st == "commit" {
			return errCrash
		}
		return nil
	}
	if err := s.Deliver(context.Background(), roots, bytes.NewReader(msg("m"))); !errors.Is(err, errCrash) {
		t.Fatal(err)
	}
	archived := filepath.Join(data, "archive", "b")
	if err := os.MkdirAll(filepath.Dir(archived), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(roots[1], archived); err != nil {
		t.Fatal(err)
	}
	s = newStore(t, data)
	if err := s.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := bodies(t, roots[0]); got["m"] != 1 {
		t.Errorf("a: %v", got)
	}
	if _, err := os.Stat(roots[1]); !os.IsNotExist(err) {
		t.Errorf("archived mailbox recreated: %v", err)
	}
	if left := files(t, s.spool); len(left) != 0 {
		t.Errorf("spool left with %v", left)
	}
}

// TestRecoverSpool recovers spools as crashes leave them, of this
// format and of the previous one (links in tmp/ before the commit).
func TestRecoverSpool(t *testing.T) {
	const name = "1700000000.M1P2Q3R00000000,S=60"
	m := msg("m")
	if len(m) != 60 {
		t.Fatalf("message of %d bytes", len(m))
	}
	type file struct{ path, data string } // path relative to the data dir
	journalOf := func(v int, roots ...string) string {
		j := fmt.Sprintf(`{"v":%d,"name":%q,"roots":[`, v, name)
		for i, r := range roots {
			if i > 0 {
				j += ","
			}
			j += fmt.Sprintf("%q", "@/"+r)
		}
		return j + "]}\n"
	}
	const a, b = "mail/example.org/a", "mail/example.org/b"
	spool := "spool/maildir/1700000000.M1P2Q3R00000000"
	tests := []struct {
		name  string
		files []file
		want  map[string]int // copies of m in each root
	}{
		{"committed", []file{{spool + ".msg", string(m)}, {spool + ".commit", journalOf(2, a, b)}},
			map[string]int{a: 1, b: 1}},
		{"torn journal", []file{{spool + ".msg", string(m)}, {spool + ".commit", strings.TrimSuffix(journalOf(2, a, b), "\n")}},
			map[string]int{a: 0, b: 0}},
		{"journal of zeros", []file{{spool + ".msg", string(m)}, {spool + ".commit", "\x00\x00\x00\x00"}},
			map[string]int{a: 0, b: 0}},
		{"message missing", []file{{spool + ".commit", journalOf(2, a, b)}},
			map[string]int{a: 0, b: 0}},
		{"linked to one, read there", []file{{spool + ".msg", string(m)}, {spool + ".commit", journalOf(2, a, b)},
			{a + "/cur/" + name + ":2,RS", string(m)}},
			map[string]int{a: 1, b: 1}},
		{"linked to one", []file{{spool + ".msg", string(m)}, {spool + ".commit", journalOf(2, a, b)},
			{a + "/new/" + name, string(m)}},
			map[string]int{a: 1, b: 1}},
		{"copy interrupted", []file{{spool + ".msg", string(m)}, {spool + ".commit", journalOf(2, a, b)},
			{b + "/tmp/" + name, string(m[:20])}},
			map[string]int{a: 1, b: 1}},
		{"previous format, before the commit", []file{{spool + ".msg", string(m)}, {spool + ".prep", journalOf(0, a, b)},
			{a + "/tmp/" + name, string(m)}, {b + "/tmp/" + name, string(m)}},
			map[string]int{a: 0, b: 0}},
		{"previous format, committed", []file{{spool + ".commit", journalOf(0, a, b)},
			{a + "/tmp/" + name, string(m)}, {b + "/new/" + name, string(m)}},
			map[string]int{a: 1, b: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := t.TempDir()
			s := newStore(t, data)
			for _, r := range []string{a, b} {
				if err := s.ensureMaildir(filepath.Join(data, r)); err != nil {
					t.Fatal(err)
				}
			}
			for _, f := range tt.files {
				d := strings.ReplaceAll(f.data, "@", data)
				if err := os.WriteFile(filepath.Join(data, f.path), []byte(d), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			for range 2 { // idempotent
				s = newStore(t, data)
				if err := s.Recover(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
			for r, want := range tt.want {
				root := filepath.Join(data, r)
				if got := bodies(t, root); got["m"] != want || len(got) > 1 {
					t.Errorf("%s: %v, want %d of m", r, got, want)
				}
				if tmp := files(t, filepath.Join(root, "tmp")); len(tmp) != 0 {
					t.Errorf("%s/tmp left with %v", r, tmp)
				}
			}
			if left := files(t, s.spool); len(left) != 0 {
				t.Errorf("spool left with %v", left)
			}
		})
	}
}

// TestHelperProcess is the child of TestDeliverKill: it delivers numbered
// messages to three mailboxes until it is killed, printing each number
// once Deliver returned.
func TestHelperProcess(t *testing.T) {
	data := os.Getenv("MAILDIR_HELPER_DATA")
	if data == "" {
		t.Skip("helper process only")
	}
	s, err := New(data, nil)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	roots := killRoots(data)
	for i := 1; ; i++ {
		if err := s.Deliver(context.Background(), roots, bytes.NewReader(msg(strconv.Itoa(i)))); err != nil {
			fmt.Println("error", err)
			os.Exit(2)
		}
		fmt.Println(i)
	}
}

func killRoots(data string) []string {
	return []string{
		filepath.Join(data, "mail", "example.org", "a"),
		filepath.Join(data, "mail", "example.org", "b"),
		filepath.Join(data, "mail", "example.org", "c"),
	}
}

// TestDeliverKill kills a process that delivers to three mailboxes with
// SIGKILL, at some point of a delivery, and checks after Recover that
// every acknowledged message is in every mailbox once, and that no
// message is in only some of them.
func TestDeliverKill(t *testing.T) {
	if testing.Short() {
		t.Skip("re-executes the test binary")
	}
	for run, after := range []time.Duration{300 * time.Millisecond, 170 * time.Millisecond, 230 * time.Millisecond} {
		t.Run(strconv.Itoa(run), func(t *testing.T) {
			data := t.TempDir()
			cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
			cmd.Env = append(os.Environ(), "MAILDIR_HELPER_DATA="+data)
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
			var printed []int
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
					printed = append(printed, n)
					if kill == nil {
						kill = time.After(after) // counted from the first delivery
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
			last := printed[len(printed)-1]
			t.Logf("%d deliveries acknowledged before the kill", last)

			s := newStore(t, data)
			t.Logf("in the spool at the kill: %v", files(t, s.spool))
			if err := s.Recover(context.Background()); err != nil {
				t.Fatal(err)
			}
			roots := killRoots(data)
			counts := make([]map[string]int, len(roots))
			for i, r := range roots {
				counts[i] = bodies(t, r)
			}
			for _, n := range printed {
				for i := range roots {
					if c := counts[i][strconv.Itoa(n)]; c != 1 {
						t.Errorf("acknowledged %d is %d times in %s", n, c, roots[i])
					}
				}
			}
			all := map[string]bool{}
			for _, c := range counts {
				for b := range c {
					all[b] = true
				}
			}
			for b := range all {
				n, err := strconv.Atoi(b)
				if err != nil || n < 1 || n > last+1 {
					t.Errorf("unexpected message %q", b)
				}
				for i := range roots {
					if c := counts[i][b]; c != 1 {
						t.Errorf("message %s is %d times in %s (all or nothing)", b, c, roots[i])
					}
				}
			}
			if left := files(t, s.spool); len(left) != 0 {
				t.Errorf("spool left with %v", left)
			}
		})
	}
}

// BenchmarkDeliver measures a 10 KB delivery to one mailbox: ns/op and
// the fsyncs it costs.
func BenchmarkDeliver(b *testing.B) {
	for _, nroots := range []int{1, 3} {
		b.Run(fmt.Sprintf("roots=%d", nroots), func(b *testing.B) {
			data := b.TempDir()
			s := newStore(b, data)
			var roots []string
			for i := range nroots {
				roots = append(roots, filepath.Join(data, "mail", strconv.Itoa(i)))
			}
			m := bytes.Repeat([]byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd\r\n"), 160)
			deliver(b, s, roots, "warm up") // creates the mailboxes
			start := s.fsyncs.Load()
			b.SetBytes(int64(len(m)))
			b.ResetTimer()
			for b.Loop() {
				if err := s.Deliver(context.Background(), roots, bytes.NewReader(m)); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(s.fsyncs.Load()-start)/float64(b.N), "fsyncs/op")
		})
	}
}

// BenchmarkDeliverParallel measures concurrent deliveries of 10 KB, as
// SMTP clients at once make them (bench/inbound.sh has 50): to one
// mailbox through an unnamed file (linked) or through tmp/ (renamed), and
// to three mailboxes through the journal.
func BenchmarkDeliverParallel(b *testing.B) {
	cases := []struct {
		mode      string
		noTmpfile bool
		roots     int
	}{
		{"linked", false, 1},
		{"renamed", true, 1},
		{"journal", false, 3},
	}
	for _, c := range cases {
		for _, clients := range []int{2, 50} {
			b.Run(fmt.Sprintf("%s/clients=%d", c.mode, clients), func(b *testing.B) {
				data := b.TempDir()
				s := newStore(b, data)
				s.noTmpfile.Store(c.noTmpfile)
				var roots []string
				for i := range c.roots {
					roots = append(roots, filepath.Join(data, "mail", strconv.Itoa(i)))
				}
				m := bytes.Repeat([]byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd\r\n"), 160)
				deliver(b, s, roots, "warm up")
				start := s.fsyncs.Load()
				b.SetBytes(int64(len(m)))
				b.SetParallelism((clients + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if err := s.Deliver(context.Background(), roots, bytes.NewReader(m)); err != nil {
							b.Error(err)
							return
						}
					}
				})
				b.ReportMetric(float64(s.fsyncs.Load()-start)/float64(b.N), "fsyncs/op")
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msg/s")
				if s.noTmpfile.Load() != c.noTmpfile {
					b.Log("no O_TMPFILE here")
				}
			})
		}
	}
}

// TestDeliverAcrossFilesystems: with the spool on another filesystem the
// hard links fail and the message is copied, the same all or nothing.
func TestDeliverAcrossFilesystems(t *testing.T) {
	shm, err := os.MkdirTemp("/dev/shm", "maildir-test-")
	if err != nil {
		t.Skip("no /dev/shm:", err)
	}
	t.Cleanup(func() { os.RemoveAll(shm) })
	data := t.TempDir()
	var a, b syscall.Stat_t
	if syscall.Stat(shm, &a) != nil || syscall.Stat(data, &b) != nil || a.Dev == b.Dev {
		t.Skip("/dev/shm is on the same filesystem")
	}
	if err := os.Symlink(shm, filepath.Join(data, "spool")); err != nil {
		t.Fatal(err)
	}
	s := newStore(t, data)
	roots := []string{filepath.Join(data, "mail", "a"), filepath.Join(data, "mail", "b")}
	deliver(t, s, roots, "copied")
	for _, r := range roots {
		if got := bodies(t, r); got["copied"] != 1 || len(got) != 1 {
			t.Errorf("%s: %v", r, got)
		}
	}
	// Copy between folders across filesystems too.
	shmRoot := filepath.Join(shm, "mailbox")
	src := folder(t, openBox(t, s, roots[0]), Inbox)
	dst := folder(t, openBox(t, s, shmRoot), Inbox)
	snap := syncF(t, src)
	uids, err := src.Copy([]uint32{snap.Messages[0].UID}, dst)
	if err != nil || len(uids) != 1 {
		t.Fatalf("copy: %v %v", uids, err)
	}
	if got := bodyOf(read(t, dst, uids[0])); got != "copied" {
		t.Errorf("copied %q", got)
	}
	if d := syncF(t, dst).Messages[0].Date; !d.Equal(snap.Messages[0].Date) {
		t.Errorf("date %v, want %v", d, snap.Messages[0].Date)
	}
}
