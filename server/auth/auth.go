// Package auth verifies the JWTs that clients of `lattice serve` present in
// Hello: signed with an HMAC secret (HS256/384/512), or with the private key
// of an RSA (RS256/384/512, PS256/384/512), ECDSA (ES256/384/512) or Ed25519
// (EdDSA) key pair whose public half is given as a PEM file or published by
// an identity provider as a JWKS URL.
//
// The algorithms a token may use are derived from the configured key, never
// from the token: "alg": "none" and algorithm confusion (a token signed
// with HS256 using the public key as the HMAC secret) are refused. With a
// JWKS, the key named by the token's kid decides, and its alg when the JWK
// states one; a JWKS is fetched at start, refreshed in the background and
// again (rate-limited) when a token names a kid it does not hold, so keys
// rotate without a restart.
//
// Claim sub is the user id (required); exp and nbf are honoured with a few
// seconds of leeway; iss and aud are checked when configured. The token's
// whole claims object is kept verbatim in Identity.Claims: it is what Postgres
// row-level security policies read as request.jwt.claims. See README.md.
package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
)

// Config says how tokens are verified. Exactly one of Secret, PublicKeyPEM
// and JWKSURL is set.
type Config struct {
	// Secret is the HMAC key (HS256/384/512) (--auth-secret, env
	// LATTICE_AUTH_SECRET).
	Secret []byte
	// PublicKeyPEM is a PEM public key (RSA, EC or Ed25519): a PUBLIC KEY,
	// RSA PUBLIC KEY or CERTIFICATE block (--auth-public-key FILE, env
	// LATTICE_AUTH_PUBLIC_KEY).
	PublicKeyPEM []byte
	// JWKSURL is the identity provider's JSON Web Key Set (--jwks-url, env
	// LATTICE_JWKS_URL).
	JWKSURL string
	// Issuer, when set, must equal the token's iss (--auth-issuer).
	Issuer string
	// Audience, when set, must be one of the token's aud (--auth-audience).
	Audience string
	// HTTPClient fetches the JWKS; nil means a client with a 10 s timeout.
	HTTPClient *http.Client
	// Logger receives start-up and JWKS refresh logs; nil means slog.Default().
	Logger *slog.Logger
}

// Identity is an authenticated user.
type Identity struct {
	// UserID is claim sub.
	UserID string
	// Expires is claim exp; zero when the token has none.
	Expires time.Time
	// Claims is the token's whole claims object, verbatim JSON: what
	// Postgres policies see as request.jwt.claims.
	Claims json.RawMessage
}

// ErrUnauthorized is wrapped by every error of Verify. The rest of the
// message is a short reason that is safe to show to the client.
var ErrUnauthorized = errors.New("unauthorized")

const (
	// leeway tolerates clock skew between the issuer and the service for
	// exp and nbf.
	leeway = 5 * time.Second
	// httpTimeout bounds one JWKS request.
	httpTimeout = 10 * time.Second
	// jwksRefresh is the background refresh period of a JWKS.
	jwksRefresh = 10 * time.Minute
	// unknownKIDEvery is the least time between two refreshes caused by
	// tokens naming an unknown kid (a flood of bad kids does not hammer
	// the JWKS server); unknownKIDWait is how long a token may wait for
	// its turn (and the refresh) before it is refused.
	unknownKIDEvery = 30 * time.Second
	unknownKIDWait  = 10 * time.Second
)

