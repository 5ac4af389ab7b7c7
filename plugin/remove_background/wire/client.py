"""GIMP's side of the pipe: starts the helper process and speaks the protocol to it.

Standard library only: this module runs inside GIMP's bundled Python (no numpy there).

    with HelperClient.from_config(plugin_dir) as helper:
        helper.load("isnet")
        mask = helper.process(width, height, 4, pixels, on_progress=show)

A whole run (one model, many layers) uses a HelperSession: it starts the helper on first use,
checks that it is the version install.py installed, and starts a new one after a death.
"""

import collections
import json
import os
import subprocess
import sys
import threading

from . import protocol, warm

# What the helper's Python runs (python -m): the serve loop.
SERVE_MODULE = "remove_background.helper.serve"

# Error kinds raised by the client itself, on top of the helper's protocol.ERROR_KINDS.
NOT_INSTALLED = "not_installed"   # no helper.json, or its python is missing
HELPER_DIED = "helper_died"       # the helper exited, or its pipes broke, mid-session
WRONG_VERSION = "wrong_version"   # the helper is not the one this plug-in was installed with
# Kinds after which every later request of a run would fail the same way.
LASTING_KINDS = (NOT_INSTALLED, WRONG_VERSION) + protocol.MODEL_UNUSABLE

# Variables GIMP's bundles (AppImage, Flatpak, the macOS .app, the Windows installer) set for
# their own libraries and Python.  Inherited by the helper's Python they would load GIMP's
# libraries or standard library instead of the venv's, and crash or import the wrong numpy.
BUNDLE_VARIABLES = (
    "PYTHONHOME", "PYTHONPATH", "PYTHONSTARTUP", "PYTHONEXECUTABLE", "PYTHONUSERBASE",
    "__PYVENV_LAUNCHER__",
    "LD_LIBRARY_PATH", "LD_PRELOAD",
    "DYLD_LIBRARY_PATH", "DYLD_FALLBACK_LIBRARY_PATH", "DYLD_FRAMEWORK_PATH",
    "DYLD_FALLBACK_FRAMEWORK_PATH", "DYLD_INSERT_LIBRARIES",
    "GI_TYPELIB_PATH", "GDK_PIXBUF_MODULE_FILE", "GDK_PIXBUF_MODULEDIR", "GIO_MODULE_DIR",
    "GIO_EXTRA_MODULES", "GTK_PATH", "GTK_EXE_PREFIX", "GTK_DATA_PREFIX", "GTK_IM_MODULE_FILE",
    "GSETTINGS_SCHEMA_DIR", "GCONV_PATH", "FONTCONFIG_FILE", "FONTCONFIG_PATH", "PANGO_RC_FILE",
    "BABL_PATH", "GEGL_PATH",
)

INSTALL_HINT = "Run `python3 install.py` from the plug-in's source folder to set up the helper."
REINSTALL_HINT = "Run `python3 install.py` again from the plug-in's source folder."
STDERR_TAIL_LINES = 20
CLOSE_TIMEOUT = 3.0
# GIMP asks for the models while it builds the procedure (also at start-up): never wait long.
MODELS_TIMEOUT = 20.0
PIPE_BYTES = 1 << 20


def made_in_sandbox(python):
    """Whether a Flatpak's own Python can run ``python``: only the app's own files (/app) and a
    venv made inside the sandbox (~/.var/app/...) qualify.  A host venv may be visible
    (GIMP's Flatpak sees the home folder) yet point at the host's /usr, which the sandbox
    replaces with its runtime: it has to run on the host."""
    path = os.path.abspath(python)
    sandbox_data = os.path.join(os.path.expanduser("~"), ".var", "app") + os.sep
    return os.path.exists(path) and (path.startswith("/app/") or path.startswith(sandbox_data))


