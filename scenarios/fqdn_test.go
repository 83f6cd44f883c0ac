package scenarios

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Bad FQDN policy in a scenario is refused at load, with file:line:field.
func TestFQDNBadInput(t *testing.T) {
	lib, err := os.ReadFile("library/fqdn.yaml")
	if err != nil {
		t.Fatal(err)
	}
	good := `  - toFQDNs:
    - matchPattern: "*.example.com"
    toPorts:`
	if !strings.Contains(string(lib), good) {
		t.Fatal("library/fqdn.yaml changed: update this test")
	}
	tests := []struct{ name, replace, want string }{
		// (each replaces the toFQDNs rule of the library file)
		{"malformed matchPattern", `  - toFQDNs:
    - matchPattern: "*.exa$mple..com"
    toPorts:`, `bad.yaml:26: spec.egress[0].toFQDNs[0].matchPattern: invalid matchPattern "*.exa$mple..com"`},
		{"toFQDNs with toEndpoints", `  - toFQDNs:
    - matchPattern: "*.example.com"
    toEndpoints:
    - matchLabels: {app: x}
    toPorts:`, `bad.yaml:27: spec.egress[0].toEndpoints: combining toFQDNs and toEndpoints in one rule is not supported (Cilium refuses it)`},
		{"DNS rules on UDP port range", `  - toFQDNs:
    - matchPattern: "*.example.com"
  - toPorts:
    - ports: [{port: "53", endPort: 54, protocol: UDP}]
      rules:
        dns: [{matchName: a.com}]
    toPorts:`, `bad.yaml:28: spec.egress[1].toPorts[0].ports[0].endPort: DNS rules do not support port ranges (Cilium refuses them)`},
	}
	for _, tt := range tests {
		dir := t.TempDir()
		path := filepath.Join(dir, "bad.yaml")
		if err := os.WriteFile(path, []byte(strings.Replace(string(lib), good, tt.replace, 1)), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := Load(path)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s:\n got %v\nwant …%s", tt.name, err, tt.want)
		}
	}
}
