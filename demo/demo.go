package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/llmtape/llmtape/analyze"
	"github.com/llmtape/llmtape/dataset"
	"github.com/llmtape/llmtape/output"
	"github.com/llmtape/llmtape/proxy"
	"github.com/llmtape/llmtape/recorder"
	"github.com/llmtape/llmtape/replay"
	"github.com/llmtape/llmtape/sim"
	"github.com/llmtape/llmtape/synth"
	"github.com/llmtape/llmtape/tape"
)

// Defaults of Config.
const (
	DefaultConversations = 40
	DefaultStore         = "llmtape-demo.db"
	DefaultReport        = "demo-report.html"
	DefaultSpeed         = 2.0
)

// Config says where the demo writes and how big it is. The zero value is the full demo.
type Config struct {
	// Store is the demo's store file; it is replaced if the demo made it (or Force is set),
	// else Run fails with ErrNotDemo before it starts. Default DefaultStore.
	Store string
	// Report is the HTML report written at the end; an existing file is replaced under the
	// same rule as Store. Default DefaultReport.
	Report string
	// Force lets the demo replace a Store or Report that it did not make. Even so, it never
	// writes the report over the store, nor replaces a store that is not a regular file.
	Force bool
	// Conversations is the number of generated conversations. Default DefaultConversations.
	Conversations int
	// Turns is the largest number of user turns per conversation (at least 2). Default 6.
	Turns int
	// ThinkTime is the mean think time between turns. Default 2s.
	ThinkTime time.Duration
	// Rate is conversations started per second while recording. Default 2.
	Rate float64
	// Speed is the replay speed. Default DefaultSpeed.
	Speed float64
	// Seed makes the workload and the simulators reproducible. Default 1.
	Seed int64
}

func (c *Config) defaults() {
	if c.Store == "" {
		c.Store = DefaultStore
	}
	if c.Report == "" {
		c.Report = DefaultReport
	}
	if c.Conversations <= 0 {
		c.Conversations = DefaultConversations
	}
	if c.Turns < 2 {
		c.Turns = 6
	}
	if c.ThinkTime <= 0 {
		c.ThinkTime = 2 * time.Second
	}
	if c.Rate <= 0 {
		c.Rate = 2
	}
	if c.Speed <= 0 {
		c.Speed = DefaultSpeed
	}
	if c.Seed == 0 {
		c.Seed = 1
	}
}

// Servers returns the simulator configurations of "current" and "candidate": the candidate
// decodes faster but has a prefix cache too small for the workload's shared prefixes, so later
// turns lose their cache hits and their time to first token grows.
func Servers(seed int64) (current, candidate sim.Config) {
	current = sim.DefaultConfig()
	current.Seed = seed
	current.Tokenizer = "approx"
	current.TTFT = 40 * time.Millisecond
	current.PrefillPerToken = 100 * time.Microsecond
	current.ITL = 12 * time.Millisecond
	current.ITLPerRunning = 100 * time.Microsecond
	current.Jitter = 2 * time.Millisecond
	current.CacheBlocks = 1 << 16

	candidate = current
	candidate.ITL = 8 * time.Millisecond
	candidate.CacheBlocks = 32
	return current, candidate
}

