"""Runs a background-removal model on 8-bit pixels and returns the mask at full size."""

import os
import stat
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime

from ..wire import protocol
from . import decontaminate as decontamination, fp32, optimized, postprocess, preprocess
from . import refine as refinement
from .parallel import max_threads

# Preferred first; onnxruntime falls back along the list.
GPU_PROVIDERS = (
    "CUDAExecutionProvider",
    "ROCMExecutionProvider",
    "DmlExecutionProvider",
    "CoreMLExecutionProvider",
)
CPU_PROVIDER = "CPUExecutionProvider"


class BoxError(ValueError):
    """A box prompt that is empty or not inside the photo."""


class ModelLoadError(Exception):
    """The model file cannot be used (corrupt, not ONNX, wrong input or outputs)."""


def log(message):
    print("remove-background: " + message, file=sys.stderr, flush=True)


def cpu_count():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def choose_providers(available=None, requested=None):
    """The provider list to ask for: the usable GPU providers first, the CPU last.

    ``requested`` ("cpu", or a provider name) narrows it; $REMOVE_BACKGROUND_PROVIDER
    does the same from outside.
    """
    available = onnxruntime.get_available_providers() if available is None else available
    requested = requested or os.environ.get("REMOVE_BACKGROUND_PROVIDER") or None
    if requested:
        if requested.lower() == "cpu":
            return [CPU_PROVIDER]
        return [requested, CPU_PROVIDER] if requested != CPU_PROVIDER else [CPU_PROVIDER]
    return [name for name in GPU_PROVIDERS if name in available] + [CPU_PROVIDER]


