package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"

	"strings"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/cascade-rtc/cascade/config"
)

// errUsage means the command line was wrong; the flag package has said why.
var errUsage = errors.New("usage")

// serveFlags maps each `serve` flag to the configuration path it sets.
var serveFlags = []struct{ name, path, usage string }{
	{"listen", "http.listen", "HTTP listen address host:port (http.listen)"},
	{"media-port", "media.udp_port", "UDP and ICE-TCP media port, 0 for any free port (media.udp_port)"},
	{"data-dir", "data_dir", "directory for the node's data (data_dir)"},
	{"region", "region", "region this node serves (region)"},
	{"log-level", "log.level", "debug, info, warn or error (log.level)"},
	{"log-format", "log.format", "console or json (log.format)"},
	{"node-id", "node_id", "this node's id in the cluster (node_id)"},
	{"public-url", "http.public_url", "absolute URL clients reach this node at (http.public_url)"},
	{"role", "role", "node (media and balancer) or balancer (redirects only) (role)"},
	{"cluster-bind", "cluster.bind", "memberlist host:port; empty runs one node alone (cluster.bind)"},
	{"join", "cluster.join", "comma-separated members to join, host:port or DNS names (cluster.join)"},
}

// serve runs `cascade serve`: it loads and validates the configuration,
// starts a media node and its HTTP server, and runs until SIGINT or SIGTERM.
func serve(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("cascade serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("config", "", "YAML configuration file (see cascade.example.yaml)")
	dev := fs.Bool("dev", false, "dev mode: one node, any stream name, publish token printed at start (dev)")
	for _, f := range serveFlags {
		fs.String(f.name, "", f.usage)
	}
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "cascade serve: unexpected argument %q\n", fs.Arg(0))
		return errUsage
	}
	overrides := map[string]string{}
	fs.Visit(func(f *flag.Flag) {
		for _, sf := range serveFlags {
			if sf.name == f.Name {
				overrides[sf.path] = f.Value.String()
			}
		}
	})
	if *dev {
		overrides["dev"] = "true"
	}
	cfg, err := config.Load(config.LoadOptions{File: *file, Environ: os.Environ(), Overrides: overrides})
	if err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	log, err := newLogger(cfg.Log, stderr)
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	ln, err := net.Listen("tcp", cfg.HTTP.Listen)
	if err != nil {
		return fmt.Errorf("http: listen %s: %w", cfg.HTTP.Listen, err)
	}
	addr := ln.Addr().String()
	base := baseURL(cfg, addr)

	p, err := start(cfg, log, base)
	if err != nil {
		ln.Close()
		return err
	}
	if cfg.Debug.PprofListen != "" {
		stopPprof, err := servePprof(cfg.Debug.PprofListen, log)
		if err != nil {
			p.close(log)
			ln.Close()
			return err
		}
		defer stopPprof()
	}
	srv := &fasthttp.Server{
		Handler:               p.route,
		Name:                  "cascade",
		MaxRequestBodySize:    2 * cfg.HTTP.MaxBodyBytes,
		ReadTimeout:           15 * time.Second,
		WriteTimeout:          15 * time.Second,
		IdleTimeout:           60 * time.Second,
		MaxIdleWorkerDuration: time.Second,
		Logger:                zap.NewStdLog(log.Named("http")),
		ErrorHandler:          requestError,
	}
	serveErr := make(chan error, 1)
	go func() {
		if cfg.HTTP.TLSCertFile != "" {
			serveErr <- srv.ServeTLS(ln, cfg.HTTP.TLSCertFile, cfg.HTTP.TLSKeyFile)
		} else {
			serveErr <- srv.Serve(ln)
		}
	}()

	fields := []zap.Field{zap.String("version", version), zap.String("http_addr", addr),
		zap.String("url", base), zap.String("role", cfg.Role), zap.String("node_id", cfg.NodeID),
		zap.String("region", cfg.Region), zap.Bool("dev", cfg.Dev)}
	if p.node != nil {
		fields = append(fields, zap.Int("media_port", p.node.MediaPort()))
	}
	if p.member != nil {
		fields = append(fields, zap.String("cluster_addr", p.member.Addr()))
	}
	log.Info("cascade ready", fields...)
	if cfg.Dev && p.node != nil {
		printDevBanner(stdout, base, cfg.PublishToken(), p.node.MediaPort())
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case err := <-serveErr:
		p.close(log)
		return fmt.Errorf("http: %w", err)
	}
	stop() // a second signal kills at once
	p.drain(log)
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.ShutdownWithContext(shutdownCtx)
	p.close(log)
	return nil
}

