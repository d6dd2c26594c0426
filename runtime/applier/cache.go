package applier

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"sync"

	"mailfountain.dev/mailfountain/runtime/store"
	"mailfountain.dev/mailfountain/schema"
)

// documents is what an Applier remembers of the documents it loaded, so
// that an edit of a large document costs about what the edit costs: the
// schema's cache of parsed and validated domains; the last documents
// loaded, by the hash of their sources (Plan loads a document and Apply
// loads the same one again); and the state of the latest version, which
// Apply needs to roll back and would otherwise read and decode from the
// store on every apply.
type documents struct {
	schema *schema.Cache

	mu     sync.Mutex
	loaded [2]*loadedDocument // the most recent first
	good   *goodState
}

// loadedDocument is a loaded document, its state's canonical JSON and the
// hash of that.
type loadedDocument struct {
	key   [32]byte // of the sources: names, modes and contents
	state *schema.State
	json  []byte
	hash  string
}

// goodState is the state of version n, whose state hash is hash.
type goodState struct {
	n     int
	hash  string
	state *schema.State
}

func newDocuments() *documents {
	return &documents{schema: schema.NewCache()}
}

// load validates srcs, or returns what validating them gave last time. The
// state returned is shared: callers do not change it.
func (d *documents) load(srcs []schema.Source) (*loadedDocument, error) {
	key := sourcesKey(srcs)
	d.mu.Lock()
	for _, l := range d.loaded {
		if l != nil && l.key == key {
			d.mu.Unlock()
			return l, nil
		}
	}
	d.mu.Unlock()
	st, err := d.schema.Load(srcs)
	if err != nil {
		return nil, err
	}
	b, hash, err := canonical(st)
	if err != nil {
		return nil, err
	}
	l := &loadedDocument{key: key, state: st, json: b, hash: hash}
	d.mu.Lock()
	d.loaded[1], d.loaded[0] = d.loaded[0], l
	d.mu.Unlock()
	return l, nil
}

// sourcesKey identifies what Load reads of srcs.
func sourcesKey(srcs []schema.Source) [32]byte {
	h := sha256.New()
	var n [8]byte
	field := func(b []byte) {
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	for _, s := range srcs {
		field([]byte(s.Name))
		binary.BigEndian.PutUint64(n[:], uint64(s.Mode))
		h.Write(n[:])
		field(s.Data)
	}
	var k [32]byte
	h.Sum(k[:0])
	return k
}

// remember records st as the state of version n.
func (d *documents) remember(n int, hash string, st *schema.State) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.good = &goodState{n: n, hash: hash, state: st}
}

// latest returns the latest version and its state, or nils when there is
// none: the version's head (without its documents) and the state from
// memory when it is that of the version this applier last recorded or
// read, else the version and its state read from the store.
func (a *Applier) latest(ctx context.Context) (*store.Version, *schema.State, error) {
	head, err := a.store.LatestVersionHead(ctx)
	if err != nil || head == nil {
		return nil, nil, err
	}
	return a.stateOf(ctx, head)
}

// stateOf is latest for the version whose head is head.
func (a *Applier) stateOf(ctx context.Context, head *store.Version) (*store.Version, *schema.State, error) {
	a.docs.mu.Lock()
	good := a.docs.good
	a.docs.mu.Unlock()
	if good != nil && good.n == head.N && good.hash == head.StateHash {
		return head, good.state, nil
	}
	v, err := a.store.Version(ctx, head.N)
	if err != nil {
		return nil, nil, err
	}
	st, err := decodeState(v)
	if err != nil {
		return nil, nil, err
	}
	a.docs.remember(v.N, v.StateHash, st)
	return v, st, nil
}
