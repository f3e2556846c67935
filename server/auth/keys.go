package auth

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"
)

// parsePublicKeyPEM reads the first public key of a PEM file: a PUBLIC KEY
// (PKIX: RSA, EC or Ed25519), RSA PUBLIC KEY (PKCS #1) or CERTIFICATE
// block. Private keys are refused: the service only verifies.
func parsePublicKeyPEM(b []byte) (any, error) {
	rest := b
	for {
		block, r := pem.Decode(rest)
		if block == nil {
			break
		}
		rest = r
		var key any
		var err error
		switch block.Type {
		case "PUBLIC KEY":
			key, err = x509.ParsePKIXPublicKey(block.Bytes)
		case "RSA PUBLIC KEY":
			key, err = x509.ParsePKCS1PublicKey(block.Bytes)
		case "CERTIFICATE":
			var cert *x509.Certificate
			cert, err = x509.ParseCertificate(block.Bytes)
			if err == nil {
				key = cert.PublicKey
			}
		case "PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY", "ENCRYPTED PRIVATE KEY", "OPENSSH PRIVATE KEY":
			return nil, fmt.Errorf("the PEM holds a private key (%s): give the public key only (openssl pkey -in private.pem -pubout -out public.pem)", block.Type)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("PEM block %s: %w", block.Type, err)
		}
		if algsFor(key) == nil {
			return nil, fmt.Errorf("unsupported public key type %T: use an RSA, EC (P-256, P-384, P-521) or Ed25519 key", key)
		}
		return key, nil
	}
	return nil, errors.New("no PEM public key found (expected a -----BEGIN PUBLIC KEY----- block)")
}

// startJWKS fetches the JWKS once and starts refreshing it.
func (v *Verifier) startJWKS(ctx context.Context) error {
	u, err := url.Parse(v.cfg.JWKSURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("auth: --jwks-url %q is not an http:// or https:// URL", v.cfg.JWKSURL)
	}
	if u.Scheme == "http" && !isLoopback(u.Hostname()) {
		v.log.Warn("the JWKS URL is plain http: anyone on the path can substitute signing keys; use https", "jwks_url", v.cfg.JWKSURL)
	}
	client := v.cfg.HTTPClient
	if client == nil {
		client = &http.Client{Timeout: httpTimeout}
	}
	v.ctx, v.cancel = context.WithCancel(ctx)
	failFirst := false
	kf, err := keyfunc.NewDefaultOverrideCtx(v.ctx, []string{v.cfg.JWKSURL}, keyfunc.Override{
		Client:                    client,
		HTTPTimeout:               httpTimeout,
		NoErrorReturnFirstHTTPReq: &failFirst,
		RefreshInterval:           jwksRefresh,
		RefreshUnknownKID:         rate.NewLimiter(rate.Every(unknownKIDEvery), 1),
		RateLimitWaitMax:          unknownKIDWait,
		RefreshErrorHandlerFunc: func(u string) func(context.Context, error) {
			return func(ctx context.Context, err error) {
				if v.ctx.Err() == nil {
					v.log.Warn("refresh JWKS (the keys fetched before stay in use)", "jwks_url", u, "err", err)
				}
			}
		},
	})
	if err != nil {
		v.cancel()
		return fmt.Errorf("auth: --jwks-url %s does not answer a valid JWKS: %s", v.cfg.JWKSURL, fetchError(err))
	}
	v.jwks = kf
	keys, err := kf.Storage().KeyReadAll(v.ctx)
	if err != nil {
		v.cancel()
		return fmt.Errorf("auth: read JWKS of %s: %w", v.cfg.JWKSURL, err)
	}
	var kids []string
	for _, j := range keys {
		if _, _, why := usable(j); why == "" {
			kids = append(kids, j.Marshal().KID)
		} else {
			v.log.Warn("JWKS key not used", "jwks_url", v.cfg.JWKSURL, "kid", j.Marshal().KID, "reason", why)
		}
	}
	if len(kids) == 0 {
		v.cancel()
		return fmt.Errorf("auth: the JWKS at %s has no key that can verify tokens (RSA, EC P-256/P-384/P-521 or Ed25519 signing keys; %d keys in the set)", v.cfg.JWKSURL, len(keys))
	}
	v.log.Info("JWKS loaded", "jwks_url", v.cfg.JWKSURL, "kids", strings.Join(kids, ","))
	return nil
}