// Run runs the demo, printing what each step shows to out.
func Run(ctx context.Context, cfg Config, out io.Writer) (err error) {
	cfg.defaults()
	if err := checkFiles(&cfg); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	start := time.Now()
	p := &printer{w: out}

	curCfg, candCfg := Servers(cfg.Seed)
	current, curURL, err := startSim(curCfg)
	if err != nil {
		return fmt.Errorf("start simulator current: %w", err)
	}
	defer current.Close()
	candidate, candURL, err := startSim(candCfg)
	if err != nil {
		return fmt.Errorf("start simulator candidate: %w", err)
	}
	defer candidate.Close()
	p.step("Two simulated OpenAI-compatible servers are up")
	p.say("current   %s  (ITL %v, prefix cache %d blocks)", curURL, curCfg.ITL, curCfg.CacheBlocks)
	p.say("candidate %s  (ITL %v, prefix cache %d blocks: faster decode, smaller cache)", candURL, candCfg.ITL, candCfg.CacheBlocks)

	// The workload lives in a scratch store: it is only the script the "users" follow.
	tmp, err := os.MkdirTemp("", "llmtape-demo-")
	if err != nil {
		return fmt.Errorf("make scratch directory: %w", err)
	}
	defer os.RemoveAll(tmp)
	work, err := tape.Open(filepath.Join(tmp, "workload.db"), nil)
	if err != nil {
		return fmt.Errorf("open scratch store: %w", err)
	}
	defer work.Close()
	ds, err := dataset.Generate(ctx, workload(cfg), dataset.GenerateOptions{
		Seed: uint64(cfg.Seed), Text: synth.DefaultText(), Model: sim.DefaultModel, Name: "demo workload",
	})
	if err != nil {
		return fmt.Errorf("generate workload: %w", err)
	}
	script, err := ds.Write(ctx, work)
	if err != nil {
		return fmt.Errorf("write workload: %w", err)
	}
	p.say("generated %d conversations, %d turns, about %.0f s of traffic",
		len(ds.Conversations), ds.Turns(), float64(cfg.Conversations)/cfg.Rate+float64(cfg.Turns)*cfg.ThinkTime.Seconds())

	// Record: clients talk to the proxy in front of "current".
	// A symlink stays: the file it names is replaced.
	old := cfg.Store
	if p, err := filepath.EvalSymlinks(old); err == nil {
		old = p
	}
	if err := os.Remove(old); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("replace %s: %w", cfg.Store, err)
	}
	st, err := tape.Open(cfg.Store, nil)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := st.Close(); err == nil && cerr != nil {
			err = cerr
		}
	}()
	rs, err := recorder.NewSession(recorder.SessionConfig{Store: st,
		Proxy:    proxy.Config{Upstream: curURL},
		Recorder: recorder.Config{Name: "demo current", Source: Source}})
	if err == nil {
		err = rs.Start(ctx)
	}
	if err != nil {
		return fmt.Errorf("start recording: %w", err)
	}
	proxyURL := "http://" + rs.Addr().String()
	p.step("Recording through `llmtape record` at " + proxyURL)
	p.say("%d simulated users follow the workload, each sending the server's real reply back", len(ds.Conversations))
	driver, err := replay.New(work, replay.Config{
		Target: proxyURL, Recording: script.ID, Name: "demo users",
		History: replay.HistoryLive, Seed: cfg.Seed,
	})
	var drove *replay.Report
	if err == nil {
		drove, err = driver.Run(ctx)
	}
	stopCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	stopErr := rs.Stop(stopCtx)
	cancel()
	if stopErr == nil {
		stopErr = rs.Summary().DrainErr // streams cut after 30 s
	}
	if err != nil {
		return fmt.Errorf("drive workload: %w", err)
	}
	if stopErr != nil {
		return fmt.Errorf("stop recording: %w", stopErr)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	sum := rs.Summary()
	recID := sum.Recording
	p.say("recorded %d exchanges (%d not recorded, %d driver errors) in %s",
		sum.Recorder.Recorded, sum.Recorder.NotRecorded, drove.Summary.Requests.Errors, time.Since(start).Round(time.Second))

	prof, err := analyze.Analyze(ctx, st, recID, analyze.Config{})
	if err != nil {
		return fmt.Errorf("analyze recording: %w", err)
	}
	p.step("What the recording holds (`llmtape analyze`)")
	p.say("conversations were found without any session id, by message prefixes; note the prefix")
	p.say("reuse: the share of prompt tokens a prefix cache can serve")
	if err := prof.Write(out, analyze.FormatTable); err != nil {
		return err
	}

	// Replay against the candidate at cfg.Speed.
	p.step(fmt.Sprintf("Replaying the recording against candidate at %gx speed (`llmtape replay`)", cfg.Speed))
	rp, err := replay.New(st, replay.Config{
		Target: candURL, Recording: recID, Name: "candidate", Speed: cfg.Speed, Seed: cfg.Seed,
	})
	if err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	res, err := rp.Run(ctx)
	if err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	if err := analyze.WriteSummary(out, &res.Summary, analyze.FormatTable); err != nil {
		return err
	}

	p.step("Recording (current) against replay (candidate) (`llmtape compare recording candidate`)")
	p.say("the candidate decodes faster (lower ITL and TPOT) but its small prefix cache makes later")
	p.say("turns prefill their whole history again: TTFT grows with the turn index")
	cmp, err := analyze.Compare(ctx, st, analyze.RecordingRef, res.Run.Name, analyze.CompareConfig{})
	if err != nil {
		return fmt.Errorf("compare: %w", err)
	}
	if err := cmp.Write(out, analyze.FormatTable); err != nil {
		return err
	}
	if err := writeReport(cfg.Report, cfg.Store, cmp); err != nil {
		return err
	}

	p.step(fmt.Sprintf("Done in %s", time.Since(start).Round(time.Second)))
	p.say("store:  %s   report: %s", cfg.Store, cfg.Report)
	p.say("")
	p.say("Next, on your own server:")
	p.say("  llmtape record --upstream http://YOUR-SERVER:8000 --listen 127.0.0.1:8080 --store prod.db")
	p.say("  OPENAI_BASE_URL=http://127.0.0.1:8080/v1 your-chat-app     # traffic is recorded")
	p.say("  llmtape analyze --store prod.db")
	p.say("  llmtape replay --store prod.db --target http://NEW-SERVER:8000 --name new")
	p.say("  llmtape compare --store prod.db recording new --fail-on 'ttft_ms.p99>+10%%'")
	p.say("  llmtape report --store %s --run candidate --format html > run.html", cfg.Store)
	return nil
}

