"""Data: samplers with a resumable position, DataModules, synthetic data."""
