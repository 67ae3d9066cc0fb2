package main

import (
	"fmt"
	"io"
	"math"
	"text/tabwriter"
	"time"

	"gonum.org/v1/gonum/stat"
	"gonum.org/v1/gonum/stat/distuv"

	"github.com/supernet-p2p/supernet/compare"
)

// interval is the mean of xs and the half-width of its 95% confidence
// interval, by Student's t with len(xs)-1 degrees of freedom (0 for one value).
func interval(xs []float64) (mean, half float64) {
	mean, sd := stat.MeanStdDev(xs, nil)
	if len(xs) < 2 {
		return mean, 0
	}
	t := distuv.StudentsT{Mu: 0, Sigma: 1, Nu: float64(len(xs) - 1)}.Quantile(0.975)
	return mean, t * sd / math.Sqrt(float64(len(xs)))
}

// seedMeasures are the figures printed with intervals over seeds.
var seedMeasures = []struct {
	name string
	get  func(r compare.Result) float64
	f    string
}{
	{"msgs/query", func(r compare.Result) float64 { return r.MsgsMean }, "%.1f"},
	{"msgs p99", func(r compare.Result) float64 { return r.MsgsP99 }, "%.0f"},
	{"recall", func(r compare.Result) float64 { return r.Recall }, "%.3f"},
	{"first hit p50 ms", func(r compare.Result) float64 { return float64(r.FirstP50) / float64(time.Millisecond) }, "%.0f"},
	{"busiest msgs/s", func(r compare.Result) float64 { return r.BusiestMsgsPerSec }, "%.1f"},
	{"busiest B/s", func(r compare.Result) float64 { return r.BusiestBytesPerSec }, "%.0f"},
	{"upkeep/node msgs/s", func(r compare.Result) float64 { m, _ := r.UpkeepPerNode(); return m }, "%.2f"},
	{"upkeep/node B/s", func(r compare.Result) float64 { _, b := r.UpkeepPerNode(); return b }, "%.0f"},
	{"success after SNs die", func(r compare.Result) float64 { return r.Failures[1].During }, "%.3f"},
}

// printIntervals prints, per design, each measure's mean over the seeds
// with its 95% interval. runs holds one result list per seed, in the same
// design order.
func printIntervals(w io.Writer, runs [][]compare.Result) {
	if len(runs) == 0 {
		return
	}
	fmt.Fprintf(w, "over %d seeds, mean ± half-width of the 95%% interval:\n\n", len(runs))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "design\t")
	for _, m := range seedMeasures {
		fmt.Fprintf(tw, "%s\t", m.name)
	}
	fmt.Fprintln(tw)
	for i := range runs[0] {
		fmt.Fprintf(tw, "%s\t", runs[0][i].Design)
		for _, m := range seedMeasures {
			xs := make([]float64, 0, len(runs))
			for _, res := range runs {
				if x := m.get(res[i]); x >= 0 { // -1: no query fell in the window
					xs = append(xs, x)
				}
			}
			mean, half := interval(xs)
			fmt.Fprintf(tw, m.f+" ± "+m.f+"\t", mean, half)
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
	fmt.Fprintln(w)
}
