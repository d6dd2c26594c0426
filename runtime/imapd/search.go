package imapd

import (
	"bufio"
	"bytes"
	"io"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	gomessage "github.com/emersion/go-message"
	_ "github.com/emersion/go-message/charset" // search and envelopes in every charset mail uses
	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"
)

func (sel *selection) search(kind imapserver.NumKind, criteria *imap.SearchCriteria, options *imap.SearchOptions) (*imap.SearchData, error) {
	sel.staticCriteria(criteria)
	var (
		data   imap.SearchData
		seqSet imap.SeqSet
		uidSet imap.UIDSet
	)
	for i := range sel.msgs {
		m := &sel.msgs[i]
		seq := uint32(i + 1)
		c := &content{sel: sel, m: m}
		ok, err := c.match(seq, criteria)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		uidSet.AddNum(m.uid)
		num := seq
		if kind == imapserver.NumKindSeq {
			seqSet.AddNum(seq)
		} else {
			num = uint32(m.uid)
		}
		if data.Min == 0 || num < data.Min {
			data.Min = num
		}
		if num > data.Max {
			data.Max = num
		}
		data.Count++
	}
	if kind == imapserver.NumKindSeq {
		data.All = seqSet
	} else {
		data.All = uidSet
	}
	if options.ReturnSave {
		sel.searchRes = uidSet
	}
	return &data, nil
}

// staticCriteria resolves "*" and "$" in the criteria's number sets.
func (sel *selection) staticCriteria(c *imap.SearchCriteria) {
	for i := range c.SeqNum {
		c.SeqNum[i] = staticSeqSet(c.SeqNum[i], uint32(len(sel.msgs)))
	}
	for i := range c.UID {
		if imap.IsSearchRes(c.UID[i]) {
			c.UID[i] = staticUIDSet(sel.searchRes, sel.maxUID())
		} else {
			c.UID[i] = staticUIDSet(c.UID[i], sel.maxUID())
		}
	}
	for i := range c.Not {
		sel.staticCriteria(&c.Not[i])
	}
	for i := range c.Or {
		sel.staticCriteria(&c.Or[i][0])
		sel.staticCriteria(&c.Or[i][1])
	}
}

// content is a message being searched, read from disk only if a criterion
// needs it.
type content struct {
	sel    *selection
	m      *viewMsg
	loaded bool
	raw    []byte // nil if the message is gone
	header *mail.Header
}

func (c *content) load() error {
	if c.loaded {
		return nil
	}
	raw, err := c.sel.readMessage(c.m.uid, c.m.size)
	if err != nil {
		return err
	}
	c.raw, c.loaded = raw, true
	if raw != nil {
		h, _ := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(raw)))
		c.header = &mail.Header{Header: gomessage.Header{Header: h}}
	}
	return nil
}

func (c *content) match(seq uint32, cr *imap.SearchCriteria) (bool, error) {
	m := c.m
	for _, set := range cr.SeqNum {
		if !set.Contains(seq) {
			return false, nil
		}
	}
	for _, set := range cr.UID {
		if !set.Contains(m.uid) {
			return false, nil
		}
	}
	if !matchDate(m.date, cr.Since, cr.Before) {
		return false, nil
	}
	for _, f := range cr.Flag {
		if !hasFlagFold(m.flags, string(f)) {
			return false, nil
		}
	}
	for _, f := range cr.NotFlag {
		if hasFlagFold(m.flags, string(f)) {
			return false, nil
		}
	}
	if cr.Larger != 0 && m.size <= cr.Larger {
		return false, nil
	}
	if cr.Smaller != 0 && m.size >= cr.Smaller {
		return false, nil
	}
	if len(cr.Header) > 0 || !cr.SentSince.IsZero() || !cr.SentBefore.IsZero() || len(cr.Body) > 0 || len(cr.Text) > 0 {
		if err := c.load(); err != nil {
			return false, err
		}
		if c.raw == nil {
			return false, nil
		}
		for _, hf := range cr.Header {
			if !matchFields(c.header.FieldsByKey(hf.Key), hf.Value) {
				return false, nil
			}
		}
		if !cr.SentSince.IsZero() || !cr.SentBefore.IsZero() {
			t, err := c.header.Date()
			if err != nil || !matchDate(t, cr.SentSince, cr.SentBefore) {
				return false, nil
			}
		}
		for _, s := range cr.Body {
			if !matchText(c.raw, s, false) {
				return false, nil
			}
		}
		for _, s := range cr.Text {
			if !matchText(c.raw, s, true) {
				return false, nil
			}
		}
	}
	for i := range cr.Not {
		ok, err := c.match(seq, &cr.Not[i])
		if err != nil || ok {
			return false, err
		}
	}
	for i := range cr.Or {
		ok, err := c.match(seq, &cr.Or[i][0])
		if err != nil {
			return false, err
		}
		if !ok {
			if ok, err = c.match(seq, &cr.Or[i][1]); err != nil || !ok {
				return false, err
			}
		}
	}
	return true, nil
}

// matchDate compares dates only, whatever the time zone (RFC 3501 6.4.4).
func matchDate(t, since, before time.Time) bool {
	d := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	if !since.IsZero() && d.Before(since) {
		return false
	}
	if !before.IsZero() && !d.Before(before) {
		return false
	}
	return true
}

func matchFields(fields gomessage.HeaderFields, pattern string) bool {
	if pattern == "" {
		return fields.Len() > 0
	}
	pattern = strings.ToLower(pattern)
	for fields.Next() {
		v, err := fields.Text()
		if err != nil {
			v = fields.Value()
		}
		if strings.Contains(strings.ToLower(v), pattern) {
			return true
		}
	}
	return false
}

// matchText looks for s in the decoded text parts of the message, and in
// its header fields too for TEXT.
func matchText(raw []byte, s string, withHeader bool) bool {
	if s == "" {
		return true
	}
	// An unknown charset or encoding still gives an entity, read as is.
	e, _ := gomessage.Read(bytes.NewReader(raw))
	if e == nil {
		// Not even a header: look at the bytes as they are.
		return bytes.Contains(bytes.ToLower(raw), []byte(strings.ToLower(s)))
	}
	return matchEntity(e, strings.ToLower(s), withHeader, 0)
}

func matchEntity(e *gomessage.Entity, s string, withHeader bool, depth int) bool {
	if withHeader && matchFields(e.Header.Fields(), s) {
		return true
	}
	if mr := e.MultipartReader(); mr != nil {
		if depth >= maxMIMEDepth {
			return false
		}
		for range maxMIMEParts {
			part, err := mr.NextPart()
			if err != nil {
				return false
			}
			if matchEntity(part, s, withHeader, depth+1) {
				return true
			}
		}
		return false
	}
	t, _, _ := e.Header.ContentType()
	if t != "" && !strings.HasPrefix(t, "text/") && !strings.HasPrefix(t, "message/") {
		return false
	}
	b, _ := io.ReadAll(e.Body)
	return strings.Contains(strings.ToLower(string(b)), s)
}

// envelope is the ENVELOPE of a message.
func envelope(raw []byte) *imap.Envelope {
	h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(raw)))
	if err != nil {
		return nil
	}
	return imapserver.ExtractEnvelope(h)
}
