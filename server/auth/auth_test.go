package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
)

// keys are generated once per test binary: RSA generation is slow.
var (
	keysOnce sync.Once
	rsaA     *rsa.PrivateKey
	rsaB     *rsa.PrivateKey
	ecA      = map[string]*ecdsa.PrivateKey{}
	ecB      = map[string]*ecdsa.PrivateKey{}
	edA      ed25519.PrivateKey
	edB      ed25519.PrivateKey
)

func keys(t *testing.T) {
	t.Helper()
	keysOnce.Do(func() {
		must := func(err error) {
			if err != nil {
				panic(err)
			}
		}
		var err error
		rsaA, err = rsa.GenerateKey(rand.Reader, 2048)
		must(err)
		rsaB, err = rsa.GenerateKey(rand.Reader, 2048)
		must(err)
		for name, c := range map[string]elliptic.Curve{"P-256": elliptic.P256(), "P-384": elliptic.P384(), "P-521": elliptic.P521()} {
			ecA[name], err = ecdsa.GenerateKey(c, rand.Reader)
			must(err)
			ecB[name], err = ecdsa.GenerateKey(c, rand.Reader)
			must(err)
		}
		_, edA, err = ed25519.GenerateKey(rand.Reader)
		must(err)
		_, edB, err = ed25519.GenerateKey(rand.Reader)
		must(err)
	})
}

func pkixPEM(t *testing.T, pub crypto.PublicKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), nil))
}

func newVerifier(t *testing.T, cfg Config) *Verifier {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	v, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(v.Close)
	return v
}

func sign(t *testing.T, m jwt.SigningMethod, key any, claims jwt.MapClaims, header map[string]any) string {
	t.Helper()
	tok := jwt.NewWithClaims(m, claims)
	for k, v := range header {
		tok.Header[k] = v
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatalf("sign %s: %v", m.Alg(), err)
	}
	return s
}

func std() jwt.MapClaims {
	return jwt.MapClaims{"sub": "alice", "exp": time.Now().Add(time.Hour).Unix()}
}

func accept(t *testing.T, v *Verifier, tok string) Identity {
	t.Helper()
	id, err := v.Verify(tok, time.Now())
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	return id
}

func refuse(t *testing.T, v *Verifier, tok string, want string) {
	t.Helper()
	_, err := v.Verify(tok, time.Now())
	if err == nil {
		t.Fatalf("Verify accepted a token that should be refused (%s)", want)
	}
	if !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("error %v does not wrap ErrUnauthorized", err)
	}
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not say %q", err, want)
	}
}

func TestAuthEveryAlgorithm(t *testing.T) {
	keys(t)
	type kp struct {
		sign   any
		pub    crypto.PublicKey
		other  crypto.PublicKey
		secret bool
	}
	secret, otherSecret := []byte("0123456789abcdef0123456789abcdef"), []byte("another secret of thirty-two bytes!")
	hmac := kp{sign: secret, secret: true}
	rsaKP := kp{sign: rsaA, pub: &rsaA.PublicKey, other: &rsaB.PublicKey}
	ec := func(c string) kp { return kp{sign: ecA[c], pub: &ecA[c].PublicKey, other: &ecB[c].PublicKey} }
	cases := []struct {
		m  jwt.SigningMethod
		kp kp
	}{
		{jwt.SigningMethodHS256, hmac}, {jwt.SigningMethodHS384, hmac}, {jwt.SigningMethodHS512, hmac},
		{jwt.SigningMethodRS256, rsaKP}, {jwt.SigningMethodRS384, rsaKP}, {jwt.SigningMethodRS512, rsaKP},
		{jwt.SigningMethodPS256, rsaKP}, {jwt.SigningMethodPS384, rsaKP}, {jwt.SigningMethodPS512, rsaKP},
		{jwt.SigningMethodES256, ec("P-256")}, {jwt.SigningMethodES384, ec("P-384")}, {jwt.SigningMethodES512, ec("P-521")},
		{jwt.SigningMethodEdDSA, kp{sign: edA, pub: edA.Public(), other: edB.Public()}},
	}
	for _, c := range cases {
		t.Run(c.m.Alg(), func(t *testing.T) {
			tok := sign(t, c.m, c.kp.sign, std(), nil)
			var good, bad *Verifier
			if c.kp.secret {
				good = newVerifier(t, Config{Secret: secret})
				bad = newVerifier(t, Config{Secret: otherSecret})
			} else {
				good = newVerifier(t, Config{PublicKeyPEM: pkixPEM(t, c.kp.pub)})
				bad = newVerifier(t, Config{PublicKeyPEM: pkixPEM(t, c.kp.other)})
			}
			if !containsAlg(good.Methods(), c.m.Alg()) {
				t.Fatalf("Methods() = %v, want it to contain %s", good.Methods(), c.m.Alg())
			}
			id := accept(t, good, tok)
			if id.UserID != "alice" || id.Expires.IsZero() {
				t.Fatalf("identity %+v", id)
			}
			refuse(t, bad, tok, "invalid signature")
			// A kid is ignored with a single key.
			accept(t, good, sign(t, c.m, c.kp.sign, std(), map[string]any{"kid": "whatever"}))
		})
	}
}

