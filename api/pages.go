package api

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"html/template"
	"io/fs"
	"path"
	"strings"

	"github.com/valyala/fasthttp"
)

//go:embed web/*.html web/static/*
var webFS embed.FS

// The pages load only their own scripts and styles from /static/. The
// browser may connect to any http(s) origin because ?server= points the WHIP
// or WHEP request at another node; a MediaStream in srcObject is not a fetch,
// so media-src needs nothing. The publish page may be framed only by its own
// origin (it asks for the camera); the play page is meant for iframes, so it
// sets no frame-ancestors and no X-Frame-Options.
const (
	cspCommon = "default-src 'none'; script-src 'self'; style-src 'self'; " +
		"img-src 'self' data:; connect-src 'self' http: https:; " +
		"base-uri 'none'; form-action 'none'"
	cspPublish = cspCommon + "; frame-ancestors 'self'"
	cspPlay    = cspCommon
)

// Pages serves the embedded publish and play pages.
type Pages struct {
	publish *template.Template
	play    *template.Template
	static  map[string]staticFile // by base name, e.g. "whip.js"
}

// staticFile is one embedded asset with its precomputed headers.
type staticFile struct {
	body        []byte
	contentType string
	etag        string
}

// pageData is what the page templates see. html/template escapes Stream for
// the attribute it lands in; the scripts read it from data-stream and never
// see it as code.
type pageData struct {
	Stream string
}

// NewPages parses the embedded pages. It panics if the embedded assets are
// broken, which only a bad build can cause.
func NewPages() *Pages {
	p := &Pages{
		publish: template.Must(template.ParseFS(webFS, "web/publish.html")),
		play:    template.Must(template.ParseFS(webFS, "web/play.html")),
		static:  make(map[string]staticFile),
	}
	entries, err := fs.ReadDir(webFS, "web/static")
	if err != nil {
		panic(fmt.Sprintf("api: embedded static assets: %v", err))
	}
	for _, e := range entries {
		body, err := fs.ReadFile(webFS, "web/static/"+e.Name())
		if err != nil {
			panic(fmt.Sprintf("api: embedded static asset %s: %v", e.Name(), err))
		}
		sum := sha256.Sum256(body)
		p.static[e.Name()] = staticFile{
			body:        body,
			contentType: contentType(e.Name()),
			etag:        `"` + hex.EncodeToString(sum[:8]) + `"`,
		}
	}
	return p
}

// ServePublish writes the publish page for stream.
func (p *Pages) ServePublish(ctx *fasthttp.RequestCtx, stream string) {
	ctx.Response.Header.Set("X-Frame-Options", "SAMEORIGIN")
	p.servePage(ctx, p.publish, stream, cspPublish)
}

// ServePlay writes the play page for stream. It sets no X-Frame-Options so
// that the page works inside an iframe.
func (p *Pages) ServePlay(ctx *fasthttp.RequestCtx, stream string) {
	p.servePage(ctx, p.play, stream, cspPlay)
}

// ServeStatic writes the embedded asset name (a base name such as
// "whip.js", as routed from GET /static/{name}), or 404 if there is none.
// Assets are revalidated on each load (no-cache) and answer a matching
// If-None-Match with 304.
func (p *Pages) ServeStatic(ctx *fasthttp.RequestCtx, name string) {
	f, ok := p.static[name]
	if !ok {
		ctx.Error("not found", fasthttp.StatusNotFound)
		return
	}
	h := &ctx.Response.Header
	h.Set("Cache-Control", "no-cache")
	h.Set("ETag", f.etag)
	h.Set("X-Content-Type-Options", "nosniff")
	if etagMatches(ctx.Request.Header.Peek("If-None-Match"), f.etag) {
		ctx.SetStatusCode(fasthttp.StatusNotModified)
		return
	}
	ctx.SetContentType(f.contentType)
	ctx.SetBody(f.body)
}

func (p *Pages) servePage(ctx *fasthttp.RequestCtx, t *template.Template, stream, csp string) {
	var buf bytes.Buffer
	if err := t.Execute(&buf, pageData{Stream: stream}); err != nil {
		// Only a broken embedded template gets here.
		ctx.Error("page template: "+err.Error(), fasthttp.StatusInternalServerError)
		return
	}
	h := &ctx.Response.Header
	h.Set("Cache-Control", "no-cache")
	h.Set("Content-Security-Policy", csp)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	ctx.SetContentType("text/html; charset=utf-8")
	ctx.SetBody(buf.Bytes())
}

func contentType(name string) string {
	switch path.Ext(name) {
	case ".js":
		return "text/javascript; charset=utf-8"
	case ".css":
		return "text/css; charset=utf-8"
	case ".svg":
		return "image/svg+xml"
	default:
		return "application/octet-stream"
	}
}

// etagMatches reports whether an If-None-Match header value lists etag
// (RFC 9110 section 13.1.2, weak comparison).
func etagMatches(header []byte, etag string) bool {
	for tag := range strings.SplitSeq(string(header), ",") {
		tag = strings.TrimSpace(tag)
		if tag == "*" || strings.TrimPrefix(tag, "W/") == etag {
			return true
		}
	}
	return false
}
