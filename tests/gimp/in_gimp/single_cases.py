"""Inside GIMP: Filters > Remove Background on one image at a time, each kind of layer.

For each case RESULTS[case] holds the procedure's status and message, the image's state
before and after, and the names of dumped files: "in" = the exact pixels the helper was
sent (8-bit), "mask" = the layer mask read back linear, "alpha" = the image composited.
"""

import importlib.util
import os
import sys

from support import (Gimp, Gegl, PARAMS, PROC_ONE, RESULTS, digest, dump, load, pixels,
                     run_procedure, source, state)

CHELSEA = source("tests/fixtures/chelsea.png")
COFFEE = source("tests/fixtures/coffee.png")
MODEL = PARAMS.get("model", "isnet")


def composite_alpha(image, depth=1):
    """The alpha of the image as shown (a duplicate's visible layers merged), 8 or 16 bits."""
    copy = image.duplicate()
    merged = copy.merge_visible_layers(Gimp.MergeType.CLIP_TO_IMAGE)
    if depth == 1:
        data = pixels(merged, "R'G'B'A u8")[3::4]
    else:
        rgba = pixels(merged, "RGBA u16")
        data = b"".join(rgba[i:i + 2] for i in range(6, len(rgba), 8))
    copy.delete()
    return data


def mask_of(layer, depth=1):
    mask = layer.get_mask()
    if mask is None:
        return None
    return pixels(mask, "Y u16" if depth == 2 else "Y u8")


def run_case(name, image, layer, sent_format, sent_rect=None, mask_depth=1, **arguments):
    """Runs the procedure on one layer and records everything the tests look at."""
    image.clean_all()
    result = {"size": [layer.get_width(), layer.get_height()],
              "in": dump(name + ".in", pixels(layer, sent_format, sent_rect)),
              "in_format": sent_format,
              "in_size": list(sent_rect[2:]) if sent_rect else [layer.get_width(), layer.get_height()],
              "before": state(image),
              "layer_pixels_before": digest(pixels(layer))}
    status, message, _values = run_procedure(PROC_ONE, image, [layer], model=MODEL, **arguments)
    result.update(status=status, message=message, after=state(image),
                  layer_pixels_after=digest(pixels(layer)))
    mask = mask_of(layer, mask_depth)
    if mask is not None:
        result["mask"] = dump(name + ".mask", mask)
    RESULTS[name] = result
    return result


# An RGB photo: the layer gains a mask; the composite's alpha is that mask.
image = load(CHELSEA)
layer = image.get_layers()[0]
run_case("rgb", image, layer, "R'G'B' u8")
RESULTS["rgb"]["alpha"] = dump("rgb.alpha", composite_alpha(image))

# An RGBA layer smaller than the canvas, at an offset, over a background layer;
# its left quarter is transparent.
image = Gimp.Image.new(640, 480, Gimp.ImageBaseType.RGB)
background = Gimp.Layer.new(image, "Background", 640, 480, Gimp.ImageType.RGB_IMAGE, 100,
                            Gimp.LayerMode.NORMAL)
image.insert_layer(background, None, 0)
background.fill(Gimp.FillType.WHITE)
coffee = load(COFFEE)
photo = coffee.get_layers()[0]
layer = Gimp.Layer.new(image, "Cup", 400, 300, Gimp.ImageType.RGBA_IMAGE, 100,
                       Gimp.LayerMode.NORMAL)
image.insert_layer(layer, None, 0)
layer.set_offsets(170, 130)
cup = bytearray(pixels(photo, "R'G'B'A u8", (100, 50, 400, 300)))
for y in range(300):
    for x in range(100):
        cup[(y * 400 + x) * 4 + 3] = 0
buffer = layer.get_buffer()
buffer.set(Gegl.Rectangle.new(0, 0, 400, 300), "R'G'B'A u8", bytes(cup))
buffer.flush()
coffee.delete()
run_case("offset", image, layer, "R'G'B'A u8")

# A grey image.
image = load(CHELSEA)
image.convert_grayscale()
run_case("grey", image, image.get_layers()[0], "Y' u8")

# Grey with alpha.
image = load(CHELSEA)
image.convert_grayscale()
image.get_layers()[0].add_alpha()
run_case("grey_alpha", image, image.get_layers()[0], "Y'A u8")

# High bit depths: 16-bit perceptual and 32-bit float linear get a 16-bit mask.
for name, precision in (("u16", Gimp.Precision.U16_NON_LINEAR),
                        ("float", Gimp.Precision.FLOAT_LINEAR)):
    image = load(CHELSEA)
    image.convert_precision(precision)
    run_case(name, image, image.get_layers()[0], "R'G'B' u8", mask_depth=2)

# An existing mask is replaced.
image = load(CHELSEA)
layer = image.get_layers()[0]
old = layer.create_mask(Gimp.AddMaskType.WHITE)
layer.add_mask(old)
image.clean_all()
run_case("replace", image, layer, "R'G'B' u8")