// servePprof serves net/http/pprof on its own listener until the returned
// function is called.
func servePprof(addr string, log *zap.Logger) (func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("debug.pprof_listen: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	log.Info("pprof serving", zap.String("addr", ln.Addr().String()))
	return func() {
		_ = srv.Close()
		<-done
	}, nil
}

// baseURL is the URL people reach this node at: the configured public URL,
// or the address actually bound (which differs from the configured one
// with port 0).
func baseURL(cfg config.Config, addr string) string {
	if cfg.HTTP.PublicURL != "" {
		return strings.TrimRight(cfg.HTTP.PublicURL, "/")
	}
	host, port, _ := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	scheme := "http"
	if cfg.HTTP.TLSCertFile != "" {
		scheme = "https"
	}
	return scheme + "://" + net.JoinHostPort(host, port)
}

// printDevBanner tells a developer where to publish, play and look.
func printDevBanner(w io.Writer, base, token string, mediaPort int) {
	fmt.Fprintf(w, `
Cascade is running (dev mode). Any stream name works; the publish token is %q.

  Publish from this browser:  %s/publish/demo?token=%s
  Watch:                      %s/play/demo
  WHIP (OBS, GStreamer):      %s/whip/demo   (Bearer token: %s)
  WHEP (players):             %s/whep/demo
  Node status:                %s/v1/node
  Media:                      UDP and TCP port %d

Stop with Ctrl-C.
`, token, base, token, base, base, token, base, base, mediaPort)
}

// newLogger builds the process logger from the log configuration.
func newLogger(cfg config.LogConfig, w io.Writer) (*zap.Logger, error) {
	level, err := zapcore.ParseLevel(cfg.Level)
	if err != nil {
		return nil, fmt.Errorf("log.level: %w", err)
	}
	encCfg := zap.NewProductionEncoderConfig()
	encCfg.EncodeTime = zapcore.ISO8601TimeEncoder
	var enc zapcore.Encoder
	if cfg.Format == "json" {
		enc = zapcore.NewJSONEncoder(encCfg)
	} else {
		encCfg.EncodeLevel = zapcore.CapitalColorLevelEncoder
		enc = zapcore.NewConsoleEncoder(encCfg)
	}
	core := zapcore.NewCore(enc, zapcore.Lock(zapcore.AddSync(w)), level)
	return zap.New(core), nil
}

// requestError answers a request fasthttp could not read: 413 for a body
// over the server's limit, 408 for a request that did not arrive in time,
// 400 otherwise.
func requestError(ctx *fasthttp.RequestCtx, err error) {
	if errors.Is(err, fasthttp.ErrBodyTooLarge) {
		ctx.Error("request body too large\n", fasthttp.StatusRequestEntityTooLarge)
		return
	}
	var netErr net.Error
	if errors.As(err, &netErr) && netErr.Timeout() {
		ctx.SetConnectionClose()
		ctx.Error("request timeout\n", fasthttp.StatusRequestTimeout)
		return
	}
	ctx.Error("malformed request: "+err.Error()+"\n", fasthttp.StatusBadRequest)
}

// pagePath reports whether the router serves path itself (GET only).
func pagePath(path string) bool {
	for _, prefix := range []string{"/publish/", "/play/"} {
		if rest, ok := strings.CutPrefix(path, prefix); ok {
			return rest != "" && !strings.Contains(rest, "/")
		}
	}
	return path == "/" || path == "/healthz" || strings.HasPrefix(path, "/static/")
}
