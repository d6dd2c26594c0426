package led

import (
	"mailfountain.dev/mailfountain/hw"
	"mailfountain.dev/mailfountain/runtime/safeio"
)

// File is the virtual profile's LED: a file holding the name of the
// pattern shown ("setup\n"), replaced whole on each change, so that a
// reader never sees half a name. It blinks nothing: the name says it all.
type File struct {
	path string
}

// NewFile returns the LED of the file at path (DATA/led).
func NewFile(path string) *File { return &File{path: path} }

// Show writes p's name.
func (f *File) Show(p hw.Pattern) (bool, error) {
	return true, safeio.WriteFile(f.path, []byte(string(p)+"\n"), 0o644)
}

// Set does nothing: Show always shows the pattern by itself.
func (f *File) Set(bool) error { return nil }
