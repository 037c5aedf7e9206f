"""Benchmark programs. They measure; they are not tests and assert nothing about time."""
