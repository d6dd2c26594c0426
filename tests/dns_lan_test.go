package tests

// End-to-end test of the DNS server's LAN view (router mode): the schema
// wants a private LAN address, which loopback is not, so the daemon, its
// clients and the WAN's resolver live in a network namespace of the
// test's own, with the LAN's addresses and the resolver's on its
// loopback interface. The host's namespace is never touched.

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"golang.org/x/sys/unix"
)

// The addresses of TestDNSLAN's namespace.
const (
	lanBox      = "192.168.1.1"  // network.lan.address; the daemon listens there
	lanClient   = "192.168.1.2"  // a LAN client
	wanBox      = "10.53.0.2"    // network.wan.address: a client outside the LAN
	wanResolver = "10.53.0.53"   // network.wan.dns: the upstream
	upstreamA   = "10.9.9.9"     // what the upstream answers for example.net.
	lanPublic   = "203.0.113.10" // network.public_address
)

// needRoot skips the test, or fails it in CI (CI=true, which runs as
// root and must prove the LAN view), when it lacks what it needs.
func needRoot(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf(format+" (required in CI)", args...)
	}
	t.Skipf(format, args...)
}

// netns is a network namespace made for one test and deleted after it.
type netns struct {
	name, ip string // its name; the path of ip(8)
}

// killIn kills what still runs in namespace ns, never the test itself
// (listed if a thread of its could not leave the namespace).
func killIn(ip, ns string) {
	out, err := exec.Command(ip, "netns", "pids", ns).Output()
	if err != nil {
		return
	}
	for f := range strings.FieldsSeq(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil && pid != os.Getpid() {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// newNetns makes a namespace with its loopback up; its processes are
// killed and it is deleted when the test ends.
func newNetns(t *testing.T) *netns {
	t.Helper()
	if os.Geteuid() != 0 {
		needRoot(t, "the LAN view's test runs in a network namespace of its own: it needs root")
	}
	n := &netns{name: fmt.Sprintf("mftest-lan-%d-%d", os.Getpid(), rand.Uint32()), ip: needTool(t, "ip")}
	if out, err := exec.Command(n.ip, "netns", "add", n.name).CombinedOutput(); err != nil {
		needRoot(t, "ip netns add %s: %v: %s", n.name, err, out)
	}
	t.Cleanup(func() {
		// The daemon is killed by its own cleanup (registered later, run
		// earlier); anything left is ours too.
		killIn(n.ip, n.name)
		if out, err := exec.Command(n.ip, "netns", "del", n.name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", n.name, err, out)
		}
	})
	n.run(t, "link", "set", "lo", "up")
	return n
}

// run runs `ip -n NS args`.
func (n *netns) run(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command(n.ip, append([]string{"-n", n.name}, args...)...).CombinedOutput(); err != nil {
		t.Fatalf("ip -n %s %s: %v: %s", n.name, strings.Join(args, " "), err, out)
	}
}

// do runs f on an OS thread moved into the namespace: the sockets f opens
// belong to the namespace for their whole life, wherever they are used
// afterwards. The thread goes back to the test's namespace before it is
// unlocked; if it cannot, it stays locked, so that the Go runtime ends it
// with the goroutine instead of running another goroutine there
// (runtime.LockOSThread). The runtime starts no thread from a locked one.
func (n *netns) do(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		errc <- func() error {
			home, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				return fmt.Errorf("open the test's namespace: %w", err)
			}
			defer unix.Close(home)
			fd, err := unix.Open(filepath.Join("/run/netns", n.name), unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				return fmt.Errorf("open namespace %s: %w", n.name, err)
			}
			defer unix.Close(fd)
			if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
				return fmt.Errorf("enter namespace %s: %w", n.name, err)
			}
			ferr := f()
			if err := unix.Setns(home, unix.CLONE_NEWNET); err != nil {
				return fmt.Errorf("leave namespace %s: %w", n.name, err) // the thread stays locked
			}
			runtime.UnlockOSThread()
			return ferr
		}()
	}()
	return <-errc
}

