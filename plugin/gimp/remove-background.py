#!/usr/bin/env python3
#   Remove Background for GIMP: Filters > Remove Background...
#
#   This program is free software: you can redistribute it and/or modify
#   it under the terms of the GNU General Public License as published by
#   the Free Software Foundation; either version 3 of the License, or
#   (at your option) any later version.
#
#   This program is distributed in the hope that it will be useful,
#   but WITHOUT ANY WARRANTY; without even the implied warranty of
#   MERCHANTABILITY or FITNESS FOR A PARTICULAR PURPOSE.  See the
#   GNU General Public License for more details.

"""Masks out the background of the selected layers with a model run by a helper process.

The plug-in only moves pixels: it reads what each layer shows, sends it to the helper
(remove_background.helper.serve, in its own Python with onnxruntime) and turns the mask it gets
back into a layer mask or a selection.  Nothing in the image changes until every mask of
an image has arrived, so a failure or a cancel leaves the image as it was.
"""

import os
import sys

PLUG_IN_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, PLUG_IN_DIR)

import gi
gi.require_version('Gimp', '3.0')
from gi.repository import Gimp
gi.require_version('Gegl', '0.4')
from gi.repository import Gegl
gi.require_version('Babl', '0.1')
from gi.repository import Babl
from gi.repository import GObject
from gi.repository import GLib

from remove_background.wire import protocol
from remove_background.wire.client import HelperClient, HelperError, HelperSession, warm_client

PROC_ONE = "plug-in-remove-background"
PROC_ALL = "plug-in-remove-background-all-images"
PROC_REFINE = "plug-in-remove-background-refine-mask"

# Offered when the helper cannot list its models (not installed yet), so that the
# procedures still register; running them then says how to install the helper.
FALLBACK_MODEL = "isnet"

# What the helper gets for each kind of layer: 8-bit, perceptual, the layer's own channels.
PIXEL_FORMATS = {1: "Y' u8", 2: "Y'A u8", 3: "R'G'B' u8", 4: "R'G'B'A u8"}

# Rows of a layer read at a time (GIMP's tiles are 64 rows high): each strip goes to the helper
# while the next is read.
STRIP_ROWS = 256

# The helper's mask depth: 1 (8 bits) or 2 (16 bits, for high-bit-depth images).
MASK_ENCODINGS = {1: "u8", 2: "u16"}

EIGHT_BIT = (Gimp.Precision.U8_LINEAR, Gimp.Precision.U8_NON_LINEAR, Gimp.Precision.U8_PERCEPTUAL)

# How much of one layer's progress each part takes.
SHARE_SEND = 0.05
SHARE_HELPER = 0.9
# What the progress bar says during each of the helper's stages (protocol.STAGES, in order).
STAGE_LABELS = {"received": "sending", "preprocess": "preparing",
                "inference": "finding the subject", "postprocess": "making the mask"}


def _(message):
    return GLib.dgettext(None, message)


class Failure(Exception):
    """Something the user has to fix, worded for them."""


# -- talking to the helper ------------------------------------------------------------------

def helper_models():
    """(names and titles of the models, installed ones first, and the default name) as the helper
    reports them.

    Every model is offered, not only the installed ones: GIMP keeps the choice it was given when it
    registered the plug-in, so a model fetched later would otherwise be missing from it, and a script
    asking for that model would silently get the default. Running one not downloaded names the
    command that fetches it."""
    try:
        private = HelperClient.from_config(PLUG_IN_DIR)
        try:
            # A warm helper answers at once; none is started only for this.
            helper = warm_client(private, start=False) or private
            with helper:
                reply = helper.models()
        except HelperError:
            if helper is private:
                raise
            with private:
                reply = private.models()
    except HelperError:
        return [(FALLBACK_MODEL, FALLBACK_MODEL)], FALLBACK_MODEL
    known = [(m["name"], model_title(m), m.get("installed")) for m in reply.get("models", [])]
    models = [(name, title) for name, title, installed in known if installed]
    models += [(name, _("%s (not downloaded)") % title) for name, title, installed in known if not installed]
    models = models or [(FALLBACK_MODEL, FALLBACK_MODEL)]
    names = [name for name, _title in models]
    default = reply.get("default")
    return models, default if default in names else names[0]


