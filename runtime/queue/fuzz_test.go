package queue

import (
	"bytes"
	"testing"
	"time"
)

// FuzzParseFile: the parser of message files takes any bytes (a file
// damaged on disk) without panicking or allocating without bound, and
// what it accepts says the same when parsed again.
func FuzzParseFile(f *testing.F) {
	env := &Envelope{From: "a@box.example", Rcpts: []string{"x@far.example"}, Forward: []string{"y@far.example"}, Key: "k"}
	head := encodeHead(time.Unix(1_800_000_000, 0), env, 0)
	data := []byte(testMsg)
	sealHead(head, msg8Bit, int64(len(data)), 0)
	file := append(append(append([]byte{}, head...), data...), encodeRecord(2, []rcpt{{attempts: 3, lastErr: "451 later"}, {}}, []int{0})...)
	f.Add(file)
	f.Add(file[:len(file)-3])
	f.Add(head)
	f.Add([]byte("MFQ1"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := parseFile(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			return
		}
		if m.end > m.size || m.dataOff+m.dataLen > m.size || len(m.rcpts) == 0 {
			t.Fatalf("bounds: end %d data %d+%d size %d rcpts %d", m.end, m.dataOff, m.dataLen, m.size, len(m.rcpts))
		}
		m2, err := parseFile(bytes.NewReader(b[:m.end]), m.end)
		if err != nil || m2.step != m.step || len(m2.rcpts) != len(m.rcpts) {
			t.Fatalf("reparsed up to its end: %v", err)
		}
	})
}

func TestParseFile(t *testing.T) {
	env := &Envelope{From: "a@box.example", Rcpts: []string{"x@far.example"}, Forward: []string{"y@far.example"}, Key: "k"}
	created := time.Unix(1_800_000_000, 5)
	head := encodeHead(created, env, 0)
	data := []byte(testMsg)
	sealHead(head, msg8Bit, int64(len(data)), 4)
	file := append(append(append([]byte{}, head...), data...), "SIG\n"...)
	rec := encodeRecord(2, []rcpt{{attempts: 3, lastErr: "451 later"}, {}}, []int{0})
	tests := []struct {
		name  string
		b     []byte
		ok    bool
		step  int
		lastE string
	}{
		{"whole", append(append([]byte{}, file...), rec...), true, 2, "451 later"},
		{"no record", file, true, 0, ""},
		{"torn record", append(append([]byte{}, file...), rec[:len(rec)-1]...), true, 0, ""},
		{"bad magic", append([]byte("XFQ1"), file[4:]...), false, 0, ""},
		{"truncated data", file[:len(file)-10], false, 0, ""},
		{"envelope changed", append(append(append([]byte{}, file[:40]...), 'x'), file[41:]...), false, 0, ""},
	}
	for _, tt := range tests {
		m, err := parseFile(bytes.NewReader(tt.b), int64(len(tt.b)))
		if (err == nil) != tt.ok {
			t.Errorf("%s: err %v", tt.name, err)
			continue
		}
		if err != nil {
			continue
		}
		if m.from != env.From || m.key != "k" || !m.created.Equal(created) || m.msgFlags != msg8Bit ||
			len(m.rcpts) != 2 || m.rcpts[0].addr != "x@far.example" || m.rcpts[0].forward || !m.rcpts[1].forward ||
			m.dataLen != int64(len(data)) || m.sigLen != 4 {
			t.Errorf("%s: parsed %+v", tt.name, m)
		}
		if m.step != tt.step || m.rcpts[0].lastErr != tt.lastE {
			t.Errorf("%s: step %d last error %q", tt.name, m.step, m.rcpts[0].lastErr)
		}
	}
}
