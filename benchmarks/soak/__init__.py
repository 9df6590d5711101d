"""Chaos soak for FallbackCache: worker processes under a fault-injecting parent (#21).

Run ``python -m benchmarks.soak --seconds 60 --seed 1``; see docs/reliability.md.
"""
