"""Benchmarks of the Close email sync (`make bench`) and of the Close emulator."""