def model_title(model):
    """"ISNet (IMG.LY, fp16) - 88 MB, AGPL-3.0": what a photographer weighs when choosing."""
    title = model.get("title") or model["name"]
    facts = []
    if isinstance(model.get("size"), int) and model["size"] > 0:
        facts.append("%d MB" % round(model["size"] / 1e6))
    if model.get("license"):
        facts.append(str(model["license"]))
    return "%s \u2013 %s" % (title, ", ".join(facts)) if facts else title


# -- reading the image ----------------------------------------------------------------------

class Job:
    """One layer and the area of it (layer coordinates) that goes to the helper.

    With a selection, ``box`` is the part of the layer under the selection's bounds: the
    helper is sent that box and its margin (protocol.box_region, as the command's --box), and
    keep_box() cuts the results down to the box.
    """

    def __init__(self, layer, x, y, width, height, box=None):
        self.layer = layer
        self.x, self.y, self.width, self.height = x, y, width, height
        self.box = box
        self.mask = None
        self.pixels = None          # what was sent (kept when colours are decontaminated)
        self.channels = None
        self.colours = None         # the decontaminated pixels, or None

    def keep_box(self, depth):
        if self.box is None:
            return
        bx, by, bw, bh = self.box
        left, top = bx - self.x, by - self.y
        self.mask = crop(self.mask, self.width, depth, left, top, left + bw, top + bh)
        if self.pixels is not None:
            self.pixels = crop(self.pixels, self.width, self.channels, left, top, left + bw, top + bh)
        self.x, self.y, self.width, self.height = bx, by, bw, bh
        self.box = None


def layer_of(drawable):
    if isinstance(drawable, Gimp.LayerMask):
        return Gimp.Layer.from_mask(drawable)
    if isinstance(drawable, Gimp.Layer):
        return drawable
    return None


def image_label(image):
    file = image.get_file() or image.get_imported_file()
    if file is not None:
        return file.get_basename()
    return "%s-%d" % (image.get_name(), image.get_id())


def plan(image, drawables):
    """The jobs for the given drawables of an image; raises Failure when it cannot be done."""
    if image.get_base_type() == Gimp.ImageBaseType.INDEXED:
        raise Failure(_("The image is indexed. Convert it with Image > Mode > RGB, "
                        "then run Remove Background again."))
    layers = []
    for drawable in drawables:
        layer = layer_of(drawable)
        if layer is not None and layer not in layers:
            layers.append(layer)
    if not layers:
        raise Failure(_("No layer is selected."))

    _ok, has_selection, x1, y1, x2, y2 = Gimp.Selection.bounds(image)
    jobs = []
    for layer in layers:
        width, height = layer.get_width(), layer.get_height()
        if not has_selection:
            jobs.append(Job(layer, 0, 0, width, height))
            continue
        _ok, off_x, off_y = layer.get_offsets()
        left, top = max(x1 - off_x, 0), max(y1 - off_y, 0)
        right, bottom = min(x2 - off_x, width), min(y2 - off_y, height)
        if right <= left or bottom <= top:
            raise Failure(_("The selection does not touch the layer \"%s\".")
                          % layer.get_name())
        box = (left, top, right - left, bottom - top)
        area_left, area_top, area_right, area_bottom = protocol.box_region(width, height, box)
        jobs.append(Job(layer, area_left, area_top, area_right - area_left, area_bottom - area_top, box))
    return jobs


def mask_depth(image):
    return 1 if image.get_precision() in EIGHT_BIT else 2


