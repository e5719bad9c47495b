"""Benchmarks: decode-attention kernels, their roofline, the decode benchmark, the one timer."""
