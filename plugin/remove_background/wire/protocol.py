"""The wire protocol between GIMP's side and the helper: the one definition both ends import.

Standard library only: GIMP's bundled Python imports this module too.

A message is one line of JSON (UTF-8, ending in a newline) followed by exactly
``header["size"]`` bytes of raw payload (no payload when "size" is absent or 0).

Requests (GIMP side -> helper) and the replies they get:

  {"op": "hello"}
      -> {"op": "hello", "protocol": 1, "helper": VERSION, "python": "3.x.y",
          "onnxruntime": VERSION, "providers": [...]}
  {"op": "models"}
      -> {"op": "models", "default": NAME, "models": [{"name", "title", "installed",
          "description", "license", "commercial_use", "size"}, ...]}
  {"op": "load", "model": NAME, "threads": N}          (threads 0: all cores)
      optional "file": PATH (run that ONNX file, fed as NAME's registry entry says) and,
      with it, "preprocess": {...} (a registry-style description, for models not in the registry)
      -> {"op": "loaded", "model": NAME, "provider": "CPUExecutionProvider", "threads": N,
          "seconds": S}            (S is 0 when that model was already loaded; a failed
                                    load leaves no model loaded)
  {"op": "process", "width": W, "height": H, "channels": 1|2|3|4,
   "mask_depth": 1|2, "size": W*H*channels} + 8-bit pixels, rows top to bottom
      -> {"op": "progress", "stage": STAGE, "fraction": F}   (zero or more)
      -> {"op": "mask", "width": W, "height": H, "depth": 1|2, "provider": P, "size": W*H*depth}
         + the mask (0 = background; 16-bit values are little-endian); "provider" is the
         one that ran (a GPU that fails mid-run is dropped for the CPU, said on stderr);
         optional "refine": false gives the model's mask stretched, not refined
  {"op": "refine", "width": W, "height": H, "channels": 1|2|3|4, "mask_depth": 1|2,
   "snap": BOOL, "decontaminate": BOOL, "size": W*H*(channels + mask_depth)}
      + the 8-bit pixels, then the mask as it is (one painted by hand), W*H*mask_depth bytes
      -> {"op": "refined", "width": W, "height": H, "depth": 1|2, "channels": C,
          "size": W*H*depth (+ W*H*C with "decontaminate")}
         + the mask (snapped to the photo's edges with "snap", else as sent), then with
         "decontaminate" the pixels with the subject's estimated colour at the soft edges.
         Needs no model.

Any request may instead be answered with {"op": "error", "error": KIND, "message": TEXT};
the helper then goes on serving.  The helper exits when its stdin reaches end of file.

The warm helper (remove_background.helper.warm, see wire/warm.py) speaks the same protocol over a
Unix socket, one connection per GIMP run and one connection at a time; its "hello" reply also
has "warm": {"pid", "model", "threads", "idle_seconds", "idle_timeout", "gimp_pid",
"executable"} ("model" null when none is loaded), and it knows one more request:
  {"op": "quit"}   -> {"op": "quit"}, then it exits (install.py uses it)
A connection made while it serves another is answered {"op": "error", "error": "busy"} and closed.
"""

import json

PROTOCOL_VERSION = 1

# The longest header line either end accepts; payloads are not limited by it.
MAX_HEADER_BYTES = 64 * 1024

# Progress stages, in the order a "process" request goes through them.
STAGES = ("received", "preprocess", "inference", "postprocess")

# A box prompt (GIMP's selection, the command's --box) shows the model a margin around the box:
# this much of the box's longer side on each side.
BOX_MARGIN = 0.05

# Error kinds a reply may carry.
ERROR_KINDS = (
    "bad_header",       # not a JSON object, too long, or missing a field
    "bad_size",         # payload length does not match width * height * channels
    "bad_request",      # unknown op, unsupported channel count, a value out of range
    "no_model",         # "process" before a successful "load"
    "unknown_model",    # a name the registry does not know
    "model_missing",    # known, but not fetched yet
    "model_invalid",    # the file is there but onnxruntime cannot use it
    "out_of_memory",
    "busy",             # the warm helper is serving another run (its socket only)
    "internal",
)

# The kinds that say the requested model cannot be used at all: every later request for it
# fails the same way (a batch stops at the first).
MODEL_UNUSABLE = ("unknown_model", "model_missing", "model_invalid")


