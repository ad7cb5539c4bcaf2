"""Learned temporal structure: segmentation, memory, horizon and when to predict."""