class HelperError(Exception):
    """Something the helper could not do.

    ``kind`` is one of protocol.ERROR_KINDS (the helper answered with an error and is still
    usable) or NOT_INSTALLED / HELPER_DIED / WRONG_VERSION (it could not be started, it is
    gone, or it is not the installed one).  ``stderr_tail`` holds the helper's last lines of
    stderr when it died.  str() is the whole message for the user: what went wrong, what to do
    (a missing model's message names the exact fetch command), and the helper's last words.
    """

    def __init__(self, kind, message, stderr_tail=""):
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.stderr_tail = stderr_tail

    @property
    def lasting(self):
        """Whether every later request of the run would fail the same way (no use going on)."""
        return self.kind in LASTING_KINDS

    def __str__(self):
        if self.stderr_tail:
            return "%s\n\nThe helper's last messages:\n%s" % (self.message, self.stderr_tail)
        return self.message


def clean_environment(base=None):
    """``base`` (default: this process's environment) without GIMP's bundle variables."""
    env = dict(os.environ if base is None else base)
    for name in BUNDLE_VARIABLES:
        env.pop(name, None)
    return env


def in_flatpak():
    return os.path.exists("/.flatpak-info")


def widen_pipes(*streams):
    """Linux: 1 MiB pipes instead of 64 KiB, so images cross in fewer, larger writes."""
    if not sys.platform.startswith("linux"):
        return
    import fcntl

    for stream in streams:
        try:
            fcntl.fcntl(stream.fileno(), getattr(fcntl, "F_SETPIPE_SZ", 1031), PIPE_BYTES)
        except OSError:
            pass  # above /proc/sys/fs/pipe-max-size: the default size works too


class Watchdog:
    """Kills ``process`` if the with block has not ended after ``seconds`` (None: never)."""

    def __init__(self, seconds, process):
        self.timer = None
        if seconds is not None:
            self.timer = threading.Timer(seconds, process.kill)
            self.timer.daemon = True

    def __enter__(self):
        if self.timer is not None:
            self.timer.start()
        return self

    def __exit__(self, *exc_info):
        if self.timer is not None:
            self.timer.cancel()

    @property
    def fired(self):
        """Whether it killed the process (asked inside the with block)."""
        return self.timer is not None and self.timer.finished.is_set()


def stop(process):
    """Ends a process that did not exit by itself; returns its exit status."""
    # terminate() first: flatpak-spawn passes SIGTERM on to the host process, SIGKILL it cannot.
    process.terminate()
    try:
        return process.wait(timeout=1.0)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


