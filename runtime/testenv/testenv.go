// Package testenv is what the tests ask of the machine they run on, like
// Go's internal/testenv: the programs they drive (dig, swaks, python3...).
// A test that lacks one is skipped on a developer's machine, and fails in
// CI (CI=true), which must prove that every test runs.
//
// Only tests import it: the _test.go files, tests/ and bench/.
package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
)

// NeedTool returns the path of the program name, which the test needs;
// without it, see Unavailable.
func NeedTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Unavailable(t, "%s is not installed (make deps installs it): %v", name, err)
		return ""
	}
	return p
}

// Unavailable stops a test that lacks something the machine does not
// have: it skips the test, except in CI (CI=true) where it fails it.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") == "true" {
		t.Fatalf("required in CI: %s", msg)
		return
	}
	t.Skip(msg)
}
