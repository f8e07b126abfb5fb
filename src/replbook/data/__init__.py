"""Offline datasets: loaders for registry-shipped assets and procedural generators."""
