package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// binaryPath is the cascade binary built once by TestMain for every
// end-to-end test in this package.
var binaryPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "cascade-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: temp dir:", err)
		os.Exit(1)
	}
	binaryPath = filepath.Join(dir, "cascade")
	args := []string{"build", "-o", binaryPath}
	if os.Getenv("CASCADE_E2E_RACE") == "1" {
		// The node under test with the race detector: slower, and a data
		// race it meets is logged, which Stop turns into a test failure.
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, ".")...)
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: build cascade:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// nodeProc is a running `cascade serve` process started by a test.
type nodeProc struct {
	// URL is the node's HTTP base URL, e.g. http://127.0.0.1:41234.
	URL string
	// MediaPort is the UDP (and ICE-TCP) port the node's media listens on.
	MediaPort int
	// PID is the process id, for /proc readings.
	PID int
	// ClusterAddr is the memberlist host:port, when the node is in a cluster.
	ClusterAddr string

	cmd     *exec.Cmd
	done    chan struct{}
	mu      sync.Mutex
	lines   []string
	waitErr error
}

// readyLine is the log line a node writes when it accepts sessions.
type readyLine struct {
	Msg         string `json:"msg"`
	HTTPAddr    string `json:"http_addr"`
	MediaPort   int    `json:"media_port"`
	ClusterAddr string `json:"cluster_addr"`
}

// startNode starts `cascade serve` with JSON logs on free loopback ports,
// waits until it is ready and stops it when the test ends. Extra args and
// env entries ("K=V") are appended; the defaults are --dev, --listen
// 127.0.0.1:0, --media-port 0 and a data dir in t.TempDir(). Later flags
// win, so args may override --listen (e.g. 127.0.0.2:0) and add
// --cluster-bind 127.0.0.2:0 --join ADDR (ClusterAddr tells the port).
func startNode(t testing.TB, env []string, args ...string) *nodeProc {
	t.Helper()
	cmd := exec.Command(binaryPath, serveArgs(t, args)...)
	cmd.Env = append(os.Environ(), env...)
	return runNode(t, cmd)
}

// serveArgs is the command line of a test node: `serve` with the test
// defaults, then args.
func serveArgs(t testing.TB, args []string) []string {
	base := []string{"serve", "--dev", "--listen", "127.0.0.1:0", "--media-port", "0",
		"--data-dir", t.TempDir(), "--log-format", "json"}
	return append(base, args...)
}

// runNode starts cmd (a cascade serve, directly or through a wrapper that
// execs it in place), collects its log, waits until it is ready and stops
// it when the test ends.
func runNode(t testing.TB, cmd *exec.Cmd) *nodeProc {
	t.Helper()
	cmd.Stdout = io.Discard
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatalf("stderr pipe: %v", err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", cmd, err)
	}
	n := &nodeProc{PID: cmd.Process.Pid, cmd: cmd, done: make(chan struct{})}
	ready := make(chan readyLine, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			line := sc.Text()
			n.mu.Lock()
			n.lines = append(n.lines, line)
			n.mu.Unlock()
			var r readyLine
			if json.Unmarshal([]byte(line), &r) == nil && r.Msg == "cascade ready" {
				select {
				case ready <- r:
				default:
				}
			}
		}
		n.waitErr = cmd.Wait()
		close(n.done)
	}()
	t.Cleanup(func() { n.Stop(t) })
	select {
	case r := <-ready:
		n.URL = "http://" + r.HTTPAddr
		n.MediaPort = r.MediaPort
		n.ClusterAddr = r.ClusterAddr
	case <-n.done:
		t.Fatalf("%s exited before ready: %v\n%s", cmd, n.waitErr, n.Logs())
	case <-time.After(20 * time.Second):
		t.Fatalf("%s not ready after 20s\n%s", cmd, n.Logs())
	}
	return n
}

// Logs returns everything the node has logged so far.
func (n *nodeProc) Logs() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return strings.Join(n.lines, "\n")
}

// Stop sends SIGTERM, waits up to 10 s, then SIGKILL. It fails the test if
// the node logged a panic or a data race.
func (n *nodeProc) Stop(t testing.TB) {
	select {
	case <-n.done:
	default:
		_ = n.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-n.done:
		case <-time.After(10 * time.Second):
			_ = n.cmd.Process.Kill()
			<-n.done
			t.Errorf("cascade (pid %d) did not stop within 10s of SIGTERM", n.PID)
		}
	}
	logs := n.Logs()
	if strings.Contains(logs, "panic:") || strings.Contains(logs, "DATA RACE") {
		t.Errorf("cascade (pid %d) logged a panic or race:\n%s", n.PID, logs)
	}
}

// Kill stops the node with SIGKILL at once.
func (n *nodeProc) Kill() {
	_ = n.cmd.Process.Kill()
	<-n.done
}
