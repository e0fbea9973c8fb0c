"""Sampan: a Kubernetes-compatible container cloud written in Python."""