class Engine:
    def __init__(self, model_path, preprocess_spec, threads=0, providers=None, name=None,
                 optimized_dir=None, identity=None):
        """Loads the ONNX file; raises ModelLoadError naming the model and the file.

        With ``optimized_dir`` and ``identity`` (the file's verified digest), onnxruntime's
        optimised graph is saved there at the first load and opened at the next (CPU only).
        """
        self.name = name or os.path.basename(str(model_path))
        self.path = str(model_path)
        self.preprocess = dict(preprocess_spec)
        try:
            preprocess.check(self.preprocess)
        except (ValueError, TypeError) as error:
            raise ModelLoadError("Model %s: bad preprocess description: %s" % (self.name, error)) from None
        check_model_file(self.name, self.path)
        self.threads = min(int(threads), max_threads()) if threads else cpu_count()
        wanted = choose_providers(requested=providers)
        started = time.monotonic()
        self.opened = self.path                 # or the saved optimised graph
        if optimized_dir is not None and identity and wanted == [CPU_PROVIDER]:
            # The saved graph computes only the output used: one for another output is another graph.
            index = self.preprocess["output_index"]
            form_identity = identity if index == 0 else "%s output %d" % (identity, index)
            self.session, self.opened = optimized.open_session(
                self.path, form_identity, Path(optimized_dir), self.session_options,
                lambda options: self._open([CPU_PROVIDER], options), log,
                open_for_saving=lambda options: self._open([CPU_PROVIDER], options, source=self._cpu_form()))
        else:
            self.session = self._open(wanted)
        self.seconds = time.monotonic() - started
        self.provider = self.session.get_providers()[0]
        if self.provider == CPU_PROVIDER:
            gpus = [name for name in wanted if name != CPU_PROVIDER]
            if gpus:
                log("%s is not usable here; running %s on the CPU (%d threads)"
                    % (", ".join(gpus), self.name, self.threads))
            elif self.opened == self.path:      # once: later starts open the saved graph
                log("no GPU provider in this onnxruntime; running %s on the CPU (%d threads)"
                    % (self.name, self.threads))
        self._check_model()

    def session_options(self):
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3
        # Memory patterns cost ISNet ~800 MB more from the second run on, for no speed gain.
        options.enable_mem_pattern = False
        # Threads that spin between the graph's nodes make ISNet's inference 2-4% shorter, one
        # thread a core; more threads than cores would spin in each other's way (3.4x slower
        # measured with 8 on 2).  Once a run ends they stop at once, or they would slow the
        # mask's upsampling and GIMP after it.
        spinning = self.threads <= cpu_count()
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        options.add_session_config_entry("session.force_spinning_stop", "1")
        return options

    def _open(self, providers, options=None, source=None):
        """``source``: the model's serialised bytes to open instead of its file (its fp32 form)."""
        try:
            return onnxruntime.InferenceSession(source or self.path, sess_options=options or self.session_options(),
                                                providers=providers)
        except Exception as error:  # noqa: BLE001 - onnxruntime raises several unrelated exception types
            if providers != [CPU_PROVIDER]:
                log("could not start %s (%s); trying the CPU" % (providers[0], first_line(error)))
                return self._open([CPU_PROVIDER])
            raise ModelLoadError("Cannot load model %s from %s: %s"
                                 % (self.name, self.path, first_line(error))) from None

    def _cpu_form(self):
        """The model as the CPU runs it best (fp32 weights, only the output used: see fp32.py), or None."""
        try:
            return fp32.cpu_form(self.path, self.preprocess["output_index"])
        except Exception as error:  # noqa: BLE001 - onnx's parser on a damaged file: onnxruntime then says why
            log("could not convert %s to fp32 (%s); using it as it is" % (self.name, first_line(error)))
            return None

    def _check_model(self):
        inputs = self.session.get_inputs()
        outputs = self.session.get_outputs()
        width, height = self.preprocess["input_size"]
        problem = None
        if len(inputs) != 1:
            problem = "it has %d inputs, not 1" % len(inputs)
        else:
            shape = inputs[0].shape
            expected = [1, 3, height, width]
            if len(shape) != 4 or any(isinstance(got, int) and got != want
                                      for got, want in zip(shape, expected)):
                problem = "its input has shape %s, not %s" % (shape, expected)
        index = self.preprocess["output_index"]
        if problem is None and not 0 <= index < len(outputs):
            problem = "it has %d outputs, so no output %d" % (len(outputs), index)
        if problem:
            raise ModelLoadError("Cannot use model %s from %s: %s" % (self.name, self.path, problem))
        self.input_name = inputs[0].name
        self.input_type = np.float16 if inputs[0].type == "tensor(float16)" else np.float32
        self.output_name = outputs[index].name

    def infer(self, tensor, run_options=None):
        """Runs the model on a prepared (1, 3, h, w) tensor; returns only the chosen output.

        ``run_options``: onnxruntime.RunOptions; setting its ``terminate`` from another thread
        stops the run (it raises) and leaves the session usable.
        """
        feed = {self.input_name: tensor.astype(self.input_type, copy=False)}
        try:
            return self.session.run([self.output_name], feed, run_options)[0]
        except Exception as error:  # a GPU out of memory, a driver failing mid-run
            if self.provider == CPU_PROVIDER or (run_options is not None and run_options.terminate):
                raise
            log("%s failed (%s); running %s on the CPU from now on"
                % (self.provider, first_line(error), self.name))
            self.session = self._open([CPU_PROVIDER])
            self.provider = CPU_PROVIDER
            return self.session.run([self.output_name], feed, run_options)[0]

    def photo(self, width, height, channels, refine=True):
        """An ArrivingPhoto to fill, for mask(photo.pixels, ..., refine, prepared=photo)."""
        return ArrivingPhoto(width, height, channels, self.preprocess, self.threads, refine)

    def mask(self, pixels, depth=1, progress=None, refine=True, box=None, run_options=None, prepared=None):
        """(H, W, C) uint8 pixels, C in 1..4 -> (H, W) mask, uint8 or (depth 2) uint16.

        ``refine``: the model's mask refined to the photo's resolution with the photo as the
        guide (refine.py); False: stretched bilinearly, as before refinement existed.
        ``box`` (x, y, width, height): the model sees only that part of the photo and a
        margin around it (see box_region); the mask is black outside the box.
        ``progress(stage, fraction)`` is told about each stage.
        ``prepared``: the ArrivingPhoto (see photo()) whose pixels these are: what it made as
        they arrived is used, and the mask is the same.
        """
        if pixels.ndim != 3 or pixels.shape[2] not in (1, 2, 3, 4) or pixels.dtype != np.uint8:
            raise ValueError("pixels must be (height, width, 1..4) uint8, got %s %s"
                             % (pixels.shape, pixels.dtype))
        if prepared is not None and (prepared.pixels is not pixels or box is not None):
            raise ValueError("prepared is made for its own pixels, and for no box")
        if box is not None:
            return in_box(pixels, box, depth,
                          lambda part: self.mask(part, depth, progress, refine, run_options=run_options))
        height, width = pixels.shape[:2]
        report = progress or (lambda stage, fraction: None)
        report("preprocess", 0.0)
        if prepared is not None:
            tensor = prepared.model_input.tensor()
        else:
            tensor = preprocess.model_input(pixels, self.preprocess, self.threads)
        report("inference", 0.0)
        output = self.infer(tensor, run_options)
        del tensor
        report("postprocess", 0.0)
        small = postprocess.mask_from_output(output, self.preprocess)
        del output
        guide = prepared.guide.guide() if prepared is not None and prepared.guide is not None and refine else None
        return full_size_mask(pixels, small, depth, refine, self.threads,
                              progress=lambda fraction: report("postprocess", fraction), guide=guide)