class HelperClient:
    def __init__(self, command, env=None, host_spawn=None):
        """``command``: the argument list that starts ``remove_background.helper.serve``.

        ``env``: extra variables for the helper (on top of the cleaned environment).
        ``host_spawn``: run the command on the host through ``flatpak-spawn --host``;
        None decides by itself (inside a Flatpak, unless made_in_sandbox(command[0])).
        """
        self.command = list(command)
        self.extra_env = dict(env or {})
        if host_spawn is None:
            host_spawn = in_flatpak() and not made_in_sandbox(self.command[0])
        self.host_spawn = bool(host_spawn)
        self._process = None
        self._stopped = False
        self._stderr_lines = collections.deque(maxlen=200)
        self._stderr_thread = None
        # What helper.json says install.py installed (from_config), for check_versions.
        self.installed_version = None
        self.config = {}            # helper.json, when made by from_config

    @classmethod
    def from_config(cls, plugin_dir):
        """Reads ``<plugin_dir>/helper.json``, written by install.py.

        Keys: "python" (the helper venv's interpreter, required), "env" (extra environment
        variables, optional), "host_spawn" (true/false, optional; see __init__), "version"
        (the version install.py installed, optional; see check_versions).
        """
        path = os.path.join(plugin_dir, "helper.json")
        try:
            with open(path, "r", encoding="utf-8") as handle:
                config = json.load(handle)
        except FileNotFoundError:
            raise HelperError(NOT_INSTALLED, "The helper is not installed (%s is missing). %s"
                              % (path, INSTALL_HINT)) from None
        except (OSError, ValueError) as error:
            raise HelperError(NOT_INSTALLED, "Cannot read %s: %s. %s"
                              % (path, error, INSTALL_HINT)) from None
        python = config.get("python") if isinstance(config, dict) else None
        if not isinstance(python, str) or not python:
            raise HelperError(NOT_INSTALLED, "%s names no helper Python. %s" % (path, INSTALL_HINT))
        client = cls([python, "-m", SERVE_MODULE], env=config.get("env") or {},
                     host_spawn=config.get("host_spawn"))
        client.installed_version = config.get("version")
        client.config = config
        if not client.host_spawn and not os.path.exists(python):
            raise HelperError(NOT_INSTALLED, "The helper's Python %s does not exist. %s"
                              % (python, INSTALL_HINT))
        return client

    # -- process lifetime ------------------------------------------------------------------

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc_info):
        self.close()

    def start(self):
        if self._process is not None:
            return
        command = self.launch_command()
        env = clean_environment()
        env.update(self.extra_env)
        flags = getattr(subprocess, "CREATE_NO_WINDOW", 0) if sys.platform == "win32" else 0
        try:
            self._process = subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                env=env, creationflags=flags)
        except OSError as error:
            raise HelperError(NOT_INSTALLED, "Cannot start the helper (%s): %s. %s"
                              % (command[0], error, INSTALL_HINT)) from None
        widen_pipes(self._process.stdin, self._process.stdout)
        self._stopped = False
        self._stderr_lines.clear()
        self._stderr_thread = threading.Thread(
            target=self._drain_stderr, args=(self._process.stderr,), daemon=True)
        self._stderr_thread.start()

    def launch_command(self):
        """The argument list actually started (through flatpak-spawn when host_spawn)."""
        if not self.host_spawn:
            return list(self.command)
        # The host has its own environment: pass only what was asked for explicitly.
        # --watch-bus: the host process ends when this sandboxed one does.
        return (["flatpak-spawn", "--host", "--watch-bus"]
                + ["--env=%s=%s" % item for item in sorted(self.extra_env.items())]
                + self.command)

    def _drain_stderr(self, stream):
        # Keeps the helper from blocking on a full stderr pipe, and remembers the end of it.
        for line in iter(stream.readline, b""):
            self._stderr_lines.append(line.decode("utf-8", "replace").rstrip())

    @property
    def running(self):
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self):
        return self._process.pid if self._process is not None else None

    def stderr_tail(self, lines=STDERR_TAIL_LINES):
        return "\n".join(list(self._stderr_lines)[-lines:])

    def close(self):
        """Ends the helper: closes its stdin (it exits at EOF), kills it if it lingers."""
        process, self._process = self._process, None
        if process is None:
            return
        self._stopped = True
        try:
            process.stdin.close()
        except OSError:
            pass
        try:
            process.wait(timeout=CLOSE_TIMEOUT)
        except subprocess.TimeoutExpired:
            stop(process)
        if self._stderr_thread is not None:
            self._stderr_thread.join(timeout=1.0)
        for stream in (process.stdout, process.stderr):
            try:
                stream.close()
            except OSError:
                pass

    def cancel(self):
        """Stops the helper at once, whatever it is doing."""
        process = self._process
        if process is not None and process.poll() is None:
            process.kill()
        self.close()

    def _died(self, what):
        """The HelperError for a helper that is gone; reaps it and collects its last words."""
        process = self._process
        code = None
        if process is not None:
            try:
                code = process.wait(timeout=CLOSE_TIMEOUT)
            except subprocess.TimeoutExpired:
                code = stop(process)
            if self._stderr_thread is not None:
                self._stderr_thread.join(timeout=1.0)
        message = "The helper stopped unexpectedly (%s" % what
        if code is not None:
            message += ", exit status %s" % code
        message += ")."
        if code == -9:
            message += (" The system may have stopped it for lack of memory: select a smaller"
                        " area, or close other programs, and try again.")
        if self.host_spawn:
            message += (" It runs on the host through flatpak-spawn, which needs GIMP's Flatpak"
                        " to be allowed to talk to org.freedesktop.Flatpak.")
        tail = self.stderr_tail()
        self.close()
        return HelperError(HELPER_DIED, message, tail)

    # -- requests --------------------------------------------------------------------------

    def _request(self, header, payload=b"", on_progress=None, expect=None, timeout=None):
        """Sends one request and returns (reply header, payload) of its final reply.

        With ``timeout``, a helper that has not answered within that many seconds is stopped.
        """
        if self._process is None:
            if self._stopped:
                # No silent restart: the model it had loaded is gone with it.
                raise HelperError(HELPER_DIED, "The helper has stopped; start it again.")
            self.start()
        process = self._process
        with Watchdog(timeout, process) as watchdog:
            try:
                return self._exchange(process, header, payload, on_progress, expect)
            except HelperError as error:
                if watchdog.fired:
                    error.message = "The helper gave no answer within %g seconds and was stopped." % timeout
                    error.args = (error.message,)
                raise

    def _exchange(self, process, header, payload, on_progress, expect):
        try:
            protocol.write_message(process.stdin, header, payload)
        except (BrokenPipeError, ConnectionError, OSError, ValueError) as error:
            raise self._died("writing the request: %s" % error) from None
        except BaseException:
            # Reading the payload's pieces failed (GIMP's error, a cancel): half a request is
            # on its way, so the helper goes.
            self.cancel()
            raise
        while True:
            try:
                reply, data = protocol.read_message(process.stdout)
            except protocol.ConnectionClosed:
                raise self._died("no reply") from None
            except protocol.HeaderError as error:
                # Something other than a header reached our end: the stream is out of step.
                raise self._died("garbled reply: %s" % error) from None
            except (protocol.ProtocolError, OSError, ValueError) as error:
                raise self._died(str(error)) from None
            op = reply.get("op")
            if op == "progress":
                if on_progress is not None:
                    try:
                        on_progress(reply.get("stage"), reply.get("fraction"))
                    except BaseException:
                        # The caller gave up (a cancel): the reply still on its way would put
                        # the session out of step, so the helper goes.
                        self.cancel()
                        raise
                continue
            if op == "error":
                raise HelperError(str(reply.get("error", "internal")),
                                  str(reply.get("message", "the helper reported an error")))
            if expect is not None and op != expect:
                raise self._died("unexpected reply %r to %r" % (op, header.get("op")))
            return reply, data

    def hello(self):
        """The helper's versions: {"protocol", "helper", "python", "onnxruntime", "providers"}."""
        reply, _ = self._request({"op": "hello"}, expect="hello")
        return reply

    def check_versions(self):
        """Raises WRONG_VERSION unless the helper speaks this client's protocol and is the
        version helper.json names (the plug-in and the helper are installed together)."""
        hello = self.hello()
        problems = []
        if hello.get("protocol") != protocol.PROTOCOL_VERSION:
            problems.append("speaks protocol %s, the plug-in %s"
                            % (hello.get("protocol"), protocol.PROTOCOL_VERSION))
        if self.installed_version is not None and hello.get("helper") != self.installed_version:
            problems.append("is version %s, but helper.json names %s"
                            % (hello.get("helper"), self.installed_version))
        if problems:
            raise HelperError(WRONG_VERSION, "The helper %s. It does not belong to this plug-in. %s"
                              % (" and ".join(problems), REINSTALL_HINT))
        return hello

    def models(self):
        """{"default": NAME, "models": [{"name", "title", "installed", ...}, ...]}."""
        reply, _ = self._request({"op": "models"}, expect="models", timeout=MODELS_TIMEOUT)
        return reply

    def load(self, model, threads=0, file=None, preprocess=None):
        """Loads a model for the following process() calls; returns {"provider", "seconds", ...}.

        ``file`` runs that ONNX file instead of the registry's, with ``preprocess`` (default:
        the registry entry of ``model``) describing how to feed it.
        """
        header = {"op": "load", "model": model, "threads": int(threads)}
        if file is not None:
            header["file"] = str(file)
        if preprocess is not None:
            header["preprocess"] = preprocess
        reply, _ = self._request(header, expect="loaded")
        return reply

    def process(self, width, height, channels, pixels, mask_depth=1, on_progress=None, refine=True):
        """Sends 8-bit pixels (rows top to bottom; bytes-like or protocol.Pieces); returns the mask,
        width*height*mask_depth bytes.

        ``refine``: the mask's edges refined with the pixels as the guide (False: stretched).

        ``on_progress(stage, fraction)`` is called for each progress message; if it raises,
        the helper is stopped (cancel()) and the exception goes on to the caller.
        """
        header = {"op": "process", "width": int(width), "height": int(height),
                  "channels": int(channels), "mask_depth": int(mask_depth), "refine": bool(refine)}
        data = pixels if isinstance(pixels, protocol.Pieces) else memoryview(pixels)
        if isinstance(data, memoryview) and (data.ndim != 1 or data.itemsize != 1):
            data = data.cast("B")
        if len(data) != int(width) * int(height) * int(channels):
            raise HelperError("bad_size", "%dx%d pixels with %d channels are %d bytes, not %d."
                              % (width, height, channels, width * height * channels, len(data)))
        reply, mask = self._request(header, data, on_progress=on_progress, expect="mask")
        expected = int(width) * int(height) * int(mask_depth)
        if len(mask) != expected:
            raise HelperError("bad_size", "The helper sent a mask of %d bytes instead of %d."
                              % (len(mask), expected))
        return mask

    def refine(self, width, height, channels, pixels, mask, mask_depth=1, snap=False,
               decontaminate=False, on_progress=None):
        """Sends 8-bit pixels and a mask of the same size (one painted by hand); returns
        (the mask, snapped to the photo's edges if ``snap``, else as sent;
         the pixels with decontaminated colours if ``decontaminate``, else None)."""
        size = int(width) * int(height)
        pixels = pixels.joined() if isinstance(pixels, protocol.Pieces) else bytes(pixels)
        mask = bytes(mask)
        if len(pixels) != size * int(channels) or len(mask) != size * int(mask_depth):
            raise HelperError("bad_size", "%dx%d pixels with %d channels and a %d-byte mask do not match "
                              "%d and %d bytes" % (width, height, channels, mask_depth, len(pixels), len(mask)))
        header = {"op": "refine", "width": int(width), "height": int(height), "channels": int(channels),
                  "mask_depth": int(mask_depth), "snap": bool(snap), "decontaminate": bool(decontaminate)}
        _reply, data = self._request(header, pixels + mask, on_progress=on_progress, expect="refined")
        expected = size * int(mask_depth) + (size * int(channels) if decontaminate else 0)
        if len(data) != expected:
            raise HelperError("bad_size", "The helper sent %d bytes instead of %d." % (len(data), expected))
        cut = size * int(mask_depth)
        return data[:cut], (data[cut:] if decontaminate else None)