// fetchError shortens the error of keyfunc's first JWKS request to its
// cause.
func fetchError(err error) string {
	msg, _, _ := strings.Cut(err.Error(), "\n")
	for _, p := range []string{"JWK Set refresh: ", "first HTTP request for JWK Set: "} {
		if i := strings.LastIndex(msg, p); i >= 0 {
			return msg[i+len(p):]
		}
	}
	return msg
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// jwksKey picks the JWKS key of the token's kid (refreshing the set when
// it does not hold it, rate-limited) or, for a token without kid, the keys
// of the set that fit its algorithm.
func (v *Verifier) jwksKey(t *jwt.Token, alg string) (any, error) {
	if !containsAlg(allAlgs, alg) || strings.HasPrefix(alg, "HS") {
		return nil, reasonf("signing method %s not allowed with the keys of a JWKS", clip(alg))
	}
	raw, ok := t.Header["kid"]
	if !ok {
		keys, err := v.jwks.Storage().KeyReadAll(v.ctx)
		if err != nil {
			return nil, reasonf("JWKS unavailable")
		}
		var set jwt.VerificationKeySet
		for _, j := range keys {
			if key, algs, _ := usable(j); containsAlg(algs, alg) {
				set.Keys = append(set.Keys, key)
			}
		}
		if len(set.Keys) == 0 {
			return nil, reasonf("token has no kid and no key of the JWKS allows signing method %s", alg)
		}
		return set, nil
	}
	kid, ok := raw.(string)
	if !ok {
		return nil, reasonf("header kid is not a string")
	}
	j, err := v.jwks.Storage().KeyRead(v.ctx, kid)
	if err != nil {
		v.log.Debug("token names a key the JWKS does not hold", "kid", clip(kid), "err", err)
		return nil, reasonf("unknown key id %q", clip(kid))
	}
	key, algs, why := usable(j)
	if why != "" {
		return nil, reasonf("key id %q cannot verify tokens: %s", clip(kid), why)
	}
	if !containsAlg(algs, alg) {
		return nil, reasonf("signing method %s not allowed with key id %q (%s)", alg, clip(kid), strings.Join(algs, ", "))
	}
	return key, nil
}

// usable returns the public key of a JWK and the algorithms it verifies,
// or why it verifies none: a key whose use is not sig, a symmetric key (a
// published secret is no secret), an unsupported type, or an alg that does
// not fit the key type.
func usable(j jwkset.JWK) (key any, algs []string, why string) {
	m := j.Marshal()
	if m.USE != "" && m.USE != jwkset.UseSig {
		return nil, nil, fmt.Sprintf("its use is %q, not \"sig\"", m.USE)
	}
	key = j.Key()
	if _, ok := key.([]byte); ok {
		return nil, nil, "symmetric (oct) keys are not accepted from a JWKS"
	}
	if pk, ok := key.(interface{ Public() crypto.PublicKey }); ok {
		key = pk.Public()
	}
	algs = algsFor(key)
	if algs == nil {
		return nil, nil, fmt.Sprintf("unsupported key type %T", key)
	}
	if a := m.ALG.String(); a != "" {
		if !containsAlg(algs, a) {
			return nil, nil, fmt.Sprintf("its alg %s does not fit %s", a, describe(key))
		}
		algs = []string{a}
	}
	return key, algs, ""
}

func containsAlg(algs []string, alg string) bool {
	for _, a := range algs {
		if a == alg {
			return true
		}
	}
	return false
}
