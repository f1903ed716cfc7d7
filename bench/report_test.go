package bench

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"image/png"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// sampleReport is a two-step fanout report with one unknown figure.
func sampleReport() *Report {
	var delays Histogram
	delays.Add(2 * time.Millisecond)
	step := func(viewers int, cpu float64) Step {
		return derive(stepRaw{
			streams: 1, perStream: viewers, target: viewers, viewers: viewers, window: 10 * time.Second,
			published: 3000, expected: 3000 * uint64(viewers), packets: 3000 * uint64(viewers), bytes: 3_000_000 * uint64(viewers),
			seqExpected: 3000 * uint64(viewers), joins: []time.Duration{time.Millisecond * time.Duration(viewers)},
			keyframes: []time.Duration{300 * time.Millisecond}, delays: &delays, frames: &Histogram{},
			serverCPU: cpu, serverRSS: 100 << 20, baselineRSS: 50 << 20, generatorCPU: cpu / 2,
		})
	}
	return &Report{
		Scenario: ScenarioFanout, Target: "http://127.0.0.1:1", ServerStarted: true, ServerPIDs: []int{42},
		Codec: "VP8", BitrateBps: 2_500_000, FPS: 30, KeyframeIntervalS: 2, Audio: true, Streams: 1,
		WarmupS: 2, DurationS: 10, GeneratorCPUs: 2,
		Baseline: Baseline{Seconds: 2, ServerCPU: 0.01, ServerRSSMiB: 50, GeneratorCPU: 0.01, PublishedPPS: 300},
		Steps:    []Step{step(50, 0.1), step(100, 0.2)},
		Warnings: []string{},
	}
}

func TestCSVShape(t *testing.T) {
	r := sampleReport()
	var buf bytes.Buffer
	if err := r.WriteCSV(&buf); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(&buf).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 3 {
		t.Fatalf("%d rows, want a header and 2 steps", len(rows))
	}
	head := rows[0]
	col := func(name string) int {
		i := slices.Index(head, name)
		if i < 0 {
			t.Fatalf("no column %q in %v", name, head)
		}
		return i
	}
	if rows[1][col("viewers")] != "50" || rows[2][col("viewers")] != "100" {
		t.Errorf("viewers column: %q, %q", rows[1][col("viewers")], rows[2][col("viewers")])
	}
	if got := rows[2][col("viewers_per_core")]; got != "500" {
		t.Errorf("viewers_per_core %q, want 500", got)
	}
	// No frames were recorded: an unknown figure is an empty cell.
	if got := rows[1][col("frame_delay_p95_ms")]; got != "" {
		t.Errorf("unknown frame delay written as %q, want empty", got)
	}

	// Every JSON figure of a step has a CSV column of the same name, with
	// quantile objects flattened to name_p50 and so on.
	b, err := json.Marshal(r.Steps[0])
	if err != nil {
		t.Fatal(err)
	}
	var fields map[string]any
	if err := json.Unmarshal(b, &fields); err != nil {
		t.Fatal(err)
	}
	var flat []string
	for k, v := range fields {
		if sub, ok := v.(map[string]any); ok {
			for q := range sub {
				flat = append(flat, strings.TrimSuffix(k, "_ms")+"_"+q+"_ms")
			}
			continue
		}
		flat = append(flat, k)
	}
	slices.Sort(flat)
	sorted := slices.Sorted(slices.Values(head))
	if !slices.Equal(flat, sorted) {
		t.Errorf("JSON fields and CSV columns differ:\njson %v\ncsv  %v", flat, sorted)
	}
}

