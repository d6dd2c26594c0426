//go:build race

package accounts

// raceEnabled: the race detector slows SQLite, transpiled Go, tenfold;
// the large-document test then uses a smaller document.
const raceEnabled = true