// allAlgs is every algorithm a verifier may accept, in the order Methods
// lists them.
var allAlgs = []string{"HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// Verifier verifies tokens. It is safe for concurrent use.
type Verifier struct {
	cfg    Config
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc

	// key and algs: the secret or the PEM key; desc says what it is.
	key  any
	algs []string
	desc string

	// jwks is the key set of JWKSURL (nil otherwise).
	jwks keyfunc.Keyfunc
}

// New makes a verifier from cfg. With a JWKS URL it fetches the set once
// (failing when the URL does not answer a JWKS with a usable key) and keeps
// refreshing it in the background until ctx ends or Close is called.
func New(ctx context.Context, cfg Config) (*Verifier, error) {
	var sources []string
	if len(cfg.Secret) > 0 {
		sources = append(sources, "an HMAC secret (--auth-secret)")
	}
	if len(cfg.PublicKeyPEM) > 0 {
		sources = append(sources, "a public key (--auth-public-key)")
	}
	if cfg.JWKSURL != "" {
		sources = append(sources, "a JWKS URL (--jwks-url)")
	}
	switch len(sources) {
	case 0:
		return nil, errors.New("auth: no key to verify tokens: set an HMAC secret (--auth-secret), a PEM public key file (--auth-public-key) or a JWKS URL (--jwks-url)")
	case 1:
	default:
		return nil, fmt.Errorf("auth: set only one of --auth-secret, --auth-public-key and --jwks-url; got %s", strings.Join(sources, " and "))
	}
	v := &Verifier{cfg: cfg, log: cfg.Logger}
	if v.log == nil {
		v.log = slog.Default()
	}
	switch {
	case len(cfg.Secret) > 0:
		v.key, v.algs, v.desc = cfg.Secret, algsFor(cfg.Secret), "an HMAC secret"
		if len(cfg.Secret) < 32 {
			v.log.Warn("the auth secret is shorter than 32 bytes: use a long random one (openssl rand -hex 32)")
		}
	case len(cfg.PublicKeyPEM) > 0:
		key, err := parsePublicKeyPEM(cfg.PublicKeyPEM)
		if err != nil {
			return nil, fmt.Errorf("auth: --auth-public-key: %w", err)
		}
		v.key, v.algs, v.desc = key, algsFor(key), describe(key)
		if k, ok := key.(*rsa.PublicKey); ok && k.N.BitLen() < 2048 {
			v.log.Warn("the auth public key is an RSA key shorter than 2048 bits", "bits", k.N.BitLen())
		}
	default:
		if err := v.startJWKS(ctx); err != nil {
			return nil, err
		}
	}
	if v.cancel == nil {
		v.ctx, v.cancel = context.WithCancel(context.Background())
	}
	return v, nil
}

// Close stops refreshing the JWKS. Verify must not be called after it.
// A nil verifier may be closed.
func (v *Verifier) Close() {
	if v != nil && v.cancel != nil {
		v.cancel()
	}
}

// Methods returns the signing algorithms (JWT alg) the verifier accepts
// now: from the secret or key, or from the keys the JWKS holds.
func (v *Verifier) Methods() []string {
	if v.jwks == nil {
		return slices.Clone(v.algs)
	}
	keys, err := v.jwks.Storage().KeyReadAll(v.ctx)
	if err != nil {
		return nil
	}
	var out []string
	for _, alg := range allAlgs {
		for _, j := range keys {
			if _, algs, _ := usable(j); slices.Contains(algs, alg) {
				out = append(out, alg)
				break
			}
		}
	}
	return out
}

// Verify checks token at time now and returns who it identifies. Its
// errors wrap ErrUnauthorized with a short reason.
func (v *Verifier) Verify(token string, now time.Time) (Identity, error) {
	if token == "" {
		return Identity{}, unauthorized("missing token")
	}
	var c claims
	p := jwt.NewParser(jwt.WithTimeFunc(func() time.Time { return now }), jwt.WithLeeway(leeway))
	if _, err := p.ParseWithClaims(token, &c, v.keyFor); err != nil {
		return Identity{}, unauthorized(reasonOf(err))
	}
	if c.Subject == "" {
		return Identity{}, unauthorized("token has no sub claim")
	}
	if want := v.cfg.Issuer; want != "" && c.Issuer != want {
		if c.Issuer == "" {
			return Identity{}, unauthorized(fmt.Sprintf("issuer: token has no iss claim (expected %q)", want))
		}
		return Identity{}, unauthorized(fmt.Sprintf("issuer %q not accepted (expected %q)", clip(c.Issuer), want))
	}
	if want := v.cfg.Audience; want != "" && !slices.Contains(c.Audience, want) {
		if len(c.Audience) == 0 {
			return Identity{}, unauthorized(fmt.Sprintf("audience: token has no aud claim (expected %q)", want))
		}
		aud, _ := json.Marshal([]string(c.Audience))
		return Identity{}, unauthorized(fmt.Sprintf("audience %s does not include %q", clip(string(aud)), want))
	}
	id := Identity{UserID: c.Subject, Claims: c.raw}
	if c.ExpiresAt != nil {
		id.Expires = c.ExpiresAt.Time
	}
	return id, nil
}

// keyFor is the jwt.Keyfunc: it picks the key for the token and refuses
// algorithms the key is not meant for.
func (v *Verifier) keyFor(t *jwt.Token) (any, error) {
	alg := t.Method.Alg()
	if v.jwks == nil {
		if !slices.Contains(v.algs, alg) {
			return nil, reasonf("signing method %s not allowed with %s", clip(alg), v.desc)
		}
		return v.key, nil
	}
	return v.jwksKey(t, alg)
}

// claims decodes the registered claims and keeps the claims object
// verbatim.
type claims struct {
	jwt.RegisteredClaims
	raw json.RawMessage
}

func (c *claims) UnmarshalJSON(b []byte) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil || m == nil {
		return reasonf("the claims are not a JSON object")
	}
	for name, want := range map[string]string{"sub": "string", "iss": "string", "aud": "aud", "exp": "number", "nbf": "number", "iat": "number"} {
		val, ok := m[name]
		if !ok || string(val) == "null" {
			continue
		}
		var good bool
		switch want {
		case "string":
			good = val[0] == '"'
		case "number":
			good = val[0] == '-' || val[0] >= '0' && val[0] <= '9'
		case "aud":
			var s []string
			good = val[0] == '"' || json.Unmarshal(val, &s) == nil
			want = "string or an array of strings"
		}
		if !good {
			return reasonf("claim %s is not a %s", name, want)
		}
	}
	if err := json.Unmarshal(b, &c.RegisteredClaims); err != nil {
		return reasonf("the registered claims cannot be read: %v", err)
	}
	c.raw = append(json.RawMessage(nil), b...)
	return nil
}

