"""Alignment between input frames and output characters: CTC and learned alternatives."""
