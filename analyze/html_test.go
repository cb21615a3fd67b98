package analyze_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/png"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/llmtape/llmtape/analyze"
	"github.com/llmtape/llmtape/metrics"
	"github.com/llmtape/llmtape/tape"
)

// demoStore is demo-sized data: 40 conversations of 1 to 8 turns with streamed replies, and
// a replay of it ("slow") on a server 30% slower.
func demoStore() *memStore {
	rng := rand.New(rand.NewPCG(1, 2))
	m := newMem()
	m.recs = []*tape.Recording{{ID: 1, Name: "demo", Source: "record", Started: t0}}
	run := &tape.Run{ID: 1, Name: "slow", Recording: 1, Started: t0.Add(time.Hour)}
	m.runs = []*tape.Run{run}
	var acc metrics.Accumulator
	seq := uint64(0)
	arrival := time.Duration(0)
	for c := 0; c < 40; c++ {
		id := uint64(100 + c)
		arrival += time.Duration(rng.ExpFloat64() * float64(2*time.Second))
		m.convs = append(m.convs, &tape.Conversation{ID: id, Recording: 1, Arrival: arrival, Grouping: tape.GroupPrefix})
		at := arrival
		n := 1 + rng.IntN(8)
		for i := 0; i < n; i++ {
			kept := 0
			msgs := []msg{{30, 7}, {int32(20 + rng.IntN(200)), rng.Uint64()}}
			if i > 0 {
				kept = 2*i + 1
				msgs = msgs[1:]
			}
			out := 20 + rng.IntN(300)
			tr := chatTurn(id, i, at, kept, msgs, out, fmt.Sprint(rng.Uint64()))
			tr.Tokens.Prompt = 30 + i*150
			ttft := time.Duration(100+rng.IntN(300)+40*i) * time.Millisecond
			itl := time.Duration(15+rng.IntN(10)) * time.Millisecond
			tr.Timing.Chunks = chunksOf(ttft, itl, out)
			tr.Timing.End = tr.Timing.Chunks[out-1].Offset
			m.addTurn(tr)
			seq++
			r := &tape.Result{Run: 1, Seq: seq, Conversation: id, Turn: i, Scheduled: at, Sent: at + time.Millisecond,
				TTFT: ttft * 13 / 10, Chunks: chunksOf(ttft*13/10, itl*13/10, out), InputTokens: tr.Tokens.Prompt,
				OutputTokens: out, Status: 200}
			r.E2E = r.Chunks[out-1].Offset
			acc.Add(r)
			m.results[1] = append(m.results[1], r)
			at += tr.Timing.End + time.Duration(1+rng.IntN(10))*time.Second
		}
	}
	sum := acc.Summary(2*time.Minute, metrics.SLO{})
	run.Summary = mustJSON(sum)
	run.Histograms, _ = acc.Set().Encode()
	return m
}

func chunksOf(ttft, itl time.Duration, n int) []tape.Chunk {
	c := make([]tape.Chunk, n)
	for i := range c {
		c[i] = tape.Chunk{Offset: ttft + time.Duration(i)*itl, Tokens: 1}
	}
	return c
}

