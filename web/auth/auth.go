// Package auth verifies and mints livecart's bearer tokens: JWTs signed HS256 with the
// server's secret, carrying sub (user id), name, role and exp.
package auth

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"strings"
	"time"
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

// ValidUserID reports whether id is a user id: 1..MaxUserIDLen characters.
func ValidUserID(id string) bool {
	return id != "" && utf8.RuneCountInString(id) <= MaxUserIDLen
}

// Authenticator verifies and mints tokens with one HS256 secret.
type Authenticator struct {
	secret []byte
	parser *jwt.Parser
	now    func() time.Time
}

// New returns an Authenticator for secret. now may be nil (time.Now).
func New(secret []byte, now func() time.Time) *Authenticator {
	if now == nil {
		now = time.Now
	}
	return &Authenticator{
		secret: secret,
		now:    now,
		parser: jwt.NewParser(
			jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
			jwt.WithExpirationRequired(),
			jwt.WithTimeFunc(now),
		),
	}
}

// Verify parses a token and returns its identity, or ErrInvalidToken (wrapped).
func (a *Authenticator) Verify(token string) (Identity, error) {
	var c claims
	_, err := a.parser.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return a.secret, nil })
	if err != nil {
		return Identity{}, fmt.Errorf("%w: %v", ErrInvalidToken, err)
	}
	if !ValidUserID(c.Subject) {
		return Identity{}, fmt.Errorf("%w: sub must be 1..%d characters", ErrInvalidToken, MaxUserIDLen)
	}
	if !c.Role.Valid() {
		return Identity{}, fmt.Errorf("%w: unknown role %q", ErrInvalidToken, c.Role)
	}
	name := c.Name
	if strings.TrimSpace(name) == "" {
		name = c.Subject // no display name: show the user id, as `livecart token` does
	}
	return Identity{UserID: c.Subject, Name: name, Role: c.Role}, nil
}

// Mint signs a token for id that expires after ttl.
func (a *Authenticator) Mint(id Identity, ttl time.Duration) (string, error) {
	if !ValidUserID(id.UserID) {
		return "", fmt.Errorf("user id must be 1..%d characters", MaxUserIDLen)
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