// upstream is the WAN's resolver: a miekg server that answers the names
// of example.net. with upstreamA and NXDOMAIN for others, and counts the
// questions it gets by name.
type upstream struct {
	mu    sync.Mutex
	asked map[string]int
}

func (u *upstream) ServeDNS(w mdns.ResponseWriter, r *mdns.Msg) {
	m := new(mdns.Msg)
	m.SetReply(r)
	m.RecursionAvailable = true
	if len(r.Question) == 1 {
		q := r.Question[0]
		name := strings.ToLower(q.Name)
		u.mu.Lock()
		u.asked[name]++
		u.mu.Unlock()
		switch {
		case !mdns.IsSubDomain("example.net.", name):
			m.Rcode = mdns.RcodeNameError
		case q.Qtype == mdns.TypeA:
			m.Answer = []mdns.RR{&mdns.A{Hdr: mdns.RR_Header{Name: q.Name, Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: 300}, A: net.ParseIP(upstreamA)}}
		}
	}
	w.WriteMsg(m)
}

// times is how many questions for name the upstream got.
func (u *upstream) times(name string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.asked[name]
}

// startUpstream serves u on wanResolver:53, UDP and TCP, in n, until the
// test ends.
func (n *netns) startUpstream(t *testing.T) *upstream {
	t.Helper()
	u := &upstream{asked: map[string]int{}}
	var pc net.PacketConn
	var ln net.Listener
	if err := n.do(func() (err error) {
		if pc, err = net.ListenPacket("udp", wanResolver+":53"); err != nil {
			return err
		}
		ln, err = net.Listen("tcp", wanResolver+":53")
		return err
	}); err != nil {
		t.Fatalf("the upstream resolver: %v", err)
	}
	for _, srv := range []*mdns.Server{{PacketConn: pc, Handler: u}, {Listener: ln, Handler: u}} {
		done := make(chan struct{})
		go func() {
			defer close(done)
			srv.ActivateAndServe()
		}()
		t.Cleanup(func() {
			srv.Shutdown()
			<-done
		})
	}
	return u
}

// exchange asks the daemon (lanBox:53) one question over UDP from the
// address src of the namespace; rd is recursion desired.
func (n *netns) exchange(src, name string, qtype uint16, rd bool) (*mdns.Msg, error) {
	var conn net.Conn
	if err := n.do(func() (err error) {
		d := net.Dialer{LocalAddr: &net.UDPAddr{IP: net.ParseIP(src)}}
		conn, err = d.Dial("udp", lanBox+":53")
		return err
	}); err != nil {
		return nil, fmt.Errorf("a socket of %s: %w", src, err)
	}
	defer conn.Close()
	q := new(mdns.Msg)
	q.SetQuestion(name, qtype)
	q.RecursionDesired = rd
	q.SetEdns0(1232, false)
	r, _, err := (&mdns.Client{Timeout: 3 * time.Second}).ExchangeWithConn(q, &mdns.Conn{Conn: conn})
	if err != nil {
		return nil, fmt.Errorf("%s %s from %s: %w", name, mdns.TypeToString[qtype], src, err)
	}
	return r, nil
}

// dig runs dig in the namespace against the daemon from src.
func (n *netns) dig(t *testing.T, src string, args ...string) string {
	t.Helper()
	digBin := needTool(t, "dig")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	all := append([]string{"netns", "exec", n.name, digBin, "-b", src, "@" + lanBox, "+tries=1", "+time=3"}, args...)
	out, err := exec.CommandContext(ctx, n.ip, all...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(all, " "), err, out)
	}
	return string(out)
}

