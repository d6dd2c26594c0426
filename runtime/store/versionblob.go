package store

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
)

// Versions keep a large document twice, as written and as its state's
// JSON: two megabytes each for ten thousand accounts, written on every
// apply. SQLite (transpiled to Go here) takes about as long to write them
// as the rest of an apply of a one-account edit; compressed (about 14
// times smaller, in a few milliseconds), they cost little. Blobs of
// versions recorded before were stored as they are, and are read as they
// are.

// packMin is the size from which a version's blob is compressed.
const packMin = 4 << 10

// gzipMagic starts every gzip stream. A state's JSON starts with '{' and
// a YAML document cannot hold the control character 0x1f, so a blob that
// starts with it was compressed here.
var gzipMagic = []byte{0x1f, 0x8b}

// packBlob returns what to store for b.
func packBlob(b []byte) ([]byte, error) {
	if len(b) < packMin {
		return b, nil
	}
	var out bytes.Buffer
	out.Grow(len(b) / 8)
	w, err := gzip.NewWriterLevel(&out, gzip.BestSpeed)
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(b); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// unpackBlob returns what packBlob was given.
func unpackBlob(b []byte) ([]byte, error) {
	if !bytes.HasPrefix(b, gzipMagic) {
		return b, nil
	}
	r, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("decompress: %w", err)
	}
	out, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("decompress: %w", err)
	}
	return out, nil
}

// packVersion returns a copy of v whose state and sources are as stored.
func packVersion(v *Version) (*Version, error) {
	pv := *v
	var err error
	if pv.State, err = packBlob(v.State); err != nil {
		return nil, fmt.Errorf("version state: %w", err)
	}
	pv.Sources = make([]VersionSource, len(v.Sources))
	for i, src := range v.Sources {
		pv.Sources[i].Name = src.Name
		if pv.Sources[i].Data, err = packBlob(src.Data); err != nil {
			return nil, fmt.Errorf("version source %s: %w", src.Name, err)
		}
	}
	return &pv, nil
}
