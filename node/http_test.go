package node

import (
	"errors"
	"testing"

	"github.com/valyala/fasthttp"
)

func request(headers map[string]string) *fasthttp.RequestCtx {
	ctx := &fasthttp.RequestCtx{}
	for k, v := range headers {
		ctx.Request.Header.Set(k, v)
	}
	return ctx
}

func TestAuthorize(t *testing.T) {
	for _, tc := range []struct {
		name, want, header string
		status             int
		ok                 bool
	}{
		{"open stream", "", "", 200, true},
		{"bearer", "secret", "Bearer secret", 200, true},
		{"bearer any case", "secret", "bearer secret", 200, true},
		{"bare token (some WHIP clients)", "secret", "secret", 200, true},
		{"missing", "secret", "", 401, false},
		{"empty bearer", "secret", "Bearer ", 401, false},
		{"token that starts with bearer", "bearerish", "bearerish", 200, true},
		{"wrong", "secret", "Bearer nope", 403, false},
		{"prefix of the token", "secret", "Bearer secre", 403, false},
	} {
		ctx := request(map[string]string{"Authorization": tc.header})
		if tc.header == "" {
			ctx.Request.Header.Del("Authorization")
		}
		if ok := authorize(ctx, tc.want); ok != tc.ok || ctx.Response.StatusCode() != tc.status {
			t.Errorf("%s: ok=%v status=%d, want ok=%v status=%d", tc.name, ok, ctx.Response.StatusCode(), tc.ok, tc.status)
		}
	}
}

func TestValidStreamName(t *testing.T) {
	for name, want := range map[string]bool{
		"demo": true, "a-b_c.d~e": true, "Cam1": true,
		"": false, ".": false, "..": false, "a/b": false, "a b": false, "é": false,
		string(make([]byte, 129)): false,
	} {
		if got := validStreamName(name); got != want {
			t.Errorf("validStreamName(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestHasContentType(t *testing.T) {
	for ct, want := range map[string]bool{
		"application/sdp":                true,
		"Application/SDP":                true,
		"application/sdp; charset=utf-8": true,
		"application/json":               false,
		"":                               false,
	} {
		ctx := request(map[string]string{"Content-Type": ct})
		if got := hasContentType(ctx, contentTypeSDP); got != want {
			t.Errorf("hasContentType(%q) = %v, want %v", ct, got, want)
		}
	}
}

func TestCORSNullOriginWithGrant(t *testing.T) {
	verify := func(publish bool, stream, grant string) error {
		if grant == "good" && stream == "s" && publish {
			return nil
		}
		return errTestGrant
	}
	n := &Node{origins: []string{"https://page.example"}, hooks: Hooks{VerifyGrant: verify}}
	for _, tc := range []struct {
		uri, origin string
		allowed     bool
	}{
		{"/whip/s?grant=good", "null", true},
		{"/whip/s?grant=bad", "null", false},
		{"/whip/s", "null", false},
		{"/whep/s?grant=good", "null", false}, // a publish grant does not admit a play
		{"/whip/s?grant=good", "https://evil.example", false},
	} {
		ctx := request(map[string]string{"Origin": tc.origin})
		ctx.Request.Header.SetMethod("OPTIONS")
		ctx.Request.SetRequestURI(tc.uri)
		n.Handle(ctx)
		got := string(ctx.Response.Header.Peek("Access-Control-Allow-Origin"))
		if (got != "") != tc.allowed {
			t.Errorf("%s from %s: Access-Control-Allow-Origin %q, want allowed=%v", tc.uri, tc.origin, got, tc.allowed)
		}
	}
}

var errTestGrant = errors.New("grant refused")
