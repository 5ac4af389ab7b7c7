"""Inside a GIMP started for the first time in a user folder install.py made or left to it:
is the plug-in there, and does it work?"""

from support import PARAMS, PROC_ONE, RESULTS, Gimp, load, run_procedure, source

RESULTS["gimp_dir"] = Gimp.directory()
RESULTS["registered"] = Gimp.get_pdb().procedure_exists(PROC_ONE)
if RESULTS["registered"]:
    image = load(source("tests/fixtures/chelsea.png"))
    status, message, _values = run_procedure(PROC_ONE, image, image.get_selected_layers(),
                                             model=PARAMS["model"])
    RESULTS["run"] = {"status": status, "message": message,
                      "masked": image.get_layers()[0].get_mask() is not None}
