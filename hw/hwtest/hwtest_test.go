package hwtest

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"mailfountain.dev/mailfountain/hw"
	"mailfountain.dev/mailfountain/runtime/testenv"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

// TestInsideTheBox checks that the tests run inside the virtual box: its
// ports are this process's interfaces, and each peer is in its namespace.
func TestInsideTheBox(t *testing.T) {
	box := Box(t)
	if in, err := hw.InNamespace(box.Virtual); err != nil || !in {
		t.Fatalf("not inside %s: %v, %v", box.Virtual, in, err)
	}
	ip := testenv.NeedTool(t, "ip")
	out, err := exec.Command(ip, "-o", "link", "show").CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, p := range box.Profile.Ports() {
		if !strings.Contains(string(out), " "+p+"@") {
			t.Errorf("no port %s here:\n%s", p, out)
		}
	}
	if _, err := os.Stat(hw.NamespacePath(Peer(t, "lan1"))); err != nil {
		t.Errorf("peer namespace of lan1: %v", err)
	}
}
