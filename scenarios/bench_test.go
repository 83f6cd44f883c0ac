package scenarios

import "testing"

// BenchmarkBuiltinConnectivityCheck measures loading and validating the
// default scenario (decode, policy decoding, reference checks, scheduling).
func BenchmarkBuiltinConnectivityCheck(b *testing.B) {
	for b.Loop() {
		if _, err := Builtin(DefaultScenario); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSchedule300Pods places 300 pods with anti-affinity on 11 nodes.
func BenchmarkSchedule300Pods(b *testing.B) {
	nodes := testNodes(10)
	var pods []PodInstance
	for i := 0; i < 300; i++ {
		app := map[string]string{"app": "a" + itoa(i%30)}
		pods = append(pods, pod("p"+itoa(i), app, PodSpec{Affinity: []AffinityTerm{{Anti: true, Selector: LabelSelector{MatchLabels: app}}}}))
	}
	for b.Loop() {
		if _, err := NewScheduler(nodes).Place(pods); err != nil {
			b.Fatal(err)
		}
	}
}
