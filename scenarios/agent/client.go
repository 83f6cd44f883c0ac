package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/podlab/podlab/scenarios/lab"
	"github.com/podlab/podlab/topo"
)

// Get fetches a path from the agent of the lab called name.
func Get(name, path string) ([]byte, error) {
	if err := topo.ValidateLabName(name); err != nil {
		return nil, err
	}
	if !topo.LabAlive(name) {
		return nil, fmt.Errorf("lab %q is not running (see `podlab list`)", name)
	}
	return lab.NewClient(name).Get(path)
}

// GetJSON fetches path from the agent of the lab named in args (or the
// only running lab) and decodes its JSON answer into v.
func GetJSON(args []string, path string, v any) error {
	name, err := DefaultLab(args)
	if err != nil {
		return err
	}
	b, err := Get(name, path)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// DefaultLab returns the lab named first in args, or the only running lab
// when none is named.
func DefaultLab(args []string) (string, error) {
	if len(args) > 0 {
		return args[0], nil
	}
	labs, err := topo.ListLabs()
	if err != nil {
		return "", err
	}
	var alive []string
	for _, l := range labs {
		if l.Alive {
			alive = append(alive, l.Name)
		}
	}
	switch len(alive) {
	case 1:
		return alive[0], nil
	case 0:
		return "", errors.New("no lab is running (start one with `podlab up`)")
	}
	return "", fmt.Errorf("several labs run (%s): name one", strings.Join(alive, ", "))
}
