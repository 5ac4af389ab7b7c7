"""The warm helper, from GIMP's side: where its socket is, reaching it safely, starting one.

After a run the helper (remove_background.helper.warm) stays alive for a while with its model
loaded, so that the next run skips the helper's start and the model's load.  It listens on a
Unix socket in a folder only this user can enter ($XDG_RUNTIME_DIR/remove-background, else
remove-background-UID in the temporary folder, mode 0700), and both ends check that the other
runs as the same user (SO_PEERCRED on Linux, LOCAL_PEERCRED on macOS).  No network listener.
Elsewhere (Windows, a Flatpak's host_spawn) the private helper of each run stays the only one.

One warm helper per helper command and environment (helper.json), and so at most one model in
memory for one installation.  Standard library only: GIMP's Python imports this module.
"""

import errno
import hashlib
import json
import os
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import time

from . import protocol

try:
    import fcntl
except ImportError:       # Windows: no warm helper there
    fcntl = None

WARM_MODULE = "remove_background.helper.warm"

DEFAULT_IDLE_SECONDS = 600
# Seconds a warm helper waits for the next run; 0 turns it off.  The variable wins over helper.json.
IDLE_VARIABLE = "REMOVE_BACKGROUND_WARM_IDLE"
IDLE_KEY = "warm_idle_seconds"

# To connect and have the helper's hello back: a helper that is stopped or stuck is given up
# on after this, and the run goes on with a private helper.
CONNECT_TIMEOUT = 2.0
# For a new warm helper's socket to appear (it binds it before importing anything heavy).
START_TIMEOUT = 30.0
START_POLL = 0.01

FOLDER_NAME = "remove-background"
# sun_path holds 104 bytes on macOS, 108 on Linux.
MAX_SOCKET_PATH = 100


class Unavailable(Exception):
    """No warm helper can be used here or now; the message says why (for stderr only)."""


def supported():
    return (sys.platform.startswith("linux") or sys.platform == "darwin") and fcntl is not None


def idle_timeout(config=None, environ=None):
    """Seconds a warm helper stays after a run; 0: none.  From $REMOVE_BACKGROUND_WARM_IDLE, else
    helper.json's "warm_idle_seconds", else 10 minutes.  An unreadable value counts as the default."""
    environ = os.environ if environ is None else environ
    for value in (environ.get(IDLE_VARIABLE), (config or {}).get(IDLE_KEY)):
        if value is None or value == "":
            continue
        try:
            return max(float(value), 0.0)
        except (TypeError, ValueError):
            log("ignoring %s=%r (not a number of seconds)" % (IDLE_VARIABLE, value))
            break
    return float(DEFAULT_IDLE_SECONDS)


def log(message):
    print("remove-background: " + message, file=sys.stderr, flush=True)


# -- the private folder and the socket's name ---------------------------------------------------

def folder(create=True, environ=None):
    """This user's folder for warm helpers' sockets; raises Unavailable unless it is private."""
    environ = os.environ if environ is None else environ
    runtime = environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isabs(runtime) and os.path.isdir(runtime):
        path = os.path.join(runtime, FOLDER_NAME)
    else:
        path = os.path.join(tempfile.gettempdir(), "%s-%d" % (FOLDER_NAME, os.geteuid()))
    if create:
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
        except OSError as error:
            raise Unavailable("cannot make %s: %s" % (path, error)) from None
    try:
        info = os.lstat(path)
    except OSError as error:
        raise Unavailable("no folder %s: %s" % (path, error)) from None
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
        # Someone else's, or a link (in a shared /tmp): never used.
        raise Unavailable("%s is not a folder of this user's" % path)
    if info.st_mode & 0o077:
        # Ours but opened to others (by hand?): closed again; the helpers check their peers anyway.
        try:
            os.chmod(path, 0o700)
        except OSError as error:
            raise Unavailable("%s is open to other users: %s" % (path, error)) from None
    return path


