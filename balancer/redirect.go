package balancer

import (
	"bytes"
	"crypto/subtle"
	"fmt"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/cascade-rtc/cascade/cluster"
	"github.com/cascade-rtc/cascade/cors"
)

// DefaultGrantTTL is how long a grant stays valid when Options.GrantTTL
// is zero.
const DefaultGrantTTL = 30 * time.Second

// RegionHeader is the request header that names the client's region when
// the query has no region parameter.
const RegionHeader = "X-Cascade-Region"

// RetryAfterSeconds is the Retry-After of a 503 when no node has room.
const RetryAfterSeconds = "2"

// Options configures a Redirector.
type Options struct {
	// View returns the latest cluster view, or nil before there is one.
	// It is called once per POST and must not block (an atomic.Pointer's
	// Load, typically).
	View func() *cluster.View
	// Self is this process's node id, or "" for a balancer-only process.
	// A POST whose chosen node is Self is left to the local node.
	Self string
	// Region is the region assumed for a request that names none.
	Region string
	// Key is the cluster key that signs grants; nodes verify with the
	// same key.
	Key []byte
	// GrantTTL is how long a grant stays valid. 0 means DefaultGrantTTL.
	GrantTTL time.Duration
	// PublishToken and PlayToken are the tokens a caller must present to
	// publish or to play, as on a node; "" lets everyone in.
	PublishToken, PlayToken string
	// AllowedOrigins are the CORS origins answered, as on a node; "*"
	// allows any.
	AllowedOrigins []string
	// Policy tunes node choice.
	Policy Policy
	// Logger gets one debug line per redirect and one info line per
	// refusal. nil logs nothing.
	Logger *zap.Logger
	// Now is the clock grants are signed with; nil means time.Now.
	Now func() time.Time
}

// Redirector answers WHIP and WHEP POSTs with 307 Temporary Redirect to
// the node Choose picks (RFC 9725 §4.5), and their CORS preflights. It is
// safe for concurrent use.
type Redirector struct {
	o         Options
	log       *zap.Logger
	now       func() time.Time
	ttl       time.Duration
	region    []byte
	pubToken  []byte
	playToken []byte
	scratch   sync.Pool // *scratch, one per request in flight
}

// scratch is what one redirect writes into, reused across requests.
type scratch struct {
	mac      *grantMAC
	location []byte
}

// New returns a Redirector. It copies what it keeps of o, except View,
// Now and Logger, which it calls.
func New(o Options) *Redirector {
	r := &Redirector{
		o:         o,
		log:       o.Logger,
		now:       o.Now,
		ttl:       o.GrantTTL,
		region:    []byte(o.Region),
		pubToken:  []byte(o.PublishToken),
		playToken: []byte(o.PlayToken),
	}
	r.o.Key = bytes.Clone(o.Key)
	r.o.AllowedOrigins = append([]string(nil), o.AllowedOrigins...)
	if r.o.View == nil {
		r.o.View = func() *cluster.View { return nil }
	}
	if r.log == nil {
		r.log = zap.NewNop()
	}
	r.log = r.log.Named("balancer")
	if r.now == nil {
		r.now = time.Now
	}
	if r.ttl <= 0 {
		r.ttl = DefaultGrantTTL
	}
	if len(r.o.Key) == 0 && (o.PublishToken != "" || o.PlayToken != "") {
		r.log.Warn("no cluster key: grants will not verify, so nodes will ask redirected clients for their token again")
	}
	key := r.o.Key
	r.scratch.New = func() any {
		return &scratch{mac: newGrantMAC(key), location: make([]byte, 0, 256)}
	}
	return r
}

const (
	whipPrefix = "/whip/"
	whepPrefix = "/whep/"
)

// Response bodies: short and constant, so that writing them allocates
// nothing.
const (
	bodyRedirect   = "307 Temporary Redirect: POST the same request to the Location\n"
	bodyBadName    = "invalid stream name: use 1 to 128 of A-Z a-z 0-9 - _ . ~\n"
	bodyNoToken    = "missing token: send Authorization: Bearer <token>\n"
	bodyWrongToken = "wrong token\n"
	bodyBadGrant   = "redirect grant refused: it is not valid for this node and stream, or has expired\n"
	bodyNotLive    = "stream is not live: nobody is publishing it\n"
	bodyNoCapacity = "no node has room for this stream now; retry later\n"
	bodyNoURL      = "the chosen node has no public URL; retry later\n"
	bodyInternal   = "internal error\n"
)

