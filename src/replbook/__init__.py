"""Ten Papers, Replicated: the kernels, experiments and book machinery of the replication book."""

__version__ = "0.1.0"
