package scenarios

import (
	"gopkg.in/yaml.v3"

	"github.com/podlab/podlab/datapath/proxy/envoyconfig"
)

// Kinds of Cilium's Envoy configurations (cilium.io/v2).
const (
	KindCiliumEnvoyConfig            = envoyconfig.KindCiliumEnvoyConfig
	KindCiliumClusterwideEnvoyConfig = envoyconfig.KindCiliumClusterwideEnvoyConfig
)

// EnvoyConfig is a CiliumEnvoyConfig or CiliumClusterwideEnvoyConfig,
// decoded by datapath/proxy/envoyconfig (the subset podlab's HTTP proxy
// serves; anything else is refused at load).
type EnvoyConfig struct {
	Kind    string
	Meta    ObjectMeta
	Decoded *envoyconfig.Config
	Source  Source
	node    *yaml.Node
}

// Ref implements Object.
func (e *EnvoyConfig) Ref() ObjectRef {
	return ObjectRef{Kind: e.Kind, Namespace: e.Meta.Namespace, Name: e.Meta.Name}
}

// Origin implements Object.
func (e *EnvoyConfig) Origin() Source { return e.Source }

func (e *EnvoyConfig) document() *yaml.Node { return e.node }

// decodeEnvoyConfig reads a CiliumEnvoyConfig or CiliumClusterwideEnvoyConfig.
func (d *decoder) decodeEnvoyConfig(doc *mapping, kind string) *EnvoyConfig {
	namespaced := kind == KindCiliumEnvoyConfig
	e := &EnvoyConfig{Kind: kind, Source: srcOf(d, doc.node), node: doc.node}
	e.Meta = d.decodeMeta(doc.get("metadata"), "metadata", namespaced, dns1123Subdomain)
	if !doc.require("spec") {
		return e
	}
	ns := ""
	if namespaced {
		ns = e.Meta.Namespace
	}
	decoded, err := envoyconfig.DecodeSpec(d.file, ns, e.Meta.Name, doc.get("spec"))
	if err != nil {
		d.located(err, doc.node, "spec")
		return e
	}
	e.Decoded = decoded
	return e
}