// Handle serves POST and OPTIONS on /whip/{stream} and /whep/{stream}.
// It returns false, writing nothing, when the request is not its
// business: another path (including a session resource
// /whip/{stream}/{id}), another method, or a POST whose chosen node is
// Options.Self, which the local node then serves itself. The local node
// also serves, unbalanced, a POST that carries a grant signed for it (a
// client some balancer already sent here: no second redirect, no
// ping-pong between views), and every POST while its view is not built
// yet (View returns nil).
//
// A POST is checked as a node checks it (method, stream name 400, token
// 401/403), then answered with 307 and a Location of
// {node URL}/whip|whep/{stream}?{original query}&grant={grant}, or 404
// (ErrNotLive) or 503 with Retry-After (ErrNoCapacity). The body is not
// read: the client re-sends it to the Location (RFC 9110 §15.4.8).
func (r *Redirector) Handle(ctx *fasthttp.RequestCtx) bool {
	path := ctx.Path()
	var kind Kind
	switch {
	case bytes.HasPrefix(path, []byte(whipPrefix)):
		kind = Publish
	case bytes.HasPrefix(path, []byte(whepPrefix)):
		kind = Play
	default:
		return false
	}
	name := path[len(whipPrefix):]
	if bytes.IndexByte(name, '/') >= 0 {
		return false
	}
	switch string(ctx.Method()) {
	case fasthttp.MethodOptions:
		r.cors(ctx)
		ctx.Response.Header.Set("Accept-Post", "application/sdp") // RFC 9725 §4.2
		ctx.SetStatusCode(fasthttp.StatusNoContent)
		return true
	case fasthttp.MethodPost:
	default:
		return false
	}
	if !validStreamName(name) {
		r.refuse(ctx, kind, name, nil, fasthttp.StatusBadRequest, bodyBadName, nil)
		return true
	}
	if r.grantedHere(ctx, kind, name) {
		return false
	}
	if !r.authorize(ctx, kind, name) {
		return true
	}
	region := r.requestRegion(ctx)
	v := r.o.View()
	if v == nil && r.o.Self != "" {
		return false
	}
	// One conversion each, which stays on the stack for names of up to 32
	// bytes: nothing below keeps stream or region.
	stream := string(name)
	node, err := Choose(v, Request{Kind: kind, Stream: stream, Region: string(region)}, r.o.Policy)
	switch {
	case err == nil:
	case err == ErrNotLive:
		r.refuse(ctx, kind, name, region, fasthttp.StatusNotFound, bodyNotLive, err)
		return true
	case err == ErrNoCapacity:
		ctx.Response.Header.Set(fasthttp.HeaderRetryAfter, RetryAfterSeconds)
		r.refuse(ctx, kind, name, region, fasthttp.StatusServiceUnavailable, bodyNoCapacity, err)
		return true
	default:
		r.refuse(ctx, kind, name, region, fasthttp.StatusInternalServerError, bodyInternal, err)
		return true
	}
	if node.ID == r.o.Self {
		return false
	}
	if node.URL == "" {
		ctx.Response.Header.Set(fasthttp.HeaderRetryAfter, RetryAfterSeconds)
		r.refuse(ctx, kind, name, region, fasthttp.StatusServiceUnavailable, bodyNoURL,
			fmt.Errorf("node %s advertises no URL", node.ID))
		return true
	}
	r.redirect(ctx, kind, stream, name, region, &node)
	return true
}

// redirect writes the 307 to node. stream and name are the same stream
// name; the log takes the bytes so that stream never escapes.
func (r *Redirector) redirect(ctx *fasthttp.RequestCtx, kind Kind, stream string, name, region []byte, node *cluster.NodeInfo) {
	s := r.scratch.Get().(*scratch)
	expiry := r.now().Add(r.ttl).Unix()
	loc := append(s.location[:0], node.URL...)
	if kind == Publish {
		loc = append(loc, whipPrefix...)
	} else {
		loc = append(loc, whepPrefix...)
	}
	loc = append(loc, name...)
	loc = append(loc, '?')
	loc = appendQueryWithoutGrant(loc, ctx.URI().QueryString())
	loc = append(loc, "grant="...)
	loc = s.mac.appendGrant(loc, kind, stream, node.ID, expiry)
	s.location = loc

	r.cors(ctx)
	ctx.Response.Header.SetBytesV(fasthttp.HeaderLocation, loc)
	ctx.SetStatusCode(fasthttp.StatusTemporaryRedirect)
	ctx.SetContentType("text/plain; charset=utf-8")
	ctx.Response.SetBodyString(bodyRedirect)
	if ce := r.log.Check(zapcore.DebugLevel, "redirect"); ce != nil {
		ce.Write(zap.Stringer("kind", kind), zap.ByteString("stream", name),
			zap.ByteString("region", region), zap.String("node", node.ID),
			zap.String("node_region", node.Region), zap.Int64("grant_expiry", expiry))
	}
	r.scratch.Put(s)
}

// refuse answers status with body and logs the refusal at info.
func (r *Redirector) refuse(ctx *fasthttp.RequestCtx, kind Kind, name, region []byte, status int, body string, err error) {
	r.cors(ctx)
	ctx.SetStatusCode(status)
	ctx.SetContentType("text/plain; charset=utf-8")
	ctx.Response.SetBodyString(body)
	if ce := r.log.Check(zapcore.InfoLevel, "refused"); ce != nil {
		reason := body[:len(body)-1]
		if err != nil {
			reason = err.Error()
		}
		ce.Write(zap.Stringer("kind", kind), zap.ByteString("stream", name),
			zap.ByteString("region", region), zap.Int("status", status),
			zap.String("reason", reason), zap.Stringer("remote", ctx.RemoteAddr()))
	}
}

