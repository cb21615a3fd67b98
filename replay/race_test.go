//go:build race

package replay_test

// raceEnabled: the race detector slows the client by 5-20×, so timing bounds are looser.
const raceEnabled = true