def layer_channels(layer):
    return (1 if layer.is_gray() else 3) + (1 if layer.has_alpha() else 0)


def read_pixels(job):
    """What the layer shows in the job's area (for a group: its projection), 8 bits a channel:
    (channels, protocol.Pieces), read from GIMP strip by strip as they are sent to the helper."""
    channels = layer_channels(job.layer)
    buffer = job.layer.get_buffer()

    def strips():
        for top in range(job.y, job.y + job.height, STRIP_ROWS):
            rows = min(STRIP_ROWS, job.y + job.height - top)
            yield buffer.get(Gegl.Rectangle.new(job.x, top, job.width, rows), 1.0, PIXEL_FORMATS[channels],
                             Gegl.AbyssPolicy.NONE)

    return channels, protocol.Pieces(job.width * job.height * channels, strips())


# -- writing the result ---------------------------------------------------------------------

def mask_format(drawable, depth):
    """The format that stores mask values unchanged in a layer mask or channel.

    GIMP uses the stored values as they are (a value m composites at opacity m / max, and
    becomes a selection of m / max).  Layer masks and the selection are linear ("Y u8"),
    but channels of 8-bit perceptual images are "Y' u8": written as "Y u8" there, the
    values would be gamma-converted on the way in.
    """
    model = Babl.get_name(drawable.get_format()).split(" ")[0]   # "Y", "Y'" or "Y~"
    return "%s %s" % (model, MASK_ENCODINGS[depth])


def write_mask(drawable, x, y, width, height, mask, depth):
    """Writes mask bytes (8 or 16 bits a pixel) into a layer mask or channel at x, y."""
    buffer = drawable.get_buffer()
    buffer.set(Gegl.Rectangle.new(x, y, width, height), mask_format(drawable, depth), mask)
    buffer.flush()
    drawable.update(x, y, width, height)


def rewrite_mask(mask, values, depth):
    """Replaces the values of an existing layer mask, as an undo step (through its shadow buffer:
    a plain buffer write would not be undone)."""
    width, height = mask.get_width(), mask.get_height()
    shadow = mask.get_shadow_buffer()
    shadow.set(Gegl.Rectangle.new(0, 0, width, height), mask_format(mask, depth), values)
    shadow.flush()
    mask.merge_shadow(True)
    mask.update(0, 0, width, height)


def crop(mask, width, depth, left, top, right, bottom):
    """The part [left, right) x [top, bottom) of a mask that is ``width`` pixels wide."""
    row = width * depth
    return b"".join(mask[y * row + left * depth:y * row + right * depth]
                    for y in range(top, bottom))


def write_pixels(layer, job):
    """Writes the job's decontaminated colours into ``layer``, row by row only where they differ
    from what was read: elsewhere a high-bit-depth layer keeps its own values."""
    channels = job.channels
    row = job.width * channels
    buffer = layer.get_buffer()
    for y in range(job.height):
        old = job.pixels[y * row:(y + 1) * row]
        new = job.colours[y * row:(y + 1) * row]
        span = difference_span(old, new, channels)
        if span is None:
            continue
        first, last = span
        buffer.set(Gegl.Rectangle.new(job.x + first, job.y + y, last - first, 1),
                   PIXEL_FORMATS[channels], new[first * channels:last * channels])
    buffer.flush()
    layer.update(job.x, job.y, job.width, job.height)


def difference_span(old, new, unit):
    """[first, last) pixels (of ``unit`` bytes) between the first and the last that differ; None
    if none does.  By bisection on slices: compared in C, not byte by byte in Python."""
    if old == new:
        return None
    low, high = 0, len(old)             # old[:low] == new[:low], old[:high] != new[:high]
    while high - low > 1:
        middle = (low + high) // 2
        if old[:middle] == new[:middle]:
            low = middle
        else:
            high = middle
    first = low
    low, high = 0, len(old)             # the same from the end
    while high - low > 1:
        middle = (low + high) // 2
        if old[len(old) - middle:] == new[len(new) - middle:]:
            low = middle
        else:
            high = middle
    last = len(old) - low
    return first // unit, (last + unit - 1) // unit