// grantedHere reports whether the request carries a grant signed for this
// node (expired or not): a client that a balancer already sent here. It
// goes to the local node, which checks the grant, and is never redirected
// again, even if this node's view would choose otherwise. A grant that is
// not ours is ignored: the request is balanced like any other.
func (r *Redirector) grantedHere(ctx *fasthttp.RequestCtx, kind Kind, name []byte) bool {
	if r.o.Self == "" {
		return false
	}
	grant := ctx.QueryArgs().Peek("grant")
	if len(grant) == 0 {
		return false
	}
	s := r.scratch.Get().(*scratch)
	err := s.mac.verify(string(grant), kind, string(name), r.o.Self, r.now())
	r.scratch.Put(s)
	return err == nil || err == ErrGrantExpired
}

// requestRegion returns the client's region: the region query parameter,
// else the X-Cascade-Region header, else Options.Region.
func (r *Redirector) requestRegion(ctx *fasthttp.RequestCtx) []byte {
	if q := ctx.QueryArgs().Peek("region"); len(q) > 0 {
		return q
	}
	if h := bytes.TrimSpace(ctx.Request.Header.Peek(RegionHeader)); len(h) > 0 {
		return h
	}
	return r.region
}

// authorize checks the caller's token as a node does: "Authorization:
// Bearer T" or the bare token, compared in constant time. It writes 401
// (no token) or 403 (wrong token) and returns false when the request may
// not go on.
func (r *Redirector) authorize(ctx *fasthttp.RequestCtx, kind Kind, name []byte) bool {
	want := r.playToken
	if kind == Publish {
		want = r.pubToken
	}
	if len(want) == 0 {
		return true
	}
	got := bytes.TrimSpace(ctx.Request.Header.Peek(fasthttp.HeaderAuthorization))
	if len(got) > 7 && bytes.EqualFold(got[:7], []byte("bearer ")) {
		got = bytes.TrimSpace(got[7:])
	}
	if len(got) == 0 && ctx.QueryArgs().Has("grant") {
		// A grant that is not valid here (forged, for another node or
		// stream, or expired) is a refused credential, not a missing one.
		r.refuse(ctx, kind, name, nil, fasthttp.StatusForbidden, bodyBadGrant, nil)
		return false
	}
	if len(got) == 0 {
		ctx.Response.Header.Set(fasthttp.HeaderWWWAuthenticate, `Bearer realm="cascade"`)
		r.refuse(ctx, kind, name, nil, fasthttp.StatusUnauthorized, bodyNoToken, nil)
		return false
	}
	if subtle.ConstantTimeCompare(got, want) != 1 {
		r.refuse(ctx, kind, name, nil, fasthttp.StatusForbidden, bodyWrongToken, nil)
		return false
	}
	return true
}

// cors writes the CORS headers a node writes, for a request from an
// allowed origin.
func (r *Redirector) cors(ctx *fasthttp.RequestCtx) { cors.Write(ctx, r.o.AllowedOrigins, false) }

// appendQueryWithoutGrant appends the raw query q to dst, each parameter
// followed by '&', leaving out empty parameters and any "grant" parameter
// the client sent, however its name is escaped: the node reads the first
// grant, which must be ours.
func appendQueryWithoutGrant(dst, q []byte) []byte {
	for len(q) > 0 {
		p := q
		if i := bytes.IndexByte(q, '&'); i >= 0 {
			p, q = q[:i], q[i+1:]
		} else {
			q = nil
		}
		key := p
		if i := bytes.IndexByte(p, '='); i >= 0 {
			key = p[:i]
		}
		if len(p) == 0 || isGrantKey(key) {
			continue
		}
		dst = append(dst, p...)
		dst = append(dst, '&')
	}
	return dst
}

// isGrantKey reports whether the raw query key decodes to "grant".
func isGrantKey(key []byte) bool {
	const want = "grant"
	j := 0
	for i := 0; i < len(key); i++ {
		c := key[i]
		if c == '%' && i+2 < len(key) {
			hi, ok1 := unhex(key[i+1])
			lo, ok2 := unhex(key[i+2])
			if ok1 && ok2 {
				c = hi<<4 | lo
				i += 2
			}
		}
		if j == len(want) || c != want[j] {
			return false
		}
		j++
	}
	return j == len(want)
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// validStreamName reports whether s can name a stream, as a node decides
// it: 1 to 128 of letters, digits, '-', '_', '.' and '~', not "." or "..".
func validStreamName(s []byte) bool {
	if len(s) == 0 || len(s) > 128 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '-' || c == '_' || c == '.' || c == '~') {
			return false
		}
	}
	return string(s) != "." && string(s) != ".."
}
