"""The helper process: the serve loop GIMP talks to, and the engine that runs the model.

Runs in the helper's own environment (onnxruntime, numpy, pillow), never inside GIMP:
``python -m remove_background.helper.serve``.
"""
