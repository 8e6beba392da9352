"""Benchmarks: each module measures one thing against a baseline run in the same process.

A benchmark module exposes ``NAME`` and ``run(quick: bool) -> dict``; the dict
holds the raw figures and the ratios against the baseline, and whether each
target of the issues is met (``"meets": {"target name": bool}``).
"""
