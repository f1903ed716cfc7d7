package bench

import (
	"cmp"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Report is what a load run measured and how it was set up. It is written
// as JSON (WriteJSON), CSV (WriteCSV) and drawn (WritePlot).
type Report struct {
	Scenario string    `json:"scenario"`
	Started  time.Time `json:"started"`
	// Target is the node's base URL; ServerStarted says the bench started
	// the node itself; ServerPIDs are the processes measured.
	Target        string `json:"target"`
	ServerStarted bool   `json:"server_started"`
	ServerPIDs    []int  `json:"server_pids"`
	// The publishers' media.
	Codec             string `json:"codec"`
	BitrateBps        int    `json:"bitrate_bps"`
	FPS               int    `json:"fps"`
	KeyframeIntervalS Number `json:"keyframe_interval_s"`
	Audio             bool   `json:"audio"`
	// Pacing is the multiple of the bitrate the publishers paced video
	// at; 0 means each frame was sent in one burst.
	Pacing    Number `json:"pacing"`
	Streams   int    `json:"streams"`
	WarmupS   Number `json:"warmup_s"`
	DurationS Number `json:"duration_s"`
	// TasksetServer and TasksetBench are the CPU lists the node and the
	// generator were pinned to ("" for none); GeneratorCPUs is how many
	// CPUs the generator could use.
	TasksetServer string `json:"taskset_server"`
	TasksetBench  string `json:"taskset_bench"`
	GeneratorCPUs int    `json:"generator_cpus"`
	// Cluster is the cluster the cluster scenario started; the steps'
	// server figures are then its processes' together.
	Cluster *ClusterSetup `json:"cluster,omitempty"`

	Baseline Baseline     `json:"baseline"`
	Steps    []Step       `json:"steps,omitempty"`
	Churn    *ChurnResult `json:"churn,omitempty"`
	// Headline sums up the largest step that kept its shortfall under the
	// limit (1 % unless --until-loss says otherwise).
	Headline string   `json:"headline,omitempty"`
	Warnings []string `json:"warnings"`
}

func (r *Report) warnf(format string, args ...any) {
	r.Warnings = append(r.Warnings, fmt.Sprintf(format, args...))
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("encode report: %w", err)
	}
	return nil
}

// csvColumn is one CSV column: its name (the JSON field's, with
// quantiles flattened) and its value for a step.
type csvColumn struct {
	name  string
	value func(Step) string
}

func num(f func(Step) Number) func(Step) string { return func(s Step) string { return f(s).String() } }
func integer(f func(Step) int) func(Step) string {
	return func(s Step) string { return strconv.Itoa(f(s)) }
}

// stepColumns are the CSV columns of a step, in the JSON's order.
var stepColumns = []csvColumn{
	{"streams", integer(func(s Step) int { return s.Streams })},
	{"viewers_per_stream", integer(func(s Step) int { return s.PerStream })},
	{"target_viewers", integer(func(s Step) int { return s.Target })},
	{"viewers", integer(func(s Step) int { return s.Viewers })},
	{"join_failures", integer(func(s Step) int { return s.JoinFailures })},
	{"seconds", num(func(s Step) Number { return s.Seconds })},
	{"published_pkts_per_s", num(func(s Step) Number { return s.PublishedPPS })},
	{"delivered_packets", func(s Step) string { return strconv.FormatUint(s.DeliveredPackets, 10) }},
	{"delivered_pkts_per_s", num(func(s Step) Number { return s.DeliveredPPS })},
	{"received_mbps", num(func(s Step) Number { return s.ReceivedMbps })},
	{"loss_pct", num(func(s Step) Number { return s.LossPct })},
	{"delivery_pct", num(func(s Step) Number { return s.DeliveryPct })},
	{"stalled_viewers", integer(func(s Step) int { return s.Stalled })},
	{"join_p50_ms", num(func(s Step) Number { return s.Join.P50 })},
	{"join_p95_ms", num(func(s Step) Number { return s.Join.P95 })},
	{"join_p99_ms", num(func(s Step) Number { return s.Join.P99 })},
	{"join_keyframe_p50_ms", num(func(s Step) Number { return s.JoinKeyframe.P50 })},
	{"join_keyframe_p95_ms", num(func(s Step) Number { return s.JoinKeyframe.P95 })},
	{"join_keyframe_p99_ms", num(func(s Step) Number { return s.JoinKeyframe.P99 })},
	{"no_keyframe", integer(func(s Step) int { return s.NoKeyframe })},
	{"join_retries", integer(func(s Step) int { return s.JoinRetries })},
	{"delay_p50_ms", num(func(s Step) Number { return s.DelayP50 })},
	{"delay_p99_ms", num(func(s Step) Number { return s.DelayP99 })},
	{"frame_delay_p95_ms", num(func(s Step) Number { return s.FrameDelayP95 })},
	{"server_cpu_cores", num(func(s Step) Number { return s.ServerCPU })},
	{"server_rss_mib", num(func(s Step) Number { return s.ServerRSSMiB })},
	{"generator_cpu_cores", num(func(s Step) Number { return s.GeneratorCPU })},
	{"other_cpu_cores", num(func(s Step) Number { return s.OtherCPU })},
	{"cpu_per_packet_us", num(func(s Step) Number { return s.CPUPerPacketUs })},
	{"cpu_per_viewer_mcores", num(func(s Step) Number { return s.CPUPerViewerMcores })},
	{"viewers_per_core", num(func(s Step) Number { return s.ViewersPerCore })},
	{"mem_per_viewer_kib", num(func(s Step) Number { return s.MemPerViewerKiB })},
}

