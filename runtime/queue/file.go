package queue

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"time"
)

// The message file (see the package documentation for why it is laid
// out so). Offsets are from the start of the file; integers big-endian.
//
//	0   "MFQ1"
//	4   flags (one byte: flagHeld, flagDeleted), then 3 bytes reserved
//	8   envelope length (u32)
//	12  number of recipients (u32)
//	16  data length (u64): the message as received
//	24  signature length (u32): the DKIM fields sent before the data
//	28  CRC-32 (IEEE) of bytes 8..28 and of the envelope
//	32  envelope: created (i64 Unix nanoseconds), the key, From, a byte
//	    of message flags (msg8Bit), then per recipient a kind byte
//	    ('R' a recipient, 'F' a forward) and its address; strings are
//	    a uvarint length and the bytes
//	    then one status byte per recipient (rcpt* bits over 0x40)
//	    then the data, then the signature fields
//	    then state records, appended at each deferral: u32 length,
//	    u32 CRC-32 of the payload, payload = uvarint backoff step,
//	    uvarint count, count × (uvarint recipient index, uvarint
//	    attempts, string last error). A torn last record is ignored.
const (
	magic       = "MFQ1"
	preambleLen = 32
	flagsOff    = 4

	flagHeld    = 0x01
	flagDeleted = 0x02

	msg8Bit = 0x01

	rcptBase      = 0x40
	rcptDelivered = 0x01
	rcptBounced   = 0x02
	rcptWarned    = 0x04 // the delay warning was sent
	rcptViaRelay  = 0x08

	// Bounds that keep a damaged file from asking for huge allocations.
	maxEnvelope = 64 << 20
	maxRecords  = 64 << 20
	maxRcpts    = 1 << 20
)

var errCorrupt = errors.New("queue file damaged")

// rcpt is one recipient as the file records it.
type rcpt struct {
	forward  bool
	addr     string
	status   byte
	attempts int
	lastErr  string
}

func (r *rcpt) done() bool { return r.status&(rcptDelivered|rcptBounced) != 0 }

// msgFile is a message file without its data: what the scheduler and
// the admin commands need.
type msgFile struct {
	flags    byte
	created  time.Time
	key      string
	from     string
	msgFlags byte
	rcpts    []rcpt
	step     int // backoff step: deferrals since the last reset

	statusOff int64 // offset of the first status byte
	dataOff   int64
	dataLen   int64
	sigLen    int64
	size      int64 // the file's length
	end       int64 // the end of the last whole record: where the next goes
}

// sentSize is the length of the message as sent: signature and data.
func (m *msgFile) sentSize() int64 { return m.sigLen + m.dataLen }

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// encodeHead returns the preamble, envelope and status bytes of a new
// message; the data and signature lengths are patched in by sealHead.
func encodeHead(created time.Time, env *Envelope, msgFlags byte) []byte {
	b := make([]byte, preambleLen, 256)
	copy(b, magic)
	b = binary.BigEndian.AppendUint64(b, uint64(created.UnixNano()))
	b = appendString(b, env.Key)
	b = appendString(b, env.From)
	b = append(b, msgFlags)
	for _, a := range env.Rcpts {
		b = append(b, 'R')
		b = appendString(b, a)
	}
	for _, a := range env.Forward {
		b = append(b, 'F')
		b = appendString(b, a)
	}
	n := len(env.Rcpts) + len(env.Forward)
	binary.BigEndian.PutUint32(b[8:], uint32(len(b)-preambleLen))
	binary.BigEndian.PutUint32(b[12:], uint32(n))
	for range n {
		b = append(b, rcptBase)
	}
	return b
}

// sealHead writes the lengths and the checksum into head's preamble.
func sealHead(head []byte, msgFlags byte, dataLen, sigLen int64) {
	envLen := binary.BigEndian.Uint32(head[8:])
	binary.BigEndian.PutUint64(head[16:], uint64(dataLen))
	binary.BigEndian.PutUint32(head[24:], uint32(sigLen))
	setMsgFlags(head, msgFlags)
	crc := crc32.NewIEEE()
	crc.Write(head[8:28])
	crc.Write(head[preambleLen : preambleLen+int(envLen)])
	binary.BigEndian.PutUint32(head[28:], crc.Sum32())
}

// uvarintLen is the length of the string (uvarint length and bytes) at
// the start of b.
func uvarintLen(b []byte) int {
	n, k := binary.Uvarint(b)
	return k + int(n)
}

// setMsgFlags writes the message flags byte of an encoded head: it
// follows created, the key and From.
func setMsgFlags(head []byte, msgFlags byte) {
	i := preambleLen + 8
	i += uvarintLen(head[i:])
	i += uvarintLen(head[i:])
	head[i] = msgFlags
}

// reader reads the strings and numbers of an envelope or a record.
type reader struct {
	b   []byte
	err error
}

func (r *reader) uvarint(max uint64) uint64 {
	if r.err != nil {
		return 0
	}
	v, k := binary.Uvarint(r.b)
	if k <= 0 || v > max {
		r.err = errCorrupt
		return 0
	}
	r.b = r.b[k:]
	return v
}

