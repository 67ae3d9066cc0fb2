//go:build diag

package index_test

import (
	"fmt"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestDiag(t *testing.T) {
	c := loadCorpus(100_000)
	type q struct {
		q string
		d time.Duration
	}
	var qs []q
	byN := map[int]time.Duration{}
	cnt := map[int]int{}
	for _, s := range c.queries {
		d := time.Hour
		for range 10 {
			st := time.Now()
			c.ix.Search(s, 0)
			d = min(d, time.Since(st))
		}
		qs = append(qs, q{s, d})
		n := len(strings.Fields(s))
		byN[n] += d
		cnt[n]++
	}
	sort.Slice(qs, func(i, j int) bool { return qs[i].d > qs[j].d })
	var tot time.Duration
	for _, x := range qs {
		tot += x.d
	}
	fmt.Println("mean", tot/time.Duration(len(qs)), "median", qs[len(qs)/2].d, "p90", qs[len(qs)/10].d)
	for n := 1; n <= 3; n++ {
		fmt.Println(n, "terms: mean", byN[n]/time.Duration(cnt[n]), cnt[n])
	}
	for _, x := range qs[:25] {
		fmt.Printf("%-40q %v\n", x.q, x.d)
	}
}

func BenchmarkDiagThe(b *testing.B) {
	c := loadCorpus(100_000)
	b.ResetTimer()
	for range b.N {
		c.ix.Search("the", 0)
	}
}

func BenchmarkDiagSplit(b *testing.B) {
	c := loadCorpus(100_000)
	by := map[int][]string{}
	for _, q := range c.queries {
		n := len(strings.Fields(q))
		by[n] = append(by[n], q)
	}
	for n := 1; n <= 3; n++ {
		for _, lim := range []int{1, 10, 100} {
			qs := by[n]
			b.Run(fmt.Sprintf("terms=%d/limit=%d", n, lim), func(b *testing.B) {
				for i := range b.N {
					c.ix.Search(qs[i%len(qs)], lim)
				}
			})
		}
	}
}

func cpuNow() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_THREAD, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func TestDiagCPU(t *testing.T) {
	runtime.LockOSThread()
	c := loadCorpus(100_000)
	by := map[int][]string{}
	for _, q := range c.queries {
		n := len(strings.Fields(q))
		by[n] = append(by[n], q)
	}
	by[0] = c.queries
	for n := 0; n <= 3; n++ {
		for _, lim := range []int{10, 100} {
			qs := by[n]
			st := cpuNow()
			w := time.Now()
			const reps = 20000
			for i := range reps {
				c.ix.Search(qs[i%len(qs)], lim)
			}
			fmt.Printf("terms=%d limit=%d cpu/op %v wall/op %v\n", n, lim, (cpuNow()-st)/reps, time.Since(w)/reps)
		}
	}
}
