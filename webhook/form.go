package webhook

import (
	"strconv"
	"unicode/utf8"
)

// MaxFormFields is the most fields an application/x-www-form-urlencoded
// body may have (Slack's slash commands send about a dozen, GitHub one).
const MaxFormFields = 1000

// formPayload is the form field whose value is JSON for the providers that
// send JSON inside a form (GitHub's "payload=<json>", Slack's interactive
// "payload=<json>"): json: selectors read inside it.
const formPayload = "payload"

// form is a parsed application/x-www-form-urlencoded body: the decoded
// names and values of its fields, in one buffer.
type form struct {
	buf    []byte
	fields []formField
	names  map[string]struct{} // past smallObject fields, for duplicates
}

type formField struct {
	nameStart, nameEnd, valueStart, valueEnd int // in buf
}

// parseForm parses body strictly, as the WHATWG URL standard's
// application/x-www-form-urlencoded parser does, with what would make two
// parsers disagree refused. Fields are separated by '&' (empty ones are
// skipped), a field is name or name=value, '+' is a space and %XX a byte.
// It returns a *ParseError (subject "form body") for: a '%' not followed by
// two hex digits, a raw control character or ';' (some parsers split on
// it), a name or value that is not valid UTF-8 once decoded, an empty name,
// the same name twice, and more than MaxFormFields fields.
func parseForm(body []byte, f *form) error {
	f.buf, f.fields, f.names = f.buf[:0], f.fields[:0], nil
	for i := 0; i <= len(body); {
		end := i
		for end < len(body) && body[end] != '&' {
			end++
		}
		if end > i {
			if err := f.add(body, i, end); err != nil {
				return err
			}
		}
		i = end + 1
	}
	return nil
}

// add decodes the field body[start:end].
func (f *form) add(body []byte, start, end int) error {
	if len(f.fields) == MaxFormFields {
		return formError(start, "more than "+strconv.Itoa(MaxFormFields)+" fields")
	}
	eq := end
	for j := start; j < end; j++ {
		if body[j] == '=' {
			eq = j
			break
		}
	}
	var fld formField
	var err error
	fld.nameStart = len(f.buf)
	if f.buf, err = appendFormDecoded(f.buf, body, start, eq); err != nil {
		return err
	}
	fld.nameEnd = len(f.buf)
	fld.valueStart = fld.nameEnd
	if eq < end {
		if f.buf, err = appendFormDecoded(f.buf, body, eq+1, end); err != nil {
			return err
		}
	}
	fld.valueEnd = len(f.buf)
	name := f.buf[fld.nameStart:fld.nameEnd]
	switch {
	case len(name) == 0:
		return formError(start, "empty field name")
	case !utf8.Valid(name):
		return formError(start, "field name is not valid UTF-8")
	case !utf8.Valid(f.buf[fld.valueStart:fld.valueEnd]):
		return formError(start, "value of field "+quoteKey(name)+" is not valid UTF-8")
	}
	if f.names == nil {
		for _, other := range f.fields {
			if string(f.buf[other.nameStart:other.nameEnd]) == string(name) {
				return formError(start, "duplicate field "+quoteKey(name))
			}
		}
		if len(f.fields) == smallObject {
			f.names = make(map[string]struct{}, 2*smallObject)
			for _, other := range f.fields {
				f.names[string(f.buf[other.nameStart:other.nameEnd])] = struct{}{}
			}
		}
	}
	if f.names != nil {
		if _, dup := f.names[string(name)]; dup {
			return formError(start, "duplicate field "+quoteKey(name))
		}
		f.names[string(name)] = struct{}{}
	}
	f.fields = append(f.fields, fld)
	return nil
}

// appendFormDecoded appends body[i:end] with '+' and %XX decoded.
func appendFormDecoded(dst, body []byte, i, end int) ([]byte, error) {
	for ; i < end; i++ {
		switch c := body[i]; {
		case c == '+':
			dst = append(dst, ' ')
		case c == '%':
			if i+2 >= end {
				return dst, formError(i, "'%' not followed by two hex digits")
			}
			hi, lo := unhex(body[i+1]), unhex(body[i+2])
			if hi < 0 || lo < 0 {
				return dst, formError(i, "'%' not followed by two hex digits")
			}
			dst = append(dst, byte(hi<<4|lo))
			i += 2
		case c < 0x20 || c == 0x7f:
			return dst, formError(i, "control character "+hexByte(c))
		case c == ';':
			return dst, formError(i, "';' (escape it as %3B)")
		default:
			dst = append(dst, c)
		}
	}
	return dst, nil
}

func formError(offset int, msg string) error {
	return &ParseError{Offset: offset, Msg: msg, kind: errSyntax, subject: subjectForm}
}

// get returns the decoded value of the field name (a linear search: the
// sources read one or two fields).
func (f *form) get(name string) ([]byte, bool) {
	for _, fld := range f.fields {
		if string(f.buf[fld.nameStart:fld.nameEnd]) == name {
			return f.buf[fld.valueStart:fld.valueEnd], true
		}
	}
	return nil, false
}