func (r *reader) bytes(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > len(r.b) {
		r.err = errCorrupt
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) string() string {
	n := r.uvarint(uint64(len(r.b)))
	return string(r.bytes(int(n)))
}

// parseFile reads a message file but its data and signature. It accepts
// only what encodeHead and appendRecord write; a torn last record is
// ignored.
func parseFile(f io.ReaderAt, size int64) (*msgFile, error) {
	if size < preambleLen {
		return nil, errCorrupt
	}
	pre := make([]byte, preambleLen)
	if _, err := f.ReadAt(pre, 0); err != nil {
		return nil, fmt.Errorf("read queue file: %w", err)
	}
	if string(pre[:4]) != magic {
		return nil, errCorrupt
	}
	envLen := int64(binary.BigEndian.Uint32(pre[8:]))
	n := int64(binary.BigEndian.Uint32(pre[12:]))
	m := &msgFile{
		flags:   pre[flagsOff],
		dataLen: int64(binary.BigEndian.Uint64(pre[16:])),
		sigLen:  int64(binary.BigEndian.Uint32(pre[24:])),
		size:    size,
	}
	if envLen > maxEnvelope || n > maxRcpts || n == 0 || m.dataLen < 0 {
		return nil, errCorrupt
	}
	m.statusOff = preambleLen + envLen
	m.dataOff = m.statusOff + n
	recOff := m.dataOff + m.dataLen + m.sigLen
	if m.dataLen > size || recOff > size || recOff < m.dataOff {
		return nil, errCorrupt
	}
	head := make([]byte, envLen+n)
	if _, err := f.ReadAt(head, preambleLen); err != nil {
		return nil, fmt.Errorf("read queue file: %w", err)
	}
	crc := crc32.NewIEEE()
	crc.Write(pre[8:28])
	crc.Write(head[:envLen])
	if crc.Sum32() != binary.BigEndian.Uint32(pre[28:]) {
		return nil, errCorrupt
	}
	r := &reader{b: head[:envLen]}
	created := int64(binary.BigEndian.Uint64(r.bytes(8)))
	m.created = time.Unix(0, created)
	m.key = r.string()
	m.from = r.string()
	if f := r.bytes(1); f != nil {
		m.msgFlags = f[0]
	}
	m.rcpts = make([]rcpt, 0, n)
	for i := range n {
		kind := r.bytes(1)
		addr := r.string()
		if r.err != nil {
			break
		}
		if kind[0] != 'R' && kind[0] != 'F' {
			return nil, errCorrupt
		}
		st := head[envLen+i]
		if st&0xf0 != rcptBase {
			return nil, errCorrupt
		}
		m.rcpts = append(m.rcpts, rcpt{forward: kind[0] == 'F', addr: addr, status: st})
	}
	if r.err != nil || len(r.b) != 0 {
		return nil, errCorrupt
	}
	m.end = recOff
	if recLen := size - recOff; recLen > 0 {
		if recLen > maxRecords {
			return nil, errCorrupt
		}
		recs := make([]byte, recLen)
		if _, err := f.ReadAt(recs, recOff); err != nil {
			return nil, fmt.Errorf("read queue file: %w", err)
		}
		m.applyRecords(recs)
	}
	return m, nil
}

// applyRecords applies the state records in order, up to the first torn
// or damaged one (a crash in the middle of an append).
func (m *msgFile) applyRecords(b []byte) {
	for len(b) >= 8 {
		n := binary.BigEndian.Uint32(b)
		if uint64(n) > uint64(len(b)-8) {
			return
		}
		payload := b[8 : 8+n]
		if crc32.ChecksumIEEE(payload) != binary.BigEndian.Uint32(b[4:]) {
			return
		}
		r := &reader{b: payload}
		step := r.uvarint(64)
		count := r.uvarint(uint64(len(m.rcpts)))
		type upd struct {
			i, attempts int
			lastErr     string
		}
		var us []upd
		for range count {
			i := r.uvarint(uint64(len(m.rcpts) - 1))
			att := r.uvarint(1 << 31)
			le := r.string()
			us = append(us, upd{int(i), int(att), le})
		}
		if r.err != nil || len(r.b) != 0 {
			return
		}
		b = b[8+n:]
		m.end += 8 + int64(n)
		m.step = int(step)
		for _, u := range us {
			m.rcpts[u.i].attempts, m.rcpts[u.i].lastErr = u.attempts, u.lastErr
		}
	}
}

// encodeRecord is a state record: the backoff step and the attempts and
// last errors of the recipients in idx.
func encodeRecord(step int, rcpts []rcpt, idx []int) []byte {
	p := make([]byte, 8, 64)
	p = binary.AppendUvarint(p, uint64(step))
	p = binary.AppendUvarint(p, uint64(len(idx)))
	for _, i := range idx {
		p = binary.AppendUvarint(p, uint64(i))
		p = binary.AppendUvarint(p, uint64(rcpts[i].attempts))
		p = appendString(p, rcpts[i].lastErr)
	}
	binary.BigEndian.PutUint32(p, uint32(len(p)-8))
	binary.BigEndian.PutUint32(p[4:], crc32.ChecksumIEEE(p[8:]))
	return p
}
