"""Benchmarks: decode-attention kernels, their roofline, and the decode benchmark."""
