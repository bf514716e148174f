package caddymodule

import (
	"io"
	"unicode/utf8"
)

// termSafe writes text with the control characters a terminal would act on
// escaped: C0 controls other than tab and newline, DEL and the C1 controls
// (U+0080–U+009F) become `\u00XX`, and bytes that are not UTF-8 `\xNN`. The
// `\u00XX` form keeps JSON valid where it stands inside a JSON string (the
// only place a JSON document can hold such a character).
type termSafe struct {
	w    io.Writer
	tail []byte // an incomplete UTF-8 sequence held for the next Write
}

func (t *termSafe) Write(p []byte) (int, error) {
	in := append(t.tail, p...)
	t.tail = nil
	out := make([]byte, 0, len(in))
	for i := 0; i < len(in); {
		r, size := utf8.DecodeRune(in[i:])
		if r == utf8.RuneError && size <= 1 {
			if !utf8.FullRune(in[i:]) { // cut by the caller's buffer: wait for the rest
				t.tail = append(t.tail, in[i:]...)
				break
			}
			out = append(out, '\\', 'x', hexDigit(in[i]>>4), hexDigit(in[i]&15))
			i++
			continue
		}
		if (r < 0x20 && r != '\n' && r != '\t') || r == 0x7f || (r >= 0x80 && r <= 0x9f) {
			out = append(out, '\\', 'u', '0', '0', hexDigit(byte(r>>4)), hexDigit(byte(r&15)))
		} else {
			out = append(out, in[i:i+size]...)
		}
		i += size
	}
	if _, err := t.w.Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}

func hexDigit(b byte) byte { return "0123456789abcdef"[b&15] }
