"""Inside GIMP: the Model choice the plug-in registered, and a run with u2netp (fetched from PyPI).

RESULTS["choice"] = {"nicks", "default"}; RESULTS["u2netp"] = {"status", "message", "size", "mask"}.
"""

from support import PROC_ONE, RESULTS, Gimp, dump, load, pixels, run_procedure, source

spec = Gimp.get_pdb().lookup_procedure(PROC_ONE).find_argument("model")
RESULTS["choice"] = {"nicks": list(Gimp.param_spec_choice_get_choice(spec).list_nicks()),
                     "default": Gimp.param_spec_choice_get_default(spec)}

image = load(source("tests/fixtures/chelsea.png"))
layer = image.get_selected_layers()[0]
status, message, _values = run_procedure(PROC_ONE, image, [layer], model="u2netp")
mask = layer.get_mask()
RESULTS["u2netp"] = {"status": status, "message": message, "size": [layer.get_width(), layer.get_height()],
                     "mask": dump("u2netp.mask", pixels(mask, "Y u8")) if mask is not None else None}
image.delete()
