"""kws-okd: tiny keyword spotters distilled to survive acoustic shift (OKD)."""

__version__ = "0.1.0"
