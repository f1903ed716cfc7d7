package api

import (
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

func serve(t *testing.T, h func(ctx *fasthttp.RequestCtx), header ...string) *fasthttp.Response {
	t.Helper()
	var ctx fasthttp.RequestCtx
	ctx.Request.Header.SetMethod(fasthttp.MethodGet)
	for i := 0; i+1 < len(header); i += 2 {
		ctx.Request.Header.Set(header[i], header[i+1])
	}
	h(&ctx)
	var resp fasthttp.Response
	ctx.Response.CopyTo(&resp)
	return &resp
}

func TestPagesEscapeStreamName(t *testing.T) {
	p := NewPages()
	const stream = `a"><script>alert(1)</script>`
	for name, h := range map[string]func(*fasthttp.RequestCtx, string){
		"publish": p.ServePublish,
		"play":    p.ServePlay,
	} {
		resp := serve(t, func(ctx *fasthttp.RequestCtx) { h(ctx, stream) })
		body := string(resp.Body())
		if strings.Contains(body, "<script>alert") {
			t.Errorf("%s page has the stream name unescaped:\n%s", name, body)
		}
		if !strings.Contains(body, `data-stream="a&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"`) {
			t.Errorf("%s page lacks the escaped data-stream attribute:\n%s", name, body)
		}
		if strings.Count(body, "<script") != 1 {
			t.Errorf("%s page has inline scripts; want only its module script:\n%s", name, body)
		}
	}
}

func TestPagesHeaders(t *testing.T) {
	p := NewPages()
	tests := []struct {
		name        string
		h           func(*fasthttp.RequestCtx, string)
		frameOption string // X-Frame-Options, "" for none
	}{
		{"publish may be framed only by its own origin", p.ServePublish, "SAMEORIGIN"},
		{"play works inside any iframe", p.ServePlay, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := serve(t, func(ctx *fasthttp.RequestCtx) { tt.h(ctx, "s1") })
			h := &resp.Header
			if resp.StatusCode() != fasthttp.StatusOK {
				t.Fatalf("status %d", resp.StatusCode())
			}
			if got := string(h.ContentType()); got != "text/html; charset=utf-8" {
				t.Errorf("Content-Type = %q", got)
			}
			if got := string(h.Peek("Cache-Control")); got != "no-cache" {
				t.Errorf("Cache-Control = %q", got)
			}
			if got := string(h.Peek("X-Frame-Options")); got != tt.frameOption {
				t.Errorf("X-Frame-Options = %q, want %q", got, tt.frameOption)
			}
			csp := string(h.Peek("Content-Security-Policy"))
			if !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") {
				t.Errorf("Content-Security-Policy = %q", csp)
			}
			if tt.frameOption == "" && strings.Contains(csp, "frame-ancestors") {
				t.Errorf("play page CSP limits framing: %q", csp)
			}
		})
	}
}

func TestPagesStatic(t *testing.T) {
	p := NewPages()
	tests := []struct {
		name        string
		file        string
		status      int
		contentType string
	}{
		{"shared WHIP client", "whip.js", fasthttp.StatusOK, "text/javascript; charset=utf-8"},
		{"publish script", "publish.js", fasthttp.StatusOK, "text/javascript; charset=utf-8"},
		{"play script", "play.js", fasthttp.StatusOK, "text/javascript; charset=utf-8"},
		{"stylesheet", "cascade.css", fasthttp.StatusOK, "text/css; charset=utf-8"},
		{"unknown file", "nope.js", fasthttp.StatusNotFound, ""},
		{"page template is not static", "play.html", fasthttp.StatusNotFound, ""},
		{"no path traversal", "../pages.go", fasthttp.StatusNotFound, ""},
		{"empty name", "", fasthttp.StatusNotFound, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := serve(t, func(ctx *fasthttp.RequestCtx) { p.ServeStatic(ctx, tt.file) })
			if resp.StatusCode() != tt.status {
				t.Fatalf("status %d, want %d", resp.StatusCode(), tt.status)
			}
			if tt.status != fasthttp.StatusOK {
				return
			}
			if got := string(resp.Header.ContentType()); got != tt.contentType {
				t.Errorf("Content-Type = %q, want %q", got, tt.contentType)
			}
			if len(resp.Body()) == 0 {
				t.Error("empty body")
			}
			etag := string(resp.Header.Peek("ETag"))
			again := serve(t, func(ctx *fasthttp.RequestCtx) { p.ServeStatic(ctx, tt.file) }, "If-None-Match", etag)
			if again.StatusCode() != fasthttp.StatusNotModified || len(again.Body()) != 0 {
				t.Errorf("If-None-Match %s: status %d, %d bytes; want 304, empty", etag, again.StatusCode(), len(again.Body()))
			}
		})
	}
}

func TestETagMatches(t *testing.T) {
	tests := []struct {
		header string
		want   bool
	}{
		{`"abc"`, true},
		{`W/"abc"`, true},
		{`"x", "abc"`, true},
		{`*`, true},
		{`"abcd"`, false},
		{``, false},
	}
	for _, tt := range tests {
		if got := etagMatches([]byte(tt.header), `"abc"`); got != tt.want {
			t.Errorf("etagMatches(%q) = %v, want %v", tt.header, got, tt.want)
		}
	}
}
