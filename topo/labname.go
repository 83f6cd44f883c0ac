package topo

import (
	"fmt"
	"regexp"
)

var labNameRE = regexp.MustCompile(`^[a-z][a-z0-9]{0,15}$`)

// ValidateLabName checks a lab name: 1-16 lowercase letters and digits,
// starting with a letter. Dashes are not allowed so that the namespace
// prefix podlab-<lab>- identifies one lab unambiguously.
func ValidateLabName(name string) error {
	if !labNameRE.MatchString(name) {
		return fmt.Errorf("lab name %q: use 1-16 lowercase letters and digits, starting with a letter", name)
	}
	return nil
}
