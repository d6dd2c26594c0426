package network

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
)

// Until hw/hwtest: as root, the tests run again inside a box namespace of
// their own (nl-PID, with peers nl-PID-wan, -lan1, -lan2), removed after.
const nsEnv = "NL_TEST_NS"

func TestMain(m *testing.M) {
	if os.Getenv(nsEnv) != "" || os.Geteuid() != 0 {
		os.Exit(m.Run())
	}
	name := fmt.Sprintf("nl-%d", os.Getpid())
	os.Exit(inBox(name))
}

func inBox(name string) int {
	run := func(args ...string) error {
		out, err := exec.Command("ip", args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("ip %v: %v: %s", args, err, out)
		}
		return nil
	}
	peers := []string{"wan", "lan1", "lan2"}
	defer func() {
		for _, p := range peers {
			run("netns", "del", name+"-"+p)
		}
		run("netns", "del", name)
	}()
	if err := run("netns", "add", name); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := run("-n", name, "link", "set", "lo", "up"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for _, p := range peers {
		peer := name + "-" + p
		for _, args := range [][]string{
			{"netns", "add", peer},
			{"link", "add", p, "netns", name, "type", "veth", "peer", "name", "eth0", "netns", peer},
			{"-n", peer, "link", "set", "lo", "up"},
			{"-n", peer, "link", "set", "eth0", "up"},
		} {
			if err := run(args...); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
		}
	}
	exe, _ := os.Executable()
	cmd := exec.Command("ip", append([]string{"netns", "exec", name, exe}, os.Args[1:]...)...)
	cmd.Env = append(os.Environ(), nsEnv+"="+name)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// boxPorts are the box's ports, inside its namespace.
func boxPorts(t *testing.T) *Ports {
	t.Helper()
	if os.Getenv(nsEnv) == "" {
		t.Skip("needs root: the box's ports are in a namespace the tests make")
	}
	return &Ports{WAN: "wan", LAN: []string{"lan1", "lan2"}}
}

// peer is the namespace of the device on the other end of port p.
func peer(t *testing.T, p string) string {
	return os.Getenv(nsEnv) + "-" + p
}
