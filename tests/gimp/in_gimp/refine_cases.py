"""Inside GIMP's real window (under Xvfb): Refine Layer Mask, decontamination, and the box.

1. "painted": Remove Background on the cat, then a black brush stroke painted on its mask
   (Gimp.paintbrush_default); Refine Layer Mask (snap) must work on the painted mask.
2. "offset": a two-colour photo whose mask was painted 12 px off the photo's edge; snap.
3. "refine_decontaminate": Refine Layer Mask with Decontaminate colours only.
4. "dialog_decontaminate": Remove Background with Decontaminate colours, in one run.
   Each of 1-4 is then undone by one Ctrl+Z in the image's window.
5. "box": Remove Background within a rectangle selection, to compare with the command's --box.
"""

import random

from support import PROC_ONE, RESULTS, Gegl, Gimp, digest, dump, load, pixels, run_procedure, source, state
from window import undo_once_in_the_window

PROC_REFINE = "plug-in-remove-background-refine-mask"
CHELSEA = source("tests/fixtures/chelsea.png")
WIDTH, HEIGHT, EDGE, OFFSET = 300, 200, 150, 12
BOX = (60, 20, 260, 250)        # x, y, w, h on the cat (451 x 300)


def shown(image):
    Gimp.Display.new(image)
    Gimp.displays_flush()
    return image


def record(name, image, layer):
    """The layer's pixels and mask as files, for the tests to recompute with the helper's code."""
    mask = layer.get_mask()
    return {"pixels": dump(name + ".pixels", pixels(layer, "R'G'B' u8")),
            "mask": dump(name + ".mask", pixels(mask, "Y u8")) if mask is not None else None,
            "size": [layer.get_width(), layer.get_height()]}


def layers(image):
    """Each top-level layer: name, visible, pixels and mask digests (top first)."""
    return [{"name": layer.get_name(), "visible": layer.get_visible(),
             "pixels": digest(pixels(layer)),
             "mask": digest(pixels(layer.get_mask())) if layer.get_mask() is not None else None}
            for layer in image.get_layers()]


def run_and_undo(name, image, layer, procedure, **arguments):
    before = state(image)
    case = {"before_files": record(name + ".before", image, layer)}
    status, message, _values = run_procedure(procedure, image, [layer], **arguments)
    case.update(status=status, message=message, layers=layers(image))
    for number, top in enumerate(image.get_layers()):
        case["after_files_%d" % number] = record("%s.after%d" % (name, number), image, top)
    undo = undo_once_in_the_window(image)
    case.update(undone=undo["after"] == before, window=undo["window"], before=before,
                after_undo=undo["after"])
    RESULTS[name] = case


# 1. A generated mask, then painted on with a brush.
image = shown(load(CHELSEA))
layer = image.get_layers()[0]
status, message, _values = run_procedure(PROC_ONE, image, [layer])
generated = digest(pixels(layer.get_mask()))
Gimp.context_set_foreground(Gegl.Color.new("black"))
Gimp.context_set_brush_size(30.0)
Gimp.paintbrush_default(layer.get_mask(), [120.0, 150.0, 200.0, 160.0])
painted = digest(pixels(layer.get_mask()))
image.clean_all()
run_and_undo("painted", image, layer, PROC_REFINE, snap=True, decontaminate=False)
RESULTS["painted"].update(generate_status=status, generate_message=message,
                          painted_differs=painted != generated)

# 2. A two-colour photo (with a little noise), its mask painted OFFSET px right of the edge.
image = Gimp.Image.new(WIDTH, HEIGHT, Gimp.ImageBaseType.RGB)
layer = Gimp.Layer.new(image, "photo", WIDTH, HEIGHT, Gimp.ImageType.RGB_IMAGE, 100.0,
                       Gimp.LayerMode.NORMAL)
image.insert_layer(layer, None, 0)
noise = random.Random(3)
row = []
for x in range(WIDTH):
    colour = (180, 140, 60) if x < EDGE else (40, 90, 200)
    row.append(colour)
data = bytes(max(0, min(255, c + noise.randint(-3, 3))) for _y in range(HEIGHT) for colour in row
             for c in colour)
layer.get_buffer().set(Gegl.Rectangle.new(0, 0, WIDTH, HEIGHT), "R'G'B' u8", data)
mask = layer.create_mask(Gimp.AddMaskType.BLACK)
layer.add_mask(mask)
mask.get_buffer().set(Gegl.Rectangle.new(0, 0, WIDTH, HEIGHT), "Y u8",
                      bytes(255 if x < EDGE + OFFSET else 0 for _y in range(HEIGHT) for x in range(WIDTH)))
mask.get_buffer().flush()
image.clean_all()
shown(image)
run_and_undo("offset", image, layer, PROC_REFINE, snap=True, decontaminate=False)

# 3. Refine Layer Mask, Decontaminate colours only, on a generated mask.
image = shown(load(CHELSEA))
layer = image.get_layers()[0]
run_procedure(PROC_ONE, image, [layer])
image.clean_all()
run_and_undo("refine_decontaminate", image, layer, PROC_REFINE, snap=False, decontaminate=True)

# 4. Remove Background with Decontaminate colours: mask, copy and hidden original in one run.
image = shown(load(CHELSEA))
layer = image.get_layers()[0]
run_and_undo("dialog_decontaminate", image, layer, PROC_ONE, decontaminate=True)

# 5. Within a rectangle selection: the same as the command's --box.
image = load(CHELSEA)
layer = image.get_layers()[0]
image.select_rectangle(Gimp.ChannelOps.REPLACE, *BOX)
status, message, _values = run_procedure(PROC_ONE, image, [layer])
RESULTS["box"] = {"status": status, "message": message, "box": list(BOX), "photo": CHELSEA,
                  "mask": dump("box.mask", pixels(layer.get_mask(), "Y u8"))}