class ArrivingPhoto:
    """A photo received from the top down (the helper reading it from the pipe): what the mask
    needs of the photo alone, the model's input and the refinement's guide, is made as its rows
    come in, while the sender is still reading the next ones."""

    def __init__(self, width, height, channels, preprocess_spec, workers=1, refine=True):
        self.pixels = np.empty((height, width, channels), np.uint8)
        self.model_input = preprocess.InputByRows(self.pixels, preprocess_spec, workers)
        self.guide = refinement.GuideByRows(self.pixels) if refine else None

    def bytes_arrived(self, count):
        """The first ``count`` bytes of pixels are filled."""
        rows = count // (self.pixels.shape[1] * self.pixels.shape[2])
        self.model_input.rows_arrived(rows)
        if self.guide is not None:
            self.guide.rows_arrived(rows)


def full_size_mask(pixels, mask, depth=1, refine=True, workers=1, progress=None, guide=None):
    """A float 0..1 mask of any size (the model's, or a given one) -> (H, W) at the photo's size.

    Refined with the photo as the guide, or (refine False) stretched bilinearly.  A serve op
    can call this with a mask painted by hand, at full resolution: then only the edges that
    are soft in it and lie near an edge of the photo move (a hard painted edge stays put).
    ``guide``: refine.guide_image(pixels), when it is made already.
    """
    height, width = pixels.shape[:2]
    if refine:
        return refinement.refine(pixels, mask, depth, workers=workers, progress=progress, guide=guide)
    return postprocess.upsample(mask, width, height, depth, workers=workers, progress=progress)


def decontaminate(pixels, alpha, workers=1):
    """The pixels with the estimated foreground colour where 0 < alpha < 1 (decontaminate.py)."""
    return decontamination.decontaminate(pixels, alpha, workers)


def box_region(width, height, box):
    """The part of a width x height photo the model sees for ``box`` (x, y, w, h): the box and
    a margin, cut to the photo (protocol.box_region, which GIMP's side uses too).  BoxError for
    a box that is empty or not inside the photo."""
    try:
        return protocol.box_region(width, height, box)
    except ValueError as error:
        raise BoxError(str(error)) from None


def in_box(pixels, box, depth, mask_of):
    """The full-size mask, black outside ``box``, from ``mask_of`` run on the box and its margin."""
    height, width = pixels.shape[:2]
    left, top, right, bottom = box_region(width, height, box)
    x, y, w, h = (int(v) for v in box)
    part = mask_of(pixels[top:bottom, left:right])
    out = np.zeros((height, width), part.dtype)
    out[y:y + h, x:x + w] = part[y - top:y - top + h, x - left:x - left + w]
    return out


def first_line(error):
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]


def load(name, threads=0, providers=None, file=None):
    """The Engine for a registry model, by name (model_fetch finds its file and preprocessing).

    ``file``: run this ONNX file instead of the installed one, fed as ``name`` is.
    Raises model_fetch.UnknownModel / ModelNotInstalled, or ModelLoadError.
    """
    import model_fetch

    model = model_fetch.get(name)
    if file is not None:
        return Engine(file, model.preprocess, threads=threads, providers=providers, name=name)
    return Engine(model_fetch.installed_path(name, rechecking), model.preprocess, threads=threads,
                  providers=providers, name=name, optimized_dir=model_fetch.derived_dir(name),
                  identity=model_fetch.identity(name))


def rechecking(step, done, total):
    """model_fetch's progress while it hashes a model changed since it was verified: one line."""
    if done == 0:
        log("%s%s ..." % (step, " (%.0f MB)" % (total / 1e6) if total else ""))


def check_model_file(name, path):
    """Raises ModelLoadError unless path is a regular file (a FIFO would hang onnxruntime's read)."""
    try:
        regular = stat.S_ISREG(os.stat(path).st_mode)
    except OSError as error:
        raise ModelLoadError("Cannot load model %s from %s: %s" % (name, path, error.strerror or error)) from None
    if not regular:
        raise ModelLoadError("Cannot load model %s from %s: not a regular file" % (name, path))
