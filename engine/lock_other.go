//go:build !unix

package engine

// dirLock does nothing outside Unix: the state store's own lock still
// refuses a second query with state on the same checkpoint.
type dirLock struct{}

func lockDir(string) (*dirLock, error) { return &dirLock{}, nil }

func (*dirLock) unlock() error { return nil }
