package mailbox

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"unicode/utf8"
)

// parseCase is one row of the grammar table. A row with an empty errHas is
// valid and want is the exact result; otherwise Parse must fail with an
// *Error at errOff whose Reason contains errHas.
type parseCase struct {
	name   string
	in     string
	want   Address
	errOff int
	errHas string
}

func ok(name, in, local, domain string) parseCase {
	return parseCase{name: name, in: in, want: Address{Local: local, Domain: domain}}
}

func okUTF8(name, in, local, domain string) parseCase {
	return parseCase{name: name, in: in, want: Address{Local: local, Domain: domain, UTF8: true}}
}

func okLit(name, in, local, domain, ip string) parseCase {
	return parseCase{name: name, in: in, want: Address{Local: local, Domain: domain, Literal: netip.MustParseAddr(ip)}}
}

func bad(name, in string, off int, has string) parseCase {
	return parseCase{name: name, in: in, errOff: off, errHas: has}
}

var (
	local64  = strings.Repeat("l", 64)
	label63  = strings.Repeat("b", 63)
	domain63 = label63 + "." + strings.Repeat("c", 63) + "." // 128 octets
	// 64 + 1 + 128 + 61 = 254 octets.
	addr254 = local64 + "@" + domain63 + strings.Repeat("d", 61)
	addr255 = local64 + "@" + domain63 + strings.Repeat("d", 62)
)