func TestAuthPEMForms(t *testing.T) {
	keys(t)
	tok := sign(t, jwt.SigningMethodRS256, rsaA, std(), nil)
	pkcs1 := pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&rsaA.PublicKey)})
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "idp"}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &rsaA.PublicKey, rsaA)
	if err != nil {
		t.Fatal(err)
	}
	cert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	for name, p := range map[string][]byte{"pkcs1": pkcs1, "certificate": cert, "pkix after junk": append([]byte("comment\n"), pkixPEM(t, &rsaA.PublicKey)...)} {
		t.Run(name, func(t *testing.T) {
			accept(t, newVerifier(t, Config{PublicKeyPEM: p}), tok)
		})
	}
}

func TestAuthAlgNoneRefused(t *testing.T) {
	keys(t)
	tok := sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, std(), nil)
	refuse(t, newVerifier(t, Config{Secret: []byte("0123456789abcdef0123456789abcdef")}), tok, "signing method none not allowed with an HMAC secret")
	refuse(t, newVerifier(t, Config{PublicKeyPEM: pkixPEM(t, &rsaA.PublicKey)}), tok, "signing method none not allowed with an RSA key")
}

func TestAuthAlgorithmConfusionRefused(t *testing.T) {
	keys(t)
	pubPEM := pkixPEM(t, &rsaA.PublicKey)
	v := newVerifier(t, Config{PublicKeyPEM: pubPEM})
	// The classic attack: the public key, which is public, as the HMAC secret.
	refuse(t, v, sign(t, jwt.SigningMethodHS256, pubPEM, std(), nil), "signing method HS256 not allowed with an RSA key")
	// And the other way round, an RS token against a secret.
	refuse(t, newVerifier(t, Config{Secret: []byte("0123456789abcdef0123456789abcdef")}), sign(t, jwt.SigningMethodRS256, rsaA, std(), nil),
		"signing method RS256 not allowed with an HMAC secret")
}

func TestAuthWrongKeyTypeRefused(t *testing.T) {
	keys(t)
	refuse(t, newVerifier(t, Config{PublicKeyPEM: pkixPEM(t, &rsaA.PublicKey)}), sign(t, jwt.SigningMethodES256, ecA["P-256"], std(), nil),
		"signing method ES256 not allowed with an RSA key")
	refuse(t, newVerifier(t, Config{PublicKeyPEM: pkixPEM(t, edA.Public())}), sign(t, jwt.SigningMethodRS256, rsaA, std(), nil),
		"signing method RS256 not allowed with an Ed25519 key")
}

func TestAuthECCurveMismatchRefused(t *testing.T) {
	keys(t)
	v := newVerifier(t, Config{PublicKeyPEM: pkixPEM(t, &ecA["P-384"].PublicKey)})
	if got := v.Methods(); !reflect.DeepEqual(got, []string{"ES384"}) {
		t.Fatalf("Methods() = %v, want [ES384]", got)
	}
	refuse(t, v, sign(t, jwt.SigningMethodES256, ecA["P-256"], std(), nil), "signing method ES256 not allowed with an EC P-384 key")
	refuse(t, v, sign(t, jwt.SigningMethodES512, ecA["P-521"], std(), nil), "signing method ES512 not allowed with an EC P-384 key")
}

