package applier

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestHelperHoldLock is not a test: TestLockContentionProcesses runs the
// test binary with it to hold the lock from another process.
func TestHelperHoldLock(t *testing.T) {
	dir := os.Getenv("APPLIER_TEST_HOLD_LOCK")
	if dir == "" {
		t.Skip("helper process for TestLockContentionProcesses")
	}
	a := &Applier{dir: dir, sem: make(chan struct{}, 1)}
	unlock, err := a.lock(context.Background())
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Println("locked")
	io.Copy(io.Discard, os.Stdin) // hold until the parent closes stdin
	unlock()
	os.Exit(0)
}

func TestLockContentionProcesses(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	a := openTest(t, dir)

	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperHoldLock$")
	cmd.Env = append(os.Environ(), "APPLIER_TEST_HOLD_LOCK="+a.Dir())
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	t.Cleanup(func() {
		stdin.Close()
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
		}
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "locked\n" {
		t.Fatalf("helper: %q %v", line, err)
	}
	go func() { exited <- cmd.Wait() }()

	p, err := a.Plan(ctx, sources(docV1))
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	_, err = a.Apply(short, p, "while another process applies", "cli")
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("apply while another process holds the lock: %v, want ErrLocked", err)
	}
	if want := fmt.Sprintf("wait for lock %s/apply.lock (held by pid %d)", a.Dir(), cmd.Process.Pid); !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not contain %q", err, want)
	}
	if hist, _ := a.History(ctx); len(hist) != 0 {
		t.Fatalf("history after a refused apply: %+v", hist)
	}

	stdin.Close() // the other process finishes
	if err := <-exited; err != nil {
		t.Fatalf("helper: %v", err)
	}
	exited <- nil // for the cleanup
	res, err := a.Apply(ctx, p, "after", "cli")
	if err != nil || res.Version != 1 {
		t.Fatalf("apply after the other process released the lock: %+v %v", res, err)
	}
}
