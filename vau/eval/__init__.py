"""Inference and evaluation runners (generation from exports, metrics files)."""
