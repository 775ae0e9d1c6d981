"""shipskip: an LLM review panel for newly launched AI tools."""

__version__ = "0.1.0"