def sent_for(x1, y1, x2, y2):
    """What goes to the model for a selection's bounds: the box and its margin, as for --box."""
    sys.path.insert(0, PARAMS["plugin_dir"])
    from remove_background.wire import protocol

    left, top, right, bottom = protocol.box_region(451, 300, (x1, y1, x2 - x1, y2 - y1))
    return left, top, right - left, bottom - top


# A selection: only its bounds (and a margin) go to the model, and the mask is black outside it.
# An ellipse, so that "outside the selection" differs from "outside its bounds".
image = load(CHELSEA)
layer = image.get_layers()[0]
image.select_ellipse(Gimp.ChannelOps.REPLACE, 40, 10, 330, 280)
_ok, _non_empty, x1, y1, x2, y2 = Gimp.Selection.bounds(image)
image.clean_all()
run_case("selection", image, layer, "R'G'B' u8", sent_rect=sent_for(x1, y1, x2, y2))
RESULTS["selection"]["bounds"] = [x1, y1, x2, y2]
RESULTS["selection"]["selection_mask"] = dump("selection.selection",
                                              pixels(image.get_selection(), "Y u8"))

# Output as selection: the selection becomes the mask; no layer mask.
image = load(CHELSEA)
layer = image.get_layers()[0]
run_case("as_selection", image, layer, "R'G'B' u8", output="selection")
RESULTS["as_selection"]["selection_mask"] = dump("as_selection.selection",
                                                 pixels(image.get_selection(), "Y u8"))

# Output as selection within a selection: the result is limited to the old selection.
image = load(CHELSEA)
layer = image.get_layers()[0]
image.select_ellipse(Gimp.ChannelOps.REPLACE, 40, 10, 330, 280)
_ok, _non_empty, x1, y1, x2, y2 = Gimp.Selection.bounds(image)
old_selection = pixels(image.get_selection(), "Y u8")
run_case("selection_as_selection", image, layer, "R'G'B' u8", sent_rect=sent_for(x1, y1, x2, y2),
         output="selection")
RESULTS["selection_as_selection"].update(
    bounds=[x1, y1, x2, y2], old_selection=dump("selection_as_selection.old", old_selection),
    selection_mask=dump("selection_as_selection.selection", pixels(image.get_selection(), "Y u8")))

# A layer group: what the group shows (its projection) is what is looked at.
image = Gimp.Image.new(451, 300, Gimp.ImageBaseType.RGB)
group = Gimp.GroupLayer.new(image, "Group")
image.insert_layer(group, None, 0)
source_image = load(CHELSEA)
inner = Gimp.Layer.new_from_drawable(source_image.get_layers()[0], image)
image.insert_layer(inner, group, 0)
source_image.delete()
run_case("group", image, group, "R'G'B'A u8")

# A text layer stays a text layer and gains a mask the size of the text.
image = Gimp.Image.new(400, 200, Gimp.ImageBaseType.RGB)
background = Gimp.Layer.new(image, "Background", 400, 200, Gimp.ImageType.RGB_IMAGE, 100,
                            Gimp.LayerMode.NORMAL)
image.insert_layer(background, None, 0)
background.fill(Gimp.FillType.WHITE)
text = Gimp.TextLayer.new(image, "Cat", Gimp.context_get_font(), 96.0, Gimp.Unit.pixel())
image.insert_layer(text, None, 0)
run_case("text", image, text, "R'G'B'A u8")
RESULTS["text"]["still_text"] = isinstance(image.get_layers()[0], Gimp.TextLayer) \
    and image.get_layers()[0].get_mask() is not None

# The plug-in's own mask writer, fed a known gradient (0..255 and 0..65535 in 256 steps):
# a white opaque layer with that mask must composite at alpha m / max.
spec = importlib.util.spec_from_file_location(
    "remove_background_plugin", os.path.join(PARAMS["plugin_dir"], "remove-background.py"))
plugin = importlib.util.module_from_spec(spec)
spec.loader.exec_module(plugin)
for name, precision, depth in (("gradient8", Gimp.Precision.U8_NON_LINEAR, 1),
                               ("gradient16", Gimp.Precision.U16_NON_LINEAR, 2),
                               ("gradient_float", Gimp.Precision.FLOAT_LINEAR, 2)):
    image = Gimp.Image.new_with_precision(256, 8, Gimp.ImageBaseType.RGB, precision)
    layer = Gimp.Layer.new(image, "White", 256, 8, Gimp.ImageType.RGBA_IMAGE, 100,
                           Gimp.LayerMode.NORMAL)
    image.insert_layer(layer, None, 0)
    layer.fill(Gimp.FillType.WHITE)
    mask = layer.create_mask(Gimp.AddMaskType.BLACK)
    if depth == 1:
        row = bytes(range(256))
    else:
        row = b"".join((value * 257).to_bytes(2, "little") for value in range(256))
    plugin.write_mask(mask, 0, 0, 256, 8, row * 8, depth)
    layer.add_mask(mask)
    RESULTS[name] = {"depth": depth, "alpha": dump(name + ".alpha", composite_alpha(image)),
                     "alpha16": dump(name + ".alpha16", composite_alpha(image, 2))}
