package server

import (
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// ErrUnauthorized is returned for missing, malformed, badly signed or expired tokens.
var ErrUnauthorized = errors.New("unauthorized")

// Identity is an authenticated user.
type Identity struct {
	UserID  string
	Expires time.Time // zero when the token has no exp
}

// authenticate verifies an HS256 JWT signed with secret. Claim sub is the
// user id and is required; exp is honoured when present.
func authenticate(token string, secret []byte, now time.Time) (Identity, error) {
	if token == "" {
		return Identity{}, fmt.Errorf("%w: missing token", ErrUnauthorized)
	}
	var claims jwt.RegisteredClaims
	parser := jwt.NewParser(
		jwt.WithValidMethods([]string{"HS256"}),
		jwt.WithTimeFunc(func() time.Time { return now }),
		jwt.WithLeeway(5*time.Second),
	)
	_, err := parser.ParseWithClaims(token, &claims, func(*jwt.Token) (any, error) { return secret, nil })
	if err != nil {
		return Identity{}, fmt.Errorf("%w: %v", ErrUnauthorized, err)
	}
	if claims.Subject == "" {
		return Identity{}, fmt.Errorf("%w: token has no sub claim", ErrUnauthorized)
	}
	id := Identity{UserID: claims.Subject}
	if claims.ExpiresAt != nil {
		id.Expires = claims.ExpiresAt.Time
	}
	return id, nil
}

// SignToken makes an HS256 token for user sub valid for ttl (no exp when
// ttl is 0). It is meant for development and tests.
func SignToken(secret []byte, sub string, ttl time.Duration) (string, error) {
	claims := jwt.RegisteredClaims{Subject: sub, IssuedAt: jwt.NewNumericDate(time.Now())}
	if ttl != 0 {
		claims.ExpiresAt = jwt.NewNumericDate(time.Now().Add(ttl))
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(secret)
	if err != nil {
		return "", fmt.Errorf("sign token: %w", err)
	}
	return s, nil
}