// reason is an error whose message is safe to show to the client.
type reason struct{ msg string }

func (r *reason) Error() string { return r.msg }

func reasonf(format string, args ...any) error { return &reason{fmt.Sprintf(format, args...)} }

func unauthorized(msg string) error { return fmt.Errorf("%w: %s", ErrUnauthorized, msg) }

// reasonOf turns an error of the JWT parser into a short reason.
func reasonOf(err error) string {
	var r *reason
	switch {
	case errors.As(err, &r):
		return r.msg
	case errors.Is(err, jwt.ErrTokenExpired):
		return "token expired"
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return "token not valid yet (nbf)"
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return "invalid signature"
	case errors.Is(err, jwt.ErrTokenMalformed):
		return "malformed token"
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		return "unsupported or missing signing method (alg)"
	}
	return "invalid token"
}

// clip bounds a client-supplied string quoted in a reason.
func clip(s string) string {
	if len(s) > 100 {
		return s[:100] + "…"
	}
	return s
}

// algsFor returns the algorithms a key can verify.
func algsFor(key any) []string {
	switch k := key.(type) {
	case []byte:
		return []string{"HS256", "HS384", "HS512"}
	case *rsa.PublicKey:
		return []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return []string{"ES256"}
		case elliptic.P384():
			return []string{"ES384"}
		case elliptic.P521():
			return []string{"ES512"}
		}
	case ed25519.PublicKey:
		return []string{"EdDSA"}
	}
	return nil
}

// describe names a key for reasons and logs.
func describe(key any) string {
	switch k := key.(type) {
	case []byte:
		return "an HMAC secret"
	case *rsa.PublicKey:
		return "an RSA key"
	case *ecdsa.PublicKey:
		return fmt.Sprintf("an EC %s key", k.Curve.Params().Name)
	case ed25519.PublicKey:
		return "an Ed25519 key"
	}
	return fmt.Sprintf("a key of type %T", key)
}

// SignHMAC makes an HS256 token for user sub valid for ttl (no exp when ttl
// is 0), with the claims of extra added (they may not set sub or exp). It
// is meant for `lattice token`, development and tests.
func SignHMAC(secret []byte, sub string, ttl time.Duration, extra map[string]any) (string, error) {
	if len(secret) == 0 {
		return "", errors.New("sign token: no secret")
	}
	if sub == "" {
		return "", errors.New("sign token: no sub")
	}
	now := time.Now()
	c := jwt.MapClaims{}
	for k, val := range extra {
		if k == "sub" || k == "exp" {
			return "", fmt.Errorf("sign token: claim %s cannot be set as an extra claim (it comes from sub and ttl)", k)
		}
		c[k] = val
	}
	c["sub"] = sub
	if _, ok := c["iat"]; !ok {
		c["iat"] = now.Unix()
	}
	if ttl != 0 {
		c["exp"] = now.Add(ttl).Unix()
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(secret)
	if err != nil {
		return "", fmt.Errorf("sign token: %w", err)
	}
	return s, nil
}
