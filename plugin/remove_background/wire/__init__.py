"""GIMP's side of the process boundary: the wire protocol and the client that starts the helper.

Standard library only: GIMP's bundled Python imports this package (install.py copies this
folder into the plug-in's folder), and the helper imports protocol.py from it too.
tests/wire/test_stdlib_only.py imports it with numpy, onnxruntime and PIL made unimportable.
"""
