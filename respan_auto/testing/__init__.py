"""Loopback stand-ins used by the offline examples, the tests and the benchmarks."""
