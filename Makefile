# llmtape: the everyday targets. `make test` is what CI runs (.ci/run).
GO       ?= go
PKGS     := ./...
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT   ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
LDFLAGS  := -X main.version=$(VERSION) -X main.gitCommit=$(COMMIT)
BENCHTIME ?= 1s

.PHONY: build test bench fmt vet lint cover demo clean

build: ## build ./llmtape
	$(GO) build -ldflags '$(LDFLAGS)' -o llmtape ./cmd/llmtape

test: vet ## vet, then every test with the race detector
	$(GO) test -race -count=1 -timeout 9m $(PKGS)

bench: ## every package's benchmarks (one package at a time), then the benchmark table
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) -timeout 60m -p 1 $(PKGS) | tee bench.out
	$(GO) run ./internal/benchtable < bench.out | tee bench.md

fmt: ## gofmt every file
	gofmt -w $$(git ls-files '*.go')

vet: ## go vet, and fail on unformatted files
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

lint: vet ## vet plus staticcheck when it is installed
	@if command -v staticcheck >/dev/null; then staticcheck $(PKGS); else echo "staticcheck not installed; ran go vet only"; fi

cover: ## test coverage report in cover.html
	$(GO) test -count=1 -coverprofile=cover.out $(PKGS)
	$(GO) tool cover -html=cover.out -o cover.html

demo: build ## record, replay and compare a workload on two built-in simulators
	./llmtape demo

clean:
	rm -f llmtape bench.out bench.md cover.out cover.html demo-report.html llmtape-demo.db
