"""The helper process: the serve loop GIMP talks to, and the engine that runs the model.

Runs in the helper's own environment (onnxruntime, numpy, pillow), never inside GIMP:
``python -m remove_background.helper.serve``.
"""

DISTRIBUTION = "gimp-remove-background"     # pyproject.toml's [project] name


def version():
    """This project's version as pip installed it from pyproject.toml (its one source)."""
    from importlib import metadata

    return metadata.version(DISTRIBUTION)
