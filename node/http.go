package node

import (
	"bytes"
	"crypto/subtle"
	"strings"

	"github.com/valyala/fasthttp"
)

// Content types of the WHIP/WHEP resources (RFC 9725 §4.2, RFC 8840 §9).
const (
	contentTypeSDP     = "application/sdp"
	contentTypeSDPFrag = "application/trickle-ice-sdpfrag"
)

// fail writes a short plain-text reason with status.
func fail(ctx *fasthttp.RequestCtx, status int, reason string) {
	ctx.ResetBody()
	ctx.SetStatusCode(status)
	ctx.SetContentType("text/plain; charset=utf-8")
	ctx.SetBodyString(reason + "\n")
}

// hasContentType reports whether the request's Content-Type, ignoring
// parameters and case, is want.
func hasContentType(ctx *fasthttp.RequestCtx, want string) bool {
	ct := ctx.Request.Header.ContentType()
	if i := bytes.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	return strings.EqualFold(strings.TrimSpace(string(ct)), want)
}

// BearerToken returns the token in the Authorization header: "Bearer T"
// or, as some WHIP clients send it, the bare token.
func BearerToken(ctx *fasthttp.RequestCtx) string {
	h := strings.TrimSpace(string(ctx.Request.Header.Peek(fasthttp.HeaderAuthorization)))
	if len(h) >= 6 && strings.EqualFold(h[:6], "bearer") && (len(h) == 6 || h[6] == ' ') {
		return strings.TrimSpace(h[6:])
	}
	return h
}

// authorize checks the request's token against want. An empty want lets
// everyone in. It writes 401 (no token) or 403 (wrong token) and returns
// false when the request may not go on.
func authorize(ctx *fasthttp.RequestCtx, want string) bool {
	if want == "" {
		return true
	}
	got := BearerToken(ctx)
	if got == "" {
		ctx.Response.Header.Set(fasthttp.HeaderWWWAuthenticate, `Bearer realm="cascade"`)
		fail(ctx, fasthttp.StatusUnauthorized, "missing token: send Authorization: Bearer <token>")
		return false
	}
	if subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1 {
		fail(ctx, fasthttp.StatusForbidden, "wrong token")
		return false
	}
	return true
}

// validStreamName reports whether s can name a stream: 1 to 128 of
// letters, digits, '-', '_', '.' and '~' (URL-safe without escaping).
func validStreamName(s string) bool {
	if len(s) == 0 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '-' || c == '_' || c == '.' || c == '~') {
			return false
		}
	}
	return s != "." && s != ".."
}
