"""Evaluation harness: BEIR-layout data, first stages, rerankers, ir-measures metrics, benchmarks."""
