// Package hwtest runs a package's tests inside a virtual box (package hw):
// the reconcilers' tests drive a real kernel's netlink, nftables and
// sockets in a network namespace of their own, which is deleted after.
//
//	func TestMain(m *testing.M) { os.Exit(hwtest.Main(m)) }
//
// Only tests import it.
package hwtest

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"github.com/vishvananda/netns"

	"mailfountain.dev/mailfountain/hw"
	"mailfountain.dev/mailfountain/runtime/testenv"
)

// envName names, in the test binary run inside the box, the box's
// namespace.
const envName = "MF_HWTEST_NS"

// Main runs m. As root, it runs the test binary again inside a new
// virtual box and removes the box after; otherwise (or when the box
// cannot be made) it runs m here, and Box makes the tests that need one
// unavailable.
func Main(m *testing.M) int {
	if os.Getenv(envName) != "" || os.Geteuid() != 0 {
		return m.Run()
	}
	name := fmt.Sprintf("mft%d", os.Getpid())
	code, err := runInside(name)
	if rerr := hw.RemoveVirtual(name); rerr != nil {
		fmt.Fprintf(os.Stderr, "hwtest: %v\n", rerr)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "hwtest: %v; running the tests without a box\n", err)
		return m.Run()
	}
	return code
}

// runInside runs this test binary, with its arguments, in the virtual box
// name, and returns its exit code.
func runInside(name string) (int, error) {
	if err := hw.EnsureVirtual(name); err != nil {
		return 0, err
	}
	ns, err := netns.GetFromPath(hw.NamespacePath(name))
	if err != nil {
		return 0, err
	}
	defer ns.Close()
	cmd := exec.Command(os.Args[0], os.Args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), envName+"="+name)
	// The child is forked from this thread and so starts in its namespace.
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return 0, err
	}
	defer orig.Close()
	if err := netns.Set(ns); err != nil {
		runtime.UnlockOSThread()
		return 0, err
	}
	err = cmd.Start()
	if serr := netns.Set(orig); serr == nil {
		runtime.UnlockOSThread()
	}
	if err != nil {
		return 0, fmt.Errorf("run the tests in the virtual box: %w", err)
	}
	if err := cmd.Wait(); err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), nil
		}
		return 0, err
	}
	return 0, nil
}

// Box returns the virtual box the tests run in; without one (not root, or
// TestMain does not call Main) the test is unavailable: skipped, failed
// in CI.
func Box(t testing.TB) *hw.Box {
	t.Helper()
	name := os.Getenv(envName)
	if name == "" {
		testenv.Unavailable(t, "needs a virtual box: run as root, with hwtest.Main in TestMain")
		return nil
	}
	return hw.VirtualBox(name)
}

// Peer is the namespace of what is plugged into port ("wan", "lan1",
// "lan2") of the box the tests run in, for `ip netns exec PEER …`.
func Peer(t testing.TB, port string) string {
	t.Helper()
	return hw.PeerNamespace(Box(t).Virtual, port)
}

// Run runs a program (ip, nft, sysctl…) in the box the tests run in and
// returns its combined output; a failure fails the test.
func Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	Box(t) // never in the host's namespace
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}
