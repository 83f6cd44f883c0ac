package scenarios

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/podlab/podlab/datapath/cilium/source"
)

// library holds the scenario library: one file per scenario, or one folder
// per scenario made of several files.
//
//go:embed library
var library embed.FS

// DefaultScenario is what `podlab run` runs without argument.
const DefaultScenario = "connectivity-check"

// CiliumFilesList names, in a library folder, the files of Cilium's
// sources the scenario is made of, one "VERSION PATH" per line (e.g.
// "v1.18.6 examples/minikube/http-sw-app.yaml"). They are read unchanged
// from the cilium Go module (downloaded through the module proxy when
// missing), never copied into podlab.
const CiliumFilesList = "cilium-files.txt"

// ciliumFiles reads the Cilium files a library folder lists.
func ciliumFiles(base string) ([]File, error) {
	list := path.Join(base, CiliumFilesList)
	data, err := library.ReadFile(list)
	if err != nil {
		return nil, err
	}
	var files []File
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		version, rel, ok := strings.Cut(line, " ")
		if !ok {
			return nil, fmt.Errorf("%s:%d: expected VERSION PATH, got %q", list, i+1, line)
		}
		dir, err := source.ModuleDir(context.Background(), version)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", list, i+1, err)
		}
		p := filepath.Join(dir, filepath.FromSlash(strings.TrimSpace(rel)))
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", list, i+1, err)
		}
		files = append(files, File{Name: p, Data: b})
	}
	return files, nil
}

// SuiteFile marks a library folder that holds a suite of tests (a
// fixture and one scenario per test) rather than one scenario.
const SuiteFile = "suite.yaml"

// Library returns the embedded scenario library, rooted at its folder
// (paths like "connectivity-test/suite.yaml").
func Library() fs.FS {
	sub, err := fs.Sub(library, "library")
	if err != nil {
		panic(err) // the embedded folder always exists
	}
	return sub
}

// BuiltinNames lists the scenarios of the embedded library, sorted.
func BuiltinNames() []string {
	entries, err := fs.ReadDir(library, "library")
	if err != nil {
		return nil
	}
	var names []string
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() {
			if _, err := fs.Stat(library, path.Join("library", name, SuiteFile)); err == nil {
				continue // a suite of tests (podlab connectivity test), not one scenario
			}
			names = append(names, name)
		} else if ext := path.Ext(name); ext == ".yaml" || ext == ".yml" {
			names = append(names, strings.TrimSuffix(name, ext))
		}
	}
	sort.Strings(names)
	return names
}

// BuiltinFiles returns the files of a library scenario, named
// library/<name>.yaml or library/<name>/<file>.yaml in messages.
func BuiltinFiles(name string) ([]File, error) {
	base := path.Join("library", name)
	if info, err := fs.Stat(library, base); err == nil && info.IsDir() {
		entries, err := fs.ReadDir(library, base)
		if err != nil {
			return nil, fmt.Errorf("read library scenario %s: %w", name, err)
		}
		var files []File
		for _, e := range entries {
			if e.Name() == CiliumFilesList {
				up, err := ciliumFiles(base)
				if err != nil {
					return nil, err
				}
				files = append(files, up...)
				continue
			}
			if ext := path.Ext(e.Name()); e.IsDir() || (ext != ".yaml" && ext != ".yml") {
				continue
			}
			p := path.Join(base, e.Name())
			data, err := library.ReadFile(p)
			if err != nil {
				return nil, fmt.Errorf("read library scenario %s: %w", name, err)
			}
			files = append(files, File{Name: p, Data: data})
		}
		return files, nil
	}
	for _, ext := range []string{".yaml", ".yml"} {
		if data, err := library.ReadFile(base + ext); err == nil {
			return []File{{Name: base + ext, Data: data}}, nil
		}
	}
	return nil, fmt.Errorf("no built-in scenario %q; built-in scenarios: %s", name, strings.Join(BuiltinNames(), ", "))
}

// Builtin loads and validates a scenario of the embedded library.
func Builtin(name string) (*Scenario, error) {
	files, err := BuiltinFiles(name)
	if err != nil {
		return nil, err
	}
	return Parse(name, files...)
}
