"""Remove Background for GIMP: the helper that runs the model, and the wire protocol."""

__version__ = "0.1.0"
