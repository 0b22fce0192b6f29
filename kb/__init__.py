"""kb: a literature-review knowledge base with search, synthesis and a static site."""

__version__ = "0.1.0"