def add_decontaminated_copy(image, layer, job):
    """Photoshop's "New Layer with Layer Mask": a copy of the layer (with its mask) above it,
    the estimated colours in it, and the original hidden."""
    copy = layer.copy()
    copy.set_name(_("%s (decontaminated)") % layer.get_name())
    image.insert_layer(copy, layer.get_parent(), image.get_item_position(layer))
    write_pixels(copy, job)
    layer.set_visible(False)
    return copy


def apply_as_masks(image, jobs, depth, has_selection):
    # Every new mask is made and filled before any layer changes: a failure there changes nothing.
    masks = []
    for job in jobs:
        mask = job.layer.create_mask(Gimp.AddMaskType.BLACK)
        write_mask(mask, job.x, job.y, job.width, job.height, job.mask, depth)
        masks.append(mask)
    for job, mask in zip(jobs, masks):
        layer = job.layer
        if layer.get_mask() is not None:
            layer.remove_mask(Gimp.MaskApplyMode.DISCARD)
        layer.add_mask(mask)
        if has_selection:
            # Black outside the selection, and faded where the selection is feathered.
            _ok, off_x, off_y = layer.get_offsets()
            mask.combine_masks(image.get_selection(), Gimp.ChannelOps.INTERSECT, -off_x, -off_y)
        if job.colours is not None:
            add_decontaminated_copy(image, layer, job)


def apply_as_selection(image, jobs, depth, has_selection):
    canvas_w, canvas_h = image.get_width(), image.get_height()
    saved = Gimp.Selection.save(image) if has_selection else None
    operation = Gimp.ChannelOps.REPLACE
    try:
        for job in jobs:
            _ok, off_x, off_y = job.layer.get_offsets()
            # The job's area in image coordinates, cut to the canvas (channels cannot stick out).
            left, top = max(off_x + job.x, 0), max(off_y + job.y, 0)
            right = min(off_x + job.x + job.width, canvas_w)
            bottom = min(off_y + job.y + job.height, canvas_h)
            channel = Gimp.Channel.new(image, "Remove Background", canvas_w, canvas_h, 100.0,
                                       Gegl.Color.new("black"))
            image.insert_channel(channel, None, 0)
            try:
                if right > left and bottom > top:
                    part = crop(job.mask, job.width, depth,
                                left - off_x - job.x, top - off_y - job.y,
                                right - off_x - job.x, bottom - off_y - job.y)
                    write_mask(channel, left, top, right - left, bottom - top, part, depth)
                image.select_item(operation, channel)
            finally:
                image.remove_channel(channel)
            operation = Gimp.ChannelOps.ADD
        if saved is not None:
            image.select_item(Gimp.ChannelOps.INTERSECT, saved)
    finally:
        if saved is not None:
            image.remove_channel(saved)


def apply(image, jobs, output):
    """Puts the masks into the image: one undo step."""
    _ok, has_selection, _x1, _y1, _x2, _y2 = Gimp.Selection.bounds(image)
    depth = mask_depth(image)
    image.undo_group_start()
    try:
        if output == "selection":
            apply_as_selection(image, jobs, depth, has_selection)
        else:
            apply_as_masks(image, jobs, depth, has_selection)
    finally:
        image.undo_group_end()


# -- the run --------------------------------------------------------------------------------