class HelperSession:
    """One helper with one model loaded, shared by a whole run (every layer of every image).

    Started on the first mask(), and its versions checked then; a helper that dies is
    reported (the HELPER_DIED error) and the next mask() starts a new one.  A helper that
    answered with an error stays: its model is still loaded.

    With ``warm`` (GIMP's runs), the warm helper (wire/warm.py) is the session's helper where
    it can be; when it cannot (none can run here, it is busy or stuck) or once it fails
    mid-run, a helper of the session's own does the work, as without it, and that is said on
    stderr only.
    """

    def __init__(self, plugin_dir, model, threads=0, file=None, preprocess=None, warm=False):
        """``plugin_dir`` holds helper.json; the rest is what HelperClient.load() takes
        (``model`` None: no model is loaded, for refine() only)."""
        self.plugin_dir = plugin_dir
        self.model = model
        self.threads = threads
        self.file, self.preprocess = file, preprocess
        self.use_warm = warm
        self.client = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def _started(self, on_progress):
        private = HelperClient.from_config(self.plugin_dir)
        shared = warm_client(private) if self.use_warm else None
        if shared is not None:
            try:
                return self._ready(shared, on_progress)
            except HelperError as error:
                if error.kind != HELPER_DIED:
                    raise
                self._without_warm(error)
        return self._ready(private, on_progress)

    def _ready(self, client, on_progress):
        """``client`` started, checked and with the session's model loaded."""
        if on_progress is not None and not (isinstance(client, WarmClient) and client.has_loaded(self.model)):
            on_progress("loading", 0.0)
        client.start()
        try:
            client.check_versions()
            if self.model is not None:
                client.load(self.model, self.threads, file=self.file, preprocess=self.preprocess)
        except BaseException:
            client.close()
            raise
        return client

    def _without_warm(self, error):
        warm.log("%s Going on with a helper of this run's own." % error.message)
        self.use_warm = False

    def _on_helper(self, request, on_progress):
        """request(client) on this session's helper, started first if need be; once more on a
        helper of the session's own when the warm helper goes mid-request."""
        if self.client is None:
            self.client = self._started(on_progress)
        try:
            return request(self.client)
        except HelperError as error:
            if error.kind != HELPER_DIED:
                raise
            failed, self.client = self.client, None
            if not isinstance(failed, WarmClient):
                raise
            # The warm helper went (killed, its GIMP quit): this image again, with our own.
            self._without_warm(error)
        except BaseException:
            # A cancel, or GIMP failing to give the pixels mid-request: the helper (or the
            # connection) was stopped, and the next request gets a new one.
            if not self.client.running:
                self.client = None
            raise
        return self._on_helper(request, on_progress)

    def mask(self, width, height, channels, pixels, mask_depth=1, on_progress=None, refine=True):
        """HelperClient.process() on this session's helper; ``on_progress`` also gets
        ("loading", 0.0) when a helper has to be started (or a model loaded) first."""
        return self._on_helper(lambda client: client.process(
            width, height, channels, pixels, mask_depth=mask_depth, on_progress=on_progress,
            refine=refine), on_progress)

    def refine(self, width, height, channels, pixels, mask, mask_depth=1, snap=False,
               decontaminate=False, on_progress=None):
        """HelperClient.refine() on this session's helper (no model needed: ``model`` may be None)."""
        return self._on_helper(lambda client: client.refine(
            width, height, channels, pixels, mask, mask_depth=mask_depth, snap=snap,
            decontaminate=decontaminate, on_progress=on_progress), on_progress)

    def close(self):
        client, self.client = self.client, None
        if client is not None:
            client.close()


