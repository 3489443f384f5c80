package mtasts

import (
	"errors"
	"fmt"
	"strings"
)

// ErrNoRecord is returned by [ParseRecord] when no TXT record starts with
// "v=STSv1;": the domain publishes no MTA-STS policy.
var ErrNoRecord = errors.New("mta-sts: no v=STSv1 TXT record")

// ParseRecord picks the domain's MTA-STS record out of the TXT records at
// _mta-sts.DOMAIN and returns its policy id (RFC 8461 section 3.1). Each
// element of txt is one record, its strings already concatenated without
// spaces in between, as the RFC says.
//
// Records that do not start with "v=STSv1" followed by ";" (white space
// may come before the ";") are not MTA-STS records and are ignored. None
// left gives [ErrNoRecord]; more than one is an error. The one left must
// follow the ABNF: fields "key=value" separated by ";" with optional
// spaces or tabs around it, "v" first, then "id" (1 to 32 letters or
// digits) exactly once; other fields are extensions (name: a letter or
// digit then up to 31 letters, digits, "_", "-", "."; value: visible
// characters except "=" and ";"), checked and ignored. One trailing ";"
// is allowed, white space after the last field without it is not. Keys
// and "STSv1" are case-sensitive.
//
// Whatever the error, the caller has no usable record; RFC 8461 section
// 5.1 says that alone does not drop a cached policy (see [Record.Absent]).
func ParseRecord(txt []string) (id string, err error) {
	var recs []string
	for _, r := range txt {
		if rest, ok := strings.CutPrefix(r, "v=STSv1"); ok && strings.HasPrefix(trimWSP(rest), ";") {
			recs = append(recs, r)
		}
	}
	switch len(recs) {
	case 0:
		return "", ErrNoRecord
	case 1:
	default:
		return "", fmt.Errorf("mta-sts record: %d TXT records start with v=STSv1, only one may", len(recs))
	}
	id, err = parseRecordFields(strings.TrimPrefix(recs[0], "v=STSv1"))
	if err != nil {
		return "", fmt.Errorf("mta-sts record %q: %w", recs[0], err)
	}
	return id, nil
}

// parseRecordFields parses what follows "v=STSv1":
// 1*(sts-sep sts-field) [sts-sep], sts-sep = *WSP ";" *WSP.
func parseRecordFields(s string) (string, error) {
	id, fields := "", 0
	for {
		s = trimWSP(s)
		if s == "" {
			if fields == 0 {
				return "", errors.New("no fields after v=STSv1")
			}
			break
		}
		if s[0] != ';' {
			return "", fmt.Errorf("%q where \";\" or the end was expected", s)
		}
		s = trimWSP(s[1:])
		if s == "" {
			if fields == 0 {
				return "", errors.New("no fields after v=STSv1")
			}
			break // one trailing separator
		}
		end := strings.IndexAny(s, " \t;")
		if end < 0 {
			end = len(s)
		}
		field := s[:end]
		s = s[end:]
		if s != "" && s[0] != ';' && trimWSP(s) == "" {
			return "", errors.New("white space after the last field (only \";\" may end the record)")
		}
		fields++
		key, value, ok := strings.Cut(field, "=")
		if !ok {
			return "", fmt.Errorf("field %q is not key=value", field)
		}
		switch key {
		case "id":
			if id != "" {
				return "", errors.New("second id field")
			}
			if !validID(value) {
				return "", fmt.Errorf("id %q is not 1 to 32 letters or digits", value)
			}
			id = value
		case "v":
			return "", errors.New("second v field")
		default:
			if !validExtName(key) || !validRecordExtValue(value) {
				return "", fmt.Errorf("malformed extension field %q", field)
			}
		}
	}
	if id == "" {
		return "", errors.New("no id field")
	}
	return id, nil
}

// trimWSP drops leading spaces and tabs.
func trimWSP(s string) string { return strings.TrimLeft(s, " \t") }

// validID is 1*32(ALPHA / DIGIT).
func validID(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isAlnum(s[i]) {
			return false
		}
	}
	return true
}

// validRecordExtValue is sts-ext-value: 1*(%x21-3A / %x3C / %x3E-7E).
func validRecordExtValue(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c > 0x7e || c == ';' || c == '=' {
			return false
		}
	}
	return true
}