// lanDoc is a router's document: the LAN 192.168.1.0/24, a static WAN
// whose resolver is the upstream, ma-societe.fr delegated to the box;
// without domains (setup: the first-boot wizard has not run) when setup.
func lanDoc(setup bool) string {
	doc := fmt.Sprintf(`system: {model: M500}
network:
  mode: router
  lan: {address: %s}
  wan: {method: static, address: %s/24, gateway: 10.53.0.1, dns: [%s]}
  public_address: %s
smtp: {mode: direct}
`, lanBox, wanBox, wanResolver, lanPublic)
	if !setup {
		doc += "domains:\n  - name: ma-societe.fr\n    dns: {delegated: true}\n    accounts:\n      - {id: bob}\n"
	}
	return doc
}

// ttlRE is the TTL of a record in rrs' format.
var ttlRE = regexp.MustCompile(`^(\S+) \d+ `)

// TestDNSLAN: the LAN view with the real daemon. From the LAN, the box's
// names answer its LAN address (split horizon: the public address from
// outside), other names are forwarded to the WAN's resolver and cached;
// from outside the LAN, a name outside the zones is REFUSED (never an
// open resolver); in setup mode, every name answers the LAN address.
func TestDNSLAN(t *testing.T) {
	t.Parallel()
	n := newNetns(t)
	for _, a := range []string{lanBox + "/24", lanClient + "/24", wanBox + "/24", wanResolver + "/32"} {
		n.run(t, "addr", "add", a, "dev", "lo")
	}
	up := n.startUpstream(t)

	dir := t.TempDir()
	data, state := filepath.Join(dir, "data"), filepath.Join(dir, "state.yaml")
	if err := os.WriteFile(state, []byte(lanDoc(true)), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out, errOut := mfapply(t, "", "validate", "-f", state); code != 0 {
		t.Fatalf("mfapply validate: exit %d\n%s%s", code, out, errOut)
	}
	p := startDaemonProcIn(t, []string{n.ip, "netns", "exec", n.name}, nil, "--data", data, "-f", state, "--dns", lanBox+":53")
	waitFor(t, "the DNS endpoints", func() error {
		if !p.running() {
			t.Fatalf("mailfountaind exited: %v\n%s", p.err, p.stderr)
		}
		log := p.stderr.String()
		for _, name := range []string{"dns", "dns-tcp"} {
			if !strings.Contains(log, "msg=listening server="+name+" addr="+lanBox+":53") {
				return fmt.Errorf("%s not listening", name)
			}
		}
		return nil
	})
	waitVersions(t, data, 1)

	const (
		outside = wanBox      // a client of the WAN's network
		local   = "127.0.0.1" // a process of the box: not the LAN either
	)
	// Setup mode (the first boot: the document has no domain yet):
	// every name answers the LAN address, to the LAN only, and nothing
	// is forwarded. The LAN view is published by the first apply.
	waitFor(t, "setup mode", func() error {
		r, err := n.exchange(lanClient, "www.google.com.", mdns.TypeA, true)
		if err == nil && !slices.Equal(rrs(r.Answer, mdns.TypeA), []string{"www.google.com. 0 " + lanBox}) {
			err = fmt.Errorf("www.google.com. A: %s, answer %q", mdns.RcodeToString[r.Rcode], rrs(r.Answer, mdns.TypeA))
		}
		return err
	})
	for _, tc := range []struct {
		src, name string
		qtype     uint16
		rcode     int
		want      []string
	}{
		{lanClient, "www.example.net.", mdns.TypeA, mdns.RcodeSuccess, []string{"www.example.net. 0 " + lanBox}},
		{lanClient, "mailfountain.local.", mdns.TypeA, mdns.RcodeSuccess, []string{"mailfountain.local. 0 " + lanBox}},
		{lanClient, "setup.example.net.", mdns.TypeAAAA, mdns.RcodeSuccess, nil},
		{outside, "www.google.com.", mdns.TypeA, mdns.RcodeRefused, nil},
		{outside, "mailfountain.local.", mdns.TypeA, mdns.RcodeRefused, nil},
	} {
		r, err := n.exchange(tc.src, tc.name, tc.qtype, true)
		if err != nil {
			t.Fatal(err)
		}
		if got := rrs(r.Answer, tc.qtype); r.Rcode != tc.rcode || !slices.Equal(got, tc.want) {
			t.Errorf("setup mode, %s %s from %s: %s, answer %q; want %s, answer %q", tc.name, mdns.TypeToString[tc.qtype], tc.src,
				mdns.RcodeToString[r.Rcode], got, mdns.RcodeToString[tc.rcode], tc.want)
		}
	}
	if out := n.dig(t, lanClient, "anything.example", "A"); !regexp.MustCompile(`(?m)^anything\.example\.\s+0\s+IN\s+A\s+192\.168\.1\.1$`).MatchString(out) {
		t.Errorf("dig -b %s anything.example in setup mode, want the LAN address:\n%s", lanClient, out)
	}
	for _, name := range []string{"www.google.com.", "www.example.net.", "setup.example.net.", "anything.example."} {
		if c := up.times(name); c != 0 {
			t.Errorf("setup mode: the upstream was asked %s %d times, want never", name, c)
		}
	}

	// The wizard has run: a domain. The LAN view follows the document.
	saveByRename(t, state, lanDoc(false))
	waitVersions(t, data, 2)
	waitFor(t, "the LAN view with the domain", func() error {
		r, err := n.exchange(lanClient, "mailfountain.local.", mdns.TypeA, true)
		if err == nil && !slices.Equal(rrs(r.Answer, mdns.TypeA), []string{"mailfountain.local. 60 " + lanBox}) {
			err = fmt.Errorf("%s, answer %q", mdns.RcodeToString[r.Rcode], rrs(r.Answer, mdns.TypeA))
		}
		return err
	})

	tests := []struct {
		src, name string
		qtype     uint16
		rd        bool
		rcode     int
		aa, ra    bool
		want      []string // the answer section, rrs' format
	}{
		// The box's names, from the LAN: its LAN address; the other
		// family: NODATA, not the public address.
		{lanClient, "mailfountain.local.", mdns.TypeA, true, mdns.RcodeSuccess, true, true, []string{"mailfountain.local. 60 " + lanBox}},
		{lanClient, "mail.ma-societe.fr.", mdns.TypeA, true, mdns.RcodeSuccess, true, true, []string{"mail.ma-societe.fr. 60 " + lanBox}},
		// Whatever the case (the question is echoed as asked), and
		// recursion desired or not.
		{lanClient, "MAIL.Ma-Societe.FR.", mdns.TypeA, false, mdns.RcodeSuccess, true, true, []string{"mail.ma-societe.fr. 60 " + lanBox}},
		{lanClient, "mailfountain.local.", mdns.TypeAAAA, true, mdns.RcodeSuccess, true, true, nil},
		// The rest of the zone, from the LAN: the zone's.
		{lanClient, "ma-societe.fr.", mdns.TypeMX, true, mdns.RcodeSuccess, true, true, []string{"ma-societe.fr. 28800 10 mail.ma-societe.fr."}},
		// The same names from outside the LAN: the public address, or
		// nothing for the box's local name.
		{outside, "mail.ma-societe.fr.", mdns.TypeA, true, mdns.RcodeSuccess, true, false, []string{"mail.ma-societe.fr. 10800 " + lanPublic}},
		{local, "mail.ma-societe.fr.", mdns.TypeA, true, mdns.RcodeSuccess, true, false, []string{"mail.ma-societe.fr. 10800 " + lanPublic}},
		{outside, "mailfountain.local.", mdns.TypeA, true, mdns.RcodeRefused, false, false, nil},
		// Other names: forwarded for the LAN when it asks for recursion;
		// never for anyone else.
		{lanClient, "www.example.net.", mdns.TypeA, true, mdns.RcodeSuccess, false, true, []string{"www.example.net. TTL " + upstreamA}},
		{lanClient, "nothing.example.org.", mdns.TypeA, true, mdns.RcodeNameError, false, true, nil},
		{lanClient, "norec.example.net.", mdns.TypeA, false, mdns.RcodeRefused, false, true, nil},
		{outside, "outside.example.net.", mdns.TypeA, true, mdns.RcodeRefused, false, false, nil},
		{local, "local.example.net.", mdns.TypeA, true, mdns.RcodeRefused, false, false, nil},
	}
	for _, tc := range tests {
		t.Run(tc.src+"_"+tc.name+mdns.TypeToString[tc.qtype], func(t *testing.T) {
			r, err := n.exchange(tc.src, tc.name, tc.qtype, tc.rd)
			if err != nil {
				t.Fatal(err)
			}
			got := rrs(r.Answer, tc.qtype)
			if !tc.aa {
				// A forwarded answer: its TTL is the cache's.
				for i, rr := range got {
					got[i] = ttlRE.ReplaceAllString(rr, "$1 TTL ")
				}
			}
			if len(r.Question) != 1 || r.Question[0].Name != tc.name {
				t.Errorf("question %v, want %s echoed", r.Question, tc.name)
			}
			if r.Rcode != tc.rcode || r.Authoritative != tc.aa || r.RecursionAvailable != tc.ra || !slices.Equal(got, tc.want) {
				t.Errorf("%s, AA %v, RA %v, answer %q; want %s, AA %v, RA %v, answer %q",
					mdns.RcodeToString[r.Rcode], r.Authoritative, r.RecursionAvailable, got,
					mdns.RcodeToString[tc.rcode], tc.aa, tc.ra, tc.want)
			}
		})
	}
	// What was refused never reached the upstream.
	for _, name := range []string{"norec.example.net.", "outside.example.net.", "local.example.net.", "mailfountain.local.", "mail.ma-societe.fr."} {
		if c := up.times(name); c != 0 {
			t.Errorf("the upstream was asked %s %d times, want never", name, c)
		}
	}

	// The cache: asked twice, the upstream sees it once.
	for i := range 2 {
		r, err := n.exchange(lanClient, "cached.example.net.", mdns.TypeA, true)
		if err != nil {
			t.Fatal(err)
		}
		if got := rrs(r.Answer, mdns.TypeA); len(got) != 1 || !strings.HasSuffix(got[0], " "+upstreamA) {
			t.Errorf("cached.example.net. A, question %d: %q, want %s", i+1, got, upstreamA)
		}
	}
	if c := up.times("cached.example.net."); c != 1 {
		t.Errorf("cached.example.net. asked twice from the LAN: the upstream saw it %d times, want 1", c)
	}

	// dig agrees: a LAN client gets the box's address and recursion, a
	// client outside gets the public address, and REFUSED for the rest.
	if out := n.dig(t, lanClient, "mail.ma-societe.fr", "A"); !regexp.MustCompile(`flags: qr aa rd ra;`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^mail\.ma-societe\.fr\.\s+60\s+IN\s+A\s+192\.168\.1\.1$`).MatchString(out) {
		t.Errorf("dig -b %s mail.ma-societe.fr, want the LAN address, AA and RA:\n%s", lanClient, out)
	}
	if out := n.dig(t, lanClient, "dig.example.net", "A"); !strings.Contains(out, "status: NOERROR") ||
		!regexp.MustCompile(`(?m)^dig\.example\.net\.\s+\d+\s+IN\s+A\s+10\.9\.9\.9$`).MatchString(out) {
		t.Errorf("dig -b %s dig.example.net, want the upstream's answer:\n%s", lanClient, out)
	}
	if out := n.dig(t, outside, "mail.ma-societe.fr", "A"); !regexp.MustCompile(`(?m)^mail\.ma-societe\.fr\.\s+10800\s+IN\s+A\s+203\.0\.113\.10$`).MatchString(out) {
		t.Errorf("dig -b %s mail.ma-societe.fr, want the public address:\n%s", outside, out)
	}
	if out := n.dig(t, outside, "dig2.example.net", "A"); !strings.Contains(out, "status: REFUSED") || regexp.MustCompile(`flags:[^;]* ra[ ;]`).MatchString(out) {
		t.Errorf("dig -b %s dig2.example.net, want REFUSED without RA:\n%s", outside, out)
	}
}