class WarmClient(HelperClient):
    """The same requests, sent to a warm helper (wire/warm.py) over its socket.

    A helper that dies or stops answering raises HELPER_DIED as a private one does; the
    caller then goes on with a private helper.  cancel() hangs up: the warm helper abandons
    the request and stays.
    """

    def __init__(self, connection):
        super().__init__([], host_spawn=False)
        self.connection = connection
        self._process = connection

    def start(self):
        if self._process is None:
            raise HelperError(HELPER_DIED, "The connection to the warm helper is closed.")

    @property
    def running(self):
        return self._process is not None

    @property
    def pid(self):
        return self.connection.pid

    def stderr_tail(self, lines=STDERR_TAIL_LINES):
        return ""

    def has_loaded(self, model):
        """Whether the warm helper had ``model`` loaded when this connection was made."""
        return self.connection.hello["warm"].get("model") == model

    def close(self):
        if self._process is not None:
            self._process = None
            self._stopped = True
            self.connection.close()

    def cancel(self):
        if self._process is not None:
            self.connection.hang_up()
        self.close()

    def _died(self, what):
        self.close()
        return HelperError(HELPER_DIED, "The warm helper (pid %s) stopped answering (%s)."
                           % (self.connection.pid, what))


def warm_client(private, start=True):
    """A WarmClient for the helper ``private`` (HelperClient.from_config) would start: the warm
    helper running for it, else (``start``) a new one.  None, and why on stderr, when there is
    none to be had: warm helpers are off, impossible here (Windows, Flatpak), busy or stuck.
    """
    idle = warm.idle_timeout(private.config)
    if not idle or private.host_spawn or not warm.supported() or private.command[1:] != ["-m", SERVE_MODULE]:
        return None
    python = private.command[:1]
    try:
        path = warm.socket_path(warm.key(python, private.extra_env, private.installed_version))
        try:
            connection = warm.connect(path)
        except warm.Unavailable:
            if not start or warm.is_locked(path):    # one is running, but cannot serve us
                raise
            env = clean_environment()
            env.update(private.extra_env)
            # The plug-in's parent is GIMP: the warm helper goes when GIMP does.
            connection = warm.start(python, env, path, idle, os.getppid())
    except warm.Unavailable as why:
        if start:
            warm.log("no warm helper (%s): this run starts its own" % why)
        return None
    client = WarmClient(connection)
    client.installed_version = private.installed_version     # for check_versions()
    return client
