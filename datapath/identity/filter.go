package identity

import "regexp"

// labelPrefix is one rule of Cilium's default identity-label filter: a
// regular expression anchored at the start of a label's key (of any
// source, or of source only when set); an ignore rule drops what it
// matches unless an include rule matches a longer part of the key.
type labelPrefix struct {
	source string
	expr   *regexp.Regexp
	ignore bool
}

// defaultLabelFilter mirrors the default label-prefix list of Cilium's
// agent (pkg/labelsfilter of cilium v1.20.2, no --labels option): the
// labels Kubernetes and controllers add for bookkeeping (pod-template-hash,
// controller-revision-hash, statefulset pod names, kubernetes.io/...) are
// not part of an identity, so replicas of two ReplicaSets of a Deployment
// share one identity, as they do in Cilium.
var defaultLabelFilter = func() []labelPrefix {
	rule := func(source, expr string, ignore bool) labelPrefix {
		return labelPrefix{source: source, expr: regexp.MustCompile(expr), ignore: ignore}
	}
	include := func(expr string) labelPrefix { return rule("", regexp.QuoteMeta(expr), false) }
	ignore := func(expr string) labelPrefix { return rule("", expr, true) }
	return []labelPrefix{
		rule(SourceReserved, ".*", false),
		include(PodNamespaceKey),
		include("io.cilium.k8s.namespace.labels"),
		include("app.kubernetes.io"),
		include(ClusterKey),
		include(ServiceAccountKey),
		ignore(`io\.kubernetes`),
		ignore(`kubernetes\.io`),
		ignore(regexp.QuoteMeta("statefulset.kubernetes.io/pod-name")),
		ignore(regexp.QuoteMeta("apps.kubernetes.io/pod-index")),
		ignore(regexp.QuoteMeta("batch.kubernetes.io/job-completion-index")),
		ignore(regexp.QuoteMeta("batch.kubernetes.io/controller-uid")),
		ignore(`.*beta\.kubernetes\.io`),
		ignore(`k8s\.io`),
		ignore(`pod-template-generation`),
		ignore(`pod-template-hash`),
		ignore(`controller-revision-hash`),
		ignore(`controller-uid`),
		ignore(`annotation.*`),
		ignore(`etcd_node`),
		ignore(`topology\.kubernetes\.io`),
	}
}()

// matchLen returns how much of l's key p matches from its start (0: no
// match).
func (p labelPrefix) matchLen(l Label) (bool, int) {
	if p.source != "" && p.source != l.Source {
		return false, 0
	}
	loc := p.expr.FindStringIndex(l.Key)
	if loc == nil || loc[0] != 0 {
		return false, 0
	}
	return true, loc[1]
}

// IsIdentityLabel reports whether Cilium's default label filter keeps l in
// a security identity: no ignore rule matches it, or an include rule
// matches a longer part of its key than the shortest matching ignore rule.
func IsIdentityLabel(l Label) bool {
	included, ignored := 0, 0
	for _, p := range defaultLabelFilter {
		ok, n := p.matchLen(l)
		if !ok {
			continue
		}
		if p.ignore {
			if ignored == 0 || n < ignored {
				ignored = n
			}
		} else if n > included {
			included = n
		}
	}
	return ignored == 0 || included > ignored
}

// IdentityLabels returns the labels of ls that Cilium's default label
// filter keeps in an identity (IsIdentityLabel).
func IdentityLabels(ls Labels) Labels {
	var out []Label
	for _, l := range ls {
		if IsIdentityLabel(l) {
			out = append(out, l)
		}
	}
	return NewLabels(out...)
}
