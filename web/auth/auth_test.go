package auth

import (
	"errors"
	"strings"
	"testing"
	"time"

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
