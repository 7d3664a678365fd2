package auth

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"
)

func TestMintVerifyRoundTrip(t *testing.T) {
	a := New([]byte("secret-0123456789"), nil)
	tok, err := a.Mint(Identity{UserID: "u1", Name: "Una", Role: RoleCreator}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	id, err := a.Verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	if id != (Identity{UserID: "u1", Name: "Una", Role: RoleCreator}) {
		t.Fatalf("got %+v, want u1/Una/creator", id)
	}
}

// TestNameDefaultsToUserID: a token without a name claim (the host shop's backend need
// not send one) is shown under its user id, as `livecart token` names it, not as "".
func TestNameDefaultsToUserID(t *testing.T) {
	a := New([]byte("secret-0123456789"), nil)
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": "shop-user-7", "role": "viewer", "exp": time.Now().Add(time.Minute).Unix(),
	}).SignedString([]byte("secret-0123456789"))
	if err != nil {
		t.Fatal(err)
	}
	id, err := a.Verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	if id.Name != "shop-user-7" {
		t.Fatalf("got name %q, want the user id shop-user-7", id.Name)
	}
}

// TestNameControlCharacters: a name claim's control characters never reach what the
// server shows (chat events' name): a line break or tab becomes a space, the others
// are dropped, and a name left blank is the user id. The token stays good: the name is
// only shown. A user id with a control character is any other id (API.md: any string
// up to 128 characters): minted, verified and kept as it is.
func TestNameControlCharacters(t *testing.T) {
	a := New([]byte("secret-0123456789"), nil)
	for _, tc := range []struct{ name, want string }{
		{"Eve\x1b[2J\x07", "Eve[2J"},
		{"Ann\nBoleyn\tII", "Ann Boleyn II"},
		{"Nul\x00l", "Null"},
		{"C1\u0085\u009b!", "C1!"},
		{"\x00\x1b\r\n", "shop-user-7"},
		{"José \u202eevil", "José \u202eevil"}, // a bidi control is no control character: the pages isolate it
	} {
		tok, err := a.Mint(Identity{UserID: "shop-user-7", Name: tc.name, Role: RoleViewer}, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		id, err := a.Verify(tok)
		if err != nil {
			t.Fatalf("name %q: got %v, want the token good", tc.name, err)
		}
		if id.Name != tc.want {
			t.Errorf("name %q: shown as %q, want %q", tc.name, id.Name, tc.want)
		}
	}
	// A user id is any string (API.md): one with control characters is kept as it is,
	// and a token without a name shows it without them.
	for _, tc := range []struct{ user, name, want string }{
		{"u\x00", "", "u"},
		{"u\x1b[2J", "", "u[2J"},
		{"u\nadmin", "n", "n"},
		{"u\tv", "", "u v"},
		{"u\x7f\u009b", "", "u"},
		{"\x00\x01", "", "\x00\x01"}, // nothing left to show: the id as it is
	} {
		tok, err := a.Mint(Identity{UserID: tc.user, Name: tc.name, Role: RoleViewer}, time.Minute)
		if err != nil {
			t.Fatalf("Mint of user id %q: %v", tc.user, err)
		}
		id, err := a.Verify(tok)
		if err != nil || id.UserID != tc.user || id.Name != tc.want {
			t.Errorf("user id %q, name %q: got %+v %v, want that id shown as %q", tc.user, tc.name, id, err, tc.want)
		}
	}
}

// TestNameBounded: a name is shown as at most MaxNameLen characters. A name claim has
// no bound of its own (a token is bounded only by a request header's 1 MiB), and the
// name goes to every viewer with each chat message: a longer one is cut between
// graphemes and ends in "…"; the token stays good and the user id is kept whole.
func TestNameBounded(t *testing.T) {
	a := New([]byte("secret-0123456789"), nil)
	a62, a63 := strings.Repeat("a", 62), strings.Repeat("a", 63)
	family := "\U0001F469\u200d\U0001F469\u200d\U0001F467" // 👩‍👩‍👧: five code points, one grapheme
	for _, tc := range []struct{ what, name, want string }{
		{"at the bound", strings.Repeat("b", MaxNameLen), strings.Repeat("b", MaxNameLen)},
		{"one over", strings.Repeat("b", MaxNameLen+1), strings.Repeat("b", MaxNameLen-1) + "…"},
		{"50 KB", strings.Repeat("Eve ", 12800), strings.Repeat("Eve ", 15) + "Eve…"},
		{"CJK", strings.Repeat("名", 100), strings.Repeat("名", 63) + "…"},
		{"accent at the cut", a62 + "e\u0301xyz", a62 + "…"},
		{"accent kept whole", strings.Repeat("a", 61) + "e\u0301xyz", strings.Repeat("a", 61) + "e\u0301…"},
		{"ZWJ sequence at the cut", strings.Repeat("a", 60) + family + "tail", strings.Repeat("a", 60) + "…"},
		{"skin tone at the cut", a62 + "\U0001F44D\U0001F3FDzz", a62 + "…"},
		{"variation selector at the cut", a62 + "\u2764\ufe0fzz", a62 + "…"},
		{"flag at the cut", a62 + "\U0001F1EB\U0001F1F7zz", a62 + "…"},
		{"flag before the cut", strings.Repeat("a", 61) + "\U0001F1EB\U0001F1F7\U0001F1E9\U0001F1EA", strings.Repeat("a", 61) + "\U0001F1EB\U0001F1F7…"},
		{"spaces before the cut", strings.Repeat("a", 60) + "      bbbb", strings.Repeat("a", 60) + "…"},
		{"one grapheme of 200 characters", "a" + strings.Repeat("\u0301", 199), "a" + strings.Repeat("\u0301", 62) + "…"},
		{"bidi override kept", "\u202e" + a63 + "z", "\u202e" + strings.Repeat("a", 62) + "…"},
	} {
		tok, err := a.Mint(Identity{UserID: "shop-user-7", Name: tc.name, Role: RoleViewer}, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		id, err := a.Verify(tok)
		if err != nil {
			t.Fatalf("%s: got %v, want the token good", tc.what, err)
		}
		if id.Name != tc.want || id.UserID != "shop-user-7" {
			t.Errorf("%s: shown as %q (user %q), want %q", tc.what, id.Name, id.UserID, tc.want)
		}
		if n := utf8.RuneCountInString(id.Name); n > MaxNameLen || !utf8.ValidString(id.Name) {
			t.Errorf("%s: %d characters (valid UTF-8: %v), want at most %d", tc.what, n, utf8.ValidString(id.Name), MaxNameLen)
		}
	}
	// Without a name, a user id of 128 characters is shown cut the same way, and kept whole.
	user := strings.Repeat("u", MaxUserIDLen)
	tok, err := a.Mint(Identity{UserID: user, Role: RoleViewer}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if id, err := a.Verify(tok); err != nil || id.UserID != user || id.Name != strings.Repeat("u", MaxNameLen-1)+"…" {
		t.Errorf("user id of %d characters without a name: got %+v %v, want it kept and shown cut", MaxUserIDLen, id, err)
	}
}

// TestBoundNameAlwaysBounded: whatever the characters around the cut, the name shown is
// valid UTF-8 of at most MaxNameLen characters, the beginning of the name and "…".
func TestBoundNameAlwaysBounded(t *testing.T) {
	pieces := []string{"a", " ", "é", "e\u0301", "\u0301", "\u200d", "\U0001F469", "\U0001F3FD", "\ufe0f",
		"\U0001F1EB", "\U0001F1F7", "\U000E0067", "\u1100", "\u1161", "\u11A8", "名", "\u202e", "\u0915\u093f"}
	rnd := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 20000; i++ {
		var b strings.Builder
		for n := rnd.IntN(120); n >= 0; n-- {
			b.WriteString(pieces[rnd.IntN(len(pieces))])
		}
		s := b.String()
		got := boundName(s)
		if utf8.RuneCountInString(s) <= MaxNameLen {
			if got != s {
				t.Fatalf("%q: got %q, want it as it is", s, got)
			}
			continue
		}
		head, cut := strings.CutSuffix(got, "…")
		if !cut || !strings.HasPrefix(s, head) || utf8.RuneCountInString(got) > MaxNameLen || !utf8.ValidString(got) {
			t.Fatalf("%q: got %q, want a beginning of it and … in at most %d characters", s, got, MaxNameLen)
		}
	}
}

// TestUserIDCountsCharacters: a sub is any string up to 128 characters (code points),
// however many bytes they take.
func TestUserIDCountsCharacters(t *testing.T) {
	a := New([]byte("secret-0123456789"), nil)
	for _, tc := range []struct {
		user string
		ok   bool
	}{
		{strings.Repeat("é", 128), true},
		{strings.Repeat("😀", 128), true},
		{strings.Repeat("é", 129), false},
		{"u\xff", false},         // not UTF-8: no token carries it (JSON would turn it into U+FFFD)
		{"u\xed\xa0\x80", false}, // an encoded surrogate
	} {
		tok, err := a.Mint(Identity{UserID: tc.user, Name: "n", Role: RoleViewer}, time.Minute)
		if (err == nil) != tc.ok {
			t.Fatalf("mint %d×%q: got %v, want ok=%v", len([]rune(tc.user)), []rune(tc.user)[0], err, tc.ok)
		}
		if !tc.ok {
			continue
		}
		if id, err := a.Verify(tok); err != nil || id.UserID != tc.user {
			t.Fatalf("verify %d×%q: got %+v %v", len([]rune(tc.user)), []rune(tc.user)[0], id, err)
		}
	}
}

func TestVerifyRejects(t *testing.T) {
	now := time.Now()
	a := New([]byte("secret-0123456789"), func() time.Time { return now })
	sign := func(method jwt.SigningMethod, key any, c jwt.MapClaims) string {
		s, err := jwt.NewWithClaims(method, c).SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	exp := now.Add(time.Hour).Unix()
	cases := map[string]string{
		"garbage":        "abc",
		"foreign secret": sign(jwt.SigningMethodHS256, []byte("other"), jwt.MapClaims{"sub": "u", "role": "viewer", "exp": exp}),
		"HS512":          sign(jwt.SigningMethodHS512, []byte("secret-0123456789"), jwt.MapClaims{"sub": "u", "role": "viewer", "exp": exp}),
		"alg none":       sign(jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, jwt.MapClaims{"sub": "u", "role": "viewer", "exp": exp}),
		"no exp":         sign(jwt.SigningMethodHS256, []byte("secret-0123456789"), jwt.MapClaims{"sub": "u", "role": "viewer"}),
		"expired":        sign(jwt.SigningMethodHS256, []byte("secret-0123456789"), jwt.MapClaims{"sub": "u", "role": "viewer", "exp": now.Add(-time.Minute).Unix()}),
		"bad role":       sign(jwt.SigningMethodHS256, []byte("secret-0123456789"), jwt.MapClaims{"sub": "u", "role": "king", "exp": exp}),
		"no sub":         sign(jwt.SigningMethodHS256, []byte("secret-0123456789"), jwt.MapClaims{"role": "viewer", "exp": exp}),
		"long sub":       sign(jwt.SigningMethodHS256, []byte("secret-0123456789"), jwt.MapClaims{"sub": strings.Repeat("x", 129), "role": "viewer", "exp": exp}),
		"long wide sub":  sign(jwt.SigningMethodHS256, []byte("secret-0123456789"), jwt.MapClaims{"sub": strings.Repeat("é", 129), "role": "viewer", "exp": exp}),
	}
	for name, tok := range cases {
		if _, err := a.Verify(tok); !errors.Is(err, ErrInvalidToken) {
			t.Errorf("%s: got %v, want ErrInvalidToken", name, err)
		}
	}
}

func TestKeyEqual(t *testing.T) {
	if !KeyEqual("sk_abc", "sk_abc") || KeyEqual("sk_abd", "sk_abc") || KeyEqual("", "") {
		t.Fatal("KeyEqual: got wrong answer")
	}
}

// TestVerifyRemembersWithinTimeBounds: a token that verified is answered again without
// parsing (no allocation), the same identity, and only while its exp is in the future
// and its nbf (if any) is not; outside them it is refused as the parser refuses it, and
// a token differing by one byte from a remembered one is still checked in full.
func TestVerifyRemembersWithinTimeBounds(t *testing.T) {
	secret := []byte("secret-0123456789")
	now := time.Unix(1_800_000_000, 0)
	a := New(secret, func() time.Time { return now })
	sign := func(c jwt.MapClaims) string {
		s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(secret)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	tok := sign(jwt.MapClaims{"sub": "u1", "name": " ", "role": "moderator", "exp": now.Add(time.Minute).Unix()})
	want := Identity{UserID: "u1", Name: "u1", Role: RoleModerator}
	for i := 0; i < 2; i++ {
		if id, err := a.Verify(tok); err != nil || id != want {
			t.Fatalf("verify #%d: got %+v %v, want %+v", i+1, id, err, want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = a.Verify(tok) }); n != 0 {
		t.Errorf("a remembered token: %.1f allocations per Verify, want 0", n)
	}
	// One byte of the signature changed: not the remembered token.
	bad := []byte(tok)
	bad[len(bad)-2] ^= 1
	if _, err := a.Verify(string(bad)); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("tampered signature: got %v, want ErrInvalidToken", err)
	}
	// exp: valid strictly before it, as the parser has it.
	now = now.Add(time.Minute - time.Nanosecond)
	if _, err := a.Verify(tok); err != nil {
		t.Errorf("1 ns before exp: got %v, want valid", err)
	}
	now = now.Add(time.Nanosecond)
	if _, err := a.Verify(tok); !errors.Is(err, ErrInvalidToken) || !strings.Contains(err.Error(), "expired") {
		t.Errorf("at exp: got %v, want ErrInvalidToken (expired)", err)
	}

	// nbf: refused before it (and not remembered then), valid from it on.
	now = time.Unix(1_800_000_000, 0)
	early := sign(jwt.MapClaims{"sub": "u2", "role": "viewer", "exp": now.Add(time.Hour).Unix(), "nbf": now.Add(time.Second).Unix()})
	if _, err := a.Verify(early); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("before nbf: got %v, want ErrInvalidToken", err)
	}
	now = now.Add(time.Second)
	if id, err := a.Verify(early); err != nil || id.UserID != "u2" {
		t.Errorf("at nbf: got %+v %v, want u2", id, err)
	}
	now = now.Add(-time.Nanosecond) // a clock stepped back: the remembered token is refused again
	if _, err := a.Verify(early); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("remembered, clock before nbf again: got %v, want ErrInvalidToken", err)
	}
}

// TestVerifyMemoryBounded: the remembered tokens never exceed maxVerified, and every
// token still verifies once the memory was emptied.
func TestVerifyMemoryBounded(t *testing.T) {
	a := New([]byte("secret-0123456789"), nil)
	var first string
	for i := 0; i < maxVerified+10; i++ {
		tok, err := a.Mint(Identity{UserID: fmt.Sprint("u", i), Role: RoleViewer}, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = tok
		}
		if _, err := a.Verify(tok); err != nil {
			t.Fatal(err)
		}
		a.vmu.RLock()
		n := len(a.verified)
		a.vmu.RUnlock()
		if n > maxVerified {
			t.Fatalf("%d tokens remembered, want at most %d", n, maxVerified)
		}
	}
	if id, err := a.Verify(first); err != nil || id.UserID != "u0" {
		t.Fatalf("first token after the memory was emptied: got %+v %v", id, err)
	}
}

// TestClaimOfTheWrongTypeSaysWhich: a token whose sub, name or role is not a string (a
// host backend putting its numeric user id in sub) is refused with a message naming
// the claim, not encoding/json's Go types ("cannot unmarshal number into Go struct
// field claims.sub of type string").
func TestClaimOfTheWrongTypeSaysWhich(t *testing.T) {
	a := New([]byte("secret-0123456789"), nil)
	exp := time.Now().Add(time.Hour).Unix()
	for _, tc := range []struct {
		claims jwt.MapClaims
		want   string
	}{
		{jwt.MapClaims{"sub": 42, "role": "viewer", "exp": exp}, "invalid token: claim sub must be a string"},
		{jwt.MapClaims{"sub": "u", "name": []string{"Una"}, "role": "viewer", "exp": exp}, "invalid token: claim name must be a string"},
		{jwt.MapClaims{"sub": "u", "role": 1, "exp": exp}, "invalid token: claim role must be a string"},
	} {
		tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, tc.claims).SignedString([]byte("secret-0123456789"))
		if err != nil {
			t.Fatal(err)
		}
		_, err = a.Verify(tok)
		if !errors.Is(err, ErrInvalidToken) || err.Error() != tc.want {
			t.Errorf("%v: got %v, want %q", tc.claims, err, tc.want)
		}
	}
}
