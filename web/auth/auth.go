// Package auth verifies and mints livecart's bearer tokens: JWTs signed HS256 with the
// server's secret, carrying sub (user id), name, role and exp.
package auth

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"
)

// Role is what a token's holder may do.
type Role string

// Roles, from least to most powerful.
const (
	RoleViewer    Role = "viewer"
	RoleCreator   Role = "creator"
	RoleModerator Role = "moderator"
	RoleAdmin     Role = "admin"
)

// Valid reports whether r is one of the known roles.
func (r Role) Valid() bool {
	switch r {
	case RoleViewer, RoleCreator, RoleModerator, RoleAdmin:
		return true
	}
	return false
}

// ErrInvalidToken is returned for a missing, malformed, foreign-signed or expired token.
var ErrInvalidToken = errors.New("invalid token")

// Identity is who made a request. The zero Identity is anonymous.
type Identity struct {
	UserID string
	Name   string
	Role   Role
}

// Anonymous reports whether no token was presented.
func (id Identity) Anonymous() bool { return id.UserID == "" }

// Is reports whether the identity has one of the roles.
func (id Identity) Is(roles ...Role) bool {
	for _, r := range roles {
		if id.Role == r {
			return true
		}
	}
	return false
}

type claims struct {
	Name string `json:"name"`
	Role Role   `json:"role"`
	jwt.RegisteredClaims
}

// MaxUserIDLen bounds the sub claim, in characters (Unicode code points).
const MaxUserIDLen = 128

// ValidUserID reports whether id is a user id: 1..MaxUserIDLen characters of UTF-8
// (a token's sub always is: JSON decoding leaves no other bytes). The shared contract
// says a user id is any string up to 128 characters, so a control character in it is
// taken as any other: the id is data (JSON-escaped in events, quoted in logs, shown by
// the pages as text), never shown as a name on its own — a name is (displayName).
func ValidUserID(id string) bool {
	return id != "" && utf8.RuneCountInString(id) <= MaxUserIDLen && utf8.ValidString(id)
}

// hasControl reports whether s holds a control character: C0, DEL or C1 (as
// cart.HasControl; auth stands below cart and imports nothing of it).
func hasControl(s string) bool {
	return strings.IndexFunc(s, isControl) >= 0
}

func isControl(r rune) bool { return r < 0x20 || r >= 0x7f && r < 0xa0 }

// MaxNameLen bounds a name as the server shows it (Identity.Name, a chat event's name),
// in characters (code points). A token's name claim has no bound of its own: a token is
// bounded only by the size of a request's line and headers (the server's MaxHeaderBytes,
// 64 KiB, the websocket's ?token= too), so a name of tens of kilobytes would be sent to
// every viewer with each chat message of its holder.
const MaxNameLen = 64

// displayName is a token's name as the server shows it: a line break or tab becomes a
// space and the other control characters are dropped (a name is only shown, so the
// token stays good: the host shop's backend may pass a name field as its users typed
// it); blank, it is the user id shown the same way (as livecart token names it), or the
// id as it is when nothing of it is left. Either is cut to MaxNameLen characters
// (boundName).
func displayName(name, sub string) string {
	if shown := shownText(name); strings.TrimSpace(shown) != "" {
		return boundName(shown)
	}
	if shown := shownText(sub); strings.TrimSpace(shown) != "" {
		return boundName(shown)
	}
	return boundName(sub)
}