// clusterColumns are the CSV columns a cluster step adds: the origin's
// figures and the tree's depth, then clusterNodeColumns for each node.
var clusterColumns = []struct {
	name  string
	value func(*ClusterStep) string
}{
	{"origin", func(c *ClusterStep) string { return c.Origin }},
	{"origin_viewers", func(c *ClusterStep) string { return strconv.Itoa(c.OriginViewers) }},
	{"origin_relays", func(c *ClusterStep) string { return strconv.Itoa(c.OriginRelays) }},
	{"origin_egress_mbps", func(c *ClusterStep) string { return c.OriginEgressMbps.String() }},
	{"cluster_egress_mbps", func(c *ClusterStep) string { return c.EgressMbps.String() }},
	{"tree_depth", func(c *ClusterStep) string { return strconv.Itoa(c.TreeDepth) }},
}

// clusterNodeColumns are a cluster node's CSV columns, each named after
// the node: n1_viewers, n1_relays, ...
var clusterNodeColumns = []struct {
	name  string
	value func(NodeLoad) string
}{
	{"role", func(n NodeLoad) string { return n.Role }},
	{"viewers", func(n NodeLoad) string { return strconv.Itoa(n.Viewers) }},
	{"relays", func(n NodeLoad) string { return strconv.Itoa(n.Relays) }},
	{"egress_mbps", func(n NodeLoad) string { return n.EgressMbps.String() }},
	{"cpu_cores", func(n NodeLoad) string { return n.CPU.String() }},
	{"rss_mib", func(n NodeLoad) string { return n.RSSMiB.String() }},
}

// churnColumns are the CSV columns of a churn run.
var churnColumns = []struct {
	name  string
	value func(*ChurnResult) string
}{
	{"rate_per_s", func(c *ChurnResult) string { return c.Rate.String() }},
	{"seconds", func(c *ChurnResult) string { return c.Seconds.String() }},
	{"lifetime_s", func(c *ChurnResult) string { return c.Lifetime.String() }},
	{"attempts", func(c *ChurnResult) string { return strconv.Itoa(c.Attempts) }},
	{"sessions", func(c *ChurnResult) string { return strconv.Itoa(c.Sessions) }},
	{"failures", func(c *ChurnResult) string { return strconv.Itoa(c.Failures) }},
	{"sessions_per_s", func(c *ChurnResult) string { return c.SessionsPerSec.String() }},
	{"join_p50_ms", func(c *ChurnResult) string { return c.Join.P50.String() }},
	{"join_p95_ms", func(c *ChurnResult) string { return c.Join.P95.String() }},
	{"join_p99_ms", func(c *ChurnResult) string { return c.Join.P99.String() }},
	{"join_keyframe_p50_ms", func(c *ChurnResult) string { return c.JoinKeyframe.P50.String() }},
	{"join_keyframe_p95_ms", func(c *ChurnResult) string { return c.JoinKeyframe.P95.String() }},
	{"join_keyframe_p99_ms", func(c *ChurnResult) string { return c.JoinKeyframe.P99.String() }},
	{"peak_viewers", func(c *ChurnResult) string { return strconv.Itoa(c.PeakViewers) }},
	{"mean_viewers", func(c *ChurnResult) string { return c.MeanViewers.String() }},
	{"loss_pct", func(c *ChurnResult) string { return c.LossPct.String() }},
	{"server_cpu_cores", func(c *ChurnResult) string { return c.ServerCPU.String() }},
	{"server_rss_mib", func(c *ChurnResult) string { return c.ServerRSSMiB.String() }},
	{"generator_cpu_cores", func(c *ChurnResult) string { return c.GeneratorCPU.String() }},
	{"other_cpu_cores", func(c *ChurnResult) string { return c.OtherCPU.String() }},
	{"leftover_viewers", func(c *ChurnResult) string {
		if c.LeftoverViewers == nil {
			return ""
		}
		return strconv.Itoa(*c.LeftoverViewers)
	}},
}

