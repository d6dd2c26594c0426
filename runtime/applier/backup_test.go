package applier

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"mailfountain.dev/mailfountain/schema"
)

func TestExportImportRoundTrip(t *testing.T) {
	ctx := context.Background()
	a := openTest(t, t.TempDir())
	apply(t, a, docV1, "v1")
	apply(t, a, docV2, "v2")
	apply(t, a, docV3, "v3")

	var buf bytes.Buffer
	if err := a.Export(ctx, &buf); err != nil {
		t.Fatal(err)
	}
	names := archiveNames(t, buf.Bytes())
	if len(names) == 0 || names[0] != manifestName {
		t.Fatalf("archive entries %q: manifest not first", names)
	}

	b := openTest(t, t.TempDir())
	if err := b.Import(ctx, bytes.NewReader(buf.Bytes())); err != nil {
		t.Fatal(err)
	}
	ha, err := a.History(ctx)
	if err != nil {
		t.Fatal(err)
	}
	hb, err := b.History(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ha) != 3 || len(hb) != len(ha) {
		t.Fatalf("history: %d versions exported, %d imported", len(ha), len(hb))
	}
	for i := range ha {
		va, vb := ha[i], hb[i]
		if va.N != vb.N || va.Message != vb.Message || va.Origin != vb.Origin || va.StateHash != vb.StateHash || !va.Created.Equal(vb.Created) {
			t.Errorf("version %d: exported %+v, imported %+v", va.N, va, vb)
		}
		sa, _ := a.Show(ctx, va.N)
		sb, err := b.Show(ctx, va.N)
		if err != nil {
			t.Fatal(err)
		}
		if len(sb.Sources) != 1 || sb.Sources[0].Name != sa.Sources[0].Name || !bytes.Equal(sb.Sources[0].Data, sa.Sources[0].Data) || !bytes.Equal(sb.State, sa.State) {
			t.Errorf("version %d: documents or state differ after import", va.N)
		}
	}
	// The imported history is usable: diff, and resync converges the
	// fresh box's live state to the latest version.
	if changes, err := b.Diff(ctx, 1, 3); err != nil || len(changes) == 0 {
		t.Fatalf("diff on the imported history: %v %+v", err, changes)
	}
	if res, err := b.Resync(ctx); err != nil || !res.Changed {
		t.Fatalf("resync after import: %+v %v", res, err)
	}
	if p, err := b.Plan(ctx, sources(docV3)); err != nil || !p.Engine.Empty() || p.NewVersion || p.BaseVersion != 3 {
		t.Fatalf("plan of the latest document after import and resync: %v %+v", err, p)
	}
}

func TestImportRefusesBadArchives(t *testing.T) {
	ctx := context.Background()
	a := openTest(t, t.TempDir())
	apply(t, a, docV1, "v1")
	apply(t, a, docV2, "v2")
	var good bytes.Buffer
	if err := a.Export(ctx, &good); err != nil {
		t.Fatal(err)
	}
	entries := archiveEntries(t, good.Bytes())

	invalidV2 := rebuild(t, entries, func(name string, data []byte) []byte {
		if name == "versions/000002/sources/000.yaml" {
			return []byte(docInvalid)
		}
		return data
	})
	noManifest := rebuild(t, entries, func(name string, data []byte) []byte {
		if name == manifestName {
			return nil
		}
		return data
	})
	missingSource := rebuild(t, entries, func(name string, data []byte) []byte {
		if name == "versions/000001/sources/000.yaml" {
			return nil
		}
		return data
	})
	otherFormat := rebuild(t, entries, func(name string, data []byte) []byte {
		if name == manifestName {
			return bytes.Replace(data, []byte(backupFormat), []byte("tarball/9"), 1)
		}
		return data
	})

	tests := []struct {
		name    string
		archive []byte
		want    string
	}{
		{"invalid document in version 2", invalidV2, "version 2: /etc/mailfountain/state.yaml:4"},
		{"no manifest", noManifest, "no manifest.json"},
		{"missing document", missingSource, "version 1: missing versions/000001/sources/000.yaml"},
		{"other format", otherFormat, `format "tarball/9"`},
		{"truncated", good.Bytes()[:good.Len()/2], "read backup"},
		{"not gzip", []byte("hello"), "read backup"},
	}
	// Import into a data directory that has a history of its own: a
	// refused import leaves it as it was.
	b := openTest(t, t.TempDir())
	apply(t, b, docV3, "b's own")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := b.Import(ctx, bytes.NewReader(tt.archive))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("import: %v, want an error containing %q", err, tt.want)
			}
			hist, err := b.History(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(hist) != 1 || hist[0].Message != "b's own" {
				t.Fatalf("history after a refused import: %+v", hist)
			}
		})
	}
	err := b.Import(ctx, bytes.NewReader(invalidV2))
	var errs schema.Errors
	if !errors.As(err, &errs) {
		t.Fatalf("import of an invalid document: %v, want schema.Errors inside", err)
	}
}

type entry struct {
	name string
	data []byte
}

func archiveEntries(t *testing.T, archive []byte) []entry {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(archive))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var out []entry
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, entry{h.Name, data})
	}
}

func archiveNames(t *testing.T, archive []byte) []string {
	var names []string
	for _, e := range archiveEntries(t, archive) {
		names = append(names, e.name)
	}
	return names
}

// rebuild writes entries again through edit; a nil result drops the entry.
func rebuild(t *testing.T, entries []entry, edit func(name string, data []byte) []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, e := range entries {
		data := edit(e.name, e.data)
		if data == nil {
			continue
		}
		if err := tw.WriteHeader(&tar.Header{Name: e.name, Mode: 0o600, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write(data)
	}
	tw.Close()
	zw.Close()
	return buf.Bytes()
}
