package hw

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"mailfountain.dev/mailfountain/runtime/testenv"
)

func TestParseSelection(t *testing.T) {
	for _, c := range []struct {
		in, want string
		err      bool
	}{
		{"auto", "auto", false},
		{"none", "none", false},
		{"virtual", "virtual:mfbox", false},
		{"virtual:t1-box", "virtual:t1-box", false},
		{"virtual:", "", true},
		{"virtual:../etc", "", true},
		{"virtual:A", "", true},
		{"auto:x", "", true},
		{"box", "", true},
		{"", "", true},
	} {
		s, err := ParseSelection(c.in)
		if (err != nil) != c.err || (err == nil && s.String() != c.want) {
			t.Errorf("ParseSelection(%q) = %v, %v; want %q, error %v", c.in, s, err, c.want, c.err)
		}
	}
}

// TestVirtual makes a virtual box, makes it again (nothing to do), checks
// that each port's peer is in its own namespace, and removes it all.
func TestVirtual(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.Unavailable(t, "virtual boxes need root")
	}
	ip := testenv.NeedTool(t, "ip")
	name := fmt.Sprintf("hwt%d", os.Getpid())
	t.Cleanup(func() { _ = RemoveVirtual(name) })
	for range 2 {
		if err := EnsureVirtual(name); err != nil {
			t.Fatal(err)
		}
	}
	run := func(ns string, args ...string) string {
		out, err := exec.Command(ip, append([]string{"-n", ns, "-o", "link", "show"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("ip -n %s link show: %v\n%s", ns, err, out)
		}
		return string(out)
	}
	box := run(name)
	for _, port := range []string{"wan", "lan1", "lan2"} {
		if !strings.Contains(box, " "+port+"@") {
			t.Errorf("box has no port %s:\n%s", port, box)
		}
		peer := run(PeerNamespace(name, port), PeerPort)
		if !strings.Contains(peer, "state UP") && !strings.Contains(peer, ",UP") {
			t.Errorf("peer of %s is not up:\n%s", port, peer)
		}
	}
	if in, err := InNamespace(name); err != nil || in {
		t.Errorf("InNamespace(%s) = %v, %v from the test's namespace", name, in, err)
	}
	// A port deleted by hand comes back.
	if out, err := exec.Command(ip, "-n", name, "link", "del", "lan2").CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if err := EnsureVirtual(name); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(run(name), " lan2@") {
		t.Error("lan2 was not made again")
	}
	if err := RemoveVirtual(name); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{name, PeerNamespace(name, "wan")} {
		if _, err := os.Stat(NamespacePath(n)); !os.IsNotExist(err) {
			t.Errorf("namespace %s still there: %v", n, err)
		}
	}
	if err := RemoveVirtual(name); err != nil {
		t.Errorf("second RemoveVirtual: %v", err)
	}
}