class Progress:
    """GIMP's progress bar over a known number of layers, each going through the stages."""

    def __init__(self, total_layers):
        self.total = max(total_layers, 1)
        self.done = 0
        self.where = ""

    def layer(self, where):
        self.where = where
        self.show(_("reading the layer"), 0.0)

    def show(self, what, fraction):
        Gimp.progress_set_text(_("Removing background: %s%s") % (what, self.where))
        Gimp.progress_update(min((self.done + fraction) / self.total, 1.0))

    def helper(self, stage, fraction):
        if stage == "loading":
            self.show(_("loading the model"), SHARE_SEND)
            return
        if stage not in protocol.STAGES:
            return
        index = protocol.STAGES.index(stage)
        within = (index + min(max(float(fraction or 0.0), 0.0), 1.0)) / len(protocol.STAGES)
        self.show(_(STAGE_LABELS[stage]), SHARE_SEND + SHARE_HELPER * within)

    def layer_done(self):
        self.done += 1
        self.show(_("applying"), 0.0)


def check_decontaminable(jobs):
    for job in jobs:
        if isinstance(job.layer, Gimp.GroupLayer):
            raise Failure(_("\"%s\" is a layer group: its colours cannot be decontaminated. "
                            "Merge it first, or run without Decontaminate colours.")
                          % job.layer.get_name())


def masks_for(jobs, image, helper, progress, where, refine=True, decontaminate=False):
    """Runs the helper on every job of an image; the image is not touched."""
    depth = mask_depth(image)
    if decontaminate:
        check_decontaminable(jobs)
    for number, job in enumerate(jobs, 1):
        if len(jobs) > 1:
            progress.layer(where + _(", layer %d of %d") % (number, len(jobs)))
        else:
            progress.layer(where)
        channels, pixels = read_pixels(job)
        job.mask = helper.mask(job.width, job.height, channels, pixels, depth, progress.helper,
                               refine=refine)
        if decontaminate:
            job.channels, job.pixels = channels, pixels.joined()
        job.keep_box(depth)
        if decontaminate:
            job.mask, job.colours = helper.refine(job.width, job.height, channels, job.pixels, job.mask,
                                                  depth, decontaminate=True, on_progress=progress.helper)
        progress.layer_done()


# What the dialogs show: "threads" stays an argument for scripts, not a photographer's choice.
DIALOG_FIELDS = ("model", "output", "refine", "decontaminate")
REFINE_DIALOG_FIELDS = ("snap", "decontaminate")


def dialog_accepted(procedure, config, title, fields):
    # Imported here: GimpUi brings GTK, which a run without a dialog (a script, Repeat) never needs.
    gi.require_version('GimpUi', '3.0')
    from gi.repository import GimpUi

    GimpUi.init(procedure.get_name())
    dialog = GimpUi.ProcedureDialog.new(procedure, config, title)
    dialog.fill(list(fields))
    accepted = dialog.run()
    dialog.destroy()
    return accepted


def settings(procedure, config, run_mode, title):
    """The run's {model, output, threads, refine, decontaminate}, after the dialog when the run
    is interactive; None when the dialog was cancelled."""
    if run_mode == Gimp.RunMode.INTERACTIVE and not dialog_accepted(procedure, config, title, DIALOG_FIELDS):
        return None
    Gimp.progress_init(_("Removing background"))
    chosen = {name: config.get_property(name)
              for name in ("model", "output", "threads", "refine", "decontaminate")}
    # Colours are decontaminated under a layer mask; a selection has no layer to put them in.
    chosen["decontaminate"] = chosen["decontaminate"] and chosen["output"] == "mask"
    return chosen


def cancelled_values(procedure):
    return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())


def error_values(procedure, text):
    return procedure.new_return_values(Gimp.PDBStatusType.EXECUTION_ERROR, GLib.Error(text))


