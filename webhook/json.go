package webhook

// Subjects of the ParseErrors of bodies other than the envelope.
const (
	subjectJSON    = "JSON body"
	subjectForm    = "form body"
	subjectPayload = `JSON of form field "payload"`
	subjectRequest = "request"
)

// parseJSON validates body as the strict JSON the sources other than
// standard_webhooks accept, reading the values of paths (may be nil) into
// p.slots: exactly one object or array (RFC 8259), surrounded by optional
// whitespace, valid UTF-8 without escaped lone surrogates or raw control
// characters in strings, no duplicate key in any object (compared after
// decoding escapes), nesting at most maxDepth deep (0: DefaultMaxDepth).
// Numbers are checked against the grammar and never converted. Errors are
// *ParseError with the given subject.
func (p *parser) parseJSON(body []byte, maxDepth int, paths *pathSet, subject string) error {
	p.reset(body, maxDepth, paths)
	p.subject = subject
	if len(body) == 0 {
		return p.errAt(0, errSyntax, "empty body")
	}
	p.skipWS()
	if p.pos >= len(p.data) {
		return p.errEOF()
	}
	var err error
	switch c := p.data[p.pos]; {
	case c == '{':
		err = p.parseObject(1, ctxOther, p.root())
	case c == '[':
		err = p.parseArray(1, p.root())
	case c == '"' || c == '-' || isDigit(c) || c == 't' || c == 'f' || c == 'n':
		return p.errAt(p.pos, errShape, "top level is not an object or an array")
	default:
		return p.errChar(p.pos, "looking for beginning of value")
	}
	if err != nil {
		return err
	}
	p.skipWS()
	if p.pos < len(p.data) {
		return p.errChar(p.pos, "after top-level value")
	}
	return nil
}
