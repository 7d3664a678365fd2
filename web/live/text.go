package live

import "unicode/utf8"

// ValidJSONText reports whether data, JSON text, names only Unicode characters: it is
// valid UTF-8 and every \u escape of a surrogate is one of a pair (high, then low).
// encoding/json decodes bad bytes and lone surrogate escapes alike to U+FFFD, so text
// that fails here would be stored or chatted altered. JSON syntax is the decoder's to
// judge: outside strings a backslash is an error anyway.
func ValidJSONText(data []byte) bool {
	if !utf8.Valid(data) {
		return false
	}
	for i := 0; i < len(data); i++ {
		if data[i] != '\\' {
			continue
		}
		i++ // the escaped character
		if i >= len(data) || data[i] != 'u' {
			continue
		}
		r, ok := hex4(data[i+1:])
		if !ok {
			continue // malformed: the decoder refuses it
		}
		i += 4
		switch {
		case 0xDC00 <= r && r <= 0xDFFF:
			return false // a low surrogate without its high one
		case 0xD800 <= r && r <= 0xDBFF:
			if i+6 >= len(data) || data[i+1] != '\\' || data[i+2] != 'u' {
				return false
			}
			lo, ok := hex4(data[i+3:])
			if !ok || lo < 0xDC00 || lo > 0xDFFF {
				return false
			}
			i += 6
		}
	}
	return true
}

// hex4 decodes the four hex digits b starts with.
func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}
