"""install.py for a GIMP that has never been started, then that GIMP's first start, for real.

A fresh user: install.py makes the folder the GIMP will use, as its first start would, and the
plug-in loads from it.  A GIMP 3.2 never started beside a used GIMP 3.0 folder: install.py
leaves 3.2's folder alone, and 3.2's first start copies 3.0's, the plug-in with it.
"""

import shutil
import sys

import pytest

from gimp_runs import run_gimp_script


def fresh_home(gimp, name, folders=()):
    home = gimp.work + "/first-start/" + name
    shutil.rmtree(gimp.host_path(home), ignore_errors=True)
    for folder in folders:
        gimp.host_path(home + "/" + folder).mkdir(parents=True)
    gimp.host_path(home).mkdir(parents=True, exist_ok=True)
    return home


def user_env(home):
    """GIMP and install.py as a user with this home sees them: GIMP's own folder under it."""
    return {"HOME": home, "GIMP3_DIRECTORY": None, "XDG_CONFIG_HOME": None, "XDG_DATA_HOME": None}


def install_then_start(gimp, model, home):
    python = "python3" if gimp.root else sys.executable
    installed = gimp.run([python, gimp.src + "/install.py", "--venv", gimp.venv, "--no-model"],
                         env=user_env(home), timeout=900, check=False)
    output = (installed.stdout + installed.stderr).decode(errors="replace")
    assert installed.returncode == 0, output
    results, _run_dir, _output = run_gimp_script(gimp, "first_start_cases.py", env=user_env(home),
                                                 model=model)
    return output, results


def test_a_gimp_never_started_loads_the_plugin_from_the_folder_install_py_made(gimp, model):
    number = gimp.version.number
    home = fresh_home(gimp, "fresh")
    output, results = install_then_start(gimp, model, home)
    folder = "%s/.config/GIMP/%s" % (home, number)
    assert "GIMP %s is installed but has not been started yet: made its folder %s" % (number, folder) \
        in output
    assert results["gimp_dir"] == folder
    assert results["registered"]
    assert results["run"] == {"status": "success", "message": "", "masked": True}


@pytest.mark.gimp_only("3.2")
def test_gimp_3_2_never_started_copies_the_plugin_from_the_gimp_3_0_folder(gimp, model):
    home = fresh_home(gimp, "upgrade", folders=[".config/GIMP/3.0"])
    output, results = install_then_start(gimp, model, home)
    older = home + "/.config/GIMP/3.0"
    assert "GIMP 3.2 is installed but has not been started yet: its first start copies %s" % older \
        in output
    assert results["gimp_dir"] == home + "/.config/GIMP/3.2"
    assert results["registered"]
    assert results["run"] == {"status": "success", "message": "", "masked": True}
