"""The helper's serve loop: ``python -m remove_background.helper.serve``.

Reads requests from stdin and answers on stdout, as protocol.py describes, until stdin
ends.  Nothing else may reach stdout: the real stdout is kept for the replies and file
descriptor 1 is pointed at stderr, so stray prints from any library land in the log.
"""

import json
import os
import platform
import sys
import threading
import time
import traceback

from ..wire import protocol
from . import memory, version

# How often, at most, progress messages go out during one stage.
PROGRESS_INTERVAL = 0.1

# How often the helper checks that the process that started it is still there.
PARENT_CHECK_INTERVAL = 0.25


def max_payload_bytes():
    """More than any request can need: a payload is received whole, so never more than the machine's
    memory (where the system says; else a quarter of a terabyte, beyond any photo's 4 channels)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return 1 << 38


class RequestError(Exception):
    """A request the helper answers with an error reply."""

    def __init__(self, kind, message):
        super().__init__(message)
        self.kind = kind


def require_int(header, key, low, high=None, default=None):
    value = header.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < low or (
            high is not None and value > high):
        bound = "%d..%d" % (low, high) if high is not None else ">= %d" % low
        raise RequestError("bad_request", "%r must be an integer %s, got %r" % (key, bound, value))
    return value


def require_bool(header, key, default):
    value = header.get(key, default)
    if not isinstance(value, bool):
        raise RequestError("bad_request", "%s must be true or false" % key)
    return value


def image_fields(header):
    """(width, height, channels, mask depth) of a request that carries an image."""
    width = require_int(header, "width", 1)
    height = require_int(header, "height", 1)
    channels = require_int(header, "channels", 1)
    if channels not in (1, 2, 3, 4):
        raise RequestError("bad_request", "unsupported channel count %d (1 to 4)" % channels)
    return width, height, channels, require_int(header, "mask_depth", 1, 2, default=1)


class Payload:
    """A request's payload, read from the stream by its handler: whole(), or into() an array as
    it arrives.  Server.run() skips what a handler left unread: the stream stays in step."""

    CHUNK = 1 << 20         # bytes read at a time into an array

    def __init__(self, stream, size):
        self.stream = stream
        self.size = size
        self.received = 0

    def __len__(self):
        return self.size

    def receiving(self, make):
        """What make() returns (the place the payload goes), or out_of_memory if it does not fit."""
        try:
            return make()
        except (MemoryError, OverflowError):
            raise RequestError("out_of_memory", "Not enough memory to receive %d bytes." % self.size) from None

    def whole(self):
        data = self.receiving(lambda: protocol.read_payload(self.stream, self.size))
        self.received = self.size
        return data

    def into(self, array, on_bytes):
        """Fills ``array`` (of exactly size bytes), calling on_bytes(bytes so far) after each chunk;
        ProtocolError if the stream ends first."""
        view = memoryview(array).cast("B")
        while self.received < self.size:
            count = self.stream.readinto(view[self.received:self.received + self.CHUNK])
            if not count:
                raise protocol.ProtocolError("the stream ended after %d of %d payload bytes"
                                             % (self.received, self.size))
            self.received += count
            on_bytes(self.received)


class Server:
    def __init__(self, stdin, stdout):
        self.stdin = stdin
        self.stdout = stdout
        self.engine = None
        self.engine_key = None
        self.max_payload = max_payload_bytes()

    def reply(self, header, payload=b""):
        protocol.write_message(self.stdout, header, payload)

    def run(self):
        while True:
            try:
                header = protocol.read_header(self.stdin)
            except protocol.ConnectionClosed:
                return 0
            except protocol.HeaderError as error:
                self.reply(protocol.error_message("bad_header", str(error)))
                continue
            except protocol.ProtocolError as error:
                if not self.skip_line():
                    return 0
                self.reply(protocol.error_message("bad_header", str(error)))
                continue
            size = header.get("size", 0)
            if size > self.max_payload:
                # Nothing that large will follow (it could not be held): answer at once, stay in step.
                self.reply(protocol.error_message(
                    "bad_size", "a payload of %d bytes is larger than any request needs (at most %d)"
                    % (size, self.max_payload)))
                continue
            payload = Payload(self.stdin, size)
            try:
                self.handle(header, payload)
            except protocol.ProtocolError as error:
                # The stream ended inside a payload: nobody is left to answer.
                print("remove-background: %s" % error, file=sys.stderr)
                return 0
            if not self.skip_bytes(size - payload.received):
                return 0

    def skip_bytes(self, size):
        """Reads and drops ``size`` bytes of a payload, what its handler left unread (all of it after
        an error reply); False if the stream ends first."""
        while size > 0:
            chunk = self.stdin.read(min(size, 1 << 20))
            if not chunk:
                return False
            size -= len(chunk)
        return True

    def skip_line(self):
        """Skips the rest of an over-long header line; False if the stream ends first."""
        while True:
            chunk = self.stdin.readline(protocol.MAX_HEADER_BYTES)
            if not chunk:
                return False
            if chunk.endswith(b"\n"):
                return True

    def handle(self, header, payload):
        op = header.get("op")
        handlers = {"hello": self.hello, "models": self.models, "load": self.load, "process": self.process,
                    "refine": self.refine}
        handler = handlers.get(op) if isinstance(op, str) else None
        try:
            if handler is None:
                raise RequestError("bad_request", "unknown op %r" % (op,))
            handler(header, payload)
        except protocol.ProtocolError:
            raise
        except RequestError as error:
            self.reply(protocol.error_message(error.kind, str(error)))
        except MemoryError:
            self.reply(protocol.error_message(
                "out_of_memory", "Not enough memory for this request; try a smaller image."))
        except Exception as error:  # noqa: BLE001 - the helper must keep serving whatever went wrong
            traceback.print_exc(file=sys.stderr)
            self.reply(protocol.error_message("internal", "%s: %s" % (type(error).__name__, error)))

    def hello(self, header, payload):
        self.reply(self.hello_reply())

    def hello_reply(self):
        import onnxruntime

        return {"op": "hello", "protocol": protocol.PROTOCOL_VERSION, "helper": version(),
                "python": platform.python_version(), "onnxruntime": onnxruntime.__version__,
                "providers": onnxruntime.get_available_providers()}

    def models(self, header, payload):
        # Cheap on purpose (GIMP asks while building its dialog): the registry only.
        import model_fetch

        entries = [{"name": model.name, "title": model.title, "description": model.description,
                    "license": model.license, "commercial_use": model.commercial_use,
                    "size": model.size, "installed": model_fetch.is_installed(model.name)}
                   for model in model_fetch.models()]
        try:
            default = model_fetch.default_model()
        except model_fetch.FetchError:
            default = None
        self.reply({"op": "models", "default": default, "models": entries})

    def load(self, header, payload):
        name = header.get("model")
        if not isinstance(name, str) or not name:
            raise RequestError("bad_request", "'model' must be a model name")
        from .parallel import max_threads

        threads = require_int(header, "threads", 0, max_threads(), default=0)
        file = header.get("file")
        if file is not None and not isinstance(file, str):
            raise RequestError("bad_request", "'file' must be a path")
        spec = header.get("preprocess")
        # The preprocessing is part of what was loaded: the same file fed otherwise is another engine.
        key = (name, threads, file, json.dumps(spec, sort_keys=True))
        if self.engine is not None and self.engine_key == key:
            self.reply(self.loaded_reply(0.0))
            return
        self.engine = self.engine_key = None
        self.engine = self.open_engine(name, threads, file, spec)
        self.engine_key = key
        self.reply(self.loaded_reply(self.engine.seconds))

    def open_engine(self, name, threads, file, spec):
        import model_fetch

        from . import engine

        try:
            if spec is None:
                return engine.load(name, threads=threads, file=file)
            if file is None:
                raise RequestError("bad_request", "'preprocess' needs a 'file'")
            if not isinstance(spec, dict):
                raise RequestError("bad_request", "'preprocess' must be an object")
            return engine.Engine(file, spec, threads=threads, name=name)
        except engine.ModelLoadError as error:
            raise RequestError("model_invalid", str(error)) from None
        except model_fetch.UnknownModel as error:
            raise RequestError("unknown_model", str(error)) from None
        except model_fetch.ModelNotInstalled as error:
            raise RequestError("model_missing", str(error)) from None

    def loaded_reply(self, seconds):
        return {"op": "loaded", "model": self.engine.name, "provider": self.engine.provider,
                "threads": self.engine.threads, "seconds": round(seconds, 3)}

    def process(self, header, payload):
        width, height, channels, depth = image_fields(header)
        refine = require_bool(header, "refine", True)
        expected = width * height * channels
        if len(payload) != expected:
            raise RequestError("bad_size", "%dx%d pixels with %d channels are %d bytes, not %d"
                               % (width, height, channels, expected, len(payload)))
        if self.engine is None:
            raise RequestError("no_model", "no model loaded: send a load request first")
        import numpy as np

        photo = payload.receiving(lambda: self.engine.photo(width, height, channels, refine))
        # What the mask needs of the photo alone is made as its rows come in (GIMP's side sends
        # them strip by strip, as it reads them).
        payload.into(photo.pixels, photo.bytes_arrived)
        # (Nothing is sent while the photo arrives: the client reads only once it has sent it all.)
        run_options = self.run_options()
        self.reply({"op": "progress", "stage": "received", "fraction": 1.0})
        mask = self.engine.mask(photo.pixels, depth, progress=self.progress_reporter(), refine=refine,
                                run_options=run_options, prepared=photo)
        del photo
        data = mask.astype("<u%d" % depth, copy=False).reshape(-1).view(np.uint8)
        self.reply({"op": "mask", "width": width, "height": height, "depth": depth,
                    "provider": self.engine.provider}, memoryview(data))

    def run_options(self):
        """The onnxruntime.RunOptions of one inference: none here (the warm helper's can be stopped)."""
        return None

    def refine(self, header, payload):
        """A given mask (one painted by hand) snapped to the photo's edges and/or the photo's
        colours decontaminated under it; needs no model."""
        width, height, channels, depth = image_fields(header)
        options = {key: require_bool(header, key, False) for key in ("snap", "decontaminate")}
        expected = width * height * (channels + depth)
        if len(payload) != expected:
            raise RequestError("bad_size", "%dx%d pixels with %d channels and a %d-byte mask are %d bytes, not %d"
                               % (width, height, channels, depth, expected, len(payload)))
        import numpy as np

        from . import decontaminate, snap

        workers = self.engine.threads if self.engine is not None else (os.cpu_count() or 1)
        payload = payload.whole()
        report = self.progress_reporter()
        report("received", 1.0)
        split = width * height * channels
        pixels = np.frombuffer(payload, np.uint8, split).reshape(height, width, channels)
        mask = np.frombuffer(payload, "<u%d" % depth, width * height, split).reshape(height, width)
        if options["snap"]:
            report("postprocess", 0.0)
            mask = snap.snap(pixels, mask, depth, workers=workers,
                             progress=lambda fraction: report("postprocess", fraction))
        parts = [mask.astype("<u%d" % depth, copy=False).reshape(-1).view(np.uint8)]
        if options["decontaminate"]:
            report("postprocess", 1.0)
            parts.append(decontaminate.decontaminate(pixels, mask, workers).reshape(-1))
        data = parts[0] if len(parts) == 1 else np.concatenate(parts)
        self.reply({"op": "refined", "width": width, "height": height, "depth": depth,
                    "channels": channels}, memoryview(data))

    def progress_reporter(self):
        last = {"stage": None, "time": 0.0}

        def report(stage, fraction):
            now = time.monotonic()
            if stage == last["stage"] and now - last["time"] < PROGRESS_INTERVAL and fraction < 1:
                return
            last["stage"], last["time"] = stage, now
            self.reply({"op": "progress", "stage": stage, "fraction": round(float(fraction), 3)})

        return report


def exit_with_parent(interval=PARENT_CHECK_INTERVAL):
    """Exits at once when the process that started the helper dies.

    GIMP kills the plug-in when the user cancels; stdin's end of file would only be seen
    after the current inference, seconds later.  (Where the system does not re-parent
    orphans, as on Windows, end of file on stdin remains the signal.)
    """
    parent = os.getppid()

    def watch():
        while os.getppid() == parent:
            time.sleep(interval)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def main():
    exit_with_parent()
    memory.keep_freed()        # for the next layer or image of the run
    # Keep the real stdout for replies; anything else written to fd 1 goes to stderr.
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr
    try:
        return Server(sys.stdin.buffer, replies).run()
    except (BrokenPipeError, ConnectionError):
        return 0  # GIMP went away while we were answering
    except KeyboardInterrupt:
        return 1


if __name__ == "__main__":
    sys.exit(main())
