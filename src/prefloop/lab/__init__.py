"""Experiments on the ground-truth lab: the demo and the method comparisons."""
