package bench

import (
	"fmt"
	"image/color"
	"io"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// series is one line of a panel.
type series struct {
	name  string
	value func(Step) Number
	color color.Color
	dash  bool
}

var (
	blue   = color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}
	orange = color.RGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff}
	red    = color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff}
	gray   = color.RGBA{R: 0x80, G: 0x80, B: 0x80, A: 0xff}
)

// WritePlot draws panels over a shared viewers axis: server (and
// generator) CPU, loss, join time p95 and, in the cluster scenario, the
// origin's and all nodes' egress, as a PNG.
func (r *Report) WritePlot(w io.Writer) error {
	if len(r.Steps) == 0 {
		return errNoSteps
	}
	audio := ""
	if r.Audio {
		audio = " + Opus"
	}
	streams := "1 stream"
	if r.Streams > 1 {
		streams = fmt.Sprintf("%d streams", r.Streams)
	}
	pin := ""
	if r.TasksetServer != "" {
		pin = ", server on CPUs " + r.TasksetServer
	}
	title := fmt.Sprintf("cascade bench %s: %s of %s %.2g Mbit/s%s%s", r.Scenario, streams, r.Codec,
		float64(r.BitrateBps)/1e6, audio, pin)
	server := "server"
	if r.Cluster != nil {
		server = "all cluster processes"
	}
	panels := []struct {
		ylabel string
		lines  []series
	}{
		{"CPU (cores)", []series{
			{server, func(s Step) Number { return s.ServerCPU }, blue, false},
			{"generator", func(s Step) Number { return s.GeneratorCPU }, gray, true},
		}},
		{"loss (%)", []series{
			{"RTP loss", func(s Step) Number { return s.LossPct }, red, false},
		}},
		{"join p95 (ms)", []series{
			{"to first packet", func(s Step) Number { return s.Join.P95 }, blue, false},
			{"to first keyframe", func(s Step) Number { return s.JoinKeyframe.P95 }, orange, true},
		}},
	}
	if r.Cluster != nil {
		panels = append(panels, struct {
			ylabel string
			lines  []series
		}{"egress (Mbit/s)", []series{
			{"origin", originEgress, red, false},
			{"all nodes", clusterEgress, blue, true},
		}})
	}
	plots := make([][]*plot.Plot, len(panels))
	for i, panel := range panels {
		p, err := r.panel(panel.ylabel, panel.lines)
		if err != nil {
			return err
		}
		if i == 0 {
			p.Title.Text = title
		}
		if i == len(panels)-1 {
			p.X.Label.Text = "viewers"
		}
		plots[i] = []*plot.Plot{p}
	}
	img := vgimg.NewWith(vgimg.UseWH(8*vg.Inch, 3*vg.Inch*vg.Length(len(panels))), vgimg.UseDPI(100))
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: len(panels), Cols: 1, PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2,
		PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 4, PadY: vg.Millimeter * 4}
	canvases := plot.Align(plots, tiles, dc)
	for i := range plots {
		plots[i][0].Draw(canvases[i][0])
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(w); err != nil {
		return fmt.Errorf("write png: %w", err)
	}
	return nil
}

// originEgress is the origin's egress in a cluster step, unknown in
// other steps.
func originEgress(s Step) Number {
	if s.Cluster == nil {
		return unknown()
	}
	return s.Cluster.OriginEgressMbps
}

// clusterEgress is every node's egress together in a cluster step,
// unknown in other steps.
func clusterEgress(s Step) Number {
	if s.Cluster == nil {
		return unknown()
	}
	return s.Cluster.EgressMbps
}

// panel builds one panel: a line with points per series, over viewers.
func (r *Report) panel(ylabel string, lines []series) (*plot.Plot, error) {
	p := plot.New()
	p.Y.Label.Text = ylabel
	p.Add(plotter.NewGrid())
	p.Legend.Top = true
	p.Legend.Left = true
	p.Legend.XOffs = vg.Points(12)
	p.X.Min = 0
	p.Y.Min = 0
	ymax, xmax := 0.0, 0.0
	for _, l := range lines {
		var xys plotter.XYs
		for _, s := range r.Steps {
			if v := l.value(s); v.Known() {
				xys = append(xys, plotter.XY{X: float64(s.Viewers), Y: float64(v)})
				ymax, xmax = max(ymax, float64(v)), max(xmax, float64(s.Viewers))
			}
		}
		if len(xys) == 0 {
			continue
		}
		line, points, err := plotter.NewLinePoints(xys)
		if err != nil {
			return nil, fmt.Errorf("plot %s: %w", l.name, err)
		}
		line.Color, points.Color = l.color, l.color
		line.Width = vg.Points(1.5)
		if l.dash {
			line.Dashes = []vg.Length{vg.Points(5), vg.Points(3)}
		}
		points.Shape = draw.CircleGlyph{}
		points.Radius = vg.Points(2.5)
		p.Add(line, points)
		p.Legend.Add(l.name, line, points)
	}
	// Leave room above the highest point for the legend; keep an axis
	// even when every value is 0 (no loss).
	p.Y.Max = max(ymax*1.25, 1)
	p.X.Max = max(xmax*1.05, 1)
	return p, nil
}
