"""Declarative mapping: path compiler, transforms, code maps, loader and engine."""
