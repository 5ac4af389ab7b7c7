"""The `remove-background` command: cut out photos from the command line.

    remove-background INPUT... [-o OUT] [--model NAME] [--mask-only] [--background COLOR]
                      [--no-refine] [--[no-]decontaminate] [--mask FILE] [--box X,Y,W,H]

Each INPUT is an image or a folder (every image directly inside it).  Results are PNG
(or the format OUT's name asks for): the photo with the mask as straight (not
premultiplied) alpha, multiplied into any alpha it already had; or the mask alone; or
the photo composited onto a colour.
"""

import argparse
import os
import stat
import sys
import tempfile
import time
from collections import namedtuple
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageColor, ImageOps

from ..helper import version
from . import png_writer

# Pillow's own "decompression bomb" limit is replaced by what this machine's memory can hold
# (check_memory): the command is meant for photos up to 16000 x 16000 and beyond.
Image.MAX_IMAGE_PIXELS = None
# What a photo costs beyond the model, per pixel and channel (the decoded image and its array) and
# per pixel (the mask): measured, the command's peak memory grew by 6.0 bytes per RGB pixel from
# 12 to 48 MP (--threads 2); one byte per pixel more for margin.
BYTES_PER_CHANNEL = 2
BYTES_PER_PIXEL = 1

# Rows are copied out of Pillow images this many bytes at a time (see pixels_of).
BAND_BYTES = 4 * 1024 * 1024
# In a folder the next photo is read during the current one's inference (a third photo in
# memory, with the one being written) unless it is larger than this.
READ_AHEAD_PIXELS = 50_000_000
CUTOUT_SUFFIX = ".nobg.png"
# Measured with tests/bench/eval_edges.py (see the README): with our own masks it gains 0.2%
# of the edge error for seconds on a 12 MP photo, so it is asked for, not the default.
DECONTAMINATE = False
MASK_SUFFIX = ".mask.png"


class InputError(Exception):
    """One input could not be used; the others go on."""


def describe(error):
    """One file's failure in words (whatever went wrong with it, the other files go on)."""
    if isinstance(error, MemoryError):
        return "not enough memory for this image"
    if isinstance(error, (InputError, OSError)):
        return str(error)
    return "%s: %s" % (type(error).__name__, error)     # onnxruntime's, an encoder's, ...


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="remove-background",
        description="Remove the background of photos with a local ONNX model.")
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders of images")
    parser.add_argument("-o", "--output", metavar="OUT",
                        help="output file (one input; its extension picks the format, PNG by default) "
                        "or folder; default: NAME%s beside each input"
                        % CUTOUT_SUFFIX)
    parser.add_argument("--model", metavar="NAME", help="model to use (default: the first installed)")
    parser.add_argument("--mask-only", action="store_true",
                        help="write the mask (white = kept) instead of the cut-out; default name NAME%s"
                        % MASK_SUFFIX)
    parser.add_argument("--background", metavar="COLOR",
                        help="composite onto this colour (a name, #rrggbb, rgb(...)) instead of transparency")
    parser.add_argument("--model-file", metavar="FILE",
                        help="run this ONNX file, fed as --model's registry entry says")
    parser.add_argument("--threads", type=int, default=0, metavar="N",
                        help="inference threads (default: all cores)")
    parser.add_argument("--no-refine", dest="refine", action="store_false",
                        help="stretch the model's mask to the photo bilinearly instead of refining "
                        "its edges with the photo as the guide")
    parser.add_argument("--decontaminate", action=argparse.BooleanOptionalAction, default=DECONTAMINATE,
                        help="give semi-transparent edge pixels the subject's estimated colour, not the "
                        "old background's (cut-outs and --background; default: %s)"
                        % ("on" if DECONTAMINATE else "off"))
    parser.add_argument("--mask", metavar="FILE", type=Path,
                        help="use this mask (white = kept; any size, stretched to the photo) instead of the "
                        "model's; refinement and decontamination apply to it; one input only")
    parser.add_argument("--box", metavar="X,Y,W,H",
                        help="look only inside this box (pixels of the photo as displayed, after EXIF "
                        "orientation); the mask is black outside it")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="say only what failed (no progress lines, no summary)")
    parser.add_argument("--version", action="version", version="%(prog)s " + version())
    args = parser.parse_args(argv)
    if args.background is not None:
        if args.mask_only:
            parser.error("--background and --mask-only do not go together")
        try:
            args.background = ImageColor.getrgb(args.background)
        except ValueError:
            parser.error("--background: unknown colour %r" % args.background)
    from ..helper.parallel import max_threads

    if not 0 <= args.threads <= max_threads():
        parser.error("--threads must be 0 (all cores) to %d (four per core)" % max_threads())
    if args.box is not None:
        try:
            args.box = tuple(int(part) for part in args.box.split(","))
        except ValueError:
            args.box = ()
        if len(args.box) != 4 or args.box[2] <= 0 or args.box[3] <= 0:
            parser.error("--box takes X,Y,W,H: four whole numbers, W and H above 0")
    if args.mask is not None and (len(args.inputs) != 1 or Path(args.inputs[0]).is_dir()):
        parser.error("--mask goes with one input image")
    if args.mask is not None and (args.model is not None or args.model_file is not None):
        parser.error("--mask replaces the model: --model and --model-file do not go with it")
    return args