def run_one(procedure, run_mode, image, drawables, config, data):
    chosen = settings(procedure, config, run_mode, _("Remove Background"))
    if chosen is None:
        return cancelled_values(procedure)

    try:
        with HelperSession(PLUG_IN_DIR, chosen["model"], chosen["threads"], warm=True) as helper:
            jobs = plan(image, drawables)
            progress = Progress(len(jobs))
            masks_for(jobs, image, helper, progress, "", chosen["refine"], chosen["decontaminate"])
    except (Failure, HelperError) as error:
        return error_values(procedure, str(error))

    try:
        apply(image, jobs, chosen["output"])
    except GLib.Error as error:
        return error_values(procedure, _("GIMP could not apply the mask: %s") % error.message)
    Gimp.progress_update(1.0)
    Gimp.displays_flush()
    return procedure.new_return_values(Gimp.PDBStatusType.SUCCESS, GLib.Error())


def run_all(procedure, config, data):
    run_mode = config.get_property("run-mode")
    chosen = settings(procedure, config, run_mode, _("Remove Background in All Open Images"))
    if chosen is None:
        return cancelled_values(procedure)

    images = sorted(Gimp.get_images(), key=lambda image: image.get_id())
    work, failed = [], []
    for image in images:
        try:
            work.append((image, plan(image, image.get_selected_layers())))
        except Failure as failure:
            failed.append((image, str(failure)))

    progress = Progress(sum(len(jobs) for _image, jobs in work))
    done = []
    with HelperSession(PLUG_IN_DIR, chosen["model"], chosen["threads"], warm=True) as helper:
        for number, (image, jobs) in enumerate(work, 1):
            where = _(" (image %d of %d)") % (number, len(work))
            try:
                masks_for(jobs, image, helper, progress, where, chosen["refine"], chosen["decontaminate"])
            except Failure as failure:
                failed.append((image, str(failure)))
                progress.done = sum(len(j) for _i, j in work[:number])
                continue
            except HelperError as error:
                failed.append((image, str(error)))
                progress.done = sum(len(j) for _i, j in work[:number])
                if error.lasting:
                    for other, _jobs in work[number:]:
                        failed.append((other, _("Not tried: %s") % error.message))
                    break
                continue
            try:
                apply(image, jobs, chosen["output"])
            except GLib.Error as error:
                failed.append((image, _("GIMP could not apply the mask: %s") % error.message))
                continue
            done.append(image)
    Gimp.progress_update(1.0)
    Gimp.displays_flush()

    summary = summarize(done, failed)
    if run_mode != Gimp.RunMode.NONINTERACTIVE:
        Gimp.message(summary)
    return Gimp.ValueArray.new_from_values([
        GObject.Value(Gimp.PDBStatusType, Gimp.PDBStatusType.SUCCESS),
        GObject.Value(GObject.TYPE_INT, len(done)),
        GObject.Value(GObject.TYPE_INT, len(failed)),
        GObject.Value(GObject.TYPE_STRING, summary),
    ])


def run_refine(procedure, run_mode, image, drawables, config, data):
    if run_mode == Gimp.RunMode.INTERACTIVE and not dialog_accepted(
            procedure, config, _("Refine Layer Mask"), REFINE_DIALOG_FIELDS):
        return cancelled_values(procedure)
    snap, decontaminate = config.get_property("snap"), config.get_property("decontaminate")
    if not (snap or decontaminate):
        return error_values(procedure, _("Choose Snap edges to the photo, Decontaminate colours, or both."))
    Gimp.progress_init(_("Refining the layer mask"))
    depth = mask_depth(image)
    try:
        jobs = mask_jobs(image, drawables)
        if decontaminate:
            check_decontaminable(jobs)
        progress = Progress(len(jobs))
        with HelperSession(PLUG_IN_DIR, None, warm=True) as helper:
            for job in jobs:
                progress.layer("")
                job.channels, pixels = read_pixels(job)
                job.pixels = pixels.joined()
                painted = read_mask(job.layer.get_mask(), depth)
                job.mask, job.colours = helper.refine(job.width, job.height, job.channels, job.pixels, painted,
                                                      depth, snap=snap, decontaminate=decontaminate,
                                                      on_progress=progress.helper)
                progress.layer_done()
    except (Failure, HelperError) as error:
        return error_values(procedure, str(error))
    image.undo_group_start()
    try:
        for job in jobs:
            if snap:
                rewrite_mask(job.layer.get_mask(), job.mask, depth)
            if decontaminate:
                add_decontaminated_copy(image, job.layer, job)
    except GLib.Error as error:
        return error_values(procedure, _("GIMP could not change the layer: %s") % error.message)
    finally:
        image.undo_group_end()
    Gimp.progress_update(1.0)
    Gimp.displays_flush()
    return procedure.new_return_values(Gimp.PDBStatusType.SUCCESS, GLib.Error())


