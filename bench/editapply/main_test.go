package main

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const doc = `domains:
  - name: domain0.example
    accounts:
      - id: user0
        name: "User 0 of domain 0"
      - id: user1
        name: "User 1 of domain 0"
`

func TestEditName(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 0))
	got := string(editName([]byte(doc), rng, 1))
	got = string(editName([]byte(got), rng, 2))
	if strings.Count(got, "(edit ") == 0 || len(strings.Split(got, "\n")) != len(strings.Split(doc, "\n")) {
		t.Fatalf("edited document:\n%s", got)
	}
	// Only names change, and each keeps its account.
	for _, l := range strings.Split(got, "\n") {
		if strings.Contains(l, "(edit ") && !strings.HasPrefix(l, `        name: "User `) {
			t.Errorf("edited line %q", l)
		}
	}
	if len(accountNames([]byte(got))) != 2 {
		t.Errorf("names no longer found after edits:\n%s", got)
	}
}

func TestSave(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.yaml")
	if err := os.WriteFile(path, []byte("old, longer content\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, how := range []string{"rename", "truncate"} {
		if err := save(path, []byte(how+"\n"), how); err != nil {
			t.Fatal(err)
		}
		if b, _ := os.ReadFile(path); string(b) != how+"\n" {
			t.Errorf("after save by %s: %q", how, b)
		}
	}
	if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 1 {
		t.Errorf("files left beside the state file: %v", entries)
	}
}

func TestPercentile(t *testing.T) {
	ms := func(n ...int) []time.Duration {
		var d []time.Duration
		for _, x := range n {
			d = append(d, time.Duration(x)*time.Millisecond)
		}
		return d
	}
	for _, tt := range []struct {
		sorted []time.Duration
		p      int
		want   time.Duration
	}{
		{ms(1), 50, time.Millisecond},
		{ms(1, 2, 3, 4), 50, 2 * time.Millisecond},
		{ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 90, 9 * time.Millisecond},
		{ms(1, 2, 3), 90, 3 * time.Millisecond},
	} {
		if got := percentile(tt.sorted, tt.p); got != tt.want {
			t.Errorf("p%d of %v = %v, want %v", tt.p, tt.sorted, got, tt.want)
		}
	}
}
