package webhook

import (
	"bytes"
	"unicode"
	"unicode/utf8"
)

// Go's encoding/json matches an object key to a struct field exactly or,
// failing that, case-insensitively, and the last matching key of an object
// wins: for {"replyId":"a","ReplyId":"b"} an app reads "b". Keys that are
// equal under that folding are therefore refused where the gateway reads a
// value (see parser.dataKey and parser.memberNode).

// appendFolded appends key folded as encoding/json folds object keys:
// ASCII letters upper-cased, other runes mapped through
// unicode.ToUpper(unicode.ToLower(r)) (so "K", "k" and the Kelvin sign
// U+212A, or "s" and "ſ", fold alike).
func appendFolded(dst, key []byte) []byte {
	for i := 0; i < len(key); {
		c := key[i]
		if c < utf8.RuneSelf {
			if 'a' <= c && c <= 'z' {
				c -= 'a' - 'A'
			}
			dst = append(dst, c)
			i++
			continue
		}
		r, n := utf8.DecodeRune(key[i:])
		dst = utf8.AppendRune(dst, unicode.ToUpper(unicode.ToLower(r)))
		i += n
	}
	return dst
}

// foldEqual reports whether a and b are equal once folded (appendFolded).
// Keys that differ in an ASCII byte other than by case return at once;
// scratch is used for non-ASCII keys.
func foldEqual(a, b []byte, scratch *[]byte) bool {
	n := min(len(a), len(b))
	for i := 0; i < n; i++ {
		ca, cb := a[i], b[i]
		if ca|cb >= utf8.RuneSelf {
			buf := appendFolded((*scratch)[:0], a[i:])
			k := len(buf)
			buf = appendFolded(buf, b[i:])
			*scratch = buf
			return bytes.Equal(buf[:k], buf[k:])
		}
		if ca != cb && upperASCII(ca) != upperASCII(cb) {
			return false
		}
	}
	return len(a) == len(b)
}

func upperASCII(c byte) byte {
	if 'a' <= c && c <= 'z' {
		return c - ('a' - 'A')
	}
	return c
}

// foldSig is a cheap signature of key folded (appendFolded): its first and
// last runes, folded. Keys equal once folded have equal signatures (folding
// maps rune to rune), most other keys do not.
func foldSig(key []byte) uint64 {
	if len(key) == 0 {
		return 0
	}
	first, last := rune(key[0]), rune(key[len(key)-1])
	if first >= utf8.RuneSelf {
		first, _ = utf8.DecodeRune(key)
	}
	if last >= utf8.RuneSelf {
		last, _ = utf8.DecodeLastRune(key)
	}
	return uint64(foldRune(first))<<32 | uint64(foldRune(last))
}

// foldRune folds one rune as appendFolded does.
func foldRune(r rune) rune {
	if r < utf8.RuneSelf {
		return rune(upperASCII(byte(r)))
	}
	return unicode.ToUpper(unicode.ToLower(r))
}
