"""The warm helper: ``python -m remove_background.helper.warm --socket PATH --idle S --gimp-pid P``.

Serves serve.py's protocol on a Unix socket (wire/warm.py starts it and says where), one
connection at a time, and keeps the model loaded between connections, so that GIMP's next
run neither starts a Python nor loads the model.  It exits by itself when:
  - no run has come for ``--idle`` seconds;
  - the GIMP process ``--gimp-pid`` has exited;
  - the file of its loaded model has changed or gone (once no run is using it);
  - it is asked to ({"op": "quit"}, what install.py --uninstall sends), or its Python is gone.
Connections from processes of another user are refused; a connection made while another is
served gets a "busy" error (that run uses a private helper).  When a client goes away in the
middle of a request (GIMP's Cancel kills the plug-in), the request is abandoned at once,
inference included (onnxruntime's RunOptions.terminate), and the helper stays.
"""

import argparse
import fcntl
import os
import selectors
import socket
import sys
import threading
import time

from ..wire import protocol, warm
from . import memory, serve

# How often the exit conditions are checked (and how soon after GIMP has gone the helper is).
WATCH_INTERVAL = 0.5
# How often a request in progress checks that its client is still there (seconds).
HANGUP_POLL = 0.1
# How long a new connection waits for the one before it to finish before it is told "busy".
BUSY_GRACE = 1.0
# Idle seconds after which the memory kept for the next image (memory.py) goes back to the system.
GIVE_BACK_AFTER = 30.0


class Abandoned(BaseException):
    """The client of the request in progress has gone.  Not an Exception: serve.Server's
    handlers answer those, and nobody is left to answer."""


def log(message):
    print("remove-background warm helper %d: %s" % (os.getpid(), message), file=sys.stderr, flush=True)


def process_start_time(pid):
    """A token that changes when ``pid`` is reused by another process (Linux); None elsewhere."""
    try:
        with open("/proc/%d/stat" % pid) as handle:
            return handle.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def alive(pid, started=None):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False          # the number now belongs to another user's process
    return started is None or process_start_time(pid) == started


def file_signature(path):
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_ino, info.st_size, info.st_mtime_ns


class HangupWatch:
    """Tells, during one request, whether the client has hung up, and then stops the run of
    ``options`` (the request's onnxruntime.RunOptions, once it has them)."""

    def __init__(self, sock):
        self.sock = sock
        self.options = None
        self.hung_up = False
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.watch, name="hangup-watch", daemon=True)
        self.thread.start()

    def watch(self):
        with selectors.DefaultSelector() as selector:
            selector.register(self.sock, selectors.EVENT_READ)
            while not self.done.is_set():
                if selector.select(HANGUP_POLL):
                    break
            else:
                return
        # Readable: either the end (it hung up), or bytes sent before its answer has come,
        # which no client of ours does; the next read will tell.  Nothing more to watch.
        try:
            gone = self.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            gone = False
        except OSError:
            gone = True
        if gone:
            self.hung_up = True
            if self.options is not None:
                self.options.terminate = True

    def stop(self):
        self.done.set()


class WarmServer(serve.Server):
    """serve.Server over one connection after another; the engine stays between them."""

    def __init__(self, idle, gimp_pid):
        super().__init__(None, None)
        self.idle = idle
        self.gimp_pid = gimp_pid
        self.sock = None
        self.watch = None
        self.quit = False
        self.worked = False
        self.last_run_ended = time.monotonic()
        self.model_signature = None

    def serve_connection(self, sock):
        """Serves one client until it hangs up; never raises for anything the client did."""
        self.sock = sock
        self.stdin = sock.makefile("rb")
        self.stdout = sock.makefile("wb")
        self.worked = False
        try:
            self.run()
        except Abandoned:
            log("the client went away in the middle of a request: abandoned it")
        except (OSError, ValueError) as error:   # broken pipe, reset, a write after close
            log("the client went away: %s" % error)
        finally:
            for stream in (self.stdin, self.stdout):
                try:
                    stream.close()
                except (OSError, ValueError):
                    pass
            sock.close()
            self.sock = self.stdin = self.stdout = None
            if self.worked:
                self.last_run_ended = time.monotonic()

    # -- the requests, as serve.Server has them, plus what a warm helper adds -----------------

    def handle(self, header, payload):
        if header.get("op") == "quit":
            self.quit = True
            self.reply({"op": "quit"})
            return
        if header.get("op") in ("models", "load", "process", "refine"):
            self.worked = True
        super().handle(header, payload)

    def hello_reply(self):
        return dict(super().hello_reply(), warm=self.status())

    def status(self):
        engine = self.engine
        return {"pid": os.getpid(), "model": engine.name if engine is not None else None,
                "threads": engine.threads if engine is not None else None,
                "idle_seconds": round(time.monotonic() - self.last_run_ended, 1),
                "idle_timeout": self.idle, "gimp_pid": self.gimp_pid, "executable": sys.executable}

    def load(self, header, payload):
        if self.model_changed():
            # Changed since it was loaded (and the helper has not gone yet): load it again.
            self.engine = self.engine_key = None
        loaded = self.engine
        super().load(header, payload)
        if self.engine is not loaded:
            self.model_signature = file_signature(self.engine.path)

    def process(self, header, payload):
        try:
            super().process(header, payload)
        except OSError:
            # Reading the photo or writing a reply: the socket is the only thing a run reads or
            # writes, so the client has gone.
            raise Abandoned() from None
        except Exception:
            if self.watch is not None and self.watch.hung_up:
                raise Abandoned() from None
            raise
        finally:
            if self.watch is not None:
                self.watch.stop()
                self.watch = None

    def run_options(self):
        """The run's RunOptions, which a hang-up stops; watched from here on (the photo has
        arrived: until then the socket is readable with its bytes, and its end ends the read)."""
        import onnxruntime

        options = onnxruntime.RunOptions()
        self.watch = HangupWatch(self.sock)
        self.watch.options = options
        if self.watch.hung_up:
            options.terminate = True
        return options

    def progress_reporter(self):
        report = super().progress_reporter()

        def checked(stage, fraction):
            if self.watch is not None and self.watch.hung_up:
                raise Abandoned()
            report(stage, fraction)

        return checked

    def model_changed(self):
        """Whether the loaded model's file is not the one loaded any more."""
        return self.engine is not None and file_signature(self.engine.path) != self.model_signature


