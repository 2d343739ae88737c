"""One module per figure of BENCHMARKS.md; each returns a filled-in report.Figure."""
