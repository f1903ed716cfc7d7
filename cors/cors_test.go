package cors

import (
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

func TestCORS(t *testing.T) {
	ctx := request(map[string]string{"Origin": "https://player.example"})
	Write(ctx, []string{"https://other.example", "https://player.example"}, false)
	if got := string(ctx.Response.Header.Peek("Access-Control-Allow-Origin")); got != "https://player.example" {
		t.Fatalf("allowed origin echoed as %q", got)
	}
	if got := string(ctx.Response.Header.Peek("Access-Control-Expose-Headers")); got == "" {
		t.Fatal("Location and ETag must be exposed to browser clients")
	}
	ctx = request(map[string]string{"Origin": "https://evil.example"})
	Write(ctx, []string{"https://player.example"}, false)
	if got := ctx.Response.Header.Peek("Access-Control-Allow-Origin"); got != nil {
		t.Fatalf("disallowed origin got Access-Control-Allow-Origin %q", got)
	}
	ctx = request(map[string]string{"Origin": "https://any.example"})
	Write(ctx, []string{"*"}, false)
	if got := string(ctx.Response.Header.Peek("Access-Control-Allow-Origin")); got != "https://any.example" {
		t.Fatalf("wildcard: got %q", got)
	}
}

func TestAdmitAnyOrigin(t *testing.T) {
	ctx := request(map[string]string{"Origin": "null"})
	Write(ctx, []string{"https://player.example"}, true)
	if got := string(ctx.Response.Header.Peek("Access-Control-Allow-Origin")); got != "null" {
		t.Fatalf("admitted origin echoed as %q, want null", got)
	}
	ctx = request(nil)
	Write(ctx, []string{"*"}, true)
	if got := ctx.Response.Header.Peek("Access-Control-Allow-Origin"); got != nil {
		t.Fatalf("a request without Origin got %q", got)
	}
}
