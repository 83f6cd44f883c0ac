// Package run executes a scenario against a lab: it brings the lab up (or
// uses a running one), applies the manifests, starts the workloads, runs
// the steps (probes, captures, assertions, faults) and collects the
// evidence (pcaps, flows, metrics) into a run folder.
//
// The scenarios package holds the format; this package the execution.
package run
