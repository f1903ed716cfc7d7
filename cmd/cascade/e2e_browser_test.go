package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestBrowserPublishAndPlay publishes the fake camera and microphone of
// headless Chromium through the publish page and plays it on the play page,
// both served by a real node. It logs the join time (WHEP POST to first
// decoded frame) of a player that opens before the stream is live and of one
// that opens on a live stream; the goal on loopback is under 300 ms.
func TestBrowserPublishAndPlay(t *testing.T) {
	exe := chromiumPath(t)
	n := startNode(t, nil)
	b := startBrowser(t, exe)
	defer func() {
		if t.Failed() {
			t.Logf("node logs:\n%s", n.Logs())
		}
	}()

	pub := b.open(t, "publish", n.URL+"/publish/browsertest?token=devtoken&autostart=1")
	play := b.open(t, "play", n.URL+"/play/browsertest")

	first := waitPlaying(t, play, time.Now().Add(30*time.Second), pub)
	when := "after the publisher was live (its first WHEP POST succeeded)"
	if first.WaitedForStream {
		when = "before the publisher was live (it got 404 and retried)"
	}
	t.Logf("browser join (player opened with the publisher): %d ms via %s, %d reconnects; the player joined %s",
		first.JoinMs, first.FirstFrameVia, first.Reconnects, when)

	live := b.open(t, "play-live", n.URL+"/play/browsertest")
	second := waitPlaying(t, live, time.Now().Add(15*time.Second), pub)
	t.Logf("browser join (live stream): %d ms via %s (goal < 300 ms)", second.JoinMs, second.FirstFrameVia)
	if second.WaitedForStream || second.Reconnects > 0 {
		t.Errorf("player on a live stream waited or reconnected: %+v", second)
	}

	pubState, err := evalTab[string](pub, 2*time.Second, `window.cascadePublisher.state`)
	if err != nil || pubState != "live" {
		t.Errorf("publish page state = %q (%v), want live", pubState, err)
	}
	for _, tab := range []*browserTab{pub, play, live} {
		tab.checkExceptions(t)
	}
}

// chromiumPath finds headless Chromium. A missing browser fails the test:
// skipping it silently would hide that the browser path is untested. Set
// CASCADE_SKIP_BROWSER=1 to skip on purpose.
func chromiumPath(t *testing.T) string {
	t.Helper()
	if os.Getenv("CASCADE_SKIP_BROWSER") == "1" {
		t.Skip("CASCADE_SKIP_BROWSER=1")
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("headless Chromium not found (looked for chromium, chromium-browser, google-chrome in PATH): " +
		"install it with `apt-get install -y chromium` (make does this) or set CASCADE_SKIP_BROWSER=1 to skip this test")
	return ""
}

// browser is a headless Chromium process driven over the DevTools protocol.
type browser struct {
	ctx     context.Context // the first tab's context; it owns the process
	dataDir string
	tabs    []*browserTab
}

// startBrowser starts Chromium with a fake camera and microphone and a fresh
// profile, and stops it (and every process it started) when the test ends.
func startBrowser(t *testing.T, exe string) *browser {
	t.Helper()
	dataDir := t.TempDir()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(exe),
		chromedp.UserDataDir(dataDir),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("use-fake-device-for-media-stream", true),
		chromedp.Flag("use-fake-ui-for-media-stream", true),
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
		// Every tab runs at full speed, so the players' 20 ms stats poll
		// and frame callbacks are not throttled in a tab that is behind.
		chromedp.Flag("disable-background-timer-throttling", true),
		chromedp.Flag("disable-renderer-backgrounding", true),
		chromedp.Flag("disable-backgrounding-occluded-windows", true),
		// Chromium leaves loopback out of ICE gathering unless asked; the
		// node listens on 127.0.0.1 only.
		chromedp.Flag("allow-loopback-in-peer-connection", true),
		// Plain IP candidates instead of mDNS names: no multicast on the
		// machine's network, and the node need not rely on peer-reflexive
		// candidates.
		chromedp.Flag("disable-features", "WebRtcHideLocalIpsWithMdns"),
	}
	allocCtx, allocCancel := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	b := &browser{ctx: ctx, dataDir: dataDir}
	t.Cleanup(func() {
		for _, tb := range b.tabs {
			tb.close()
		}
		// Close gracefully, then kill what is left and wait for the process.
		closeCtx, closeCancel := context.WithTimeout(ctx, 5*time.Second)
		if err := chromedp.Cancel(closeCtx); err != nil && !errors.Is(err, context.Canceled) {
			t.Logf("close chromium: %v", err)
		}
		closeCancel()
		cancel()
		allocCancel() // waits for the browser process to exit
		killChromiumLeftovers(t, dataDir)
	})
	// The first Run starts the browser; it must not carry a deadline.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium %s: %v", exe, err)
	}
	return b
}

// killChromiumLeftovers kills any Chromium helper process that outlived the browser
// (found by its --user-data-dir), so that nothing the test started survives
// it and the temp dir can be removed.
func killChromiumLeftovers(t *testing.T, dataDir string) {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		cmdline, err := os.ReadFile(p)
		if err != nil || !strings.Contains(string(cmdline), "--user-data-dir="+dataDir) {
			continue
		}
		pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		if err != nil {
			continue
		}
		if proc, err := os.FindProcess(pid); err == nil && proc.Kill() == nil {
			t.Logf("killed leftover chromium process %d", pid)
		}
	}
}

