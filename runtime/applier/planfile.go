package applier

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"mailfountain.dev/mailfountain/reconcilers"
	"mailfountain.dev/mailfountain/schema"
)

// planFormat marks a plan file, so that another JSON file is refused.
const planFormat = "mailfountain-plan/1"

// maxPlanFile bounds what ReadPlanFile reads.
const maxPlanFile = 256 << 20

// planFile is a plan on disk. It holds the documents, not the state: they
// are loaded again when read, so a plan file cannot smuggle in a state
// that was never validated. The changes are kept to compare with a fresh
// plan, never replayed.
type planFile struct {
	Format      string           `json:"format"`
	Created     time.Time        `json:"created"`
	DataDir     string           `json:"data_dir"`
	Sources     []planFileSource `json:"sources"`
	BaseVersion int              `json:"base_version"`
	StateHash   string           `json:"state_hash"`
	NewVersion  bool             `json:"new_version"`
	Origin      string           `json:"origin,omitempty"`
	Steps       []planFileStep   `json:"steps"`
	// Unapplied is shown again when the plan is applied.
	Unapplied []reconcilers.UnappliedField `json:"unapplied,omitempty"`
}

type planFileSource struct {
	Name string `json:"name"`
	Data []byte `json:"data"`
	Mode uint32 `json:"mode"`
}

type planFileStep struct {
	Reconciler  string               `json:"reconciler"`
	Fingerprint string               `json:"fingerprint"`
	Changes     []reconcilers.Change `json:"changes"` // without Payload
}

// MarshalPlan encodes p as a plan file's content.
func (a *Applier) MarshalPlan(p *Plan) ([]byte, error) {
	if p == nil || p.Engine == nil {
		return nil, errors.New("encode plan: no plan")
	}
	pf := planFile{
		Format:      planFormat,
		Created:     time.Now().UTC(),
		DataDir:     a.dir,
		BaseVersion: p.BaseVersion,
		StateHash:   p.StateHash,
		NewVersion:  p.NewVersion,
		Origin:      p.Origin,
		Unapplied:   p.Unapplied,
	}
	for _, s := range p.Sources {
		pf.Sources = append(pf.Sources, planFileSource{Name: s.Name, Data: s.Data, Mode: uint32(s.Mode.Perm())})
	}
	for _, s := range p.Engine.Steps {
		pf.Steps = append(pf.Steps, planFileStep{Reconciler: s.Reconciler, Fingerprint: s.Fingerprint, Changes: s.Changes})
	}
	b, err := json.MarshalIndent(pf, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode plan: %w", err)
	}
	return append(b, '\n'), nil
}

// UnmarshalPlan decodes a plan file's content. It validates the documents
// again and checks that they still give the planned state; whether the
// live state moved is for Verify and Apply to say.
func (a *Applier) UnmarshalPlan(data []byte) (*Plan, error) {
	var pf planFile
	if err := json.Unmarshal(data, &pf); err != nil {
		return nil, fmt.Errorf("decode plan: %w", err)
	}
	if pf.Format != planFormat {
		return nil, fmt.Errorf("decode plan: format %q, want %q", pf.Format, planFormat)
	}
	if pf.DataDir != a.dir {
		return nil, fmt.Errorf("decode plan: made for data directory %s, this is %s", pf.DataDir, a.dir)
	}
	if len(pf.Sources) == 0 {
		return nil, errors.New("decode plan: no state document")
	}
	p := &Plan{
		Engine:      &reconcilers.Plan{},
		BaseVersion: pf.BaseVersion,
		StateHash:   pf.StateHash,
		NewVersion:  pf.NewVersion,
		Origin:      pf.Origin,
		Unapplied:   pf.Unapplied,
	}
	for _, s := range pf.Sources {
		p.Sources = append(p.Sources, schema.Source{Name: s.Name, Data: s.Data, Mode: fs.FileMode(s.Mode).Perm()})
	}
	for _, s := range pf.Steps {
		p.Engine.Steps = append(p.Engine.Steps, reconcilers.Step{Reconciler: s.Reconciler, Fingerprint: s.Fingerprint, Changes: s.Changes})
	}
	st, err := schema.Load(p.Sources)
	if err != nil {
		return nil, fmt.Errorf("decode plan: %w", err)
	}
	_, hash, err := canonical(st)
	if err != nil {
		return nil, fmt.Errorf("decode plan: %w", err)
	}
	if hash != pf.StateHash {
		return nil, fmt.Errorf("decode plan: its documents no longer give the planned state: %w", ErrStale)
	}
	p.State = st
	if p.Archive, err = a.archivePlan(st, p.Engine); err != nil {
		return nil, fmt.Errorf("decode plan: %w", err)
	}
	return p, nil
}

// WritePlanFile saves p to path, readable by its owner only (documents may
// hold inline secrets). The file is replaced atomically.
func (a *Applier) WritePlanFile(p *Plan, path string) error {
	b, err := a.MarshalPlan(p)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write plan %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // fails harmlessly once renamed
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("write plan %s: %w", path, err)
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("write plan %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write plan %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write plan %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write plan %s: %w", path, err)
	}
	return nil
}

// ReadPlanFile reads a plan that WritePlanFile saved.
func (a *Applier) ReadPlanFile(path string) (*Plan, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read plan: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxPlanFile+1))
	if err != nil {
		return nil, fmt.Errorf("read plan %s: %w", path, err)
	}
	if len(b) > maxPlanFile {
		return nil, fmt.Errorf("read plan %s: larger than %d MiB", path, maxPlanFile>>20)
	}
	p, err := a.UnmarshalPlan(b)
	if err != nil {
		return nil, fmt.Errorf("read plan %s: %w", path, err)
	}
	return p, nil
}