class ProtocolError(Exception):
    """The peer broke the framing: a bad header line or a payload cut short."""


class HeaderError(ProtocolError):
    """A header line that is not a JSON object.  The stream itself is still in step."""


class ConnectionClosed(ProtocolError):
    """The stream ended where a message should have started."""


def encode_header(header):
    line = json.dumps(header, separators=(",", ":")).encode("utf-8") + b"\n"
    if len(line) > MAX_HEADER_BYTES:
        raise ValueError("header too long: %d bytes" % len(line))
    return line


class Pieces:
    """A payload made while it is sent: ``size`` bytes from an iterable of bytes-like pieces.

    GIMP's side reads a big layer in strips (GIMP hands its tiles over one by one, which takes
    about as long as the pipe does), and each strip is on its way to the helper while the next
    one is read.  What was read is kept, so that it can be sent again or joined.
    """

    def __init__(self, size, pieces):
        self.size = size
        self._pending = iter(pieces)
        self._read = []

    def __len__(self):
        return self.size

    def __iter__(self):
        yield from list(self._read)
        for piece in self._pending:
            self._read.append(piece)
            yield piece

    def joined(self):
        return b"".join(self)


def write_message(stream, header, payload=b""):
    """Writes one message to a binary stream and flushes it; ``payload``: bytes-like or Pieces."""
    header = dict(header)
    if payload:
        header["size"] = len(payload)
    else:
        header.pop("size", None)
    stream.write(encode_header(header))
    if isinstance(payload, Pieces):
        written = 0
        for piece in payload:
            stream.write(piece)
            written += len(piece)
        if written != payload.size:
            raise ValueError("the payload had %d bytes, not %d" % (written, payload.size))
    elif payload:
        stream.write(payload)
    stream.flush()


def read_header(stream):
    """Reads one header line; returns the dict.

    Raises ConnectionClosed at a clean end of stream, HeaderError for a line that is not
    a JSON object (the next message can still be read), ProtocolError otherwise.
    """
    line = stream.readline(MAX_HEADER_BYTES + 1)
    if not line:
        raise ConnectionClosed("the stream ended")
    if not line.endswith(b"\n"):
        if len(line) > MAX_HEADER_BYTES:
            raise ProtocolError("header line longer than %d bytes" % MAX_HEADER_BYTES)
        raise ProtocolError("the stream ended inside a header line")
    try:
        header = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise HeaderError("header is not JSON: %s" % error) from None
    if not isinstance(header, dict):
        raise HeaderError("header is not a JSON object")
    size = header.get("size", 0)
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise HeaderError("header 'size' must be a non-negative integer")
    return header


def read_payload(stream, size):
    """Reads exactly ``size`` bytes as one bytes object; raises ProtocolError if the stream ends first.

    ``stream`` is a buffered binary stream: its read(n) keeps reading until n bytes or the
    end, straight into the returned object (no second copy of a large image).
    """
    if size == 0:
        return b""
    data = stream.read(size)
    if data is None or len(data) < size:
        raise ProtocolError("the stream ended after %d of %d payload bytes"
                            % (0 if data is None else len(data), size))
    return data


def read_message(stream):
    """Reads one message: returns (header, payload)."""
    header = read_header(stream)
    return header, read_payload(stream, header.get("size", 0))


def box_region(width, height, box):
    """(left, top, right, bottom): the part of a width x height photo the model sees for ``box``
    (x, y, w, h): the box and its margin, cut to the photo.  ValueError for a box that is empty
    or not inside the photo.  One definition for GIMP's selection and the command's --box."""
    x, y, w, h = (int(v) for v in box)
    if w <= 0 or h <= 0:
        raise ValueError("the box %d,%d,%d,%d is empty" % (x, y, w, h))
    if x < 0 or y < 0 or x + w > width or y + h > height:
        raise ValueError("the box %d,%d,%d,%d is not inside the %dx%d photo" % (x, y, w, h, width, height))
    margin = int(round(BOX_MARGIN * max(w, h)))
    return max(0, x - margin), max(0, y - margin), min(width, x + w + margin), min(height, y + h + margin)


def error_message(kind, message):
    assert kind in ERROR_KINDS, kind
    return {"op": "error", "error": kind, "message": message}
