package daemon

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/fsnotify/fsnotify"

	"mailfountain.dev/mailfountain/schema"
)

func TestTargetConcerns(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "state.yaml")
	if err := os.WriteFile(file, []byte("system: {}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	stateDir := filepath.Join(dir, "state.d")
	if err := os.Mkdir(stateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	fileT, err := newTarget(file)
	if err != nil {
		t.Fatal(err)
	}
	dirT, err := newTarget(stateDir)
	if err != nil {
		t.Fatal(err)
	}
	ev := func(name string, op fsnotify.Op) fsnotify.Event { return fsnotify.Event{Name: name, Op: op} }
	tests := []struct {
		name   string
		target target
		ev     fsnotify.Event
		want   bool
	}{
		{"write to the file", fileT, ev(file, fsnotify.Write), true},
		{"rename over the file", fileT, ev(file, fsnotify.Create), true},
		{"file moved away (vim backup)", fileT, ev(file, fsnotify.Rename), true},
		{"chmod of the file", fileT, ev(file, fsnotify.Chmod), true},
		{"unclean name of the file", fileT, ev(dir+"//state.yaml", fsnotify.Write), true},
		{"vim backup file", fileT, ev(file+"~", fsnotify.Create), false},
		{"vim write test file", fileT, ev(filepath.Join(dir, "4913"), fsnotify.Create), false},
		{"vim swap file", fileT, ev(filepath.Join(dir, ".state.yaml.swp"), fsnotify.Write), false},
		{"another yaml file beside", fileT, ev(filepath.Join(dir, "other.yaml"), fsnotify.Write), false},
		{"directory: a yaml file", dirT, ev(filepath.Join(stateDir, "a.fr.yaml"), fsnotify.Write), true},
		{"directory: a yml file removed", dirT, ev(filepath.Join(stateDir, "b.yml"), fsnotify.Remove), true},
		{"directory: hidden temporary file", dirT, ev(filepath.Join(stateDir, ".a.fr.yaml.tmp"), fsnotify.Create), false},
		{"directory: hidden yaml file", dirT, ev(filepath.Join(stateDir, ".a.yaml"), fsnotify.Create), false},
		{"directory: backup file", dirT, ev(filepath.Join(stateDir, "a.fr.yaml~"), fsnotify.Create), false},
		{"directory: file of a sub-directory", dirT, ev(filepath.Join(stateDir, "sub", "a.yaml"), fsnotify.Write), false},
		{"directory: the directory's sibling", dirT, ev(filepath.Join(dir, "x.yaml"), fsnotify.Write), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.target.concerns(tt.ev); got != tt.want {
				t.Errorf("concerns(%v) = %v, want %v", tt.ev, got, tt.want)
			}
		})
	}
}

func TestNewTargetMissingPath(t *testing.T) {
	if _, err := newTarget(filepath.Join(t.TempDir(), "absent.yaml")); err == nil {
		t.Fatal("newTarget of a missing path: no error")
	}
}

func TestSourcesHash(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "state.yaml")
	if err := os.WriteFile(file, []byte("a"), 0o600); err != nil {
		t.Fatal(err)
	}
	ft, err := newTarget(file)
	if err != nil {
		t.Fatal(err)
	}
	dt, err := newTarget(dir)
	if err != nil {
		t.Fatal(err)
	}
	src := func(name, data string, mode os.FileMode) []schema.Source {
		return []schema.Source{{Name: name, Data: []byte(data), Mode: mode}}
	}
	base := ft.sourcesHash(src(file, "a", 0o600))
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	rel, err := filepath.Rel(wd, file)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		hash string
		same bool
	}{
		{"same file again", ft.sourcesHash(src(file, "a", 0o600)), true},
		{"named by a relative path", ft.sourcesHash(src(rel, "a", 0o600)), true},
		{"other content", ft.sourcesHash(src(file, "b", 0o600)), false},
		{"other mode", ft.sourcesHash(src(file, "a", 0o644)), false},
		{"name and content not confused", ft.sourcesHash(src(file+"a", "", 0o600)), false},
		// Relative to a directory target, a file directly inside is named
		// by its base name, as for a file target.
		{"directory: same file", dt.sourcesHash(src(file, "a", 0o600)), true},
	}
	for _, tt := range tests {
		if (tt.hash == base) != tt.same {
			t.Errorf("%s: hash equal to the base: %v, want %v", tt.name, tt.hash == base, tt.same)
		}
	}
	two := dt.sourcesHash([]schema.Source{{Name: filepath.Join(dir, "a.yaml"), Data: []byte("x")}, {Name: filepath.Join(dir, "b.yaml"), Data: []byte("y")}})
	swapped := dt.sourcesHash([]schema.Source{{Name: filepath.Join(dir, "a.yaml"), Data: []byte("y")}, {Name: filepath.Join(dir, "b.yaml"), Data: []byte("x")}})
	if two == swapped {
		t.Error("directory: swapping the contents of two files keeps the hash")
	}
}
