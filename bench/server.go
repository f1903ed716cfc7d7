package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

const (
	// serverReadyTimeout bounds how long a started server may take to log
	// that it is ready.
	serverReadyTimeout = 20 * time.Second
	// serverStopTimeout is how long a server has after SIGTERM before SIGKILL.
	serverStopTimeout = 10 * time.Second
	// serverTail is how many of the server's last log lines an error quotes.
	serverTail = 20
)

// ServerOptions configures a cascade node the bench starts itself.
type ServerOptions struct {
	// Binary is the cascade executable.
	Binary string
	// Taskset, when set, runs the server under `taskset -c Taskset`.
	Taskset string
	// Log receives the server's log lines (JSON); nil discards them.
	Log io.Writer
	// LogPrefix starts each line written to Log ("n1 "), to tell servers
	// sharing one log apart.
	LogPrefix string
	// ExtraArgs are appended to the serve command line; a flag given again
	// there (--listen 127.0.0.3:0) wins over the default.
	ExtraArgs []string
	// Env entries ("CASCADE_PLAY_MAX_VIEWERS=8") are added to this
	// process's environment for the server.
	Env []string
}

// LocalServer is a `cascade serve --dev` process on loopback with free
// ports, started by StartServer and stopped by Stop.
type LocalServer struct {
	// URL is the node's HTTP base URL, e.g. http://127.0.0.1:41234.
	URL string
	// MediaPort is the node's UDP (and ICE-TCP) media port.
	MediaPort int
	// PID is the server's process id (taskset execs it, so the pid stays).
	PID int
	// ClusterAddr is the memberlist host:port when the server joined a
	// cluster (--cluster-bind), empty otherwise.
	ClusterAddr string

	cmd     *exec.Cmd
	dataDir string
	done    chan struct{} // closed when the process has exited and its log is read
	waitErr error         // set before done closes
	// gone is closed when the server starts shutting down or exits.
	gone     chan struct{}
	goneOnce sync.Once
	// stopping is set by Stop before it signals the server.
	stopping atomic.Bool

	// mu guards tail, bad and early.
	mu    sync.Mutex
	tail  []string
	bad   bool // a line held "panic:" or "DATA RACE"
	early bool // the server shut down or exited before Stop asked it to
}

// readyLine is the JSON log line a node writes when it accepts sessions.
type readyLine struct {
	Msg         string `json:"msg"`
	HTTPAddr    string `json:"http_addr"`
	MediaPort   int    `json:"media_port"`
	ClusterAddr string `json:"cluster_addr"`
}

// StartServer starts `cascade serve --dev --listen 127.0.0.1:0 --media-port
// 0 --log-format json` with a temporary data directory and waits for its
// `cascade ready` line on stderr (bounded by ctx and serverReadyTimeout).
// The server runs in its own process group, so a Ctrl-C at the terminal
// reaches the bench, which stops it last; it also gets SIGTERM if the bench
// dies.
func StartServer(ctx context.Context, o ServerOptions) (*LocalServer, error) {
	if o.Binary == "" {
		return nil, fmt.Errorf("%w: no cascade binary to start", ErrBadOption)
	}
	dataDir, err := os.MkdirTemp("", "cascade-bench-")
	if err != nil {
		return nil, fmt.Errorf("server data dir: %w", err)
	}
	args := append([]string{"serve", "--dev", "--listen", "127.0.0.1:0", "--media-port", "0",
		"--log-format", "json", "--data-dir", dataDir}, o.ExtraArgs...)
	name := o.Binary
	if o.Taskset != "" {
		ts, err := tasksetPath()
		if err != nil {
			_ = os.RemoveAll(dataDir)
			return nil, err
		}
		args = append([]string{"-c", o.Taskset, o.Binary}, args...)
		name = ts
	}
	cmd := exec.Command(name, args...)
	if len(o.Env) > 0 {
		cmd.Env = append(os.Environ(), o.Env...)
	}
	cmd.Stdout = io.Discard
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		_ = os.RemoveAll(dataDir)
		return nil, fmt.Errorf("server stderr: %w", err)
	}
	if err := cmd.Start(); err != nil {
		_ = os.RemoveAll(dataDir)
		return nil, fmt.Errorf("start %s: %w", o.Binary, err)
	}
	s := &LocalServer{PID: cmd.Process.Pid, cmd: cmd, dataDir: dataDir, done: make(chan struct{}), gone: make(chan struct{})}
	ready := make(chan readyLine, 1)
	// The log reader runs until the process exits; Stop waits for it.
	go s.readLog(stderr, o.Log, o.LogPrefix, ready)

	timer := time.NewTimer(serverReadyTimeout)
	defer timer.Stop()
	select {
	case r := <-ready:
		s.URL = "http://" + r.HTTPAddr
		s.MediaPort = r.MediaPort
		s.ClusterAddr = r.ClusterAddr
		return s, nil
	case <-s.done:
		err = fmt.Errorf("%w before ready: %w\n%s", ErrServerExited, s.waitErr, s.Tail())
	case <-timer.C:
		err = fmt.Errorf("cascade server not ready after %v\n%s", serverReadyTimeout, s.Tail())
	case <-ctx.Done():
		err = fmt.Errorf("wait for cascade server: %w", ctx.Err())
	}
	_ = s.Stop()
	return nil, err
}

