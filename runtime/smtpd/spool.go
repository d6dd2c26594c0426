package smtpd

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
)

// errSpool marks a failure to keep the message (temporary file), as
// opposed to a failure to read it from the client.
var errSpool = errors.New("spool message")

// spoolFile writes to the temporary file, marking its errors errSpool.
type spoolFile struct{ f *os.File }

func (w spoolFile) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	if err != nil {
		err = fmt.Errorf("%w: %w", errSpool, err)
	}
	return n, err
}

// initialBuffer is the size of a new message buffer: most messages fit.
const initialBuffer = 32 << 10

// spoolPool receives messages: up to limit bytes in a pooled memory
// buffer, the rest in a temporary file under dir.
type spoolPool struct {
	limit int
	dir   string
	bufs  sync.Pool // *[]byte, empty
}

// message is a message received, as the client sent it; its reader
// gives it with CRLF line ends.
type message struct {
	pool     *spoolPool
	buf      *[]byte  // the first bytes, up to the pool's limit
	file     *os.File // the rest, if any; unlinked
	name     string   // the file's name if it could not be unlinked
	fileSize int64
	size     int64
	eol      eolScan // its line ends, as received
}

func (p *spoolPool) get() *[]byte {
	if b, ok := p.bufs.Get().(*[]byte); ok {
		return b
	}
	b := make([]byte, 0, min(initialBuffer, p.limit))
	return &b
}

// read reads r to its end. Memory is read into directly: the message is
// copied once, from go-smtp's reader to the buffer. sum, if not nil (a
// hash.Hash, whose Write never fails), is given every byte as it arrives,
// so that the message is not read a second time to digest it; so is the
// scan of its line ends.
func (p *spoolPool) read(r io.Reader, sum io.Writer) (*message, error) {
	if sum == nil {
		sum = io.Discard
	}
	m := &message{pool: p, buf: p.get()}
	b := (*m.buf)[:0]
	for {
		if len(b) == cap(b) {
			if len(b) >= p.limit {
				break
			}
			nb := make([]byte, len(b), min(2*cap(b), p.limit))
			copy(nb, b)
			b = nb
		}
		n, err := r.Read(b[len(b):cap(b)])
		sum.Write(b[len(b) : len(b)+n])
		m.eol.Write(b[len(b) : len(b)+n])
		b = b[:len(b)+n]
		if err == io.EOF {
			*m.buf = b
			m.size = int64(len(b))
			m.eol.end()
			return m, nil
		}
		if err != nil {
			*m.buf = b
			m.release()
			return nil, err
		}
	}
	*m.buf = b
	f, err := os.CreateTemp(p.dir, "smtpd-*.eml")
	if err != nil {
		m.release()
		return nil, fmt.Errorf("%w: %w", errSpool, err)
	}
	m.file = f
	// Unlinked at once, the file cannot outlive the process.
	if os.Remove(f.Name()) != nil {
		m.name = f.Name()
	}
	n, err := io.Copy(io.MultiWriter(spoolFile{f}, sum, &m.eol), r)
	m.fileSize = n
	m.size = int64(len(b)) + n
	if err != nil {
		m.release()
		return nil, err
	}
	m.eol.end()
	return m, nil
}

// header is the message's header block (up to its blank line), or as much
// of it as the memory buffer holds; complete says whether it is whole.
func (m *message) header() (hdr []byte, complete bool) {
	b := *m.buf
	end, found := headerEnd(b)
	return b[:end], found || m.file == nil
}

// reader reads the message, after prefix, without the byte ranges drop
// (sorted, within the memory buffer), bare LFs made CRLF.
func (m *message) reader(prefix []byte, drop [][2]int) *msgReader {
	b := *m.buf
	r := &msgReader{parts: make([][]byte, 0, len(drop)+2)}
	if m.eol.bareLF {
		r.crlf = &crlfReader{}
	}
	r.parts = append(r.parts, prefix)
	pos := 0
	for _, d := range drop {
		r.parts = append(r.parts, b[pos:d[0]])
		pos = d[1]
	}
	r.parts = append(r.parts, b[pos:])
	if m.file != nil {
		r.file = io.NewSectionReader(m.file, 0, m.fileSize)
	}
	return r
}

// msgReader reads the parts of a message in order. Its WriteTo hands
// each part to the writer as it is: no copy, and no 32 KiB buffer per
// message as io.MultiReader's WriteTo makes (os.File.ReadFrom gets there).
// A message with bare LFs goes through crlf instead (rare: that costs a
// copy).
type msgReader struct {
	parts [][]byte
	file  *io.SectionReader
	crlf  *crlfReader
}

// crlfReader is the state of a msgReader that rewrites bare LFs.
type crlfReader struct {
	c   crlf
	raw []byte // read from the parts
	buf []byte // raw, rewritten
	out []byte // what of buf is still to return
}

func (r *msgReader) Read(p []byte) (int, error) {
	cr := r.crlf
	if cr == nil {
		return r.read(p)
	}
	if len(cr.out) == 0 {
		if cr.raw == nil {
			cr.raw = make([]byte, crlfChunk)
		}
		n, err := r.read(cr.raw)
		if n == 0 {
			return 0, err
		}
		cr.buf = cr.c.append(cr.buf[:0], cr.raw[:n])
		cr.out = cr.buf
	}
	n := copy(p, cr.out)
	cr.out = cr.out[n:]
	return n, nil
}

// read reads the parts as they are.
func (r *msgReader) read(p []byte) (int, error) {
	for len(r.parts) > 0 {
		if len(r.parts[0]) == 0 {
			r.parts = r.parts[1:]
			continue
		}
		n := copy(p, r.parts[0])
		r.parts[0] = r.parts[0][n:]
		return n, nil
	}
	if r.file != nil {
		return r.file.Read(p)
	}
	return 0, io.EOF
}

func (r *msgReader) WriteTo(w io.Writer) (int64, error) {
	cr := r.crlf
	if cr == nil {
		return r.writeTo(w)
	}
	var n int
	if len(cr.out) > 0 {
		// What Read rewrote and did not return yet.
		var err error
		n, err = w.Write(cr.out)
		cr.out = cr.out[n:]
		if err != nil {
			return int64(n), err
		}
	}
	cw := &crlfWriter{w: w, c: cr.c}
	_, err := r.writeTo(cw)
	return int64(n) + cw.written, err
}

// writeTo writes the parts as they are.
func (r *msgReader) writeTo(w io.Writer) (int64, error) {
	var total int64
	for len(r.parts) > 0 {
		if len(r.parts[0]) > 0 {
			n, err := w.Write(r.parts[0])
			total += int64(n)
			if err != nil {
				r.parts[0] = r.parts[0][n:]
				return total, err
			}
		}
		r.parts = r.parts[1:]
	}
	if r.file != nil {
		n, err := io.Copy(w, r.file)
		total += n
		return total, err
	}
	return total, nil
}

// release gives back the buffer and removes the file.
func (m *message) release() {
	if m.file != nil {
		m.file.Close()
		if m.name != "" {
			os.Remove(m.name)
		}
		m.file = nil
	}
	if m.buf != nil {
		*m.buf = (*m.buf)[:0]
		m.pool.bufs.Put(m.buf)
		m.buf = nil
	}
}
