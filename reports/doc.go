// Package reports renders what a lab run observed: Hubble-style flow tables
// and JSON, Prometheus metrics, JUnit XML and a self-contained HTML report.
package reports

import (
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/prometheus/client_golang/prometheus/promhttp"
	_ "github.com/prometheus/common/expfmt"
)
