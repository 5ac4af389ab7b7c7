"""Inside GIMP: Filters > Remove Background in All Open Images over three images, one indexed.

The helper's interpreter is swapped for a wrapper that logs each helper start, to count
the helper processes the batch used.
"""

from support import (Gimp, PROC_ALL, RESULTS, dump, load, pixels, run_procedure, source,
                     state)
import helper_config

MODEL = "isnet"

# Nothing else open.
for image in Gimp.get_images():
    image.delete()

# Two layers; only the top one is selected and may change.
cat = load(source("tests/fixtures/chelsea.png"))
under = Gimp.Layer.new_from_drawable(cat.get_layers()[0], cat)
under.set_name("Under")
cat.insert_layer(under, None, 1)
cat.set_selected_layers([cat.get_layers()[0]])

cup = load(source("tests/fixtures/coffee.png"))

astronaut = load(source("tests/fixtures/astronaut.png"))
astronaut.convert_indexed(Gimp.ConvertDitherType.NONE, Gimp.ConvertPaletteType.GENERATE,
                          255, False, False, "")

images = {"cat": cat, "cup": cup, "indexed": astronaut}
for name, image in images.items():
    image.clean_all()
    layer = image.get_selected_layers()[0]
    RESULTS[name] = {"id": image.get_id(), "before": state(image),
                     "size": [layer.get_width(), layer.get_height()]}
    if name != "indexed":
        RESULTS[name].update(**{"in": dump(name + ".in", pixels(layer, "R'G'B' u8")),
                                "in_format": "R'G'B' u8", "in_size": RESULTS[name]["size"]})

with helper_config.logging_wrapper() as starts:
    status, message, values = run_procedure(PROC_ALL, model=MODEL)
    RESULTS["batch"] = {"status": status, "message": message,
                        "helper_starts": starts.count(),
                        "done": values.index(1) if status == "success" else None,
                        "failed": values.index(2) if status == "success" else None,
                        "summary": values.index(3) if status == "success" else None}

for name, image in images.items():
    RESULTS[name]["after"] = state(image)
    layer = image.get_selected_layers()[0]
    if layer.get_mask() is not None:
        RESULTS[name]["mask"] = dump(name + ".mask", pixels(layer.get_mask(), "Y u8"))