def mask_jobs(image, drawables):
    """One job (the whole layer) per selected layer; Failure unless each has a layer mask."""
    if image.get_base_type() == Gimp.ImageBaseType.INDEXED:
        raise Failure(_("The image is indexed. Convert it with Image > Mode > RGB first."))
    layers = []
    for drawable in drawables:
        layer = layer_of(drawable)
        if layer is not None and layer not in layers:
            layers.append(layer)
    if not layers:
        raise Failure(_("No layer is selected."))
    for layer in layers:
        if layer.get_mask() is None:
            raise Failure(_("The layer \"%s\" has no layer mask. Run Remove Background first, or add "
                            "one with Layer > Mask > Add Layer Mask.") % layer.get_name())
    return [Job(layer, 0, 0, layer.get_width(), layer.get_height()) for layer in layers]


def read_mask(mask, depth):
    """A layer mask's values as they are stored (see mask_format), 8 or 16 bits a pixel."""
    rect = Gegl.Rectangle.new(0, 0, mask.get_width(), mask.get_height())
    return mask.get_buffer().get(rect, 1.0, mask_format(mask, depth), Gegl.AbyssPolicy.NONE)


def summarize(done, failed):
    lines = [_("Remove Background: %d image(s) done, %d failed.") % (len(done), len(failed))]
    lines += ["  %s: done" % image_label(image) for image in done]
    lines += ["  %s: %s" % (image_label(image), reason) for image, reason in failed]
    return "\n".join(lines)


# -- registration ---------------------------------------------------------------------------

def add_arguments(procedure, models, default):
    choice = Gimp.Choice.new()
    for number, (name, title) in enumerate(models):
        choice.add(name, number, title, "")
    procedure.add_choice_argument("model", _("_Model"),
                                  _("The neural network that finds the subject, with its download size "
                                    "and licence. It runs on this computer: nothing is uploaded."),
                                  choice, default, GObject.ParamFlags.READWRITE)
    output = Gimp.Choice.new()
    output.add("mask", 0, _("Layer mask"), _("Add the result as a layer mask"))
    output.add("selection", 1, _("Selection"), _("Replace the selection with the result"))
    procedure.add_choice_argument("output", _("Out_put"),
                                  _("Layer mask: the background is hidden, the pixels stay as they are "
                                    "(paint on the mask to correct it). Selection: the subject is selected."),
                                  output, "mask", GObject.ParamFlags.READWRITE)
    procedure.add_boolean_argument("refine", _("Refine _edges"),
                                   _("Follow the photo's own edges (hair, fur, outlines) at its full "
                                     "resolution. Off: the model's mask, only stretched to the photo's size."),
                                   True, GObject.ParamFlags.READWRITE)
    add_decontaminate_argument(procedure)
    procedure.add_int_argument("threads", _("_Threads"),
                               _("CPU threads for the model (0: all cores)"),
                               0, 256, 0, GObject.ParamFlags.READWRITE)


def add_decontaminate_argument(procedure):
    procedure.add_boolean_argument("decontaminate", _("_Decontaminate colours"),
                                   _("Remove the old background's colour from the semi-transparent "
                                     "edge: adds a copy of the layer with the corrected colours and the "
                                     "same mask above it, and hides the original (one undo step). "
                                     "With Output: Layer mask only."),
                                   False, GObject.ParamFlags.READWRITE)