// WriteCSV writes a header and one row per step, or for a churn run one
// row of its figures. Unknown figures are empty cells.
func (r *Report) WriteCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	if r.Churn != nil {
		head, row := make([]string, len(churnColumns)), make([]string, len(churnColumns))
		for i, c := range churnColumns {
			head[i], row[i] = c.name, c.value(r.Churn)
		}
		_ = cw.Write(head)
		_ = cw.Write(row)
	} else {
		head := make([]string, len(stepColumns))
		for i, c := range stepColumns {
			head[i] = c.name
		}
		var nodes []string // the cluster's process ids, from its setup
		if r.Cluster != nil {
			for _, c := range clusterColumns {
				head = append(head, c.name)
			}
			for _, m := range r.Cluster.Members {
				nodes = append(nodes, m.ID)
				for _, c := range clusterNodeColumns {
					head = append(head, m.ID+"_"+c.name)
				}
			}
		}
		_ = cw.Write(head)
		for _, s := range r.Steps {
			row := make([]string, len(stepColumns), len(head))
			for i, c := range stepColumns {
				row[i] = c.value(s)
			}
			if r.Cluster != nil {
				row = append(row, clusterCells(s.Cluster, nodes)...)
			}
			_ = cw.Write(row)
		}
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return fmt.Errorf("write csv: %w", err)
	}
	return nil
}

// clusterCells are a step's cluster columns for the processes ids, empty
// where the step lacks them.
func clusterCells(c *ClusterStep, ids []string) []string {
	out := make([]string, 0, len(clusterColumns)+len(ids)*len(clusterNodeColumns))
	if c == nil {
		c = &ClusterStep{OriginEgressMbps: unknown(), EgressMbps: unknown()}
	}
	for _, col := range clusterColumns {
		out = append(out, col.value(c))
	}
	for _, id := range ids {
		i := slices.IndexFunc(c.Nodes, func(n NodeLoad) bool { return n.ID == id })
		for _, col := range clusterNodeColumns {
			if i < 0 {
				out = append(out, "")
			} else {
				out = append(out, col.value(c.Nodes[i]))
			}
		}
	}
	return out
}