// readLog copies the server's log to log, each line after prefix and in
// one Write (several servers may share a log that serialises its writes),
// keeps its tail and watches for the ready and shutdown lines. It returns
// when the process has exited.
func (s *LocalServer) readLog(r io.Reader, log io.Writer, prefix string, ready chan<- readyLine) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var out []byte
	for sc.Scan() {
		line := sc.Bytes()
		if log != nil {
			// line is the scanner's buffer: copy it to add the newline.
			out = append(append(append(out[:0], prefix...), line...), '\n')
			_, _ = log.Write(out)
		}
		s.mu.Lock()
		s.bad = s.bad || bytes.Contains(line, []byte("panic:")) || bytes.Contains(line, []byte("DATA RACE"))
		if len(s.tail) == serverTail {
			s.tail = s.tail[1:]
		}
		s.tail = append(s.tail, string(line))
		s.mu.Unlock()
		var rl readyLine
		if json.Unmarshal(line, &rl) != nil {
			continue
		}
		switch rl.Msg {
		case "cascade ready":
			select {
			case ready <- rl:
			default:
			}
		case "shutting down":
			s.goneNow()
		}
	}
	_, _ = io.Copy(io.Discard, r)
	s.waitErr = s.cmd.Wait()
	s.goneNow()
	close(s.done)
}

// goneNow marks the server as going away, and as going early unless Stop
// asked for it.
func (s *LocalServer) goneNow() {
	s.goneOnce.Do(func() {
		if !s.stopping.Load() {
			s.mu.Lock()
			s.early = true
			s.mu.Unlock()
		}
		close(s.gone)
	})
}

// Tail returns the server's last log lines.
func (s *LocalServer) Tail() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.tail, "\n")
}

// Gone is closed when the server begins to shut down (it logs "shutting
// down") or exits, whoever asked it to.
func (s *LocalServer) Gone() <-chan struct{} { return s.gone }

// Stop sends SIGTERM, waits up to 10 s (then SIGKILL) and removes the data
// directory. It reports a server that exited with an error or logged a
// panic or a data race. Stop may be called more than once.
func (s *LocalServer) Stop() error {
	s.stopping.Store(true)
	select {
	case <-s.done:
	default:
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		timer := time.NewTimer(serverStopTimeout)
		select {
		case <-s.done:
		case <-timer.C:
			_ = s.cmd.Process.Kill()
			<-s.done
		}
		timer.Stop()
	}
	_ = os.RemoveAll(s.dataDir)
	s.mu.Lock()
	bad, early := s.bad, s.early
	s.mu.Unlock()
	var errs []error
	if early {
		errs = append(errs, fmt.Errorf("%w: cascade server (pid %d) shut down before the bench stopped it "+
			"(a signal from outside the bench?)", ErrServerExited, s.PID))
	}
	if s.waitErr != nil {
		errs = append(errs, fmt.Errorf("cascade server (pid %d): %w", s.PID, s.waitErr))
	}
	if bad {
		errs = append(errs, fmt.Errorf("cascade server (pid %d) logged a panic or race; its last lines:\n%s", s.PID, s.Tail()))
	}
	return errors.Join(errs...)
}