func TestAuthClaims(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	v := newVerifier(t, Config{Secret: secret})
	now := time.Now()
	hs := func(c jwt.MapClaims) string { return sign(t, jwt.SigningMethodHS256, secret, c, nil) }

	refuse(t, v, hs(jwt.MapClaims{"sub": "a", "exp": now.Add(-10 * time.Second).Unix()}), "token expired")
	accept(t, v, hs(jwt.MapClaims{"sub": "a", "exp": now.Add(-2 * time.Second).Unix()})) // leeway
	refuse(t, v, hs(jwt.MapClaims{"sub": "a", "nbf": now.Add(time.Minute).Unix()}), "not valid yet")
	accept(t, v, hs(jwt.MapClaims{"sub": "a", "nbf": now.Add(2 * time.Second).Unix()}))
	accept(t, v, hs(jwt.MapClaims{"sub": "a", "iat": now.Add(time.Hour).Unix()})) // iat in the future is fine
	id := accept(t, v, hs(jwt.MapClaims{"sub": "a"}))
	if !id.Expires.IsZero() {
		t.Fatalf("no exp: Expires = %v", id.Expires)
	}
	refuse(t, v, hs(jwt.MapClaims{"role": "admin"}), "token has no sub claim")
	refuse(t, v, hs(jwt.MapClaims{"sub": ""}), "token has no sub claim")
	refuse(t, v, hs(jwt.MapClaims{"sub": 42}), "claim sub is not a string")
	refuse(t, v, hs(jwt.MapClaims{"sub": "a", "exp": "tomorrow"}), "claim exp is not a number")
	refuse(t, v, "", "missing token")
	refuse(t, v, "not.a.token", "malformed token")
	if _, err := v.Verify(hs(jwt.MapClaims{"sub": "a", "exp": now.Add(time.Minute).Unix()}), now.Add(2*time.Minute)); err == nil || !strings.Contains(err.Error(), "token expired") {
		t.Fatalf("Verify uses now: %v", err)
	}

	// Claims is the payload verbatim: numbers as written, custom claims kept.
	payload := `{"sub":"bob","org_id":12345678901234567890,"teams":["a","b"],"role":"admin","meta":{"x":1.50}}`
	hdr := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))
	body := base64.RawURLEncoding.EncodeToString([]byte(payload))
	sig, err := jwt.SigningMethodHS256.Sign(hdr+"."+body, secret)
	if err != nil {
		t.Fatal(err)
	}
	id = accept(t, v, hdr+"."+body+"."+base64.RawURLEncoding.EncodeToString(sig))
	if string(id.Claims) != payload || id.UserID != "bob" {
		t.Fatalf("Claims = %s (user %q), want %s", id.Claims, id.UserID, payload)
	}
	var not jwt.MapClaims
	if err := json.Unmarshal(id.Claims, &not); err != nil {
		t.Fatal(err)
	}
}

func TestAuthIssuerAudience(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	v := newVerifier(t, Config{Secret: secret, Issuer: "https://idp.example", Audience: "lattice"})
	hs := func(c jwt.MapClaims) string { return sign(t, jwt.SigningMethodHS256, secret, c, nil) }
	accept(t, v, hs(jwt.MapClaims{"sub": "a", "iss": "https://idp.example", "aud": "lattice"}))
	accept(t, v, hs(jwt.MapClaims{"sub": "a", "iss": "https://idp.example", "aud": []string{"other", "lattice"}}))
	refuse(t, v, hs(jwt.MapClaims{"sub": "a", "iss": "https://evil.example", "aud": "lattice"}), `issuer "https://evil.example" not accepted`)
	refuse(t, v, hs(jwt.MapClaims{"sub": "a", "aud": "lattice"}), "issuer: token has no iss claim")
	refuse(t, v, hs(jwt.MapClaims{"sub": "a", "iss": "https://idp.example", "aud": "other"}), `audience ["other"] does not include "lattice"`)
	refuse(t, v, hs(jwt.MapClaims{"sub": "a", "iss": "https://idp.example"}), "audience: token has no aud claim")
	// Without Issuer/Audience configured, iss and aud are not checked.
	accept(t, newVerifier(t, Config{Secret: secret}), hs(jwt.MapClaims{"sub": "a", "iss": "x", "aud": "y"}))
}