def key(command, env, version=None):
    """Names the warm helper of one helper command, environment and installed version (helper.json's)."""
    text = json.dumps([version, list(command), sorted((env or {}).items())])
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def socket_path(name, base=None):
    path = os.path.join(base or folder(), "h-%s.sock" % name)
    if len(path.encode()) > MAX_SOCKET_PATH:
        raise Unavailable("the socket path %s is too long for a Unix socket" % path)
    return path


def log_path(sock_path):
    return sock_path[:-len(".sock")] + ".log"


def lock_path(sock_path):
    return sock_path[:-len(".sock")] + ".lock"


# -- who is at the other end --------------------------------------------------------------------

def peer_credentials(sock):
    """(pid, uid) of the process at the other end of a connected Unix socket (pid None if unknown)."""
    if hasattr(socket, "SO_PEERCRED"):                        # Linux: struct ucred
        data = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        pid, uid, _gid = struct.unpack("3i", data)
        return pid, uid
    if sys.platform == "darwin":
        # SOL_LOCAL 0, LOCAL_PEERCRED 1: struct xucred {u_int cr_version; uid_t cr_uid; short
        # cr_ngroups; gid_t cr_groups[16];} (what getpeereid() reads); LOCAL_PEERPID 2.
        data = sock.getsockopt(0, 1, 76)
        version, uid = struct.unpack_from("=II", data)
        if version != 0:
            raise Unavailable("unknown xucred version %d" % version)
        try:
            pid = struct.unpack("i", sock.getsockopt(0, 2, 4))[0]
        except OSError:
            pid = None
        return pid, uid
    raise Unavailable("cannot tell who is at the other end of a socket on %s" % sys.platform)


def same_user(sock):
    """The peer's pid if it runs as this user; raises Unavailable otherwise."""
    pid, uid = peer_credentials(sock)
    if uid != os.geteuid():
        raise Unavailable("the process at the other end (pid %s) runs as uid %d, not %d"
                          % (pid, uid, os.geteuid()))
    return pid


# -- reaching one -------------------------------------------------------------------------------

class Connection:
    """A connection to a warm helper, with the streams the protocol is spoken on."""

    def __init__(self, sock):
        self.sock = sock
        self.hello = {}          # its answer to "hello", once connect() has it
        self.pid = None
        self.reader = sock.makefile("rb")
        self.writer = sock.makefile("wb")
        # Named as a process's pipes are, for client.HelperClient's exchange.
        self.stdout, self.stdin = self.reader, self.writer

    def kill(self):
        """What a client's watchdog does to a helper that takes too long."""
        self.hang_up()

    def close(self):
        for part in (self.reader, self.writer):
            try:
                part.close()
            except OSError:
                pass      # a writer whose peer is gone cannot flush
        self.sock.close()

    def hang_up(self):
        """Ends the connection from another thread too: the helper abandons what it is doing."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def connect(path, timeout=CONNECT_TIMEOUT):
    """A Connection to the warm helper at ``path`` after its hello, or Unavailable saying why.

    Refuses a helper of another user, and one that does not answer within ``timeout``.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    connection = Connection(sock)
    try:
        try:
            sock.connect(path)
            handshake(connection, path)
        except BaseException:
            connection.close()
            raise
    except FileNotFoundError:
        raise Unavailable("no warm helper is running") from None
    except ConnectionRefusedError:
        raise Unavailable("nothing listens on %s (a dead helper's socket)" % path) from None
    except socket.timeout:
        raise Unavailable("the warm helper did not answer within %g s" % timeout) from None
    except (OSError, protocol.ProtocolError) as error:
        raise Unavailable("cannot talk to the warm helper: %s" % error) from None
    sock.settimeout(None)
    return connection


def handshake(connection, path):
    """Checks the peer's user, then its hello: a warm helper of this protocol."""
    pid = same_user(connection.sock)
    protocol.write_message(connection.writer, {"op": "hello"})
    hello, _ = protocol.read_message(connection.reader)
    if hello.get("op") == "error":
        raise Unavailable("the warm helper (pid %s) says: %s" % (pid, hello.get("message")))
    if hello.get("op") != "hello" or not isinstance(hello.get("warm"), dict):
        raise Unavailable("%s is not a warm helper's socket" % path)
    if hello.get("protocol") != protocol.PROTOCOL_VERSION:
        # (Its version is for HelperClient.check_versions(), as a private helper's is.)
        raise Unavailable("the warm helper (pid %s) speaks protocol %s" % (pid, hello.get("protocol")))
    connection.hello = hello
    connection.pid = hello["warm"].get("pid", pid)


