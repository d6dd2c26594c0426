package tests

// The virtual box: mailfountaind --hardware virtual:NAME makes the box's
// network namespaces and runs inside them, so that the network, firewall
// and DHCP tests drive a real kernel without touching the host's network.
// The helpers here give each test a box of its own and delete it after.

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"mailfountain.dev/mailfountain/hw"
)

// boxSeq numbers the virtual boxes of this test process.
var boxSeq atomic.Int32

// virtualBox is a virtual box made for one test.
type virtualBox struct {
	name string
	ip   string // path of ip(8)
}

// newVirtualBox names a virtual box for t (the daemon creates it, or
// create does) and deletes it, with whatever still runs in it, when the
// test ends. It needs root and ip(8): without them the test is skipped,
// failed in CI.
func newVirtualBox(t *testing.T) *virtualBox {
	t.Helper()
	if os.Geteuid() != 0 {
		needRoot(t, "a virtual box is made of network namespaces: it needs root")
	}
	b := &virtualBox{name: fmt.Sprintf("t%d-%d", os.Getpid()%100000, boxSeq.Add(1)), ip: needTool(t, "ip")}
	t.Cleanup(func() {
		for _, ns := range b.namespaces() {
			killIn(b.ip, ns)
		}
		if err := hw.RemoveVirtual(b.name); err != nil {
			t.Errorf("remove the virtual box: %v", err)
		}
	})
	return b
}

// create makes the box's namespaces without a daemon.
func (b *virtualBox) create(t *testing.T) {
	t.Helper()
	if err := hw.EnsureVirtual(b.name); err != nil {
		t.Fatal(err)
	}
}

func (b *virtualBox) namespaces() []string {
	return []string{b.name, b.peer("wan"), b.peer("lan1"), b.peer("lan2")}
}

// hardware is the daemon's --hardware argument for the box.
func (b *virtualBox) hardware() string { return "virtual:" + b.name }

// peer is the namespace of what is plugged into port (wan, lan1, lan2).
func (b *virtualBox) peer(port string) string { return hw.PeerNamespace(b.name, port) }

// in runs a command in namespace ns (the box's or a peer's) and returns
// its combined output.
func (b *virtualBox) in(ns string, args ...string) (string, error) {
	out, err := exec.Command(b.ip, append([]string{"netns", "exec", ns}, args...)...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ip netns exec %s %s: %w\n%s", ns, strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// must is in, failing the test on error.
func (b *virtualBox) must(t *testing.T, ns string, args ...string) string {
	t.Helper()
	out, err := b.in(ns, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestVirtualBoxDaemon: the daemon makes the virtual box, runs inside it
// under its own PID, and finds it again when restarted.
func TestVirtualBoxDaemon(t *testing.T) {
	b := newVirtualBox(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	state := filepath.Join(dir, "state.yaml")
	if err := os.WriteFile(state, []byte(stateDoc("bob")), 0o600); err != nil {
		t.Fatal(err)
	}
	var macs string
	for round := range 2 {
		d := startDaemonProc(t, "--data", data, "-f", state, "--hardware", b.hardware())
		waitVersions(t, data, 1)
		// Same PID, in the box's namespace (once it has run itself
		// again: the data directory of round 0 is there already).
		waitFor(t, "the daemon inside the box", func() error {
			self, err := os.Stat(fmt.Sprintf("/proc/%d/ns/net", d.cmd.Process.Pid))
			if err != nil {
				return err
			}
			box, err := os.Stat(hw.NamespacePath(b.name))
			if err != nil {
				return err
			}
			if !os.SameFile(self, box) {
				return fmt.Errorf("round %d: the daemon (PID %d) is not in the box's namespace", round, d.cmd.Process.Pid)
			}
			return nil
		})
		waitFor(t, "the daemon's control socket", func() error {
			if code, out, errOut := mfapply(t, "", "--data", data, "status"); code != 0 || !strings.Contains(out, "mailfountaind runs on") {
				return fmt.Errorf("mfapply status: exit %d\n%s%s", code, out, errOut)
			}
			return nil
		})
		links := b.must(t, b.name, b.ip, "-o", "link", "show")
		var m []string
		for _, port := range []string{"wan", "lan1", "lan2"} {
			i := strings.Index(links, " "+port+"@")
			if i < 0 {
				t.Fatalf("round %d: no port %s in the box:\n%s", round, port, links)
			}
			line := links[i:]
			if j := strings.Index(line, "link/ether "); j >= 0 {
				m = append(m, strings.Fields(line[j:])[1])
			}
		}
		if round == 1 && strings.Join(m, " ") != macs {
			t.Errorf("the restarted daemon made new ports: %v, were %s", m, macs)
		}
		macs = strings.Join(m, " ")
		if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if code := d.waitExit(t, 10*time.Second); code != 0 {
			t.Fatalf("exit %d after SIGTERM\n%s", code, d.stderr.String())
		}
	}
}