def image_procedure(plug_in, name, run):
    """A procedure on the selected layer(s) of an image of any type."""
    procedure = Gimp.ImageProcedure.new(plug_in, name, Gimp.PDBProcType.PLUGIN, run, None)
    procedure.set_image_types("*")
    procedure.set_sensitivity_mask(Gimp.ProcedureSensitivityMask.DRAWABLE |
                                   Gimp.ProcedureSensitivityMask.DRAWABLES)
    return procedure


class RemoveBackground(Gimp.PlugIn):
    def do_set_i18n(self, name):
        return False

    def do_query_procedures(self):
        return [PROC_ONE, PROC_ALL, PROC_REFINE]

    def do_create_procedure(self, name):
        if name == PROC_ONE:
            procedure = image_procedure(self, name, run_one)
            procedure.set_menu_label(_("Remove _Background..."))
            procedure.set_documentation(
                _("Mask out the background of the selected layers"),
                _("Finds the subject of each selected layer with a neural network that runs "
                  "on this computer and adds a layer mask that hides the rest. Within a "
                  "selection only the selected area is looked at."),
                name)
        elif name == PROC_ALL:
            procedure = Gimp.Procedure.new(self, name, Gimp.PDBProcType.PLUGIN, run_all, None)
            procedure.add_enum_argument("run-mode", _("Run mode"), _("The run mode"),
                                        Gimp.RunMode, Gimp.RunMode.INTERACTIVE,
                                        GObject.ParamFlags.READWRITE)
            procedure.set_menu_label(_("Remove Background in _All Open Images..."))
            procedure.set_documentation(
                _("Mask out the background of the selected layers of every open image"),
                _("Like Remove Background, for all open images at once with one model "
                  "load; each image gets its own undo step. Images that cannot be done are "
                  "listed at the end and do not stop the others."),
                name)
            procedure.add_int_return_value("done", _("Done"), _("Images masked"),
                                           0, GLib.MAXINT32, 0, GObject.ParamFlags.READWRITE)
            procedure.add_int_return_value("failed", _("Failed"), _("Images not masked"),
                                           0, GLib.MAXINT32, 0, GObject.ParamFlags.READWRITE)
            procedure.add_string_return_value("summary", _("Summary"),
                                              _("One line per image: done, or why not"),
                                              "", GObject.ParamFlags.READWRITE)
        elif name == PROC_REFINE:
            # GIMP has no "has a layer mask" sensitivity: a layer without one gets a message.
            procedure = image_procedure(self, name, run_refine)
            procedure.set_menu_label(_("Refine _Layer Mask..."))
            procedure.set_documentation(
                _("Snap a layer mask painted by hand to the photo's edges, or decontaminate its colours"),
                _("Works on the layer mask as it is now (for example, the one Remove Background "
                  "made, then corrected with a brush): snaps its edges onto the edges of the "
                  "photo, and/or adds a copy of the layer above it with the old background's "
                  "colour removed from the semi-transparent edge. One undo step."),
                name)
            procedure.add_boolean_argument("snap", _("_Snap edges to the photo"),
                                           _("Move the mask's edges onto the photo's nearby edges (within "
                                             "a few tens of pixels), so that a rough brush stroke follows "
                                             "the outline or the hair. Rewrites the mask; the pixels stay."),
                                           True, GObject.ParamFlags.READWRITE)
            add_decontaminate_argument(procedure)
        else:
            return None
        procedure.add_menu_path("<Image>/Filters")
        procedure.set_attribution("Remove Background for GIMP contributors",
                                  "GPL-3.0-or-later", "2025")
        if name != PROC_REFINE:
            # Refine Layer Mask needs no model: no helper is started to list them.
            models, default = helper_models()
            add_arguments(procedure, models, default)
        return procedure


if __name__ == "__main__":
    Gimp.main(RemoveBackground.__gtype__, sys.argv)
