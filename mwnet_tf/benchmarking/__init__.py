"""Benchmarking: step time and memory, the JPEG input pipeline, and profiler trace breakdowns."""