func TestAuthConfigErrors(t *testing.T) {
	keys(t)
	ctx := context.Background()
	privDER, _ := x509.MarshalPKCS8PrivateKey(rsaA)
	priv := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER})
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/html":
			fmt.Fprint(w, "<html>hello</html>")
		case "/empty":
			fmt.Fprint(w, `{"keys":[]}`)
		case "/secret":
			fmt.Fprint(w, `{"keys":[{"kty":"oct","kid":"s","k":"c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"}]}`)
		default:
			http.NotFound(w, r)
		}
	}))
	defer bad.Close()
	gone := httptest.NewServer(http.NotFoundHandler())
	gone.Close()
	for _, c := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"none", Config{}, "no key to verify tokens"},
		{"two", Config{Secret: []byte("s"), JWKSURL: bad.URL}, "set only one of"},
		{"not pem", Config{PublicKeyPEM: []byte("hello")}, "no PEM public key found"},
		{"private", Config{PublicKeyPEM: priv}, "holds a private key"},
		{"bad url", Config{JWKSURL: "ftp://x/jwks"}, "not an http:// or https:// URL"},
		{"unreachable", Config{JWKSURL: gone.URL + "/jwks"}, "does not answer a valid JWKS"},
		{"404", Config{JWKSURL: bad.URL + "/missing"}, "does not answer a valid JWKS"},
		{"html", Config{JWKSURL: bad.URL + "/html"}, "does not answer a valid JWKS"},
		{"empty", Config{JWKSURL: bad.URL + "/empty"}, "has no key that can verify tokens"},
		{"oct only", Config{JWKSURL: bad.URL + "/secret"}, "has no key that can verify tokens"},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.cfg.Logger = testLogger(t)
			v, err := New(ctx, c.cfg)
			if err == nil {
				v.Close()
				t.Fatalf("New accepted %+v", c.cfg)
			}
			t.Log(err)
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q does not say %q", err, c.want)
			}
		})
	}
}

// jwksServer serves a JWK Set that the test can replace, and counts the
// requests.
type jwksServer struct {
	*httptest.Server
	body     atomic.Pointer[[]byte]
	requests atomic.Int64
}

func newJWKSServer(t *testing.T) *jwksServer {
	s := &jwksServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.Write(*s.body.Load())
	}))
	t.Cleanup(s.Close)
	return s
}

type jwkSpec struct {
	kid string
	pub crypto.PublicKey
	alg jwkset.ALG
}

func (s *jwksServer) set(t *testing.T, keys ...jwkSpec) {
	t.Helper()
	var set jwkset.JWKSMarshal
	for _, k := range keys {
		j, err := jwkset.NewJWKFromKey(k.pub, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: k.kid, USE: jwkset.UseSig, ALG: k.alg}})
		if err != nil {
			t.Fatal(err)
		}
		set.Keys = append(set.Keys, j.Marshal())
	}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	s.body.Store(&b)
}

func TestAuthJWKSRotation(t *testing.T) {
	keys(t)
	srv := newJWKSServer(t)
	srv.set(t, jwkSpec{kid: "k1", pub: &rsaA.PublicKey}, jwkSpec{kid: "pss", pub: &rsaB.PublicKey, alg: jwkset.AlgPS256})
	v := newVerifier(t, Config{JWKSURL: srv.URL + "/.well-known/jwks.json"})
	if n := srv.requests.Load(); n != 1 {
		t.Fatalf("%d JWKS requests at start, want 1", n)
	}
	if got, want := v.Methods(), []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("Methods() = %v, want %v", got, want)
	}
	k1 := func() string { return sign(t, jwt.SigningMethodRS256, rsaA, std(), map[string]any{"kid": "k1"}) }
	accept(t, v, k1())
	accept(t, v, sign(t, jwt.SigningMethodPS384, rsaA, std(), map[string]any{"kid": "k1"}))
	// The JWK's alg decides when it states one.
	accept(t, v, sign(t, jwt.SigningMethodPS256, rsaB, std(), map[string]any{"kid": "pss"}))
	refuse(t, v, sign(t, jwt.SigningMethodRS256, rsaB, std(), map[string]any{"kid": "pss"}), `signing method RS256 not allowed with key id "pss" (PS256)`)
	// Right kid, wrong key; a token without kid is tried against the keys that fit its alg.
	refuse(t, v, sign(t, jwt.SigningMethodRS256, rsaB, std(), map[string]any{"kid": "k1"}), "invalid signature")
	accept(t, v, sign(t, jwt.SigningMethodRS256, rsaA, std(), nil))
	// Algorithm confusion with a JWKS: the key's modulus as an HMAC secret.
	refuse(t, v, sign(t, jwt.SigningMethodHS256, rsaA.PublicKey.N.Bytes(), std(), map[string]any{"kid": "k1"}), "signing method HS256 not allowed")
	refuse(t, v, sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, std(), map[string]any{"kid": "k1"}), "signing method none not allowed")
	if n := srv.requests.Load(); n != 1 {
		t.Fatalf("%d JWKS requests for known kids, want 1", n)
	}

	// The identity provider rotates: k1 goes, k2 (another key type) comes.
	srv.set(t, jwkSpec{kid: "k2", pub: &ecA["P-256"].PublicKey})
	accept(t, v, sign(t, jwt.SigningMethodES256, ecA["P-256"], std(), map[string]any{"kid": "k2"}))
	if n := srv.requests.Load(); n != 2 {
		t.Fatalf("%d JWKS requests after the unknown kid k2, want 2", n)
	}
	refuse(t, v, k1(), `unknown key id "k1"`)
	refuse(t, v, sign(t, jwt.SigningMethodES256, ecA["P-256"], std(), map[string]any{"kid": "nope"}), `unknown key id "nope"`)
	if got := v.Methods(); !reflect.DeepEqual(got, []string{"ES256"}) {
		t.Fatalf("Methods() after rotation = %v, want [ES256]", got)
	}
	// A flood of unknown kids does not hammer the JWKS server.
	start := time.Now()
	for i := range 200 {
		refuse(t, v, sign(t, jwt.SigningMethodES256, ecA["P-256"], std(), map[string]any{"kid": fmt.Sprintf("bad-%d", i)}), "unknown key id")
	}
	if n := srv.requests.Load(); n > 3 {
		t.Fatalf("%d JWKS requests after 200 unknown kids, want at most 3", n)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("200 unknown kids took %v: refused tokens wait for the rate limit", d)
	}
	accept(t, v, sign(t, jwt.SigningMethodES256, ecA["P-256"], std(), map[string]any{"kid": "k2"}))
}

