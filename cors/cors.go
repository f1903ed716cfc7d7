// Package cors writes the CORS headers of Cascade's WHIP and WHEP
// resources (RFC 9725 §4.1 expects browser clients), the same on a node
// and on a balancer, so that a browser that follows a balancer's redirect
// sees one policy.
package cors

import (
	"bytes"

	"github.com/valyala/fasthttp"
)

// Write answers a request from an allowed origin with the CORS headers:
// the origin echoed, the methods and headers WHIP/WHEP clients use, and
// the response headers they must read (Location, ETag, Link, …). allowed
// holds origins or "*"; admit allows the request's origin whatever it is.
// A request with no Origin gets nothing.
func Write(ctx *fasthttp.RequestCtx, allowed []string, admit bool) {
	origin := ctx.Request.Header.Peek(fasthttp.HeaderOrigin)
	if len(origin) == 0 {
		return
	}
	ok := admit
	for _, a := range allowed {
		if ok {
			break
		}
		ok = a == "*" || bytes.EqualFold([]byte(a), origin)
	}
	if !ok {
		return
	}
	h := &ctx.Response.Header
	h.SetBytesV(fasthttp.HeaderAccessControlAllowOrigin, origin)
	h.Add(fasthttp.HeaderVary, "Origin")
	h.Set(fasthttp.HeaderAccessControlAllowMethods, "GET, POST, PATCH, DELETE, OPTIONS")
	h.Set(fasthttp.HeaderAccessControlAllowHeaders, "Authorization, Content-Type, If-Match")
	h.Set(fasthttp.HeaderAccessControlExposeHeaders, "Location, ETag, Link, Accept-Patch, Accept-Post, Retry-After")
	h.Set(fasthttp.HeaderAccessControlMaxAge, "600")
}