// workload is the generation config of the demo: a system prompt shared by every
// conversation, a context of its own per conversation, short replies and real think times.
func workload(cfg Config) *dataset.GenerateConfig {
	think := cfg.ThinkTime.Seconds()
	return &dataset.GenerateConfig{
		NumConversations:   cfg.Conversations,
		NumTurns:           &dataset.Distribution{Kind: "uniform", Min: 4, Max: float64(2 * cfg.Turns), Integer: true},
		CommonPrefixTokens: &dataset.Distribution{Kind: "constant", Value: 400},
		PrefixTokens:       &dataset.Distribution{Kind: "lognormal", Average: 600, MedianRatio: 0.85, Max: 2000},
		UserTokens:         &dataset.Distribution{Kind: "uniform", Min: 40, Max: 120, Integer: true},
		OutputTokens:       &dataset.Distribution{Kind: "uniform", Min: 30, Max: 80, Integer: true},
		Arrival:            &dataset.Arrival{Process: "poisson", Rate: cfg.Rate},
		ThinkTime:          &dataset.Distribution{Kind: "lognormal", Average: think, MedianRatio: 0.85, Max: 4 * think},
	}
}

func startSim(cfg sim.Config) (*sim.Server, string, error) {
	srv, err := sim.New(cfg)
	if err != nil {
		return nil, "", err
	}
	url, err := srv.Start("")
	if err != nil {
		return nil, "", err
	}
	return srv, url, nil
}

// writeReport writes the comparison as HTML, starting with ReportMarker.
func writeReport(path, store string, cmp *analyze.Comparison) error {
	err := output.Write(path, output.Options{Store: store}, func(w io.Writer) error {
		if _, err := io.WriteString(w, ReportMarker+"\n"); err != nil {
			return err
		}
		return cmp.Write(w, analyze.FormatHTML)
	})
	if err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}

// printer prints the demo's narration.
type printer struct {
	w io.Writer
	n int
}

func (p *printer) step(title string) {
	p.n++
	fmt.Fprintf(p.w, "\n== %d. %s\n", p.n, title)
}

func (p *printer) say(format string, args ...any) {
	fmt.Fprintf(p.w, "   "+format+"\n", args...)
}