class Listener:
    """The socket, the accepting loop and the reasons to exit."""

    def __init__(self, path, idle, gimp_pid):
        self.path = path
        self.server = WarmServer(idle, gimp_pid)
        self.gimp_started = process_start_time(gimp_pid)
        self.busy = threading.Lock()
        self.lock = None
        self.sock = None
        self.inode = None
        self.given_back_for = None      # the end of the last run whose memory was given back

    def bind(self):
        """Takes the socket's lock (held for life) and binds; False if another helper has it."""
        self.lock = open(warm.lock_path(self.path), "a")
        try:
            fcntl.flock(self.lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False
        # With the lock, whatever is at the path was left by a helper that is gone, and the
        # log (stderr, opened for appending) is this helper's from now on.
        try:
            os.ftruncate(sys.stderr.fileno(), 0)
        except OSError:
            pass        # not a file
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_mask = os.umask(0o177)
        try:
            self.sock.bind(self.path)
        finally:
            os.umask(old_mask)
        self.inode = os.stat(self.path).st_ino
        self.sock.listen(8)
        self.sock.settimeout(WATCH_INTERVAL)
        return True

    def serve_forever(self):
        while True:
            try:
                client, _ = self.sock.accept()
            except socket.timeout:
                client = None
            if client is not None:
                self.admit(client)
            reason = self.reason_to_exit()
            if reason:
                log(reason)
                return
            self.give_back_when_idle()

    def give_back_when_idle(self):
        ended = self.server.last_run_ended
        if ended == self.given_back_for or time.monotonic() - ended < GIVE_BACK_AFTER:
            return
        if self.busy.acquire(blocking=False):
            try:
                memory.give_back()
                self.given_back_for = ended
            finally:
                self.busy.release()

    def admit(self, client):
        client.settimeout(None)
        try:
            pid = warm.same_user(client)
        except (warm.Unavailable, OSError) as why:
            log("refused a connection: %s" % why)
            client.close()
            return
        # A client that has just hung up may not be done with yet: a moment's grace.
        if not self.busy.acquire(timeout=BUSY_GRACE):
            try:
                client.settimeout(1.0)
                client.sendall(protocol.encode_header(protocol.error_message(
                    "busy", "the warm helper is serving another run")))
            except OSError:
                pass
            client.close()
            return
        threading.Thread(target=self.session, args=(client, pid), name="session", daemon=True).start()

    def session(self, client, pid):
        try:
            self.server.serve_connection(client)
        finally:
            self.busy.release()

    def reason_to_exit(self):
        """Why the helper should go now, or None."""
        server = self.server
        if not alive(server.gimp_pid, self.gimp_started):
            return "GIMP (pid %d) has exited" % server.gimp_pid
        if self.socket_taken():
            return "its socket %s is gone" % self.path
        if not os.path.exists(sys.executable):
            return "its Python %s is gone (uninstalled?)" % sys.executable
        if not self.busy.acquire(blocking=False):
            return None                 # a run is being served
        reason = None
        if server.quit:
            reason = "asked to quit"
        elif server.model_changed():
            reason = "the file of %s (%s) has changed or gone" % (server.engine.name, server.engine.path)
        elif server.idle and time.monotonic() - server.last_run_ended > server.idle:
            reason = "no run for %g s" % server.idle
        if reason is None:
            self.busy.release()
        # else kept: no run starts while the helper exits
        return reason

    def socket_taken(self):
        try:
            return os.stat(self.path).st_ino != self.inode
        except OSError:
            return True

    def close(self):
        if self.sock is not None:
            self.sock.close()
            if not self.socket_taken():
                os.unlink(self.path)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m " + warm.WARM_MODULE)
    parser.add_argument("--socket", required=True)
    parser.add_argument("--idle", type=float, default=warm.DEFAULT_IDLE_SECONDS)
    parser.add_argument("--gimp-pid", type=int, required=True)
    args = parser.parse_args(argv)
    # Replies go to the sockets only: anything a library prints lands in the log (stderr).
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr
    memory.keep_freed()
    listener = Listener(args.socket, args.idle, args.gimp_pid)
    if not listener.bind():
        log("another warm helper has %s" % args.socket)
        return 3
    log("listening on %s for GIMP pid %d, %g s idle" % (args.socket, args.gimp_pid, args.idle))
    try:
        listener.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        listener.close()
    # A session still running (GIMP has gone) is not waited for.
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