// boundName is s when it has at most MaxNameLen characters; else its beginning, cut
// where a character begins a new grapheme (a letter is not parted from its accents, an
// emoji from its modifiers or the rest of a ZWJ sequence, a flag's two letters from
// each other), without the spaces before the cut, and "…": MaxNameLen characters at
// most. A first grapheme longer than that (a letter under hundreds of accents) is cut
// as characters.
func boundName(s string) string {
	if utf8.RuneCountInString(s) <= MaxNameLen {
		return s
	}
	keep := MaxNameLen - 1 // and the ellipsis
	var runes [MaxNameLen]rune
	var ends [MaxNameLen]int // byte offset in s after runes[i]
	i := 0
	for off, r := range s {
		if i == MaxNameLen {
			break
		}
		runes[i] = r
		ends[i] = off + utf8.RuneLen(r)
		i++
	}
	// runes[keep] is the first left out: back off while it continues the grapheme of
	// the one before it.
	k := keep
	for k > 0 && joins(runes[:k], runes[k]) {
		k--
	}
	if k == 0 {
		k = keep
	}
	return strings.TrimRightFunc(s[:ends[k-1]], unicode.IsSpace) + "…"
}

// joins reports whether next continues the grapheme cluster that ends before[len-1]
// (approximately Unicode's extended grapheme clusters, UAX #29: enough to cut a name
// between graphemes, not to count them).
func joins(before []rune, next rune) bool {
	prev := before[len(before)-1]
	switch {
	case prev == zwj: // a ZWJ sequence (👩‍💻) goes on
		return true
	case next == zwj, unicode.In(next, unicode.Mn, unicode.Me, unicode.Mc):
		return true
	case next >= 0xFE00 && next <= 0xFE0F, next >= 0xE0100 && next <= 0xE01EF: // variation selectors
		return true
	case next >= 0x1F3FB && next <= 0x1F3FF: // emoji skin tone modifiers
		return true
	case next >= 0xE0020 && next <= 0xE007F: // tags (subdivision flags)
		return true
	case next >= 0x1160 && next <= 0x11FF, next >= 0xD7B0 && next <= 0xD7FF: // Hangul medial vowels and final consonants
		return true
	case isRegionalIndicator(prev) && isRegionalIndicator(next):
		// A flag is a pair: next is the second of one when an odd number of them end before.
		n := 0
		for j := len(before) - 1; j >= 0 && isRegionalIndicator(before[j]); j-- {
			n++
		}
		return n%2 == 1
	}
	return false
}

const zwj = '\u200d'

func isRegionalIndicator(r rune) bool { return r >= 0x1F1E6 && r <= 0x1F1FF }

// shownText is s with each line break or tab a space and the other control characters
// left out.
func shownText(s string) string {
	if !hasControl(s) {
		return s
	}
	return strings.Map(func(r rune) rune {
		switch {
		case r == '\n' || r == '\r' || r == '\t':
			return ' '
		case isControl(r):
			return -1
		}
		return r
	}, s)
}

// Authenticator verifies and mints tokens with one HS256 secret.
type Authenticator struct {
	secret []byte
	parser *jwt.Parser
	now    func() time.Time

	// verified remembers the tokens that verified, by their SHA-256, with what
	// verifying them found: every request presents its bearer, and a buyer's hold,
	// checkout and cart reads present the same one. Only the time checks (exp, nbf)
	// depend on when; a remembered token is checked against them again at each use.
	// At most maxVerified entries: a full map is emptied (and refilled by use).
	vmu      sync.RWMutex
	verified map[[sha256.Size]byte]*verifiedToken
}

// verifiedToken is what Verify found in a token: the identity and its time bounds.
type verifiedToken struct {
	id       Identity
	exp, nbf time.Time
	hasNbf   bool
}

// maxVerified bounds Authenticator.verified (about 150 bytes an entry).
const maxVerified = 16384

// New returns an Authenticator for secret. now may be nil (time.Now).
func New(secret []byte, now func() time.Time) *Authenticator {
	if now == nil {
		now = time.Now
	}
	return &Authenticator{
		secret:   secret,
		now:      now,
		verified: map[[sha256.Size]byte]*verifiedToken{},
		parser: jwt.NewParser(
			jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
			jwt.WithExpirationRequired(),
			jwt.WithTimeFunc(now),
		),
	}
}

