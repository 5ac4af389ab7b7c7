"""The dialog in GIMP's real window (Xvfb): it shows, its choice is used, and remembered."""


import pytest
from PIL import Image

from needs import need
from gimp_runs import run_gimp_script

GUI_TOOLS = ("Xvfb", "xdotool", "import")


@pytest.fixture(scope="module")
def run(gimp, model):
    missing = [tool for tool in GUI_TOOLS if not gimp.has_tool(tool)]
    need(not missing, "to drive GIMP's window the tests need %s" % ", ".join(missing))
    # Forget the settings of earlier sessions, so that only this run's choice can be remembered.
    last = gimp.host_path(gimp.gimp_dir + "/plug-in-settings/"
                          "GimpProcedureConfigRun-plug-in-remove-background.last")
    if last.exists():
        last.unlink()
    results, run_dir, _output = run_gimp_script(gimp, "dialog_cases.py", gui=True, model=model)
    return results, run_dir, last


def test_the_dialog_appears_and_its_choice_is_used(run):
    results, run_dir, _last = run
    assert results["driver"]["window"], results["driver"].get("error")
    for name in ("dialog.png", "dialog-selection.png"):
        width, height = Image.open(run_dir / name).size
        assert 200 < width < 1000 and 100 < height < 800, (name, width, height)
    interactive = results["interactive"]
    assert interactive == {"status": "success", "selection": True, "mask": False}


def test_repeat_uses_the_last_values(run):
    results, _run_dir, last = run
    assert results["repeat"] == {"status": "success", "selection": True, "mask": False}
    remembered = last.read_text()
    assert '(output "selection")' in remembered
    assert "(refine no)" in remembered            # the toggle the driver turned off


def test_the_dialog_shows_no_threads_field(run):
    # The driver pressed Alt+T and typed 3: with a Threads field in the dialog, 3 threads would
    # have been remembered; the other options are all there.
    _results, run_dir, last = run
    remembered = last.read_text()
    assert "(threads 0)" in remembered, remembered
    assert "(decontaminate no)" in remembered and "(refine no)" in remembered
    width, height = Image.open(run_dir / "dialog.png").size
    assert height < 400, "a taller dialog than Model, Output and two toggles need"


def test_a_script_gets_the_defaults(run):
    results, _run_dir, _last = run
    assert results["defaults"] == {"status": "success", "selection": False, "mask": True}


def test_one_ctrl_z_in_the_window_undoes_the_whole_run(run):
    results, _run_dir, _last = run
    undo = results["undo"]
    assert undo["status"] == "success", undo["message"]
    before, filtered, after = undo["before"], undo["filtered"], undo["after"]
    assert before["mask"] is not None
    # The run replaced the old mask by a new one, and left the layer's pixels alone.
    assert filtered["mask"] is not None and filtered["mask"] != before["mask"]
    assert filtered["pixels"] == before["pixels"]
    assert undo["window"], undo.get("windows")
    # One Ctrl+Z: the old mask is back, pixel for pixel, and so is the layer.
    assert after == before
