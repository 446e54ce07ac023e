package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// demoSet keeps track of the demos a benchmark started: it stops them and
// removes their folders at the end, keeping those where something went
// wrong (or all, with --keep).
type demoSet struct {
	log  io.Writer
	keep bool

	all  []*demo
	kept map[string]bool
	errs []string
}

func (s *demoSet) track(d *demo) { s.all = append(s.all, d) }

// keepDir keeps a demo's folder for inspection.
func (s *demoSet) keepDir(d *demo) {
	if d == nil {
		return
	}
	if s.kept == nil {
		s.kept = map[string]bool{}
	}
	s.kept[d.dir] = true
}

// stop stops one demo; one that does not stop cleanly is remembered as an
// error and its folder kept.
func (s *demoSet) stop(d *demo) {
	if d == nil {
		return
	}
	if err := d.stop(); err != nil {
		s.errs = append(s.errs, err.Error())
		s.keepDir(d)
		fmt.Fprintf(s.log, "gpbench: warning: %v\n", err)
	}
}

// close stops every demo and removes the folders not kept.
func (s *demoSet) close() error {
	for _, d := range s.all {
		s.stop(d) // a no-op for one already stopped
	}
	for _, d := range s.all {
		if s.keep || s.kept[d.dir] {
			fmt.Fprintf(s.log, "gpbench: kept %s\n", d.dir)
			continue
		}
		if err := os.RemoveAll(d.dir); err != nil {
			fmt.Fprintf(s.log, "gpbench: warning: %v\n", err)
		}
	}
	s.all = nil
	if len(s.errs) > 0 {
		return errors.New(strings.Join(s.errs, "; "))
	}
	return nil
}

// withDemos runs fn with the gpagent binary of --gpagent/--build-gpagent
// and a demoSet that is closed (demos stopped, folders removed unless
// kept) when fn returns; a failure to close is the error if fn had none.
func withDemos(ctx context.Context, gpagent string, build, keep bool, log io.Writer, fn func(bin string, demos *demoSet) error) (err error) {
	bin, cleanup, err := resolveGpagent(ctx, gpagent, build, log)
	if err != nil {
		return err
	}
	defer cleanup()
	demos := &demoSet{log: log, keep: keep}
	defer func() {
		if cerr := demos.close(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	return fn(bin, demos)
}