// Verify parses a token and returns its identity, or ErrInvalidToken (wrapped). A token
// that verified before is answered from memory while it is within its time bounds
// (exp, and nbf if it has one): the same answer as parsing it again, without the JSON
// decoding and the HMAC (most of an authenticated request's own cost); outside them,
// or unknown, it is parsed and checked in full.
func (a *Authenticator) Verify(token string) (Identity, error) {
	id, _, err := a.VerifyUntil(token)
	return id, err
}

// VerifyUntil is Verify that also returns when the token expires (its exp).
func (a *Authenticator) VerifyUntil(token string) (Identity, time.Time, error) {
	key := tokenKey(token)
	a.vmu.RLock()
	v := a.verified[key]
	a.vmu.RUnlock()
	if v != nil {
		now := a.now()
		// As the parser's validator checks them (no leeway): exp in the future, nbf
		// (if any) not.
		if now.Before(v.exp) && (!v.hasNbf || !now.Before(v.nbf)) {
			return v.id, v.exp, nil
		}
	}
	id, c, err := a.verify(token)
	if err != nil || c.ExpiresAt == nil {
		return id, time.Time{}, err
	}
	v = &verifiedToken{id: id, exp: c.ExpiresAt.Time}
	if c.NotBefore != nil {
		v.nbf, v.hasNbf = c.NotBefore.Time, true
	}
	a.vmu.Lock()
	if len(a.verified) >= maxVerified {
		clear(a.verified)
	}
	a.verified[key] = v
	a.vmu.Unlock()
	return id, v.exp, nil
}

// tokenKey is the key of a token in Authenticator.verified: its SHA-256, through a
// stack copy for the usual sizes ([]byte(token) would allocate one beyond 32 bytes).
func tokenKey(token string) [sha256.Size]byte {
	var buf [1024]byte
	if len(token) <= len(buf) {
		return sha256.Sum256(buf[:copy(buf[:], token)])
	}
	return sha256.Sum256([]byte(token))
}

// verify parses and checks a token in full (Verify without the memory).
func (a *Authenticator) verify(token string) (Identity, claims, error) {
	var c claims
	_, err := a.parser.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return a.secret, nil })
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) && typeErr.Type.Kind() == reflect.String && typeErr.Field != "" {
		// A host backend's numeric user id in sub, say: name the claim, not Go's types.
		// (encoding/json names RegisteredClaims' sub "RegisteredClaims.sub".)
		claim := typeErr.Field[strings.LastIndexByte(typeErr.Field, '.')+1:]
		return Identity{}, c, fmt.Errorf("%w: claim %s must be a string", ErrInvalidToken, claim)
	}
	if err != nil {
		return Identity{}, c, fmt.Errorf("%w: %v", ErrInvalidToken, err)
	}
	if !ValidUserID(c.Subject) {
		return Identity{}, c, fmt.Errorf("%w: sub must be 1..%d characters", ErrInvalidToken, MaxUserIDLen)
	}
	if !c.Role.Valid() {
		return Identity{}, c, fmt.Errorf("%w: unknown role %q", ErrInvalidToken, c.Role)
	}
	return Identity{UserID: c.Subject, Name: displayName(c.Name, c.Subject), Role: c.Role}, c, nil
}

// Mint signs a token for id that expires after ttl.
func (a *Authenticator) Mint(id Identity, ttl time.Duration) (string, error) {
	if !ValidUserID(id.UserID) {
		return "", fmt.Errorf("user id must be 1..%d characters of valid UTF-8", MaxUserIDLen)
	}
	if !id.Role.Valid() {
		return "", fmt.Errorf("unknown role %q", id.Role)
	}
	if ttl <= 0 {
		return "", errors.New("ttl must be positive")
	}
	now := a.now()
	c := claims{
		Name: id.Name,
		Role: id.Role,
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   id.UserID,
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
		},
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(a.secret)
}

// KeyEqual compares a presented stream key with the stored one in constant time.
func KeyEqual(presented, stored string) bool {
	if stored == "" {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(presented), []byte(stored)) == 1
}
