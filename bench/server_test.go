package bench

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// fakeServer writes a shell script standing in for cascade: it logs the
// ready line (and whatever body says) as a node would, and shuts down on
// SIGTERM as a node does.
func fakeServer(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "cascade")
	script := `#!/bin/sh
trap 'echo "{\"msg\":\"shutting down\"}" >&2; exit 0' TERM
echo '{"level":"info","msg":"cascade ready","http_addr":"127.0.0.1:4321","media_port":5555}' >&2
` + body + `
while :; do sleep 0.05; done
`
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLocalServer(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	var log strings.Builder
	s, err := StartServer(ctx, ServerOptions{Binary: fakeServer(t, ""), Log: &log})
	if err != nil {
		t.Fatal(err)
	}
	if s.URL != "http://127.0.0.1:4321" || s.MediaPort != 5555 || s.PID == 0 {
		t.Errorf("server %+v", s)
	}
	if _, err := ReadProc(s.PID); err != nil {
		t.Errorf("read the server's /proc: %v", err)
	}
	if err := s.Stop(); err != nil {
		t.Errorf("Stop: %v", err)
	}
	if err := s.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if !strings.Contains(log.String(), "cascade ready") {
		t.Errorf("log %q", log.String())
	}

	// A server that shuts down by itself mid-run is gone, and Stop says so.
	s, err = StartServer(ctx, ServerOptions{Binary: fakeServer(t, `(sleep 0.2; kill -TERM $$) &`)})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.Gone():
	case <-ctx.Done():
		t.Fatal("Gone not closed after the server shut down")
	}
	if err := s.Stop(); !errors.Is(err, ErrServerExited) {
		t.Errorf("Stop after shutting down alone: %v, want ErrServerExited", err)
	}

	// A server that exits before it is ready.
	bad := filepath.Join(t.TempDir(), "cascade")
	if err := os.WriteFile(bad, []byte("#!/bin/sh\necho 'panic: no config' >&2\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := StartServer(ctx, ServerOptions{Binary: bad}); !errors.Is(err, ErrServerExited) ||
		!strings.Contains(err.Error(), "panic: no config") {
		t.Errorf("StartServer of a failing binary: %v", err)
	}
}