// TestHTMLRendersInChromium renders the three HTML reports of demo-sized data in headless
// Chromium and checks the screenshots: not blank, and the charts' series colours present.
func TestHTMLRendersInChromium(t *testing.T) {
	bin := os.Getenv("CHROMIUM")
	if bin == "" {
		bin = "/usr/bin/chromium"
	}
	if _, err := os.Stat(bin); err != nil {
		t.Skipf("headless Chromium not found at %s (install Debian's chromium package: apt-get install -y chromium, or set $CHROMIUM): %v", bin, err)
	}
	src := demoStore()
	p, err := analyze.Analyze(context.Background(), src, 1, analyze.Config{})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := analyze.BuildReport(context.Background(), src, src.runs, analyze.ReportConfig{Timeline: true})
	if err != nil {
		t.Fatal(err)
	}
	cmp, err := analyze.Compare(context.Background(), src, "recording", "slow", analyze.CompareConfig{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, c := range []struct {
		name string
		w    interface {
			Write(w io.Writer, f analyze.Format) error
		}
	}{{"analyze", p}, {"report", rep}, {"compare", cmp}} {
		t.Run(c.name, func(t *testing.T) {
			// One browser at a time: three at once on a shared 2-core machine crashed one.
			var b bytes.Buffer
			if err := c.w.Write(&b, analyze.FormatHTML); err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(b.Bytes(), []byte("http://")) && !bytes.Contains(b.Bytes(), []byte(`xmlns="http://www.w3.org/2000/svg"`)) {
				t.Error("page refers to the network")
			}
			page := filepath.Join(dir, c.name+".html")
			shot := filepath.Join(dir, c.name+".png")
			if err := os.WriteFile(page, b.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			// A browser that dies of a signal (a crash, not a page it cannot render) gets one
			// more try.
			for try := 0; ; try++ {
				ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
				cmd := exec.CommandContext(ctx, bin, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
					"--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
					"--user-data-dir="+filepath.Join(dir, fmt.Sprintf("profile-%s-%d", c.name, try)), "--screenshot="+shot,
					"--window-size=1200,2000", "file://"+page)
				out, err := cmd.CombinedOutput()
				cancel()
				if err == nil {
					break
				}
				var ee *exec.ExitError
				if try == 0 && errors.As(err, &ee) && ee.ProcessState != nil && !ee.ProcessState.Exited() && ctx.Err() == nil {
					t.Logf("chromium crashed (%v); trying once more", err)
					continue
				}
				t.Fatalf("chromium: %v\n%s", err, out)
			}
			f, err := os.Open(shot)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			img, err := png.Decode(f)
			if err != nil {
				t.Fatal(err)
			}
			checkScreenshot(t, img)
			if c.name == "compare" {
				// The demo's target is 30% slower: the verdict's regression red (cards, the
				// verdict's border, the heat map) is on the page.
				if cmp.Verdict.Call != analyze.CallWorse {
					t.Errorf("demo verdict %s, want worse: %s", cmp.Verdict.Call, cmp.Verdict.Line)
				}
				if n := countNear(img, [3]uint8{0xCF, 0x22, 0x2E}); n < 200 {
					t.Errorf("regression red on %d pixels, want ≥ 200", n)
				}
			}
			if keep := os.Getenv("LLMTAPE_KEEP_SCREENSHOTS"); keep != "" {
				if b, err := os.ReadFile(shot); err == nil {
					_ = os.WriteFile(filepath.Join(keep, c.name+".png"), b, 0o644)
				}
			}
		})
	}
}

// checkScreenshot wants at least 3% of pixels away from the white background and the first
// two series colours (#0072B2 blue, #D55E00 vermillion) drawn on at least 200 pixels each.
func checkScreenshot(t *testing.T, img image.Image) {
	t.Helper()
	bounds := img.Bounds()
	var ink, blue, red int
	colours := map[[3]uint8]bool{}
	for y := bounds.Min.Y; y < bounds.Max.Y; y++ {
		for x := bounds.Min.X; x < bounds.Max.X; x++ {
			r, g, b, _ := img.At(x, y).RGBA()
			c := [3]uint8{uint8(r >> 8), uint8(g >> 8), uint8(b >> 8)}
			colours[c] = true
			if c != [3]uint8{255, 255, 255} {
				ink++
			}
			if near8(c, [3]uint8{0x00, 0x72, 0xB2}) {
				blue++
			}
			if near8(c, [3]uint8{0xD5, 0x5E, 0x00}) {
				red++
			}
		}
	}
	total := bounds.Dx() * bounds.Dy()
	share := float64(ink) / float64(total)
	t.Logf("%dx%d: %.1f%% ink, %d colours, %d blue and %d vermillion pixels", bounds.Dx(), bounds.Dy(), 100*share, len(colours), blue, red)
	if share < 0.03 {
		t.Errorf("screenshot is nearly blank: %.2f%% non-background pixels", 100*share)
	}
	if blue < 200 || red < 200 {
		t.Errorf("charts missing: %d blue and %d vermillion series pixels, want ≥ 200 each", blue, red)
	}
	if len(colours) < 20 {
		t.Errorf("only %d distinct colours", len(colours))
	}
}

// countNear counts the pixels of img near colour c.
func countNear(img image.Image, c [3]uint8) int {
	n := 0
	bounds := img.Bounds()
	for y := bounds.Min.Y; y < bounds.Max.Y; y++ {
		for x := bounds.Min.X; x < bounds.Max.X; x++ {
			r, g, b, _ := img.At(x, y).RGBA()
			if near8([3]uint8{uint8(r >> 8), uint8(g >> 8), uint8(b >> 8)}, c) {
				n++
			}
		}
	}
	return n
}

func near8(a, b [3]uint8) bool {
	for i := range a {
		d := int(a[i]) - int(b[i])
		if d < -12 || d > 12 {
			return false
		}
	}
	return true
}