def is_own_output(path):
    name = path.name.lower()
    return name.endswith(CUTOUT_SUFFIX) or name.endswith(MASK_SUFFIX)


def image_extensions():
    return {ext for ext, format_name in Image.registered_extensions().items()
            if format_name in Image.OPEN}


def reason(error):
    """An OSError in a few words (File name too long, Permission denied, ...)."""
    return error.strerror or str(error) if isinstance(error, OSError) else str(error)


def collect_inputs(paths):
    """The image files to process, and the inputs that name nothing usable (as InputErrors).

    Each input is looked at on its own: one that cannot be read (a name too long, a folder
    without permission, a FIFO) is reported and the others go on.  A file named twice is
    processed once.
    """
    extensions = None
    files, problems, seen = [], [], set()

    def add(path, st):
        if (st.st_dev, st.st_ino) not in seen:
            seen.add((st.st_dev, st.st_ino))
            files.append(path)

    for text in paths:
        path = Path(text)
        try:
            st = path.stat()
            if stat.S_ISDIR(st.st_mode):
                # Only folders need the list: it makes Pillow import every format it knows.
                extensions = extensions or image_extensions()
                found = []
                for child in sorted(path.iterdir()):
                    if child.suffix.lower() not in extensions or is_own_output(child):
                        continue
                    try:
                        child_st = child.stat()
                    except OSError as error:
                        problems.append((child, InputError(reason(error))))
                        continue
                    if stat.S_ISREG(child_st.st_mode):
                        found.append((child, child_st))
                if not found:
                    problems.append((path, InputError("no images in this folder")))
                for child, child_st in found:
                    add(child, child_st)
            elif stat.S_ISREG(st.st_mode):
                add(path, st)
            else:
                problems.append((path, InputError("not a regular file (a device, FIFO or socket); skipped")))
        except FileNotFoundError:
            problems.append((path, InputError("no such file or folder")))
        except OSError as error:
            problems.append((path, InputError(reason(error))))
    return files, problems


def names_a_folder(output):
    """Whether -o names a folder: an existing one, or a name ending in a separator."""
    if output.endswith(("/", os.sep)) or (os.altsep and output.endswith(os.altsep)):
        return True
    try:
        return Path(output).is_dir()
    except OSError:
        return False


def output_paths(files, inputs, output, mask_only):
    """Where each file's result goes: OUT itself for a single file input, else inside OUT."""
    suffix = MASK_SUFFIX if mask_only else CUTOUT_SUFFIX
    single = len(inputs) == 1 and len(files) == 1 and files[0] == Path(inputs[0])
    if output is not None and single and not names_a_folder(output):
        return {files[0]: Path(output)}
    targets = {}
    for path in files:
        folder = Path(output) if output is not None else path.parent
        targets[path] = folder / (path.stem + suffix)
    # a.png and a.jpg (or two folders' a.png into one OUT) would overwrite each other.
    taken = [target for target in targets.values()]
    for path, target in targets.items():
        if taken.count(target) > 1:
            targets[path] = target.with_name(path.name + suffix)
    return targets


