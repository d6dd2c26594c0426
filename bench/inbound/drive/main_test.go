package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// body is a smtp-source body of 10240 bytes with CRLF line ends.
var body = strings.Repeat(strings.Repeat("X", 78)+"\r\n", 128)

func TestCheckMaildir(t *testing.T) {
	lf := func(s string) string { return strings.ReplaceAll(s, "\r\n", "\n") }
	msg := func(id, b string) string { return "Received: x\r\nMessage-Id: <" + id + ">\r\n\r\n" + b }
	tests := []struct {
		name    string
		files   map[string]string // path under the Maildir: content
		expect  int
		wantErr string
	}{
		{"CRLF and LF alike", map[string]string{"new/1": msg("a", body), "cur/2": lf(msg("b", body))}, 2, ""},
		{"one missing", map[string]string{"new/1": msg("a", body)}, 2, "holds 1 messages, want 2"},
		{"one too many", map[string]string{"new/1": msg("a", body), "new/2": msg("b", body), "new/3": msg("c", body)}, 2, "holds 3 messages"},
		{"delivered twice", map[string]string{"new/1": msg("a", body), "new/2": msg("a", body)}, 2, "delivered twice"},
		{"truncated", map[string]string{"new/1": msg("a", body), "new/2": msg("b", body[:5000])}, 2, "body of 5000 bytes"},
		{"other body", map[string]string{"new/1": msg("a", body), "new/2": msg("b", strings.Replace(body, "X", "Y", 1))}, 2, "body differs"},
		{"no header end", map[string]string{"new/1": "Message-Id: <a>\r\n" + body}, 1, "no end of header"},
		{"no Message-Id", map[string]string{"new/1": "Subject: x\r\n\r\n" + body}, 1, "no Message-Id"},
		{"tmp/ not counted", map[string]string{"new/1": msg("a", body), "tmp/2": msg("b", body)}, 1, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for _, sub := range []string{"new", "cur", "tmp"} {
				if err := os.Mkdir(filepath.Join(dir, sub), 0o700); err != nil {
					t.Fatal(err)
				}
			}
			for name, content := range tt.files {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			_, n, err := checkMaildir(dir, tt.expect, 10240)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("checkMaildir: %v", err)
				}
				if n != 10240 {
					t.Errorf("body bytes = %d, want 10240", n)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("checkMaildir error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestTreeCPU(t *testing.T) {
	tree := func(pid int) (time.Duration, error) {
		procs, err := readProcs()
		if err != nil {
			t.Fatal(err)
		}
		return treeCPU(procs, pid)
	}
	// Burn some CPU in this process: its tree's time must count it.
	before, err := tree(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	x := 0
	for i := range 300_000_000 {
		x += i % 7
	}
	after, err := tree(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if after-before < ticks(1) {
		t.Errorf("CPU time went from %s to %s after a busy loop (%d)", before, after, x)
	}
	if _, err := tree(1 << 30); err == nil {
		t.Error("treeCPU of a process that does not exist: no error")
	}
}

// A kernel thread that exits between two samples does not make the
// kernel's time go down; one that appears counts whole.
func TestKernelTime(t *testing.T) {
	a := cpuSample{kernel: map[int]uint64{2: 5, 10: 100, 11: 1000}}
	b := cpuSample{kernel: map[int]uint64{2: 6, 10: 150, 12: 7}} // 11 exited, 12 started
	if got, want := kernelTime(a, b), ticks(1+50+7); got != want {
		t.Errorf("kernelTime = %s, want %s", got, want)
	}
}