// parseCases walks RFC 5321 section 4.1.2 (with RFC 6531 section 3.3) and
// 4.1.3 production by production.
func parseCases() []parseCase {
	cs := []parseCase{
		// Mailbox = Local-part "@" ( Domain / address-literal )
		ok("simple", "a@b", "a", "b"),
		ok("typical", "john.doe@example.com", "john.doe", "example.com"),
		bad("empty", "", 0, "empty address"),
		bad("no at", "john.doe", 8, `missing "@"`),
		bad("no at, quoted", `"john"`, 6, `missing "@"`),
		bad("empty local part", "@example.com", 0, "empty local part"),
		bad("empty domain", "a@", 2, "empty domain"),
		bad("only at", "@", 0, "empty local part"),
		bad("two ats", "a@b@c", 3, `second "@"`),
		bad("at at", "a@@b", 2, `second "@"`),
		bad("angle brackets", "<a@b>", 0, "angle bracket"),
		bad("angle bracket at end", "a@b>", 3, "angle bracket"),
		bad("null path in brackets", "<>", 0, "angle bracket"),
		bad("leading space", " a@b", 0, "space outside quotes"),
		bad("trailing space", "a@b ", 3, "space in the domain"),
		bad("space before at", "a @b", 1, "space outside quotes"),
		bad("space after at", "a@ b", 2, "space in the domain"),
		bad("injection", `a@x NOTIFY=NEVER "`, 3, "space in the domain"),
		bad("injection in local part", `a NOTIFY=NEVER@x`, 1, "space outside quotes"),
		bad("injection after quoted local part", `"a" NOTIFY=NEVER@x`, 3, "space outside quotes"),
		bad("injection, CRLF", "a@x\r\nRSET", 3, "control character U+000D (CR) in the domain"),

		// Dot-string = Atom *("." Atom); Atom = 1*atext
		ok("atext specials", "!#$%&'*+-/=?^_`{|}~@example.com", "!#$%&'*+-/=?^_`{|}~", "example.com"),
		ok("digits and case", "Ab9.Z0@example.com", "Ab9.Z0", "example.com"),
		ok("plus tag", "user+tag@example.com", "user+tag", "example.com"),
		ok("many atoms", "a.b.c.d@example.com", "a.b.c.d", "example.com"),
		ok("single char atoms", "a.b@example.com", "a.b", "example.com"),
		bad("leading dot", ".a@example.com", 0, "local part starts with a dot"),
		bad("only a dot", ".@example.com", 0, "local part starts with a dot"),
		bad("trailing dot", "a.@example.com", 1, "local part ends with a dot"),
		bad("consecutive dots", "a..b@example.com", 2, "consecutive dots in the local part"),
		bad("comma", "a,b@example.com", 1, `character ',' is not allowed in an unquoted local part`),
		bad("parenthesis (no comments)", "a(c)@example.com", 1, `character '('`),
		bad("colon", "a:b@example.com", 1, `character ':'`),
		bad("semicolon", "a;b@example.com", 1, `character ';'`),
		bad("backslash unquoted", `a\b@example.com`, 1, `character '\\'`),
		bad("square bracket in local part", "a[b@example.com", 1, `character '['`),
		bad("quote in the middle", `a"b"@example.com`, 1, "quote inside an unquoted local part"),

		// Quoted-string = DQUOTE *QcontentSMTP DQUOTE
		ok("quoted with space", `"a b"@example.com`, `"a b"`, "example.com"),
		ok("quoted, could be a dot-string (kept as written)", `"ab"@example.com`, `"ab"`, "example.com"),
		ok("quoted with at", `"a@b"@example.com`, `"a@b"`, "example.com"),
		ok("quoted with several ats", `"@@"@example.com`, `"@@"`, "example.com"),
		ok("quoted with escaped quote", `"a\"b"@example.com`, `"a\"b"`, "example.com"),
		ok("quoted with escaped backslash", `"a\\b"@example.com`, `"a\\b"`, "example.com"),
		ok("quoted with escaped letter", `"\a"@example.com`, `"\a"`, "example.com"),
		ok("quoted with escaped space", `"\ "@example.com`, `"\ "`, "example.com"),
		ok("quoted with specials", `"(),:;<>[].."@example.com`, `"(),:;<>[].."`, "example.com"),
		ok("quoted with dots anywhere", `".a..b."@example.com`, `".a..b."`, "example.com"),
		ok("quoted space only", `" "@example.com`, `" "`, "example.com"),
		ok("quoted injection attempt stays quoted", `"a NOTIFY=NEVER"@x`, `"a NOTIFY=NEVER"`, "x"),
		ok("quoted, at and bracket", `"a>b"@example.com`, `"a>b"`, "example.com"),
		bad("empty quoted", `""@example.com`, 0, "empty quoted local part"),
		bad("unterminated quoted", `"ab@example.com`, 15, "unterminated quoted local part"),
		bad("backslash at end", `"ab\`, 4, "unterminated quoted local part"),
		bad("escaped closing quote", `"ab\"@example.com`, 17, "unterminated quoted local part"),
		bad("text after quoted", `"a"b@example.com`, 3, `expected "@" after the quoted local part`),
		bad("two quoted strings", `"a"."b"@example.com`, 3, `expected "@" after the quoted local part`),
		bad("quoted then dot-string", `"a".b@example.com`, 3, `expected "@" after the quoted local part`),
		bad("unescaped quote inside", `"a"b"@example.com`, 3, `expected "@"`),
		bad("quoted-pair of a control", "\"a\\\x01\"@example.com", 3, "control character U+0001"),
		bad("quoted-pair of CR", "\"a\\\r\"@example.com", 3, "control character U+000D (CR)"),
		bad("quoted-pair of DEL", "\"a\\\x7f\"@example.com", 3, "control character U+007F (DEL)"),
		bad("quoted-pair of UTF-8", "\"a\\ü\"@example.com", 3, "must be followed by a printable ASCII character"),

		// RFC 6531: atext =/ UTF8-non-ascii; qtextSMTP =/ UTF8-non-ascii
		okUTF8("UTF-8 local part", "üñî@example.com", "üñî", "example.com"),
		okUTF8("UTF-8 atoms", "δοκιμή.χρήστης@example.com", "δοκιμή.χρήστης", "example.com"),
		okUTF8("UTF-8 4-byte", "😀@example.com", "😀", "example.com"),
		okUTF8("UTF-8 quoted", `"ü b"@example.com`, `"ü b"`, "example.com"),
		okUTF8("U+FFFD, correctly encoded", "\uFFFD@example.com", "\uFFFD", "example.com"),
		okUTF8("non-ASCII space is not a delimiter", "a\u00A0b@example.com", "a\u00A0b", "example.com"),
		okUTF8("U-label", "a@bücher.example", "a", "bücher.example"),
		okUTF8("U-label, non-ASCII case kept", "a@BÜCHER.Example", "a", "bÜcher.example"),
		okUTF8("U-labels everywhere", "用户@例子.广告", "用户", "例子.广告"),
		okUTF8("UTF-8 both", "ü@ü.example", "ü", "ü.example"),
		bad("invalid UTF-8 in local part", "a\xffb@example.com", 1, "invalid UTF-8"),
		bad("invalid UTF-8 first byte", "\xff@example.com", 0, "invalid UTF-8"),
		bad("truncated UTF-8", "a\xc3@example.com", 1, "invalid UTF-8"),
		bad("overlong UTF-8", "a\xc0\xaf@example.com", 1, "invalid UTF-8"),
		bad("UTF-8 surrogate", "a\xed\xa0\x80@example.com", 1, "invalid UTF-8"),
		bad("invalid UTF-8 in quoted", "\"a\xfe\"@example.com", 2, "invalid UTF-8"),
		bad("invalid UTF-8 in domain", "a@b\x80c.example", 3, "invalid UTF-8"),
		bad("invalid UTF-8 after quoted", "\"a\"\x80@example.com", 3, "invalid UTF-8"),
		bad("invalid UTF-8 in literal", "a@[1.2.3.4\xff]", 10, "invalid UTF-8"),
		bad("C1 control in local part", "a\u0085b@example.com", 1, "control character U+0085"),
		bad("C1 control in quoted", "\"a\u009bb\"@example.com", 2, "control character U+009B"),
		bad("C1 control in domain", "a@b\u0080c", 3, "control character U+0080"),
		bad("non-ASCII in literal", "a@[1.2.3.ü]", 9, "non-ASCII character in the address literal"),

		// Domain = sub-domain *("." sub-domain); sub-domain = Let-dig [Ldh-str]
		ok("domain lower-cased", "User@EXAMPLE.Com", "User", "example.com"),
		ok("hyphen inside", "a@ex-am-ple.com", "a", "ex-am-ple.com"),
		ok("double hyphen inside (A-label)", "a@xn--bcher-kva.example", "a", "xn--bcher-kva.example"),
		ok("digits", "a@123.example", "a", "123.example"),
		ok("all-numeric domain is a domain, not a literal", "a@1.2.3.4", "a", "1.2.3.4"),
		ok("single-character labels", "a@b.c", "a", "b.c"),
		ok("underscore inside label (leniency)", "a@my_host.example", "a", "my_host.example"),
		ok("trailing dot dropped", "b@example.com.", "b", "example.com"),
		ok("trailing dot and case", "b@EXAMPLE.com.", "b", "example.com"),
		ok("single label with trailing dot", "b@localhost.", "b", "localhost"),
		bad("domain only a dot", "b@.", 2, "domain starts with a dot"),
		bad("leading dot in domain", "b@.example.com", 2, "domain starts with a dot"),
		bad("two trailing dots", "b@example.com..", 14, "domain ends with two dots"),
		bad("consecutive dots in domain", "b@example..com", 10, "consecutive dots in the domain"),
		bad("label starts with hyphen", "a@-example.com", 2, `domain label starts with '-'`),
		bad("label ends with hyphen", "a@example-.com", 9, `domain label ends with '-'`),
		bad("last label ends with hyphen", "a@example.com-", 13, `domain label ends with '-'`),
		bad("hyphen only", "a@-", 2, `domain label starts with '-'`),
		bad("label starts with underscore", "a@_dmarc.example.com", 2, `domain label starts with '_'`),
		bad("label ends with underscore", "a@host_.example", 6, `domain label ends with '_'`),
		bad("U-label starts with hyphen", "a@-ü.example", 2, `domain label starts with '-'`),
		bad("slash in domain", "a@ex/ample.com", 4, `character '/' is not allowed in a domain`),
		bad("plus in domain", "a@ex+ample.com", 4, `character '+'`),
		bad("quote in domain", `a@"example".com`, 2, `character '"'`),
		bad("bracket inside domain", "a@ex[1.2.3.4]", 4, "an address literal must be the whole domain"),
		bad("closing bracket in domain", "a@example]", 9, `character ']'`),

		// Lengths (RFC 5321 section 4.5.3.1)
		ok("local part 64 octets", local64+"@example.com", local64, "example.com"),
		bad("local part 65 octets", local64+"l@example.com", 64, "local part longer than 64 octets"),
		ok("quoted local part 64 octets with quotes", `"`+local64[:62]+`"@example.com`, `"`+local64[:62]+`"`, "example.com"),
		bad("quoted local part 65 octets with quotes", `"`+local64[:63]+`"@example.com`, 64, "local part longer than 64 octets"),
		okUTF8("UTF-8 local part 64 octets", strings.Repeat("ü", 32)+"@example.com", strings.Repeat("ü", 32), "example.com"),
		bad("UTF-8 local part 66 octets", strings.Repeat("ü", 33)+"@example.com", 64, "local part longer than 64 octets"),
		ok("label 63 octets", "a@"+label63+".example", "a", label63+".example"),
		bad("label 64 octets", "a@"+label63+"b.example", 65, "domain label longer than 63 octets"),
		bad("last label 64 octets", "a@example."+label63+"b", 73, "domain label longer than 63 octets"),
		okUTF8("U-label 63 octets", "a@"+strings.Repeat("ü", 31)+"b.example", "a", strings.Repeat("ü", 31)+"b.example"),
		bad("U-label 64 octets", "a@"+strings.Repeat("ü", 32)+".example", 65, "domain label longer than 63 octets"),
		ok("address 254 octets", addr254, local64, domain63+strings.Repeat("d", 61)),
		bad("address 255 octets", addr255, 254, "address longer than 254 octets"),
		ok("address 254 octets plus trailing dot", addr254+".", local64, domain63+strings.Repeat("d", 61)),
		bad("address 255 octets plus trailing dot", addr255+".", 254, "address longer than 254 octets"),
		bad("very long address", strings.Repeat("a", 10000)+"@example.com", 254, "address longer than 254 octets"),

		// address-literal = "[" ( IPv4-address-literal / IPv6-address-literal / General-address-literal ) "]"
		okLit("IPv4 literal", "a@[192.0.2.7]", "a", "[192.0.2.7]", "192.0.2.7"),
		okLit("IPv4 literal zeros", "a@[0.0.0.0]", "a", "[0.0.0.0]", "0.0.0.0"),
		okLit("IPv4 literal max", "a@[255.255.255.255]", "a", "[255.255.255.255]", "255.255.255.255"),
		okLit("IPv4 literal, quoted local part", `"a b"@[10.0.0.1]`, `"a b"`, "[10.0.0.1]", "10.0.0.1"),
		bad("IPv4 literal 256", "a@[192.0.2.256]", 11, "number 256 greater than 255"),
		bad("IPv4 literal 999", "a@[999.0.2.1]", 3, "number 999 greater than 255"),
		bad("IPv4 literal four digits", "a@[1.2.3.0004]", 9, "more than three digits"),
		bad("IPv4 literal leading zero", "a@[192.0.2.07]", 11, "leading zero"),
		bad("IPv4 literal octal-looking", "a@[010.0.0.1]", 3, "leading zero"),
		bad("IPv4 literal 00", "a@[00.0.0.1]", 3, "leading zero"),
		bad("IPv4 literal three parts", "a@[192.0.2]", 10, "with 3 numbers; it needs four"),
		bad("IPv4 literal one part", "a@[3221225985]", 3, "more than three digits"),
		bad("IPv4 literal five parts", "a@[1.2.3.4.5]", 10, "more than four numbers"),
		bad("IPv4 literal trailing dot", "a@[192.0.2.7.]", 12, "IPv4 address literal ends with a dot"),
		bad("IPv4 literal three parts and dot", "a@[192.0.2.]", 10, "IPv4 address literal ends with a dot"),
		bad("IPv4 literal leading dot", "a@[.1.2.3.4]", 3, "expected a decimal number"),
		bad("IPv4 literal empty part", "a@[1..2.3]", 5, "expected a decimal number"),
		bad("IPv4 literal plus sign", "a@[+1.2.3.4]", 3, "expected a decimal number"),
		bad("IPv4 literal minus sign", "a@[1.-2.3.4]", 5, "expected a decimal number"),
		bad("IPv4 literal hex", "a@[0x7f.0.0.1]", 4, `character 'x' is not allowed in an IPv4 address literal`),
		bad("IPv4 literal space", "a@[1.2.3.4 ]", 10, "space in the address literal"),
		bad("IPv4 literal text after", "a@[1.2.3.4]x", 11, "unexpected characters after the address literal"),
		bad("IPv4 literal dot after", "a@[1.2.3.4].", 11, "unexpected characters after the address literal"),
		bad("unterminated literal", "a@[1.2.3.4", 10, "unterminated address literal"),
		bad("empty literal", "a@[]", 3, "empty address literal"),
		bad("nested bracket", "a@[[1.2.3.4]]", 3, `character '['`),
		bad("backslash in literal", `a@[1.2\.3.4]`, 6, `character '\\'`),
		bad("angle bracket in literal", "a@[1.2.3.4>]", 10, "angle bracket in the address literal"),
		bad("angle bracket after literal", "a@[1.2.3.4]>", 11, "angle bracket"),
		okLit("IPv6 literal", "a@[IPv6:2001:db8::1]", "a", "[IPv6:2001:db8::1]", "2001:db8::1"),
		okLit("IPv6 literal lower-case tag", "a@[ipv6:2001:db8::1]", "a", "[IPv6:2001:db8::1]", "2001:db8::1"),
		okLit("IPv6 literal upper-case tag and hex", "a@[IPV6:2001:DB8::A]", "a", "[IPv6:2001:db8::a]", "2001:db8::a"),
		okLit("IPv6 literal full form compressed", "a@[IPv6:2001:0db8:0000:0000:0000:0000:0000:0001]", "a", "[IPv6:2001:db8::1]", "2001:db8::1"),
		okLit("IPv6 literal longest zero run compressed", "a@[IPv6:2001:db8:0:0:1:0:0:0]", "a", "[IPv6:2001:db8:0:0:1::]", "2001:db8:0:0:1::"),
		okLit("IPv6 literal single zero group not compressed", "a@[IPv6:2001:db8:1:1:1:1:1::]", "a", "[IPv6:2001:db8:1:1:1:1:1:0]", "2001:db8:1:1:1:1:1:0"),
		okLit("IPv6 literal loopback", "a@[IPv6:::1]", "a", "[IPv6:::1]", "::1"),
		okLit("IPv6 literal unspecified", "a@[IPv6:::]", "a", "[IPv6:::]", "::"),
		okLit("IPv6 literal IPv4-mapped", "a@[IPv6:::ffff:192.0.2.7]", "a", "[IPv6:::ffff:192.0.2.7]", "::ffff:192.0.2.7"),
		okLit("IPv6 literal IPv4-mapped in hex", "a@[IPv6:::FFFF:c000:0207]", "a", "[IPv6:::ffff:192.0.2.7]", "::ffff:192.0.2.7"),
		okLit("IPv6 literal IPv6v4-full", "a@[IPv6:1:2:3:4:5:6:10.0.0.1]", "a", "[IPv6:1:2:3:4:5:6:a00:1]", "1:2:3:4:5:6:a00:1"),
		bad("IPv6 literal zone", "a@[IPv6:fe80::1%eth0]", 15, "zone is not allowed"),
		bad("IPv6 literal missing tag", "a@[2001:db8::1]", 3, `IPv6 address literal without the "IPv6:" tag (write [IPv6:2001:db8::1])`),
		bad("IPv6 literal missing tag, leading colons", "a@[::1]", 3, `without the "IPv6:" tag`),
		bad("IPv4 literal with a port", "a@[192.0.2.1:25]", 3, "invalid address literal"),
		bad("literal with empty tag", "a@[:x]", 3, "invalid address literal"),
		bad("literal with tag ending in hyphen", "a@[x-:y]", 3, "invalid address literal"),
		bad("IPv6 literal bad tag", "a@[IPv7:2001:db8::1]", 3, "general address literals are not supported"),
		bad("IPv6 literal space after tag", "a@[IPv6: ::1]", 8, "space in the address literal"),
		bad("IPv6 literal empty", "a@[IPv6:]", 8, "invalid IPv6 address"),
		bad("IPv6 literal garbage", "a@[IPv6:2001:db8::g]", 8, "invalid IPv6 address"),
		bad("IPv6 literal too many groups", "a@[IPv6:1:2:3:4:5:6:7:8:9]", 8, "invalid IPv6 address"),
		bad("IPv6 literal two compressions", "a@[IPv6:1::2::3]", 8, "invalid IPv6 address"),
		bad("IPv6 literal five hex digits", "a@[IPv6:12345::1]", 8, "invalid IPv6 address"),
		bad("IPv6 literal with IPv4 address", "a@[IPv6:192.0.2.1]", 8, "holds an IPv4 address"),
		bad("IPv6 literal embedded IPv4 leading zero", "a@[IPv6:::ffff:192.0.2.07]", 8, "invalid IPv6 address"),
		bad("IPv6 literal unterminated", "a@[IPv6:::1", 11, "unterminated address literal"),
		bad("general literal", "a@[x400:c=us;a=;p=x]", 3, "general address literals are not supported"),
		bad("general literal, standardized-looking tag", "a@[X-foo:bar]", 3, "general address literals are not supported"),
	}

	// Control characters, one at a time, in each part of the address.
	for _, ctl := range []struct{ c, name string }{
		{"\r", "U+000D (CR)"}, {"\n", "U+000A (LF)"}, {"\x00", "U+0000 (NUL)"},
		{"\t", "U+0009 (TAB)"}, {"\x7f", "U+007F (DEL)"}, {"\x1b", "U+001B"},
	} {
		for _, p := range []struct{ name, tmpl string }{
			{"start", "#a@example.com"},
			{"dot-string", "a#b@example.com"},
			{"before at", "ab#@example.com"},
			{"quoted string", `"a#b"@example.com`},
			{"after quoted string", `"ab"#@example.com`},
			{"after at", "ab@#example.com"},
			{"domain", "ab@exa#mple.com"},
			{"end", "ab@example.com#"},
			{"IPv4 literal", "ab@[192.0#.2.1]"},
			{"IPv6 literal", "ab@[IPv6:2001:db8#::1]"},
		} {
			in := strings.Replace(p.tmpl, "#", ctl.c, 1)
			cs = append(cs, bad("control "+ctl.name+" in "+p.name, in, strings.Index(p.tmpl, "#"), "control character "+ctl.name))
		}
	}
	return cs
}

func TestParse(t *testing.T) {
	cases := parseCases()
	for _, c := range cases {
		got, err := Parse(c.in)
		if c.errHas == "" {
			if err != nil {
				t.Errorf("%s: Parse(%q): %v", c.name, c.in, err)
				continue
			}
			if got != c.want {
				t.Errorf("%s: Parse(%q) = %#v, want %#v", c.name, c.in, got, c.want)
			}
			if got.String() != c.want.Local+"@"+c.want.Domain {
				t.Errorf("%s: String() = %q", c.name, got.String())
			}
			// The reverse-path parser agrees for every non-empty input.
			if rp, err := ParseReversePath(c.in); err != nil || rp != got {
				t.Errorf("%s: ParseReversePath(%q) = %#v, %v", c.name, c.in, rp, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("%s: Parse(%q) = %#v, want an error about %q", c.name, c.in, got, c.errHas)
			continue
		}
		if got != (Address{}) {
			t.Errorf("%s: Parse(%q) returned %#v with its error", c.name, c.in, got)
		}
		var e *Error
		if !errors.As(err, &e) {
			t.Errorf("%s: Parse(%q): error %T is not an *Error", c.name, c.in, err)
			continue
		}
		if e.Input != c.in || e.Offset != c.errOff || !strings.Contains(e.Reason, c.errHas) {
			t.Errorf("%s: Parse(%q): got offset %d, reason %q; want offset %d, reason with %q", c.name, c.in, e.Offset, e.Reason, c.errOff, c.errHas)
		}
		if c.in != "" {
			if _, err2 := ParseReversePath(c.in); err2 == nil || err2.Error() != err.Error() {
				t.Errorf("%s: ParseReversePath(%q) = %v, want %v", c.name, c.in, err2, err)
			}
		}
	}
	t.Logf("%d cases", len(cases))
}

func TestReversePath(t *testing.T) {
	a, err := ParseReversePath("")
	if err != nil || a != (Address{}) || !a.IsZero() || a.String() != "" {
		t.Errorf(`ParseReversePath("") = %#v, %v; want the zero Address`, a, err)
	}
	if _, err := Parse(""); err == nil {
		t.Error(`Parse("") succeeded`)
	}
	if _, err := ParseReversePath("<>"); err == nil {
		t.Error(`ParseReversePath("<>") succeeded`)
	}
	a, err = ParseReversePath("Bounce@Example.org")
	if err != nil || a != (Address{Local: "Bounce", Domain: "example.org"}) || a.IsZero() {
		t.Errorf("ParseReversePath = %#v, %v", a, err)
	}
}

func TestAddressMethods(t *testing.T) {
	var zero Address
	if !zero.IsZero() || zero.String() != "" {
		t.Errorf("zero Address: IsZero %v, String %q", zero.IsZero(), zero.String())
	}
	a := Address{Local: `"a b"`, Domain: "[IPv6:2001:db8::1]", Literal: netip.MustParseAddr("2001:db8::1")}
	if a.IsZero() || a.String() != `"a b"@[IPv6:2001:db8::1]` {
		t.Errorf("IsZero %v, String %q", a.IsZero(), a.String())
	}
}

// TestMaxDomainLen checks the 255-octet domain limit, which the 254-octet
// address limit hides from Parse.
func TestMaxDomainLen(t *testing.T) {
	label := strings.Repeat("x", 63)
	dom := label + "." + label + "." + label + "." + strings.Repeat("y", 61) + ".z" // 255
	if d, _, e := parseDomain("@"+dom, 1); e != nil || d != dom {
		t.Errorf("255-octet domain: %q, %v", d, e)
	}
	dom = label + "." + label + "." + label + "." + strings.Repeat("y", 62) + ".z" // 256
	if _, _, e := parseDomain("@"+dom, 1); e == nil || e.Offset != 1+255 || !strings.Contains(e.Reason, "domain longer than 255 octets") {
		t.Errorf("256-octet domain: %v", e)
	}
}

func TestErrorMessage(t *testing.T) {
	_, err := Parse(`a@x NOTIFY=NEVER "`)
	want := `invalid address "a@x NOTIFY=NEVER \"": space in the domain (at byte 3)`
	if err == nil || err.Error() != want {
		t.Errorf("got %v\nwant %s", err, want)
	}

	_, err = Parse("a\r\nRCPT TO:<b@c>@x")
	want = `invalid address "a\r\nRCPT TO:<b@c>@x": control character U+000D (CR) in the local part (at byte 1)`
	if err == nil || err.Error() != want {
		t.Errorf("got %v\nwant %s", err, want)
	}

	long := strings.Repeat("é", 200) + "@example.com"
	_, err = Parse(long)
	msg := err.Error()
	if !strings.HasPrefix(msg, `invalid address "`+strings.Repeat("é", 50)+`"...: address longer than 254 octets`) {
		t.Errorf("long input: %s", msg)
	}
	// Cut inside a character: back up to its start rather than print half.
	_, err = Parse("a" + strings.Repeat("é", 200))
	if msg := err.Error(); !strings.Contains(msg, `"a`+strings.Repeat("é", 49)+`"...`) {
		t.Errorf("long input cut mid-character: %s", msg)
	}

	// Whatever goes into an Error, its message has no control characters.
	inputs := []string{"\x00\x01\r\n\t\x7f\u0085\u2028\xff\xfe", strings.Repeat("\r\n", 300)}
	for _, c := range parseCases() {
		inputs = append(inputs, c.in)
	}
	for _, in := range inputs {
		for _, e := range []*Error{
			{Input: in, Offset: 1, Reason: "test"},
			{Input: "x", Offset: 1, Reason: in},
		} {
			if msg := e.Error(); hasControl(msg) {
				t.Errorf("Error() of %q has control characters: %q", in, msg)
			}
		}
		if _, err := Parse(in); err != nil && hasControl(err.Error()) {
			t.Errorf("Parse(%q): error has control characters: %q", in, err.Error())
		}
	}
}

// hasControl reports whether s has a C0 or C1 control, DEL, or is not
// valid UTF-8.
func hasControl(s string) bool {
	return !utf8.ValidString(s) || strings.ContainsFunc(s, isControl)
}

func FuzzParse(f *testing.F) {
	for _, c := range parseCases() {
		f.Add(c.in)
	}
	f.Fuzz(func(t *testing.T, in string) {
		a, err := Parse(in)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Parse(%q): error %T is not an *Error", in, err)
			}
			if e.Input != in || e.Offset < 0 || e.Offset > len(in) || e.Reason == "" {
				t.Fatalf("Parse(%q): bad *Error %#v", in, e)
			}
			if msg := err.Error(); hasControl(msg) {
				t.Fatalf("Parse(%q): error has control characters: %q", in, msg)
			}
			if a != (Address{}) {
				t.Fatalf("Parse(%q) = %#v with error %v", in, a, err)
			}
			return
		}
		s := a.String()
		if len(s) > MaxAddressLen || len(a.Local) > MaxLocalLen || a.Local == "" || a.Domain == "" {
			t.Fatalf("Parse(%q) = %q: bad lengths", in, s)
		}
		for i := 0; i < len(s); i++ {
			if c := s[i]; c < 0x20 || c == 0x7f {
				t.Fatalf("Parse(%q) = %q: control byte at %d", in, s, i)
			}
		}
		if !utf8.ValidString(s) || strings.ContainsFunc(s, isControl) {
			t.Fatalf("Parse(%q) = %q: invalid UTF-8 or control character", in, s)
		}
		if a.Local[0] != '"' && strings.ContainsAny(a.Local, " <>\"\\@") {
			t.Fatalf("Parse(%q): unquoted local part %q has a delimiter", in, a.Local)
		}
		if strings.ContainsAny(a.Domain, " <>\"\\@") {
			t.Fatalf("Parse(%q): domain %q has a delimiter", in, a.Domain)
		}
		// No upper-case ASCII but the "IPv6:" tag of the canonical literal.
		if strings.ContainsAny(strings.TrimPrefix(a.Domain, "[IPv6:"), "ABCDEFGHIJKLMNOPQRSTUVWXYZ") || strings.HasSuffix(a.Domain, ".") {
			t.Fatalf("Parse(%q): domain %q not canonical", in, a.Domain)
		}
		if a.Literal.IsValid() != strings.HasPrefix(a.Domain, "[") {
			t.Fatalf("Parse(%q): domain %q with literal %v", in, a.Domain, a.Literal)
		}
		if a.UTF8 != (strings.IndexFunc(s, func(r rune) bool { return r >= utf8.RuneSelf }) >= 0) {
			t.Fatalf("Parse(%q) = %q: UTF8 = %v", in, s, a.UTF8)
		}
		b, err := Parse(s)
		if err != nil {
			t.Fatalf("Parse(%q) = %q, which does not parse: %v", in, s, err)
		}
		if b != a {
			t.Fatalf("Parse(%q) = %#v; Parse(%q) = %#v", in, a, s, b)
		}
		if r, err := ParseReversePath(in); err != nil || r != a {
			t.Fatalf("ParseReversePath(%q) = %#v, %v; Parse gave %#v", in, r, err, a)
		}
	})
}

func BenchmarkParse(b *testing.B) {
	for _, bc := range []struct{ name, in string }{
		{"typical", "john.doe+news@mail.example.com"},
		{"uppercase", "John.Doe@Mail.Example.COM"},
		{"quoted", `"john doe"@example.com`},
		{"utf8", "δοκιμή@παράδειγμα.δοκιμή"},
		{"ipv4", "postmaster@[192.0.2.7]"},
		{"ipv6", "postmaster@[IPv6:2001:db8::7]"},
		{"invalid", `a@x NOTIFY=NEVER "`},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(bc.in)))
			for b.Loop() {
				_, _ = Parse(bc.in)
			}
		})
	}
}