// browserTab is one page of the browser, with the console messages it logged.
type browserTab struct {
	name   string
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{} // closed when the console reader exits

	mu         sync.Mutex
	console    []string // guarded by mu
	exceptions []string // guarded by mu
}

// open opens url in a new tab and records its console.
func (b *browser) open(t *testing.T, name, url string) *browserTab {
	t.Helper()
	ctx, cancel := chromedp.NewContext(b.ctx)
	tb := &browserTab{name: name, ctx: ctx, cancel: cancel, done: make(chan struct{})}
	b.tabs = append(b.tabs, tb)
	messages := chromedp.Console(ctx) // subscribe before the page loads
	go func() {
		defer close(tb.done)
		for m, err := range messages {
			if err != nil {
				return
			}
			line := fmt.Sprintf("[%s] %s", name, m)
			tb.mu.Lock()
			tb.console = append(tb.console, line)
			if m.IsException() {
				tb.exceptions = append(tb.exceptions, line)
			}
			tb.mu.Unlock()
		}
	}()
	navCtx, navCancel := context.WithTimeout(ctx, 10*time.Second)
	defer navCancel()
	if err := chromedp.Do(navCtx, chromedp.Navigate(url)); err != nil {
		t.Fatalf("open %s: %v", url, err)
	}
	return tb
}

// close closes the tab and waits for its console reader.
func (tb *browserTab) close() {
	tb.cancel()
	<-tb.done
}

// consoleLog returns what the tab logged so far, one message a line.
func (tb *browserTab) consoleLog() string {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	return strings.Join(tb.console, "\n")
}

// checkExceptions fails the test if the page threw an uncaught exception.
func (tb *browserTab) checkExceptions(t *testing.T) {
	t.Helper()
	tb.mu.Lock()
	defer tb.mu.Unlock()
	if len(tb.exceptions) > 0 {
		t.Errorf("%s page threw:\n%s", tb.name, strings.Join(tb.exceptions, "\n"))
	}
}

// evalTab evaluates expr in the tab (awaiting a promise) and decodes the result.
func evalTab[T any](tb *browserTab, timeout time.Duration, expr string) (T, error) {
	ctx, cancel := context.WithTimeout(tb.ctx, timeout)
	defer cancel()
	return chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
}

// playerStats is what the play page reports about itself and its media.
type playerStats struct {
	State           string  `json:"state"`
	JoinMs          int     `json:"joinMs"`
	FirstFrameVia   string  `json:"firstFrameVia"`
	Reconnects      int     `json:"reconnects"`
	WaitedForStream bool    `json:"waitedForStream"`
	FramesDecoded   int     `json:"framesDecoded"`
	AudioPackets    int     `json:"audioPackets"`
	FrameWidth      int     `json:"frameWidth"`
	VideoCodec      string  `json:"videoCodec"`
	ConnectionState string  `json:"connectionState"`
	PostStartedAt   float64 `json:"postStartedAt"`
}

const playerStatsJS = `(async () => {
  const p = window.cascadePlayer;
  if (!p) return null;
  const out = {state: p.state, joinMs: p.joinMs ?? -1, firstFrameVia: p.firstFrameVia ?? '',
    reconnects: p.reconnects, waitedForStream: p.waitedForStream, framesDecoded: 0,
    audioPackets: 0, frameWidth: 0, videoCodec: '', postStartedAt: p.postStartedAt ?? -1,
    connectionState: p.pc ? p.pc.connectionState : ''};
  if (!p.pc) return out;
  const stats = await p.pc.getStats();
  const codecs = new Map();
  stats.forEach((r) => { if (r.type === 'codec') codecs.set(r.id, r.mimeType); });
  stats.forEach((r) => {
    if (r.type !== 'inbound-rtp') return;
    if (r.kind === 'video') {
      out.framesDecoded = r.framesDecoded || 0;
      out.frameWidth = r.frameWidth || 0;
      out.videoCodec = codecs.get(r.codecId) || '';
    }
    if (r.kind === 'audio') out.audioPackets = r.packetsReceived || 0;
  });
  return out;
})()`

// waitPlaying polls the play tab until it has decoded more than 30 video
// frames and its received audio packets grow between two reads, and returns
// the player's figures. pub's state goes into the failure message.
func waitPlaying(t *testing.T, play *browserTab, deadline time.Time, pub *browserTab) playerStats {
	t.Helper()
	var last playerStats
	prevAudio := -1
	for time.Now().Before(deadline) {
		st, err := evalTab[*playerStats](play, 2*time.Second, playerStatsJS)
		if err == nil && st != nil {
			last = *st
			if st.FramesDecoded > 30 && st.JoinMs >= 0 && prevAudio > 0 && st.AudioPackets > prevAudio {
				t.Logf("%s: %d frames decoded (%s, %d px wide), %d audio packets, state %q",
					play.name, st.FramesDecoded, st.VideoCodec, st.FrameWidth, st.AudioPackets, st.State)
				return *st
			}
			prevAudio = st.AudioPackets
		}
		time.Sleep(100 * time.Millisecond)
	}
	pubState, err := evalTab[string](pub, 2*time.Second,
		`JSON.stringify({state: window.cascadePublisher?.state,
		  text: document.getElementById('state')?.textContent,
		  pc: window.cascadePublisher?.pc?.connectionState})`)
	if err != nil {
		pubState = "unreadable: " + err.Error()
	}
	t.Fatalf("%s did not play within the deadline: last %+v\npublisher: %s\nconsole:\n%s\n%s",
		play.name, last, pubState, pub.consoleLog(), play.consoleLog())
	return last
}
