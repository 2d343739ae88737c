"""Benchmarks of opencode-manager against what users would otherwise run.

Run from the repository root: ``python -m bench`` (writes BENCHMARKS.md) or
``python -m bench --quick`` (a short smoke run for CI, writes bench/quick-report.md).
Every figure is measured on this machine in one run, against real OpenCode servers wired to
the bundled scripted model; figures are reported as median, min and max with their ratio to a
baseline, never asserted on.
"""
