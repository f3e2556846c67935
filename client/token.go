package client

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"time"
)

// Tokens. The client keeps the token it last obtained (Options.Token,
// SetToken or TokenFunc) and the last one the service refused
// (unauthorized): the protocol says not to retry with the same token, so a
// refused token is never sent again; the client waits offline for another
// (SetToken, or TokenFunc returning a different one).
//
// When a session's token is a JWT with an exp claim, the client asks for
// the next token a little before it expires (refreshMargin) and, if it
// gets a different one, switches connections to it before the service
// cuts the old one at its exp (the protocol cannot present a new token on
// an open connection).

// errTokenRefresh ends a session on purpose: a new token is ready before
// the current one expires.
var errTokenRefresh = errors.New("switching to a refreshed token")

// maxRefreshMargin bounds how long before a token's exp the client asks
// for the next one; shorter-lived tokens are refreshed 10% of their
// lifetime early.
const maxRefreshMargin = 30 * time.Second

type tokenState struct {
	mu      sync.Mutex
	token   string // the latest token obtained
	fresh   bool   // token came from SetToken or an early refresh: use it without asking TokenFunc
	refused string // the last token the service refused
	hasRef  bool   // refused is set
	wake    chan struct{}
}

// SetToken gives the client a token for its next connection, used in
// place of asking Options.TokenFunc. If Run is waiting to reconnect (in
// backoff, or for a new token after the service refused one) it
// reconnects at once. An open connection keeps its token until that token
// nears its exp; the client then switches to this one.
func (c *Client) SetToken(token string) {
	c.tok.mu.Lock()
	c.tok.token, c.tok.fresh = token, true
	c.tok.mu.Unlock()
	select {
	case c.tok.wake <- struct{}{}:
	default:
	}
}

// nextToken returns the token for the next connection: a fresh one from
// SetToken or an early refresh, else TokenFunc's, else the last known.
func (c *Client) nextToken(ctx context.Context) (string, error) {
	c.tok.mu.Lock()
	if c.tok.fresh || c.opts.TokenFunc == nil {
		tok := c.tok.token
		c.tok.fresh = false
		c.tok.mu.Unlock()
		select { // the wake-up of that SetToken is used up
		case <-c.tok.wake:
		default:
		}
		return tok, nil
	}
	c.tok.mu.Unlock()
	tok, err := c.opts.TokenFunc(ctx)
	if err != nil {
		return "", err
	}
	c.tok.mu.Lock()
	c.tok.token = tok
	c.tok.mu.Unlock()
	return tok, nil
}

// isRefused reports whether the service refused token last.
func (c *Client) isRefused(token string) bool {
	c.tok.mu.Lock()
	defer c.tok.mu.Unlock()
	return c.tok.hasRef && c.tok.refused == token
}

// refuse records that the service refused token.
func (c *Client) refuse(token string) {
	c.tok.mu.Lock()
	c.tok.refused, c.tok.hasRef = token, true
	c.tok.mu.Unlock()
}

// hasNewToken reports whether SetToken gave a token the service has not
// refused.
func (c *Client) hasNewToken() bool {
	c.tok.mu.Lock()
	defer c.tok.mu.Unlock()
	return c.tok.fresh && !(c.tok.hasRef && c.tok.refused == c.tok.token)
}

// refreshAt returns when to ask for the token after token (obtained at
// got): refreshMargin before its exp. ok is false for a token without exp
// (or not a JWT).
func refreshAt(token string, got time.Time) (at time.Time, ok bool) {
	exp, iat, ok := tokenTimes(token)
	if !ok {
		return time.Time{}, false
	}
	start := got
	if !iat.IsZero() && iat.Before(got) {
		start = iat
	}
	margin := min(maxRefreshMargin, exp.Sub(start)/10)
	if margin < 0 {
		margin = 0
	}
	return exp.Add(-margin), true
}

// tokenTimes reads the exp (required) and iat claims of a JWT without
// verifying it: only to know when to refresh it.
func tokenTimes(token string) (exp, iat time.Time, ok bool) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return exp, iat, false
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return exp, iat, false
	}
	var claims struct {
		Exp *float64 `json:"exp"`
		Iat *float64 `json:"iat"`
	}
	if json.Unmarshal(payload, &claims) != nil || claims.Exp == nil {
		return exp, iat, false
	}
	unix := func(f float64) time.Time { return time.Unix(0, int64(f*1e9)) }
	exp = unix(*claims.Exp)
	if claims.Iat != nil {
		iat = unix(*claims.Iat)
	}
	return exp, iat, true
}

// refresher asks for the token that follows the session's, a little
// before the session's expires, and ends the session to switch to it.
func (s *session) refresher(token string, at time.Time) {
	t := time.NewTimer(time.Until(at))
	defer t.Stop()
	select {
	case <-s.ctx.Done():
		return
	case <-t.C:
	}
	c := s.c
	c.tok.mu.Lock()
	next := c.tok.token
	have := c.tok.fresh && next != token
	c.tok.mu.Unlock()
	if !have && c.opts.TokenFunc != nil {
		tok, err := c.opts.TokenFunc(s.ctx)
		if err != nil {
			if s.ctx.Err() == nil {
				c.log.Warn("lattice: refresh token", "err", err)
			}
			return
		}
		if tok != token {
			c.tok.mu.Lock()
			c.tok.token, c.tok.fresh = tok, true
			c.tok.mu.Unlock()
			have = true
		}
	}
	if !have {
		c.log.Info("lattice: no new token before the current one expires")
		return
	}
	c.log.Info("lattice: switching connection to a refreshed token")
	s.abort(errTokenRefresh)
}
