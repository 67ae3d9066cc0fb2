package main

import (
	"fmt"
	"path/filepath"
	"slices"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"

	"github.com/supernet-p2p/supernet/compare"
)

// writePlots draws messages per query and recall against the number of
// peers, and the success rate over the run of the largest, into dir as SVG
// or PNG.
func writePlots(dir, format string, all []compare.Result) ([]string, error) {
	byDesign := map[string][]compare.Result{}
	var designs []string
	for _, r := range all {
		if _, ok := byDesign[r.Design]; !ok {
			designs = append(designs, r.Design)
		}
		byDesign[r.Design] = append(byDesign[r.Design], r)
	}
	series := func(p *plot.Plot, y func(compare.Result) float64) error {
		var args []any
		for _, d := range designs {
			var xy plotter.XYs
			for _, r := range byDesign[d] {
				xy = append(xy, plotter.XY{X: float64(r.Peers), Y: y(r)})
			}
			args = append(args, d, xy)
		}
		return plotutil.AddLinePoints(p, args...)
	}
	var files []string
	save := func(p *plot.Plot, name string) error {
		path := filepath.Join(dir, name+"."+format)
		files = append(files, path)
		return p.Save(7*vg.Inch, 4.5*vg.Inch, path)
	}

	p := plot.New()
	p.Title.Text = "Messages per query"
	p.X.Label.Text, p.Y.Label.Text = "peers", "messages (mean, log scale)"
	p.X.Scale, p.X.Tick.Marker = plot.LogScale{}, plot.LogTicks{}
	p.Y.Scale, p.Y.Tick.Marker = plot.LogScale{}, plot.LogTicks{}
	p.Legend.Top, p.Legend.Left = true, true
	if err := series(p, func(r compare.Result) float64 { return max(r.MsgsMean, 0.1) }); err != nil {
		return nil, err
	}
	if err := save(p, "messages"); err != nil {
		return nil, err
	}

	p = plot.New()
	p.Title.Text = "Recall (share of the files on live peers that were found)"
	p.X.Label.Text, p.Y.Label.Text = "peers", "recall"
	p.X.Scale, p.X.Tick.Marker = plot.LogScale{}, plot.LogTicks{}
	p.Y.Min, p.Y.Max = 0, 1.05
	p.Legend.Left = true
	if err := series(p, func(r compare.Result) float64 { return r.Recall }); err != nil {
		return nil, err
	}
	if err := save(p, "recall"); err != nil {
		return nil, err
	}

	// Success over time, for the largest run.
	largest := slices.MaxFunc(all, func(a, b compare.Result) int { return a.Peers - b.Peers }).Peers
	p = plot.New()
	p.Title.Text = fmt.Sprintf("Queries that found a file, per minute (%d peers)", largest)
	p.X.Label.Text, p.Y.Label.Text = "minutes into the run", "success rate"
	p.Y.Min, p.Y.Max = 0, 1.05
	p.Legend.Left = true
	var args []any
	var failures []compare.FailureResult
	for _, d := range designs {
		for _, r := range byDesign[d] {
			if r.Peers != largest {
				continue
			}
			var xy plotter.XYs
			for _, pt := range r.Timeline {
				xy = append(xy, plotter.XY{X: pt.At.Minutes(), Y: pt.Success})
			}
			args = append(args, d, xy)
			failures = r.Failures
		}
	}
	if err := plotutil.AddLinePoints(p, args...); err != nil {
		return nil, err
	}
	for _, f := range failures {
		l, err := plotter.NewLine(plotter.XYs{{X: f.At.Minutes(), Y: 0}, {X: f.At.Minutes(), Y: 1.05}})
		if err != nil {
			return nil, err
		}
		l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
		p.Add(l)
		p.Legend.Add(f.What+fmt.Sprintf(" (%.0f min)", f.At.Minutes()), l)
	}
	if err := save(p, "success"); err != nil {
		return nil, err
	}
	return files, nil
}
