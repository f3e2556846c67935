package server

import (
	"time"

	"github.com/latticesync/lattice/server/auth"
)

// SignToken makes an HS256 token for user sub valid for ttl (no exp when
// ttl is 0). It is meant for development and tests; see auth.SignHMAC for
// extra claims.
func SignToken(secret []byte, sub string, ttl time.Duration) (string, error) {
	return auth.SignHMAC(secret, sub, ttl, nil)
}