func TestJSONShape(t *testing.T) {
	r := sampleReport()
	var buf bytes.Buffer
	if err := r.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var back struct {
		Scenario string `json:"scenario"`
		Steps    []struct {
			Viewers          int     `json:"viewers"`
			DeliveredPackets uint64  `json:"delivered_packets"`
			LossPct          float64 `json:"loss_pct"`
			FrameDelayP95    *Number `json:"frame_delay_p95_ms"`
			Join             struct {
				P95 float64 `json:"p95"`
			} `json:"join_ms"`
		} `json:"steps"`
		Churn    *ChurnResult `json:"churn"`
		Baseline Baseline     `json:"baseline"`
	}
	if err := json.Unmarshal(buf.Bytes(), &back); err != nil {
		t.Fatalf("%v\n%s", err, buf.String())
	}
	if back.Scenario != "fanout" || len(back.Steps) != 2 || back.Steps[1].Viewers != 100 ||
		back.Steps[1].DeliveredPackets != 300_000 || back.Steps[1].Join.P95 != 100 || back.Churn != nil {
		t.Errorf("decoded %+v", back)
	}
	if !strings.Contains(buf.String(), `"frame_delay_p95_ms": null`) {
		t.Error("an unknown figure is not null in the JSON")
	}
	if !near(back.Baseline.ServerRSSMiB, 50) {
		t.Errorf("baseline %+v", back.Baseline)
	}
}

func TestChurnCSV(t *testing.T) {
	left := 0
	r := &Report{Scenario: ScenarioChurn, Churn: &ChurnResult{Rate: 50, Seconds: 10, Lifetime: 2, Attempts: 500,
		Sessions: 498, Failures: 2, FailureReasons: map[string]int{"HTTP 503": 2}, SessionsPerSec: 49.8,
		Join: Quantiles{20, 30, 40}, JoinKeyframe: Quantiles{unknown(), unknown(), unknown()}, MeanViewers: 100,
		LossPct: 0, ServerCPU: 0.5, ServerRSSMiB: 80, GeneratorCPU: 0.4, LeftoverViewers: &left}}
	var buf bytes.Buffer
	if err := r.WriteCSV(&buf); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(&buf).ReadAll()
	if err != nil || len(rows) != 2 || len(rows[0]) != len(rows[1]) {
		t.Fatalf("rows %v, %v", rows, err)
	}
	got := map[string]string{}
	for i, name := range rows[0] {
		got[name] = rows[1][i]
	}
	if got["sessions_per_s"] != "49.8" || got["join_p95_ms"] != "30" || got["join_keyframe_p50_ms"] != "" || got["leftover_viewers"] != "0" {
		t.Errorf("churn row %v", got)
	}
}

func TestTable(t *testing.T) {
	r := sampleReport()
	r.Headline = "headline: test"
	r.Warnings = []string{"something odd"}
	var buf bytes.Buffer
	r.WriteTable(&buf)
	out := buf.String()
	lines := strings.Split(out, "\n")
	var head, row string
	for i, l := range lines {
		if strings.Contains(l, "viewers/core") {
			head, row = l, lines[i+1]
			break
		}
	}
	if head == "" {
		t.Fatalf("no table header in\n%s", out)
	}
	if utf8.RuneCountInString(head) != utf8.RuneCountInString(row) {
		t.Errorf("header and row differ in width:\n%s\n%s", head, row)
	}
	for _, want := range []string{"pid 42", "VP8 2.50 Mbit/s 30 fps", "baseline", "headline: test", "warning: something odd"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(row, "   50 ") || !strings.Contains(row, "-") {
		t.Errorf("row %q: want 50 viewers and '-' for the unknown frame delay", row)
	}
}

func TestPlot(t *testing.T) {
	r := sampleReport()
	var buf bytes.Buffer
	if err := r.WritePlot(&buf); err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if b := img.Bounds(); b.Dx() < 600 || b.Dy() < 600 {
		t.Errorf("plot is %v, want at least 600×600", b)
	}
	if err := (&Report{}).WritePlot(&buf); !errors.Is(err, errNoSteps) {
		t.Errorf("plot of a run without steps: %v, want errNoSteps", err)
	}
}

func TestCell(t *testing.T) {
	for _, tc := range []struct {
		in   Number
		want string
	}{
		{unknown(), "-"}, {0, "0.00"}, {1.234, "1.23"}, {9.996, "10.0"}, {12.34, "12.3"},
		{99.96, "100"}, {100, "100"}, {1234.5, "1234"}, {-0.5, "-0.50"},
	} {
		if got := cell(tc.in); got != tc.want {
			t.Errorf("cell(%v) = %q, want %q", float64(tc.in), got, tc.want)
		}
	}
}
