"""Remove Background for GIMP, in three parts that run in three different places:

  wire/     GIMP's side of the pipe (standard library only): protocol.py and client.py
  helper/   the helper process (onnxruntime, numpy, pillow): serve.py and the engine
  command/  the `remove-background` command, on the same engine

The version is pyproject.toml's alone: remove_background.helper.version() reads it back from
the installed package.
"""
