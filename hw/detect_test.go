package hw

import (
	"os"
	"path/filepath"
	"testing"
)

func TestDetect(t *testing.T) {
	tests := []struct {
		name    string
		content *string // nil: no model file
		model   string  // "" : not a box
	}{
		{"not a box", nil, ""},
		{"S100", ptr("S100\n"), "S100"},
		{"S200", ptr("S200"), "S200"},
		{"M500 with spaces", ptr("  M500 \n"), "M500"},
		{"virtual is asked for, never detected", ptr("virtual\n"), ""},
		{"unknown model", ptr("X9000\n"), ""},
		{"lower case", ptr("m500\n"), ""},
		{"empty", ptr(""), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			if tt.content != nil {
				path := filepath.Join(root, ModelFile)
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(*tt.content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			p, ok := Detect(root)
			if ok != (tt.model != "") || (ok && p.Model != tt.model) {
				t.Fatalf("Detect = %+v, %v; want model %q", p, ok, tt.model)
			}
			if !ok {
				if p != nil {
					t.Errorf("not a box, yet a profile: %+v", p)
				}
				return
			}
			// The box's files are found under root.
			if p.LED == "" || p.SecurityCode == "" {
				t.Fatalf("%s: no LED or security code: %+v", p.Model, p)
			}
			for _, f := range []string{p.LED, p.SecurityCode} {
				if rel, err := filepath.Rel(root, f); err != nil || rel == f || rel[0] == '.' {
					t.Errorf("%s is not under root %s", f, root)
				}
			}
		})
	}
}

func ptr(s string) *string { return &s }