def overwriting(files, targets):
    """The files whose output would replace an input (its own or another's), as InputErrors."""
    inputs = {same_file_key(path) for path in files}
    return [(path, InputError("the output %s would overwrite an input" % targets[path]))
            for path in files if same_file_key(targets[path]) in inputs]


def same_file_key(path):
    """What tells two names of one file apart from two files: (device, inode), else the resolved path."""
    try:
        st = path.stat()
        return (st.st_dev, st.st_ino)
    except OSError:
        try:
            return path.resolve()
        except OSError:
            return path


def available_memory():
    """Bytes this machine can still give (Linux's MemAvailable; elsewhere the physical memory), or None."""
    try:
        with open("/proc/meminfo", encoding="ascii") as info:
            for line in info:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def check_memory(image):
    """Refuses, from its header alone, a photo that this machine's memory could not hold."""
    width, height = image.size
    channels = max(len(image.getbands()), 1)
    needed = width * height * (BYTES_PER_CHANNEL * channels + BYTES_PER_PIXEL)
    available = available_memory()
    if available is not None and needed > available:
        raise InputError("%d x %d pixels would need about %.1f GB of memory; %.1f GB are available"
                         % (width, height, needed / 1e9, available / 1e9))


def frame_note(image):
    """A word about the frames that are not used (animated GIF, PNG, WebP; multi-page TIFF), or None.

    (A phone's MPO JPEG also has several frames, but the others are previews: nothing to say.)"""
    frames = getattr(image, "n_frames", 1) or 1
    if frames <= 1:
        return None
    if image.format == "TIFF":
        return "a TIFF of %d pages: only the first is used" % frames
    if image.format in ("GIF", "PNG", "WEBP"):
        return "an animation of %d frames: only the first is used" % frames
    return None


def load_image(path):
    """Opens, orients (EXIF) and reduces an image to 8-bit L, LA, RGB or RGBA."""
    try:
        image = Image.open(path)
        check_memory(image)
        image.load()
    except (OSError, SyntaxError, ValueError) as error:
        raise InputError("not a readable image (%s)" % error) from None
    note = frame_note(image)
    ImageOps.exif_transpose(image, in_place=True)       # in place: no second full-size copy
    profile = image.info.get("icc_profile")
    image = to_8bit(image)
    if profile:
        image.info["icc_profile"] = profile
    if note:
        image.info["frame_note"] = note
    return image


