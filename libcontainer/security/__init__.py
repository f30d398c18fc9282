"""Confinement: capabilities and seccomp."""
