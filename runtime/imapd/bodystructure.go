package imapd

import (
	"bufio"
	"bytes"
	"io"
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	gomessage "github.com/emersion/go-message"
	"github.com/emersion/go-message/textproto"
)

// Limits on the MIME structure walked for BODYSTRUCTURE and SEARCH: a
// message is outside input, and imapserver's own ExtractBodyStructure
// recurses without bound and copies each nested body again, so a crafted
// message nested a million times deep would take the server down.
const (
	maxMIMEDepth = 32
	maxMIMEParts = 10000
)

// bodyStructure is imapserver.ExtractBodyStructure with those limits, in
// one pass over the message: deeper parts are described as opaque
// application/octet-stream, parts past the count are left out, and a
// multipart without parts gets an empty text part (imapserver panics on a
// multipart without children).
func bodyStructure(raw []byte) imap.BodyStructure {
	br := bufio.NewReader(bytes.NewReader(raw))
	h, _ := textproto.ReadHeader(br)
	parts := 0
	return extractStructure(h, br, 0, &parts)
}

func extractStructure(rawHeader textproto.Header, r io.Reader, depth int, parts *int) imap.BodyStructure {
	*parts++
	header := gomessage.Header{Header: rawHeader}
	mediaType, typeParams, _ := header.ContentType()
	primary, sub, _ := strings.Cut(mediaType, "/")
	deep := depth >= maxMIMEDepth

	if primary == "multipart" && !deep {
		bs := &imap.BodyStructureMultiPart{Subtype: sub}
		mr := textproto.NewMultipartReader(r, typeParams["boundary"])
		for *parts < maxMIMEParts {
			part, err := mr.NextPart()
			if err != nil || part == nil {
				break
			}
			bs.Children = append(bs.Children, extractStructure(part.Header, part, depth+1, parts))
		}
		if len(bs.Children) == 0 {
			bs.Children = []imap.BodyStructure{&imap.BodyStructureSinglePart{
				Type: "text", Subtype: "plain", Text: &imap.BodyStructureText{},
				Extended: &imap.BodyStructureSinglePartExt{},
			}}
		}
		io.Copy(io.Discard, r)
		bs.Extended = &imap.BodyStructureMultiPartExt{
			Params:      typeParams,
			Disposition: disposition(header),
			Language:    language(header),
			Location:    header.Get("Content-Location"),
		}
		return bs
	}

	encapsulated := mediaType == "message/rfc822" || mediaType == "message/global"
	if deep && (primary == "multipart" || encapsulated) {
		primary, sub, typeParams, encapsulated = "application", "octet-stream", nil, false
	}
	bs := &imap.BodyStructureSinglePart{
		Type:        primary,
		Subtype:     sub,
		Params:      typeParams,
		ID:          header.Get("Content-Id"),
		Description: header.Get("Content-Description"),
		Encoding:    header.Get("Content-Transfer-Encoding"),
		Extended: &imap.BodyStructureSinglePartExt{
			Disposition: disposition(header),
			Language:    language(header),
			Location:    header.Get("Content-Location"),
		},
	}
	var count counter
	body := io.TeeReader(r, &count)
	if encapsulated {
		br := bufio.NewReader(body)
		childHeader, _ := textproto.ReadHeader(br)
		child := extractStructure(childHeader, br, depth+1, parts)
		io.Copy(io.Discard, br)
		bs.MessageRFC822 = &imap.BodyStructureMessageRFC822{
			Envelope:      imapserver.ExtractEnvelope(childHeader),
			BodyStructure: child,
			NumLines:      count.lines,
		}
	} else {
		io.Copy(io.Discard, body)
	}
	bs.Size = uint32(count.n)
	if primary == "text" {
		bs.Text = &imap.BodyStructureText{NumLines: count.lines}
	}
	return bs
}

// counter counts the bytes and lines written to it.
type counter struct {
	n, lines int64
}

func (c *counter) Write(b []byte) (int, error) {
	c.n += int64(len(b))
	c.lines += int64(bytes.Count(b, []byte("\n")))
	return len(b), nil
}

func disposition(h gomessage.Header) *imap.BodyStructureDisposition {
	disp, params, _ := h.ContentDisposition()
	if disp == "" {
		return nil
	}
	return &imap.BodyStructureDisposition{Value: disp, Params: params}
}

func language(h gomessage.Header) []string {
	v := h.Get("Content-Language")
	if v == "" {
		return nil
	}
	l := strings.Split(v, ",")
	for i := range l {
		l[i] = strings.TrimSpace(l[i])
	}
	return l
}

// bodySection is imapserver.ExtractBodySection, but BODY[] is the message
// exactly as stored (RFC822.SIZE bytes), and part paths deeper than the
// walk limit give nothing.
func bodySection(raw []byte, bs *imap.FetchItemBodySection) []byte {
	if len(bs.Part) == 0 && bs.Specifier == imap.PartSpecifierNone {
		return partial(raw, bs.Partial)
	}
	if len(bs.Part) > maxMIMEDepth {
		return nil
	}
	return imapserver.ExtractBodySection(bytes.NewReader(raw), bs)
}

func binarySection(raw []byte, bs *imap.FetchItemBinarySection) []byte {
	if len(bs.Part) > maxMIMEDepth {
		return nil
	}
	return imapserver.ExtractBinarySection(bytes.NewReader(raw), bs)
}

func partial(b []byte, p *imap.SectionPartial) []byte {
	if p == nil {
		return b
	}
	if p.Offset >= int64(len(b)) {
		return nil
	}
	end := min(p.Offset+p.Size, int64(len(b)))
	return b[p.Offset:end]
}
