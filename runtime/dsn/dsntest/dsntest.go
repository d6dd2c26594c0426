// Package dsntest reads a delivery status report the way an independent
// mail reader does, for tests: with python's email package
// (readdsn.py), whose view of the report it returns. Only tests import
// it.
package dsntest

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"mailfountain.dev/mailfountain/runtime/testenv"
)

//go:embed readdsn.py
var script []byte

// Report is what readdsn.py prints of a delivery report.
type Report struct {
	ContentType   string              `json:"content_type"`
	ReportType    string              `json:"report_type"`
	From          string              `json:"from"`
	To            string              `json:"to"`
	Subject       string              `json:"subject"`
	AutoSubmitted string              `json:"auto_submitted"`
	MIMEVersion   string              `json:"mime_version"`
	Defects       []string            `json:"defects"`
	Parts         []string            `json:"parts"`
	Text          string              `json:"text"`
	PerMessage    map[string]string   `json:"per_message"`
	Recipients    []map[string]string `json:"recipients"`
	Original      string              `json:"original"`
	OrigSubject   string              `json:"original_subject"`
	OrigBody      string              `json:"original_body"`
}

// Read reads the report data with python's email package; python3 is
// found with testenv.NeedTool.
func Read(t testing.TB, data []byte) Report {
	t.Helper()
	python := testenv.NeedTool(t, "python3")
	dir := t.TempDir()
	py, eml := filepath.Join(dir, "readdsn.py"), filepath.Join(dir, "dsn.eml")
	if err := os.WriteFile(py, script, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(eml, data, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, py, eml)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("readdsn.py: %v\n%s\nreport:\n%s", err, stderr.String(), data)
	}
	var r Report
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("readdsn.py printed %s: %v", out, err)
	}
	return r
}
