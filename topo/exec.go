package topo

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"

	"golang.org/x/sys/unix"
)

// NSExecArg is the hidden first argument with which podlab re-executes
// itself to run a program inside a lab namespace (see Command and
// ExecWithResolvConf).
const NSExecArg = "__nsexec"

// Command returns a command that runs argv inside namespace ns with a
// private mount namespace in which /etc/resolv.conf is replaced by
// resolvConf (when not empty), the way `ip netns exec` applies
// /etc/netns/<name>/resolv.conf, and the system's CA bundle by caBundle
// (when not empty: the lab CA, which signs the emulated internet's HTTPS
// hosts). It re-executes the current binary with NSExecArg; that binary's
// main must call ExecIn for it. Start the command with StartIn.
func Command(resolvConf, caBundle string, argv []string) (*exec.Cmd, error) {
	if len(argv) == 0 {
		return nil, errors.New("exec: no command given")
	}
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("exec: find podlab binary: %w", err)
	}
	args := append([]string{NSExecArg, resolvConf, caBundle, "--"}, argv...)
	cmd := exec.Command(self, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS}
	return cmd, nil
}

// StartIn starts cmd with the calling thread inside ns, so the child
// process is born in that network namespace.
func StartIn(ns *Namespace, cmd *exec.Cmd) error {
	return Do(ns, cmd.Start)
}

// SystemCABundles are the CA bundle files Command replaces, where they
// exist (Debian/Ubuntu/Alpine, Fedora/RHEL).
var SystemCABundles = []string{"/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/cert.pem"}

// ExecIn is the child side of Command: already in the target network
// namespace and in a fresh mount namespace, it keeps mounts from
// propagating back, bind-mounts resolvConf over /etc/resolv.conf and
// caBundle over the system CA bundles (also naming it in SSL_CERT_FILE and
// CURL_CA_BUNDLE), and replaces itself with argv.
func ExecIn(resolvConf, caBundle string, argv []string) error {
	if len(argv) == 0 {
		return errors.New("exec: no command given")
	}
	if resolvConf != "" || caBundle != "" {
		if err := unix.Mount("", "/", "", unix.MS_SLAVE|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("exec: make mounts private: %w", err)
		}
	}
	if resolvConf != "" {
		if err := unix.Mount(resolvConf, "/etc/resolv.conf", "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("exec: bind %s on /etc/resolv.conf: %w", resolvConf, err)
		}
	}
	env := os.Environ()
	if caBundle != "" {
		for _, sys := range SystemCABundles {
			if _, err := os.Stat(sys); err != nil {
				continue
			}
			if err := unix.Mount(caBundle, sys, "", unix.MS_BIND, ""); err != nil {
				return fmt.Errorf("exec: bind %s on %s: %w", caBundle, sys, err)
			}
		}
		env = append(env, "SSL_CERT_FILE="+caBundle, "CURL_CA_BUNDLE="+caBundle)
	}
	path, err := exec.LookPath(argv[0])
	if err != nil {
		return fmt.Errorf("exec: %w", err)
	}
	return syscall.Exec(path, argv, env)
}
