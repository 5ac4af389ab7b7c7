"""GIMP's Python has only the standard library and gi: what install.py copies into the plug-in
folder must import with numpy, onnxruntime and PIL made unimportable."""

import ast
import importlib.util
import subprocess
import sys

from needs import ROOT



def load_install_module():
    spec = importlib.util.spec_from_file_location("install_under_test", str(ROOT / "install.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BLOCKED = ("numpy", "onnxruntime", "PIL", "model_fetch", "onnx")

IMPORT_ALL = r"""
import importlib.abc, sys, sysconfig
blocked = set(sys.argv[2].split(","))

class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in blocked:
            raise ImportError("GIMP's Python has no %s" % name)

sys.meta_path.insert(0, Refuse())
sys.path.insert(0, sys.argv[1])
import remove_background.wire.protocol, remove_background.wire.client
stdlib = (sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["platstdlib"])
outside = sorted(name for name, module in sys.modules.items()
                 if getattr(module, "__file__", None)
                 and not module.__file__.startswith(stdlib + (sys.argv[1],)))
print(",".join(outside))
"""


def test_the_gimp_side_imports_with_the_standard_library_alone(tmp_path):
    install = load_install_module()
    for source, destination, _executable in install.plugin_files():
        target = tmp_path / destination
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((install.CHECKOUT / source).read_bytes())
    done = subprocess.run([sys.executable, "-I", "-c", IMPORT_ALL, str(tmp_path), ",".join(BLOCKED)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", "imported from outside the standard library: " + done.stdout


def test_the_gimp_entry_imports_only_the_standard_library_gi_and_the_wire_package():
    install = load_install_module()
    entry = install.CHECKOUT / "plugin" / "gimp" / install.PLUGIN_ENTRY
    stdlib = set(sys.stdlib_module_names)
    for node in ast.walk(ast.parse(entry.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            assert top in stdlib or top == "gi" or name.startswith("remove_background.wire"), name