def to_8bit(image):
    mode = image.mode
    if mode in ("L", "LA", "RGB", "RGBA"):
        return image
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # 16-bit grey: Pillow's convert("L") would clip at 255 instead of scaling.
        values = np.asarray(image).astype(np.uint32)
        return Image.fromarray(((values * 255 + 32767) // 65535).clip(0, 255).astype(np.uint8), "L")
    if mode == "F":
        values = np.asarray(image)
        return Image.fromarray(np.clip(values, 0, 255).round().astype(np.uint8), "L")
    if mode == "1":
        return image.convert("L")
    if mode == "P" or mode == "PA":
        has_alpha = mode == "PA" or "transparency" in image.info
        palette_mode = image.palette.mode if image.palette is not None else "RGB"
        if palette_mode.startswith("L"):
            return image.convert("LA" if has_alpha else "L")
        return image.convert("RGBA" if has_alpha or palette_mode == "RGBA" else "RGB")
    if mode in ("La", "RGBa"):
        return image.convert(mode.upper())
    has_alpha = "A" in image.getbands() or "transparency" in image.info
    return image.convert("RGBA" if has_alpha else "RGB")


def pixels_of(image):
    """A new (H, W, C) uint8 array of the image's pixels.

    Copied a band of rows at a time: Pillow's tobytes() of a whole 12-megapixel image
    took three times longer than of its bands one by one (0.06 s against 0.02 s).
    """
    width, height = image.size
    channels = len(image.getbands())
    pixels = np.empty((height, width, channels), np.uint8)
    step = max(1, BAND_BYTES // (width * channels))
    for top in range(0, height, step):
        bottom = min(height, top + step)
        band = np.frombuffer(image.crop((0, top, width, bottom)).tobytes(), np.uint8)
        pixels[top:bottom] = band.reshape(bottom - top, width, channels)
    return pixels


def straight_alpha(pixels, mask):
    """The colour channels, and the alpha: the mask, times any alpha the image already had."""
    if pixels.shape[2] in (1, 3):
        return pixels, mask
    product = np.multiply(pixels[:, :, -1], mask, dtype=np.uint16)
    product += 127
    product //= 255
    return pixels[:, :, :-1], product.astype(np.uint8)


def composite(colour, alpha, background):
    """The colour channels laid over a plain ``background`` (RGB or RGBA) through ``alpha``.

    In bands of rows, rounding as Pillow's own compositing does.
    """
    height, width, channels = colour.shape
    out = np.empty((height, width, len(background)), np.uint8)
    ground = np.array(background, np.int32)
    step = max(1, BAND_BYTES // (width * 4))
    for top in range(0, height, step):
        rows = slice(top, min(height, top + step))
        weight = alpha[rows, :, np.newaxis].astype(np.int32)
        front = colour[rows].astype(np.int32)
        if channels == 1:
            front = np.repeat(front, 3, axis=2)          # grey on a colour
        if len(background) == 4:                          # the subject is opaque
            front = np.concatenate([front, np.full_like(front[:, :, :1], 255)], axis=2)
        blend = (front - ground) * weight + ground * 255 + 128
        out[rows] = (blend + (blend >> 8)) >> 8
    return out


# One input, read: its pixels, its colour profile and a note for its line (or None).
Photo = namedtuple("Photo", "pixels profile note")


def read_input(source):
    image = load_image(source)
    # The photo's colour profile goes with it: its colours mean the same in the cut-out.
    return Photo(pixels_of(image), image.info.get("icc_profile"), image.info.get("frame_note"))


def profile_fits(icc_profile, colour):
    """Whether the profile describes the colours of ``colour`` (bytes 16-19 name its colour space)."""
    grey = colour.ndim == 2 or colour.shape[2] == 1
    return bool(icc_profile) and icc_profile[16:20] == (b"GRAY" if grey else b"RGB ")


def write_output(photo, mask, target, mask_only, background, workers, decontaminate=False):
    if mask_only:
        colour, alpha, profile = mask, None, None
    else:
        colour, alpha = straight_alpha(photo.pixels, mask)
        if decontaminate:
            from ..helper import engine

            colour = engine.decontaminate(colour, alpha, workers)
        if background is not None:
            colour, alpha = composite(colour, alpha, background), None
        profile = photo.profile if profile_fits(photo.profile, colour) else None
    target.parent.mkdir(parents=True, exist_ok=True)
    check_output(target)
    # A new file of our own beside the target (O_EXCL, a random name): never a link planted there.
    descriptor, name = tempfile.mkstemp(prefix=target.name + ".", suffix=".part", dir=str(target.parent))
    partial = Path(name)
    try:
        made = os.fstat(descriptor)
        os.close(descriptor)
        suffix = target.suffix.lower()
        format_name = "PNG" if suffix in ("", ".png") else Image.registered_extensions().get(suffix, "PNG")
        if format_name == "PNG":
            png_writer.write(partial, colour, alpha, workers, profile)
        else:
            save_with_pillow(partial, format_name, colour, alpha, profile)
        written = os.lstat(partial)
        if (written.st_dev, written.st_ino) != (made.st_dev, made.st_ino):
            raise InputError("the temporary file %s was replaced while it was written" % partial)
        os.chmod(partial, 0o666 & ~UMASK)                 # as a file made with open() would be
        check_output(target)
        os.replace(partial, target)
    finally:
        if os.path.lexists(partial):
            partial.unlink()


def check_output(target):
    """Refuses an output that is not (or would not replace) a regular file: a device, a FIFO, a folder."""
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        return
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
        raise InputError("the output %s is not a regular file (a %s); not replaced"
                         % (target, "folder" if stat.S_ISDIR(st.st_mode) else "device, FIFO or socket"))


def current_umask():
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# Read once, before any thread starts: setting it back and forth is not thread-safe.
UMASK = current_umask()


def save_with_pillow(path, format_name, colour, alpha, profile):
    """An output name asking for another format (photo.jpg with --background, say)."""
    image = Image.fromarray(colour[:, :, 0] if colour.ndim == 3 and colour.shape[2] == 1 else colour)
    if alpha is not None:
        image.putalpha(Image.fromarray(alpha, "L"))
    options = {"quality": 95} if format_name in ("JPEG", "WEBP") else {}
    if profile:
        options["icc_profile"] = profile
    try:
        image.save(path, format_name, **options)
    except Exception as error:  # noqa: BLE001 - Pillow's encoders raise many kinds
        hint = ""
        if "cannot write mode" in str(error) and alpha is not None:        # JPEG and RGBA, for one
            hint = " (it has no transparency: name the output .png, or use --background)"
        raise InputError("cannot write %s: %s%s" % (format_name, describe(error), hint)) from None


def mask_of(engine, pixels, refine, box):
    from ..helper.engine import BoxError

    try:
        return engine.mask(pixels, refine=refine, box=box)
    except BoxError as error:
        raise InputError(str(error)) from None


class GivenMask:
    """--mask FILE in the engine's place: that mask, stretched (or refined) to the photo."""

    provider = "no model"

    def __init__(self, path, threads):
        from ..helper import engine

        self.path, self.threads = path, threads or engine.cpu_count()
        self.name = "the mask %s" % Path(path).name

    def mask(self, pixels, depth=1, refine=True, box=None):
        from ..helper import engine

        if box is not None:
            return engine.in_box(pixels, box, depth, lambda part: self.mask(part, depth, refine))
        image = load_mask(self.path)
        if image.shape == pixels.shape[:2] and not refine:
            return image                    # exactly that mask
        values = image.astype(np.float32) / np.float32(255)
        return engine.full_size_mask(pixels, values, depth, refine, self.threads)


def load_mask(path):
    """A mask file as (H, W) uint8, oriented as photos are; InputError if unreadable."""
    try:
        image = load_image(path)
    except InputError as error:
        raise InputError("--mask %s: %s" % (path, error)) from None
    if image.mode not in ("L", "LA"):
        image = image.convert("L")
    return pixels_of(image)[:, :, 0]


def open_engine(name, threads, file=None, progress=None):
    """The engine for --model (default: model_fetch's choice); exits with a message on failure."""
    import model_fetch

    from ..helper import engine

    try:
        if name is None:
            name = model_fetch.default_model()
        if progress is not None:
            progress.loading("the model %s" % name)
        return engine.load(name, threads=threads, file=file)
    except (model_fetch.FetchError, engine.ModelLoadError) as error:  # ModelNotInstalled included
        fail(str(error))


def fail(message):
    print("remove-background: %s" % message, file=sys.stderr)
    sys.exit(2)


class Progress:
    """Counts the results and says what happens on stderr: the model loading, each file as it
    starts and as it is written (with its own time, from its start to its result on disk), and
    every failure.  ``quiet``: the failures only."""

    def __init__(self, total, failed, quiet=False):
        self.total, self.done, self.failed = total, 0, failed
        self.quiet = quiet
        self.started = {}

    def say(self, text):
        if not self.quiet:
            print(text, file=sys.stderr, flush=True)

    def loading(self, what):
        self.say("remove-background: loading %s" % what)

    def start(self, number, source):
        self.started[number] = time.monotonic()
        if self.total > 1:
            self.say("[%d/%d] %s ..." % (number, self.total, source))

    def failure(self, source, error):
        self.failed += 1
        print("remove-background: %s: %s" % (source, describe(error)), file=sys.stderr, flush=True)

    def note(self, source, text):
        print("remove-background: %s: %s" % (source, text), file=sys.stderr, flush=True)

    def success(self, number, source, target):
        self.done += 1
        seconds = time.monotonic() - self.started.pop(number, time.monotonic())
        counter = "[%d/%d] " % (number, self.total) if self.total > 1 else ""
        self.say("%s%s -> %s (%.1f s)" % (counter, source, target, seconds))


def wait_for(writing, progress):
    number, source, target, future = writing
    try:
        future.result()
    except Exception as error:  # noqa: BLE001 - one file's failure, whatever it is
        progress.failure(source, error)
    else:
        progress.success(number, source, target)


def pixel_count(path):
    try:
        with Image.open(path) as image:         # reads the header only
            return image.width * image.height
    except Exception:  # noqa: BLE001 - reading the file will say what is wrong with it
        return 0


def remove_backgrounds(files, targets, args, progress, load=None):
    """Runs every file through the model; returns the engine used.

    ``load()``, when given, opens the engine instead of --mask or open_engine() of --model,
    --threads, --model-file.

    Reading the next photo (during the model load, then during each inference) and writing
    the previous result (during the next inference) overlap the model's work: on
    12-megapixel photos each takes a tenth of the inference or more.
    """
    def read_ahead(index):
        """Whether to read this file during the previous one's inference: one photo more in memory."""
        return index < len(files) and pixel_count(files[index]) <= READ_AHEAD_PIXELS

    with ThreadPoolExecutor(1) as reader, ThreadPoolExecutor(1) as writer:
        next_read = reader.submit(read_input, files[0])
        if load is not None:
            engine = load()
        elif args.mask is not None:
            engine = GivenMask(args.mask, args.threads)
        else:
            engine = open_engine(args.model, args.threads, args.model_file, progress)
        writing = None
        for index, source in enumerate(files):
            progress.start(index + 1, source)
            current = next_read or reader.submit(read_input, source)
            next_read = reader.submit(read_input, files[index + 1]) if read_ahead(index + 1) else None
            try:
                photo = current.result()
                if photo.note:
                    progress.note(source, photo.note)
                mask = mask_of(engine, photo.pixels, args.refine, args.box)
            except Exception as error:  # noqa: BLE001 - one file's failure, whatever it is
                if writing:                     # the previous file's line first
                    wait_for(writing, progress)
                    writing = None
                progress.failure(source, error)
                continue
            if writing:
                wait_for(writing, progress)
            writing = (index + 1, source, targets[source], writer.submit(
                write_output, photo, mask, targets[source], args.mask_only, args.background, engine.threads,
                args.decontaminate))
            del photo, mask
        if writing:
            wait_for(writing, progress)
    return engine


def main(argv=None):
    started = time.monotonic()
    args = parse_args(sys.argv[1:] if argv is None else argv)
    files, problems = collect_inputs(args.inputs)
    for path, error in problems:
        print("remove-background: %s: %s" % (path, error), file=sys.stderr)
    if not files:
        print("remove-background: nothing to do", file=sys.stderr)
        return 1
    targets = output_paths(files, args.inputs, args.output, args.mask_only)
    refused = overwriting(files, targets)
    for path, error in refused:
        print("remove-background: %s: %s" % (path, error), file=sys.stderr)
    files = [path for path in files if path not in dict(refused)]
    if not files:
        print("remove-background: nothing to do", file=sys.stderr)
        return 1
    progress = Progress(len(files), failed=len(problems) + len(refused), quiet=args.quiet)
    engine = remove_backgrounds(files, targets, args, progress)
    progress.say("remove-background: %d done, %d failed in %.1f s (%s on %s)" % (
        progress.done, progress.failed, time.monotonic() - started, engine.name, engine.provider))
    return 1 if progress.failed else 0


if __name__ == "__main__":
    sys.exit(main())
