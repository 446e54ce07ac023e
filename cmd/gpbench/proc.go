package main

import (
	"errors"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// descendants lists the processes below pid, read from /proc. PostgreSQL's
// children each call setsid(), so the postmaster's process group holds the
// postmaster alone: a signal meant for a whole instance must go to every
// one of them.
func descendants(pid int) ([]int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	children := map[int][]int{}
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // exited meanwhile
		}
		// pid (comm) state ppid ...; comm may hold spaces and parentheses.
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 2 {
			continue
		}
		if ppid, err := strconv.Atoi(f[1]); err == nil {
			children[ppid] = append(children[ppid], p)
		}
	}
	var out []int
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children[p] {
			if !slices.Contains(out, c) {
				out = append(out, c)
				queue = append(queue, c)
			}
		}
	}
	return out, nil
}

// stopTree sends SIGSTOP to pid and then to every process below it, until
// a scan finds no new one (the stopped postmaster forks no more, but a
// fork may have been under way). It returns every pid it stopped.
func stopTree(pid int) ([]int, error) {
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		return nil, err
	}
	stopped := []int{pid}
	for {
		ds, err := descendants(pid)
		if err != nil {
			return stopped, err
		}
		fresh := 0
		for _, d := range ds {
			if slices.Contains(stopped, d) {
				continue
			}
			if err := syscall.Kill(d, syscall.SIGSTOP); err != nil && !errors.Is(err, syscall.ESRCH) {
				return stopped, err
			}
			stopped = append(stopped, d)
			fresh++
		}
		if fresh == 0 {
			return stopped, nil
		}
	}
}