func TestAuthJWKSEd25519AndClose(t *testing.T) {
	keys(t)
	srv := newJWKSServer(t)
	srv.set(t, jwkSpec{kid: "ed", pub: edA.Public(), alg: jwkset.AlgEdDSA}, jwkSpec{kid: "ec", pub: &ecA["P-521"].PublicKey})
	v := newVerifier(t, Config{JWKSURL: srv.URL})
	if got := v.Methods(); !reflect.DeepEqual(got, []string{"ES512", "EdDSA"}) {
		t.Fatalf("Methods() = %v", got)
	}
	accept(t, v, sign(t, jwt.SigningMethodEdDSA, edA, std(), map[string]any{"kid": "ed"}))
	accept(t, v, sign(t, jwt.SigningMethodES512, ecA["P-521"], std(), map[string]any{"kid": "ec"}))
	refuse(t, v, sign(t, jwt.SigningMethodES256, ecA["P-256"], std(), map[string]any{"kid": "ec"}), `signing method ES256 not allowed with key id "ec" (ES512)`)
	refuse(t, v, sign(t, jwt.SigningMethodEdDSA, edB, std(), map[string]any{"kid": "ed"}), "invalid signature")
	// A kid unknown even after the refresh it causes is refused.
	refuse(t, v, sign(t, jwt.SigningMethodEdDSA, edA, std(), map[string]any{"kid": "nope"}), `unknown key id "nope"`)
	if n := srv.requests.Load(); n != 2 {
		t.Fatalf("%d JWKS requests, want 2 (start, unknown kid)", n)
	}
	v.Close()
	v.Close()
}

func TestAuthSignHMAC(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	tok, err := SignHMAC(secret, "carol", time.Hour, map[string]any{"role": "admin", "org_id": 7})
	if err != nil {
		t.Fatal(err)
	}
	id := accept(t, newVerifier(t, Config{Secret: secret}), tok)
	var c map[string]any
	json.Unmarshal(id.Claims, &c)
	if id.UserID != "carol" || c["role"] != "admin" || c["org_id"] != float64(7) || time.Until(id.Expires) < 59*time.Minute {
		t.Fatalf("identity %+v, claims %v", id, c)
	}
	for _, k := range []string{"sub", "exp"} {
		if _, err := SignHMAC(secret, "carol", time.Hour, map[string]any{k: "x"}); err == nil {
			t.Fatalf("SignHMAC let claim %s be set as an extra claim", k)
		}
	}
	if _, err := SignHMAC(nil, "carol", 0, nil); err == nil {
		t.Fatal("SignHMAC signed without secret")
	}
}