// writeFile creates path and writes it with write.
func writeFile(path string, write func(io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := write(f); err != nil {
		_ = f.Close()
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// WriteFiles writes the report to whichever of the JSON, CSV and PNG paths
// are set.
func (r *Report) WriteFiles(jsonPath, csvPath, plotPath string) error {
	if jsonPath != "" {
		if err := writeFile(jsonPath, r.WriteJSON); err != nil {
			return err
		}
	}
	if csvPath != "" {
		if err := writeFile(csvPath, r.WriteCSV); err != nil {
			return err
		}
	}
	if plotPath != "" {
		if err := writeFile(plotPath, r.WritePlot); err != nil {
			return err
		}
	}
	return nil
}

// The table: fixed-width columns, so rows can be printed as steps finish.

type tableColumn struct {
	head  string
	width int
	cell  func(Step) string
}

// cell formats a Number for the table: "-" when unknown, fewer decimals
// for larger values.
func cell(n Number) string {
	if !n.Known() {
		return "-"
	}
	f := float64(n)
	// Decide on the rounded value, so 99.96 prints as 100, not 100.0.
	switch a := math.Abs(f); {
	case math.Round(a*10)/10 >= 100:
		return strconv.FormatFloat(f, 'f', 0, 64)
	case math.Round(a*100)/100 >= 10:
		return strconv.FormatFloat(f, 'f', 1, 64)
	default:
		return strconv.FormatFloat(f, 'f', 2, 64)
	}
}

// cells joins several figures with '/', as "p50/p95/p99".
func cells(ns ...Number) string {
	s := make([]string, len(ns))
	for i, n := range ns {
		s[i] = cell(n)
	}
	return strings.Join(s, "/")
}

func (r *Report) tableColumns() []tableColumn {
	cols := []tableColumn{
		{"viewers", 7, func(s Step) string { return strconv.Itoa(s.Viewers) }},
		{"Mbit/s", 7, func(s Step) string { return cell(s.ReceivedMbps) }},
		{"loss%", 6, func(s Step) string { return cell(s.LossPct) }},
		{"recv%", 6, func(s Step) string { return cell(s.DeliveryPct) }},
		{"join ms p50/95/99", 18, func(s Step) string { return cells(s.Join.P50, s.Join.P95, s.Join.P99) }},
		{"key ms p50/95/99", 18, func(s Step) string {
			return cells(s.JoinKeyframe.P50, s.JoinKeyframe.P95, s.JoinKeyframe.P99)
		}},
		{"delay ms p50/99", 15, func(s Step) string { return cells(s.DelayP50, s.DelayP99) }},
		{"frame p95", 9, func(s Step) string { return cell(s.FrameDelayP95) }},
		{"srv cores", 9, func(s Step) string { return cell(s.ServerCPU) }},
		{"srv MiB", 7, func(s Step) string { return cell(s.ServerRSSMiB) }},
		{"gen cores", 9, func(s Step) string { return cell(s.GeneratorCPU) }},
		{"other", 5, func(s Step) string { return cell(s.OtherCPU) }},
		{"µs/pkt", 6, func(s Step) string { return cell(s.CPUPerPacketUs) }},
		{"mcore/viewer", 12, func(s Step) string { return cell(s.CPUPerViewerMcores) }},
		{"viewers/core", 12, func(s Step) string { return cell(s.ViewersPerCore) }},
		{"KiB/viewer", 10, func(s Step) string { return cell(s.MemPerViewerKiB) }},
	}
	if r.Streams > 1 {
		cols = append([]tableColumn{{"streams", 7, func(s Step) string { return strconv.Itoa(s.Streams) }}}, cols...)
	}
	return cols
}

func padLeft(s string, w int) string {
	if n := utf8.RuneCountInString(s); n < w {
		return strings.Repeat(" ", w-n) + s
	}
	return s
}

func (r *Report) writeRow(w io.Writer, cols []tableColumn, text func(tableColumn) string) {
	var b strings.Builder
	for i, c := range cols {
		if i > 0 {
			b.WriteString("  ")
		}
		b.WriteString(padLeft(text(c), c.width))
	}
	b.WriteByte('\n')
	_, _ = io.WriteString(w, b.String())
}

// WriteIntro prints how the run is set up and the zero-viewer baseline.
func (r *Report) WriteIntro(w io.Writer) {
	target := r.Target
	if c := r.Cluster; c != nil {
		var pids []string
		for _, m := range c.Members {
			pids = append(pids, fmt.Sprintf("%s %d", m.ID, m.PID))
		}
		target = fmt.Sprintf("%d cascade nodes (play.max_viewers %d, relay.max_downstream %d) and a balancer "+
			"started by the bench (pids %s); publisher and viewers through the balancer at %s; origin %s",
			c.Nodes, c.MaxViewers, c.MaxDownstream, strings.Join(pids, ", "), r.Target, c.Origin)
	} else if r.ServerStarted {
		target = fmt.Sprintf("cascade serve --dev started by the bench (pid %d) at %s", r.ServerPIDs[0], r.Target)
	} else if len(r.ServerPIDs) > 0 {
		target = fmt.Sprintf("%s (measuring pids %v)", r.Target, r.ServerPIDs)
	} else {
		target += " (no --pid: server CPU and memory not measured)"
	}
	fmt.Fprintf(w, "cascade bench: scenario %s, target %s\n", r.Scenario, target)
	audio := ""
	if r.Audio {
		audio = " + Opus 50 pkt/s"
	}
	streams := "1 stream"
	if r.Streams > 1 {
		streams = fmt.Sprintf("%d streams, each", r.Streams)
	}
	timing := fmt.Sprintf("warm-up %ss, measure %ss per step", r.WarmupS, r.DurationS)
	if r.Churn != nil || r.Scenario == ScenarioChurn {
		timing = fmt.Sprintf("joins for %ss", r.DurationS)
	}
	pacing := "each frame in one burst"
	if r.Pacing.Known() && r.Pacing > 0 {
		pacing = fmt.Sprintf("paced at %s× the bitrate", r.Pacing)
	}
	fmt.Fprintf(w, "  %s of %s %.2f Mbit/s %d fps (%s), keyframe every %ss%s; %s\n",
		streams, r.Codec, float64(r.BitrateBps)/1e6, r.FPS, pacing, r.KeyframeIntervalS, audio, timing)
	pin := func(s string) string {
		if s == "" {
			return "not pinned"
		}
		return "pinned to CPUs " + s
	}
	cpus := "1 CPU"
	if r.GeneratorCPUs != 1 {
		cpus = fmt.Sprintf("%d CPUs", r.GeneratorCPUs)
	}
	fmt.Fprintf(w, "  server %s; generator %s (%s)\n", pin(r.TasksetServer), pin(r.TasksetBench), cpus)
	b := r.Baseline
	fmt.Fprintf(w, "  baseline (publishers, no viewers): server %s cores, %s MiB; generator %s cores; "+
		"other processes %s cores; published %s pkt/s\n\n",
		cell(b.ServerCPU), cell(b.ServerRSSMiB), cell(b.GeneratorCPU), cell(b.OtherCPU), cell(b.PublishedPPS))
}

// WriteTableHeader prints the column heads of the step table.
func (r *Report) WriteTableHeader(w io.Writer) {
	r.writeRow(w, r.tableColumns(), func(c tableColumn) string { return c.head })
}

// WriteTableRow prints one step's row and, in the cluster scenario, the
// origin's egress and each node's load below it.
func (r *Report) WriteTableRow(w io.Writer, s Step) {
	r.writeRow(w, r.tableColumns(), func(c tableColumn) string { return c.cell(s) })
	if c := s.Cluster; c != nil {
		fmt.Fprintln(w, originSummary(c, s.JoinRetries))
		for _, n := range c.Nodes {
			fmt.Fprintln(w, clusterLine(n))
		}
	}
}

// originTrend sums up the cluster scenario: the origin's egress and
// relays step by step, against the viewers.
func (r *Report) originTrend() string {
	var parts []string
	for _, s := range r.Steps {
		if c := s.Cluster; c != nil {
			parts = append(parts, fmt.Sprintf("%d viewers: %s Mbit/s (%d+%d)", s.Viewers, cell(c.OriginEgressMbps),
				c.OriginViewers, c.OriginRelays))
		}
	}
	return "origin egress (its viewers + relays): " + strings.Join(parts, ", ")
}

// WriteTable prints the intro, the whole step table (or the churn
// figures) and the summary.
func (r *Report) WriteTable(w io.Writer) {
	r.WriteIntro(w)
	if r.Churn != nil {
		r.WriteChurn(w)
	} else {
		r.WriteTableHeader(w)
		for _, s := range r.Steps {
			r.WriteTableRow(w, s)
		}
	}
	r.WriteSummary(w)
}

// WriteChurn prints a churn run's figures.
func (r *Report) WriteChurn(w io.Writer) {
	c := r.Churn
	if c == nil {
		return
	}
	fmt.Fprintf(w, "churn: %s joins/s asked for %ss, each viewer staying %ss after its first keyframe\n",
		cell(c.Rate), cell(c.Seconds), cell(c.Lifetime))
	fmt.Fprintf(w, "  sessions        %d of %d attempts, %s sessions/s sustained, %d failed\n",
		c.Sessions, c.Attempts, cell(c.SessionsPerSec), c.Failures)
	if len(c.FailureReasons) > 0 {
		fmt.Fprintf(w, "  failures        %s\n", formatReasons(c.FailureReasons))
	}
	fmt.Fprintf(w, "  join ms         p50 %s  p95 %s  p99 %s (POST to first packet)\n", cell(c.Join.P50), cell(c.Join.P95), cell(c.Join.P99))
	fmt.Fprintf(w, "  keyframe ms     p50 %s  p95 %s  p99 %s (POST to first keyframe)\n",
		cell(c.JoinKeyframe.P50), cell(c.JoinKeyframe.P95), cell(c.JoinKeyframe.P99))
	fmt.Fprintf(w, "  viewers at once peak %d, mean %s; loss %s%%\n", c.PeakViewers, cell(c.MeanViewers), cell(c.LossPct))
	fmt.Fprintf(w, "  server          %s cores, %s MiB; generator %s cores; other processes %s cores\n",
		cell(c.ServerCPU), cell(c.ServerRSSMiB), cell(c.GeneratorCPU), cell(c.OtherCPU))
	left := "unknown"
	if c.LeftoverViewers != nil {
		left = strconv.Itoa(*c.LeftoverViewers)
	}
	fmt.Fprintf(w, "  viewers left on the node after all sessions ended: %s\n", left)
}

// WriteSummary prints the headline and the warnings.
func (r *Report) WriteSummary(w io.Writer) {
	if r.Headline != "" {
		fmt.Fprintf(w, "\n%s\n", r.Headline)
	}
	for _, warn := range r.Warnings {
		fmt.Fprintf(w, "warning: %s\n", warn)
	}
}

func formatReasons(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	// Most frequent first, then by name.
	slices.SortFunc(keys, func(a, b string) int {
		if c := cmp.Compare(m[b], m[a]); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%d %s", m[k], k)
	}
	return strings.Join(parts, ", ")
}
