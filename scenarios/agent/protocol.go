package agent

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
)

// The agent reports its bring-up to `podlab up` on its stdout, one line per
// event: "STAGE <what>" for each stage, then "READY" once the lab is up,
// or "ERROR <why>" when it failed. Any other line is a failure message.
const (
	stagePrefix = "STAGE "
	errorPrefix = "ERROR "
	readyLine   = "READY"
)

// Launch starts `self args...` (a `podlab agent` command line) detached in
// a session of its own, calls onStage for each stage it reports, and
// returns once the agent is ready (leaving it running), or the agent's
// failure once it exits.
func Launch(self string, args []string, onStage func(string)) error {
	cmd := exec.Command(self, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Stdin = nil
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start agent: %w", err)
	}
	sc := bufio.NewScanner(out)
	ready := false
	var failure []string
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, stagePrefix):
			onStage(strings.TrimPrefix(line, stagePrefix))
		case line == readyLine:
			ready = true
		case strings.HasPrefix(line, errorPrefix):
			failure = append(failure, strings.TrimPrefix(line, errorPrefix))
		default:
			failure = append(failure, line)
		}
		if ready {
			break
		}
	}
	if !ready {
		_ = cmd.Wait()
		if len(failure) == 0 {
			failure = []string{"agent exited without a reason"}
		}
		return fmt.Errorf("bring-up failed: %s", strings.Join(failure, "; "))
	}
	return cmd.Process.Release()
}

// reporter writes the agent's side of the protocol, or, in foreground
// mode, progress for a person.
type reporter struct {
	w          io.Writer
	foreground bool
	// broken is set once a write failed: `up` went away.
	broken bool
}

// stage reports one bring-up stage.
func (r *reporter) stage(s string) {
	var err error
	if r.foreground {
		_, err = fmt.Fprintln(r.w, " ✓", s)
	} else {
		_, err = fmt.Fprintln(r.w, strings.TrimSpace(stagePrefix), s)
	}
	if err != nil {
		r.broken = true
	}
}

// fail reports why bring-up failed.
func (r *reporter) fail(err error) {
	fmt.Fprintln(r.w, strings.TrimSpace(errorPrefix), err)
}

// ready tells `podlab up` (or the person, in foreground mode) that the lab
// is ready, then stops writing to the pipe nobody reads any more. It
// returns false when `up` went away. summary is printed in foreground mode.
func (r *reporter) ready(summary []string) bool {
	if r.foreground {
		for _, line := range summary {
			fmt.Fprintln(r.w, line)
		}
		fmt.Fprintln(r.w, "Press Ctrl-C to tear the lab down.")
		return true
	}
	if _, err := fmt.Fprintln(r.w, readyLine); err != nil {
		return false
	}
	if devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0); err == nil {
		_ = syscall.Dup2(int(devnull.Fd()), 1)
		_ = syscall.Dup2(int(devnull.Fd()), 2)
	}
	return true
}
