package pppoe

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"mailfountain.dev/mailfountain/hw/hwtest"
	"mailfountain.dev/mailfountain/runtime/metrics/metricstest"
	"mailfountain.dev/mailfountain/runtime/testenv"
	"mailfountain.dev/mailfountain/runtime/wanlink"
)

// fakePPPD writes a fake pppd, a shell script of body, and returns its
// path. pppd is started as: plugin PLUGIN nic-IFACE file OPTIONS file
// SECRETS, so the script finds the options in $5 and the secrets in $7.
func fakePPPD(t *testing.T, body string) string {
	t.Helper()
	testenv.NeedTool(t, "sh")
	p := filepath.Join(t.TempDir(), "pppd")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// runFake is the shell of a fake pppd that runs its ip-up or ip-down
// script as pppd 2.4.9 does (ipcp.c ipcp_script, main.c): an environment
// of pppd's own only, and the arguments interface-name tty-device speed
// local-IP-address remote-IP-address (no ipparam is set: no sixth).
const runFake = `
script() { sed -n "s/^$1 \"\(.*\)\"\$/\1/p" "$2"; }
up=$(script ip-up-script "$5")
down=$(script ip-down-script "$5")
ipcp() {
	env -i PPPD_PID=$$ IFNAME=ppp0 DEVICE=wan SPEED=0 PPPLOGNAME=root ORIG_UID=0 \
		IPLOCAL=100.64.0.2 IPREMOTE=100.64.0.1 DNS1=192.0.2.53 DNS2=192.0.2.54 USEPEERDNS=1 \
		"$1" ppp0 wan 0 100.64.0.2 100.64.0.1
}
`

// tlog is a slog handler's writer into the test's log.
type tlog struct{ t *testing.T }

func (w tlog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tlog{t}, nil))
}

// start runs l until the test ends (or stop is called); stop cancels and
// returns Run's result.
func start(t *testing.T, l *Link) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(20 * time.Second):
				t.Fatal("Run did not return 20 s after its context ended")
			}
		})
		return err
	}
	t.Cleanup(func() { stop() })
	return stop
}

// waitState waits for the link's state to satisfy ok, reading Changed as
// the network reconciler does.
func waitState(t *testing.T, l *Link, what string, ok func(wanlink.State) bool) wanlink.State {
	t.Helper()
	deadline := time.After(15 * time.Second)
	for {
		if s := l.State(); ok(s) {
			return s
		}
		select {
		case <-l.Changed():
		case <-deadline:
			t.Fatalf("waiting for %s: state %+v", what, l.State())
		}
	}
}

func waitFile(t *testing.T, p string) []byte {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if b, err := os.ReadFile(p); err == nil && len(b) > 0 {
			return b
		}
	}
	t.Fatalf("%s never written", p)
	return nil
}