def is_locked(sock_path):
    """Whether a warm helper holds the lock of this socket (it does for as long as it lives)."""
    try:
        handle = open(lock_path(sock_path), "a")
    except OSError:
        return False
    try:
        fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as error:
        return error.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK)
    finally:
        handle.close()        # closing drops a lock it got
    return False


def start(command, env, sock_path, idle, gimp_pid):
    """Starts a warm helper in a session of its own and returns the Connection to it.

    ``command``: the helper's Python and its arguments up to the module (helper.json's python);
    ``env``: its whole environment.  Raises Unavailable when it does not come up.
    """
    argv = list(command) + ["-m", WARM_MODULE, "--socket", sock_path, "--idle", "%g" % idle,
                            "--gimp-pid", str(gimp_pid)]
    try:
        # Appended to: a helper that loses the race for the socket must not empty the winner's
        # log (the winner empties it once it has the socket's lock).
        with open(log_path(sock_path), "ab") as stderr:
            os.chmod(log_path(sock_path), 0o600)
            process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                       stderr=stderr, env=env, cwd="/", start_new_session=True)
    except OSError as error:
        raise Unavailable("cannot start a warm helper: %s" % error) from None
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            # Its first hello imports onnxruntime: the time left, not CONNECT_TIMEOUT.
            return connect(sock_path, timeout=max(deadline - time.monotonic(), CONNECT_TIMEOUT))
        except Unavailable as why:
            code = process.poll()
            if code is not None:
                # Another run's warm helper may have won the race for the socket: try it once.
                try:
                    return connect(sock_path)
                except Unavailable:
                    raise Unavailable("the warm helper exited at its start (status %s): %s%s"
                                      % (code, why, log_tail(sock_path))) from None
            if time.monotonic() > deadline:
                process.kill()
                raise Unavailable("the warm helper did not come up within %g s" % START_TIMEOUT) from None
        time.sleep(START_POLL)


def log_tail(sock_path, lines=10):
    try:
        with open(log_path(sock_path), "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(handle.tell() - 8192, 0))
            text = handle.read().decode("utf-8", "replace")
    except OSError:
        return ""
    tail = text.strip().splitlines()[-lines:]
    return ("\n" + "\n".join(tail)) if tail else ""


# -- every warm helper of this user (install.py) --------------------------------------------------

def running(base=None):
    """[(socket path, hello reply)] of every warm helper of this user that answers now."""
    try:
        base = base or folder(create=False)
        names = sorted(os.listdir(base))
    except (Unavailable, OSError):
        return []
    found = []
    for name in names:
        if not name.endswith(".sock"):
            continue
        path = os.path.join(base, name)
        try:
            connection = connect(path)
        except Unavailable:
            continue
        found.append((path, connection.hello))
        connection.close()
    return found


def stop(path, timeout=10.0):
    """Asks the warm helper at ``path`` to exit; True once it has (its socket is gone)."""
    try:
        connection = connect(path)
    except Unavailable:
        return not os.path.exists(path)
    try:
        protocol.write_message(connection.writer, {"op": "quit"})
        protocol.read_message(connection.reader)
    except (OSError, protocol.ProtocolError):
        pass
    finally:
        connection.close()
    deadline = time.monotonic() + timeout
    while is_locked(path) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not is_locked(path)


def stop_all(base=None, executable=None):
    """Stops every warm helper of this user (only those running ``executable`` when given);
    returns [(pid, model)] of those stopped."""
    stopped = []
    for path, hello in running(base):
        status = hello["warm"]
        if executable is not None and status.get("executable") != executable:
            continue
        if stop(path):
            stopped.append((status.get("pid"), status.get("model")))
    return stopped