// TestSessionUpDown: a pppd that brings a session up hands its address,
// peer and DNS servers to State through its ip-up script; ip-down takes
// the link down; the end of Run stops pppd with SIGTERM. The files pppd
// got carry the credentials, the password only in the 0600 secrets file.
func TestSessionUpDown(t *testing.T) {
	ctl := t.TempDir()
	pppd := fakePPPD(t, runFake+`
ctl='`+ctl+`'
printf '%s\n' "$@" > "$ctl/args"
stat -c %a "$7" > "$ctl/secrets-mode"
cp "$7" "$ctl/secrets"
cp "$5" "$ctl/options"
trap 'ipcp "$down"; echo TERM > "$ctl/term"; exit 5' TERM
ipcp "$up"
while [ ! -e "$ctl/down" ]; do sleep 0.05; done
ipcp "$down"
while :; do sleep 0.05; done
`)
	password := `pa ss"#\` + "\n" + `noauth`
	dir := filepath.Join(t.TempDir(), "pppoe")
	var m metricstest.Counts
	l := New(Config{Interface: "wan", Username: "fti/box@isp", Password: password, Dir: dir, PPPD: pppd}, testLogger(t), &m)
	if s := l.State(); s.Up || s.Interface != "ppp0" {
		t.Errorf("state before Run %+v, want down on ppp0", s)
	}
	stop := start(t, l)

	s := waitState(t, l, "the session up", func(s wanlink.State) bool { return s.Up })
	want := wanlink.State{
		Up:        true,
		Address:   netip.MustParsePrefix("100.64.0.2/32"),
		Gateway:   netip.MustParseAddr("100.64.0.1"),
		DNS:       []netip.Addr{netip.MustParseAddr("192.0.2.53"), netip.MustParseAddr("192.0.2.54")},
		Interface: "ppp0",
	}
	if s.Address != want.Address || s.Gateway != want.Gateway || !slices.Equal(s.DNS, want.DNS) || s.Interface != want.Interface || s.Since.IsZero() {
		t.Errorf("state %+v, want %+v", s, want)
	}

	// What pppd was given.
	args := strings.Split(strings.TrimSuffix(string(waitFile(t, filepath.Join(ctl, "args"))), "\n"), "\n")
	wantArgs := []string{"plugin", "rp-pppoe.so", "nic-wan", "file", filepath.Join(dir, "options"), "file", filepath.Join(dir, "secrets")}
	if !slices.Equal(args, wantArgs) {
		t.Errorf("pppd's arguments %q, want %q", args, wantArgs)
	}
	if mode := strings.TrimSpace(string(waitFile(t, filepath.Join(ctl, "secrets-mode")))); mode != "600" {
		t.Errorf("secrets file mode %s, want 600", mode)
	}
	if got := pppdWords(string(waitFile(t, filepath.Join(ctl, "secrets")))); !slices.Equal(got, []string{"password", password}) {
		t.Errorf("secrets file read as %q", got)
	}
	if got := pppdWords(string(waitFile(t, filepath.Join(ctl, "options")))); len(got) < 2 || got[0] != "user" || got[1] != "fti/box@isp" || slices.Contains(got, password) {
		t.Errorf("options file read as %q", got)
	}

	if err := os.WriteFile(filepath.Join(ctl, "down"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	s = waitState(t, l, "the session down", func(s wanlink.State) bool { return !s.Up })
	if s.Address.IsValid() || s.Interface != "ppp0" {
		t.Errorf("state after ip-down %+v", s)
	}

	if err := stop(); err != nil {
		t.Errorf("Run: %v", err)
	}
	if b := waitFile(t, filepath.Join(ctl, "term")); string(b) != "TERM\n" {
		t.Errorf("pppd got %q, want SIGTERM", b)
	}
	got := m.Counts()
	for k, v := range map[string]int{"pppoe session": 1, "pppoe up": 1, "pppoe down": 1, "pppoe restart": 0} {
		if got[k] != v {
			t.Errorf("metrics %q = %d, want %d (all: %v)", k, got[k], v, got)
		}
	}
}

// TestRestartBackoff: pppd is started again each time it exits, after a
// wait that doubles up to its cap, drawn between its half and itself; a
// session that lasted starts the series again; the password file is read
// at each start. The waits are counted, not waited.
func TestRestartBackoff(t *testing.T) {
	ctl := t.TempDir()
	// Each run counts itself and keeps the secrets it got; the fourth
	// lasts (3 s, StableAfter is 1 s); all exit as when the ISP refuses
	// the password.
	pppd := fakePPPD(t, `
ctl='`+ctl+`'
n=$(cat "$ctl/runs" 2>/dev/null || echo 0); n=$((n+1)); echo $n > "$ctl/runs"
cp "$7" "$ctl/secrets.$n"
if [ $n = 4 ]; then sleep 3; fi
exit 19
`)
	passFile := filepath.Join(t.TempDir(), "pass")
	if err := os.WriteFile(passFile, []byte("first\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var m metricstest.Counts
	l := New(Config{
		Interface: "wan", Username: "u", PasswordFile: passFile, Dir: t.TempDir(), PPPD: pppd,
		RestartMin: time.Second, RestartMax: 4 * time.Second, StableAfter: time.Second,
	}, testLogger(t), &m)
	draws := []float64{0, 0.5, 0.999, 0.25, 0, 0.5, 0.999, 0}
	var mu sync.Mutex
	var waits []time.Duration
	l.rand = func() float64 {
		mu.Lock()
		defer mu.Unlock()
		return draws[len(waits)]
	}
	l.sleep = func(ctx context.Context, d time.Duration) error {
		mu.Lock()
		defer mu.Unlock()
		waits = append(waits, d)
		if len(waits) == 2 {
			// A new password before the third start.
			if err := os.WriteFile(passFile, []byte("second\n"), 0o600); err != nil {
				t.Error(err)
			}
		}
		if len(waits) == len(draws) {
			return errors.New("enough")
		}
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := l.Run(ctx); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if ctx.Err() != nil {
		t.Fatal("Run did not return after the last wait")
	}

	backoffs := []time.Duration{1, 2, 4, 1, 2, 4, 4, 4} // seconds; the 4th run lasted
	for i, b := range backoffs {
		b *= time.Second
		want := b/2 + time.Duration(draws[i]*float64(b/2))
		if i >= len(waits) || waits[i] != want {
			t.Errorf("wait %d: %v, want %v (backoff %v); all %v", i+1, at(waits, i), want, b, waits)
		}
	}
	if runs, _ := os.ReadFile(filepath.Join(ctl, "runs")); strings.TrimSpace(string(runs)) != strconv.Itoa(len(draws)) {
		t.Errorf("pppd ran %s times, want %d", runs, len(draws))
	}
	if got := m.Counts(); got["pppoe restart"] != len(draws) || got["pppoe session"] != 0 {
		t.Errorf("metrics %v, want %d restarts, no session", got, len(draws))
	}
	for n, want := range map[int]string{1: "first", 2: "first", 3: "second", 8: "second"} {
		b, err := os.ReadFile(filepath.Join(ctl, "secrets."+strconv.Itoa(n)))
		if got := pppdWords(string(b)); err != nil || !slices.Equal(got, []string{"password", want}) {
			t.Errorf("run %d's secrets %q (%v), want password %q", n, got, err, want)
		}
	}
}

func at(ds []time.Duration, i int) any {
	if i < len(ds) {
		return ds[i]
	}
	return "none"
}

// TestNeverHot: whatever the configuration, a pppd that exits at once is
// not started again at once.
func TestNeverHot(t *testing.T) {
	for _, c := range []Config{
		{}, {RestartMin: -time.Second, RestartMax: -time.Second}, {RestartMin: time.Minute, RestartMax: time.Second},
		{RestartMin: time.Nanosecond}, {RestartMin: time.Millisecond, RestartMax: time.Millisecond},
	} {
		l := New(c, nil, nil)
		l.rand = func() float64 { return 0 }
		d := l.jitter(l.nextBackoff(0))
		if d < 500*time.Millisecond {
			t.Errorf("%+v: first wait %v, want at least 500 ms", c, d)
		}
		if l.cfg.RestartMax < l.cfg.RestartMin {
			t.Errorf("%+v: max %v under min %v", c, l.cfg.RestartMax, l.cfg.RestartMin)
		}
	}
}

// TestStopKill: a pppd that does not end on SIGTERM is killed after the
// grace, and Run returns.
func TestStopKill(t *testing.T) {
	ctl := t.TempDir()
	pppd := fakePPPD(t, `
ctl='`+ctl+`'
trap 'echo TERM >> "$ctl/log"' TERM
echo $$ > "$ctl/pid"
while :; do sleep 0.05; done
`)
	l := New(Config{Interface: "wan", Username: "u", Password: "p", Dir: t.TempDir(), PPPD: pppd, StopGrace: 300 * time.Millisecond}, testLogger(t), nil)
	stop := start(t, l)
	pid, err := strconv.Atoi(strings.TrimSpace(string(waitFile(t, filepath.Join(ctl, "pid")))))
	if err != nil {
		t.Fatal(err)
	}
	if err := stop(); err != nil {
		t.Errorf("Run: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(ctl, "log")); string(b) != "TERM\n" {
		t.Errorf("pppd's log %q, want one SIGTERM", b)
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("pppd (pid %d) still there after Run returned: %v", pid, err)
	}
}

// TestEventsOfAnotherPPPD: a line written by the script of a pppd that
// exited (another PID) does not move the state; nor does a line that is
// not understood.
func TestEventsOfAnotherPPPD(t *testing.T) {
	p := filepath.Join(t.TempDir(), "events")
	lines := "up pid=100 ifname=ppp0 local=198.51.100.9 remote=198.51.100.1 dns1= dns2=\n" +
		"up pid=200 ifname=ppp0 local=198.51.100.7 remote=198.51.100.1 dns1=192.0.2.1 dns2=\n" +
		"up pid=200 ifname=ppp0 local=not-an-address remote=198.51.100.1\n" +
		"down pid=100 ifname=ppp0 local=198.51.100.9 remote=198.51.100.1 dns1= dns2=\n" +
		"up pid=200 ifname=ppp0 local=198.51.1" // not ended: not read yet
	if err := os.WriteFile(p, []byte(lines), 0o600); err != nil {
		t.Fatal(err)
	}
	l := New(Config{}, testLogger(t), nil)
	r := &eventReader{path: p}
	l.readEvents(r, 200)
	s := l.State()
	if !s.Up || s.Address != netip.MustParsePrefix("198.51.100.7/32") || !slices.Equal(s.DNS, []netip.Addr{netip.MustParseAddr("192.0.2.1")}) {
		t.Errorf("state %+v, want pid 200's session", s)
	}
	if r.offset != int64(strings.LastIndexByte(lines, '\n')+1) {
		t.Errorf("offset %d: the unended line was consumed", r.offset)
	}
	// The line ends: it is read; pid 200 goes down.
	f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("00.8 remote=198.51.100.1\ndown pid=200 ifname=ppp0\n")
	f.Close()
	l.readEvents(r, 200)
	if s := l.State(); s.Up {
		t.Errorf("state %+v after pid 200's down", s)
	}
}

func TestParseEvent(t *testing.T) {
	tests := []struct {
		line string
		ok   bool
		want event
	}{
		{"up pid=7 ifname=ppp0 local=198.51.100.7 remote=198.51.100.1 dns1=192.0.2.1 dns2=192.0.2.2", true, event{
			up: true, pid: 7, ifname: "ppp0", local: netip.MustParseAddr("198.51.100.7"), remote: netip.MustParseAddr("198.51.100.1"),
			dns: []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")},
		}},
		{"up pid=7 ifname=ppp0 local=198.51.100.7 remote=198.51.100.1 dns1= dns2=", true, event{
			up: true, pid: 7, ifname: "ppp0", local: netip.MustParseAddr("198.51.100.7"), remote: netip.MustParseAddr("198.51.100.1"),
		}},
		{"up pid=7 ifname=ppp0 local=198.51.100.7 remote=198.51.100.1 future=x", true, event{
			up: true, pid: 7, ifname: "ppp0", local: netip.MustParseAddr("198.51.100.7"), remote: netip.MustParseAddr("198.51.100.1"),
		}},
		{"down pid=7 ifname=ppp0 local= remote=", true, event{pid: 7, ifname: "ppp0"}},
		{"down pid=7", true, event{pid: 7}},
		{"", false, event{}},
		{"up", false, event{}},
		{"sideways pid=7", false, event{}},
		{"down", false, event{}},
		{"down pid=0", false, event{}},
		{"down pid=-3", false, event{}},
		{"down pid=7 pid=8", false, event{}},
		{"down pid=7 junk", false, event{}},
		{"up pid=7 ifname=ppp0 local=198.51.100.7", false, event{}},
		{"up pid=7 ifname= local=198.51.100.7 remote=198.51.100.1", false, event{}},
		{"up pid=7 ifname=ppp0 local=2001:db8::1 remote=198.51.100.1", false, event{}},
		{"up pid=7 ifname=ppp0 local=198.51.100.7 remote=198.51.100.1 dns1=nope", false, event{}},
		{"up pid=7 ifname=a/b local=198.51.100.7 remote=198.51.100.1", false, event{}},
		{"up  pid=7", false, event{}},
		{"down pid=7 " + strings.Repeat("x=y ", 300), false, event{}},
	}
	for _, tt := range tests {
		got, err := parseEvent(tt.line)
		if (err == nil) != tt.ok {
			t.Errorf("parseEvent(%q): error %v, want ok %v", tt.line, err, tt.ok)
			continue
		}
		if tt.ok && (got.up != tt.want.up || got.pid != tt.want.pid || got.ifname != tt.want.ifname ||
			got.local != tt.want.local || got.remote != tt.want.remote || !slices.Equal(got.dns, tt.want.dns)) {
			t.Errorf("parseEvent(%q) = %+v, want %+v", tt.line, got, tt.want)
		}
	}
}

func FuzzParseEvent(f *testing.F) {
	f.Add("up pid=7 ifname=ppp0 local=198.51.100.7 remote=198.51.100.1 dns1=192.0.2.1 dns2=")
	f.Add("down pid=7 ifname=ppp0 local= remote= dns1= dns2=")
	f.Add("up pid=99999999999999999999 ifname=ppp0")
	f.Fuzz(func(t *testing.T, line string) {
		ev, err := parseEvent(line)
		if err != nil {
			return
		}
		if ev.pid <= 0 || len(ev.dns) > 2 {
			t.Fatalf("parseEvent(%q) = %+v", line, ev)
		}
		if ev.up && (!ev.local.Is4() || !ev.remote.Is4() || checkInterface(ev.ifname) != nil) {
			t.Fatalf("parseEvent(%q) = %+v: an up event without its addresses", line, ev)
		}
	})
}

// TestRealPPPD: the real pppd, started as Run starts it, loads the
// rp-pppoe plugin by the name we give it; on this kernel without PPP it
// then exits (status 1), and Run starts it again. On a kernel with PPPoE
// it would go on to discovery: that is for such a kernel to show.
func TestRealPPPD(t *testing.T) {
	box := hwtest.Box(t)
	pppd := testenv.NeedTool(t, "pppd")
	if _, err := os.Stat("/dev/ppp"); err == nil {
		t.Skip("this kernel has PPP: pppd would go on to a session")
	}
	var log testenv.Buffer
	var m metricstest.Counts
	l := New(Config{Interface: box.Profile.WAN, Username: "u", Password: "p", Dir: t.TempDir(), PPPD: pppd},
		slog.New(slog.NewTextHandler(&log, nil)), &m)
	t0 := time.Date(2026, 12, 4, 16, 0, 0, 0, time.UTC)
	l.now = func() time.Time { return t0 }
	var waiting wanlink.State // the state while Run waits to start pppd again
	var wait time.Duration
	l.sleep = func(ctx context.Context, d time.Duration) error {
		waiting, wait = l.State(), d
		return errors.New("one run is enough")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := l.Run(ctx); err != nil || ctx.Err() != nil {
		t.Fatalf("Run: %v, %v", err, ctx.Err())
	}
	// What `mfapply status` shows of it: down, why, and the next try.
	if waiting.Up || waiting.Detail != "pppd exited with status 1: a fatal error" || !waiting.Until.Equal(t0.Add(wait)) {
		t.Errorf("state while waiting %+v, want down with pppd's exit until %v", waiting, t0.Add(wait))
	}
	if s := l.State(); s.Up || s.Detail != "" || !s.Until.IsZero() {
		t.Errorf("state after Run %+v, want down with nothing to say", s)
	}
	t.Log(log.String())
	for _, want := range []string{`line="Plugin rp-pppoe.so loaded."`, `pppd exited with status 1: a fatal error`} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("log lacks %s", want)
		}
	}
	if got := m.Counts(); got["pppoe restart"] != 1 {
		t.Errorf("metrics %v, want 1 restart", got)
	}
}

// TestPasswordFileMissing: a password file that cannot be read is retried
// with the backoff, pppd never started without its password.
func TestPasswordFileMissing(t *testing.T) {
	ctl := t.TempDir()
	pppd := fakePPPD(t, "echo ran >> '"+ctl+"/runs'\n")
	var log testenv.Buffer
	var m metricstest.Counts
	l := New(Config{Interface: "wan", Username: "u", PasswordFile: filepath.Join(ctl, "missing"), Dir: t.TempDir(), PPPD: pppd},
		slog.New(slog.NewTextHandler(&log, nil)), &m)
	var waits []time.Duration
	t0 := time.Date(2026, 12, 4, 16, 0, 0, 0, time.UTC)
	l.now = func() time.Time { return t0 }
	l.sleep = func(ctx context.Context, d time.Duration) error {
		waits = append(waits, d)
		if s := l.State(); s.Up || !strings.Contains(s.Detail, "read the password file") || !s.Until.Equal(t0.Add(d)) {
			t.Errorf("state while waiting %+v, want down with the password file's error until %v", s, t0.Add(d))
		}
		if len(waits) == 3 {
			return errors.New("enough")
		}
		return nil
	}
	if err := l.Run(context.Background()); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if _, err := os.Stat(filepath.Join(ctl, "runs")); err == nil {
		t.Error("pppd ran without its password")
	}
	if len(waits) != 3 || !strings.Contains(log.String(), "read the password file") {
		t.Errorf("waits %v, log:\n%s", waits, log.String())
	}
	if got := m.Counts(); got["pppoe restart"] != 3 {
		t.Errorf("metrics %v, want 3 restarts", got)
	}
}
