"""python -m model_fetch list | fetch [NAME...] | verify [NAME...] | path NAME | import NAME FILE | remove NAME"""

from __future__ import annotations

import argparse
import sys
import time
import urllib.parse

from .settings import Settings
from .errors import FetchError
from .registry import Registry
from .store import Store


def _mb(n):
    return "%.1f MB" % (n / 1e6)


def _duration(seconds):
    seconds = int(seconds + 0.5)
    return "%d:%02d:%02d" % (seconds // 3600, seconds // 60 % 60, seconds % 60) if seconds >= 3600 \
        else "%d:%02d" % (seconds // 60, seconds % 60)


class ConsoleProgress:
    """progress(step, done, total) for a console: a bar with bytes, rate and time left on a terminal,
    otherwise one line per step (logs and CI stay readable)."""

    def __init__(self, stream=None, tty=None, width=24):
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.width = width
        self.step = None
        self.drawn = False

    def __call__(self, step, done, total):
        now = time.monotonic()
        if step != self.step:
            self.end_line()
            self.step, self.started, self.done_at_start, self.last_draw = step, now, done, 0.0
            if not self.tty:
                self.stream.write("%s%s\n" % (step, " (%s)" % _mb(total) if total else ""))
                self.stream.flush()
        if self.tty and (now - self.last_draw >= 0.1 or (total and done >= total)):
            self.last_draw = now
            self._draw(done, total, now)

    def _draw(self, done, total, now):
        elapsed = now - self.started
        rate = (done - self.done_at_start) / elapsed if elapsed > 0.2 and done is not None else 0.0
        parts = [self.step[:40] if done is not None else self.step]
        if done is None:                # a step without bytes to count (deriving a model)
            pass
        elif total:
            filled = int(self.width * min(done, total) / total)
            parts.append("[%s%s] %3d%%" % ("#" * filled, "-" * (self.width - filled), 100 * done // total))
            parts.append("%s/%s" % (_mb(done), _mb(total)))
        else:
            parts.append(_mb(done))
        if rate and done is not None:
            parts.append("%s/s" % _mb(rate))
            if total and done < total:
                parts.append("ETA " + _duration((total - done) / rate))
        self.stream.write("\r" + "  ".join(parts) + "\x1b[K")
        self.stream.flush()
        self.drawn = True

    def end_line(self):
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()
            self.drawn = False


def _parser():
    parser = argparse.ArgumentParser(prog="python -m model_fetch",
                                     description="Fetch, check and manage the background-removal models.")
    parser.add_argument("--registry", help="registry JSON file (default: the packaged registry.json)")
    parser.add_argument("--cache-dir", help="model folder (default: $REMOVE_BACKGROUND_MODELS or the platform cache)")
    parser.add_argument("--timeout", type=float, default=30.0, help="network timeout in seconds (default 30)")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="models, sizes, licences, which are installed and the default")
    fetch = commands.add_parser("fetch", help="download and verify models (default: the default model)")
    fetch.add_argument("names", nargs="*", metavar="NAME")
    fetch.add_argument("--accept-license", action="store_true",
                       help="accept a non-commercial licence (needed for bria-rmbg)")
    verify = commands.add_parser("verify", help="rehash installed models (default: all); a bad file is deleted")
    verify.add_argument("names", nargs="*", metavar="NAME")
    path = commands.add_parser("path", help="print an installed model's file path")
    path.add_argument("name", metavar="NAME")
    imp = commands.add_parser("import", help="install a model file (or its npm tarball) obtained elsewhere")
    imp.add_argument("name", metavar="NAME")
    imp.add_argument("file", metavar="FILE")
    remove = commands.add_parser("remove", help="delete a model and any partial download")
    remove.add_argument("name", metavar="NAME")
    return parser


def main(argv=None):
    args = _parser().parse_args(argv)
    progress = ConsoleProgress()
    try:
        registry = Registry.load(args.registry) if args.registry else None
        store = Store(registry, args.cache_dir, settings=Settings(timeout=args.timeout))
        return _COMMANDS[args.command](store, args, progress)
    except FetchError as exc:
        progress.end_line()
        print("error: %s" % exc, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        progress.end_line()
        print("interrupted; a partial download is kept and resumes next time", file=sys.stderr)
        return 130


def _list(store, args, progress):
    try:
        default = store.default_model()
    except FetchError:
        default = None
    rows = [("", "NAME", "SIZE", "LICENCE", "FROM", "INSTALLED")]
    derived = []
    for model in store.models():
        installed = store.is_installed(model.name)
        size = model.size or (store.path_for(model.name).stat().st_size if installed else None)
        shown = _mb(size) if size else ("~" + _mb(model.approx_size)) if model.approx_size else "?"
        licence = model.license + ("" if model.commercial_use else " (non-commercial; --accept-license)")
        state = "yes" if installed else "-"
        if model.derived_from:
            derived.append(model)
            origins = "derived from %s" % model.derived_from
            if not installed and store.path_for(model.name).exists():
                from . import derive
                # Made from another isnet, onnxruntime or CPU; or this Python has no onnxruntime to compare.
                state = "stale (fetch it again)" if derive.onnxruntime_version() else \
                    "? (ask the helper's Python: it has onnxruntime)"
        else:
            origins = ", ".join(_origin(source) for source in model.sources if store.can_use(source)) or "-"
        rows.append(("*" if model.name == default else "", model.name, shown, licence, origins, state))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[5])
    print("\n* default model; ~ a size as its publisher gives it, not checked here; FROM: the sources this "
          "computer can try; models live in %s" % store.cache_dir)
    if derived:
        from . import derive
        print("derived models (%s) are made on this machine from another (%s) when fetched, in minutes;\n"
              "for int8 models: %s" % (", ".join(m.name for m in derived),
                                       ", ".join(sorted({m.derived_from for m in derived})), derive.cpu_int8()[1]))
    return 0


def _origin(source):
    if source["type"] == "https":
        return urllib.parse.urlsplit(source["urls"][0]).hostname or "https"
    return {"npm": "npm", "pypi": "PyPI"}[source["type"]]


def _fetch(store, args, progress):
    names = args.names or [store.default_model()]
    failed = 0
    for name in names:
        try:
            path = store.fetch(name, progress, accept_license=args.accept_license)
        except FetchError as exc:
            progress.end_line()
            print("error: %s" % exc, file=sys.stderr)
            failed += 1
            continue
        progress.end_line()
        print("%s: %s" % (name, path))
    return 1 if failed else 0


def _verify(store, args, progress):
    names = args.names or [m.name for m in store.models() if store.path_for(m.name).exists()]
    if not names:
        print("no model is installed in %s" % store.cache_dir)
        return 0
    failed = 0
    for name in names:
        if not store.path_for(name).exists():
            print("%s: not installed" % name)
            failed += 1
        elif store.verify(name, progress):
            derived = store.verify_derived(name, progress)
            progress.end_line()
            bad = [file for file, ok in derived if not ok]
            print("%s: ok%s" % (name, " (and %d derived file(s))" % len(derived) if derived and not bad else ""))
            for file in bad:
                print("%s: the derived file %s FAILED verification and was deleted (it is made again when needed)"
                      % (name, file))
            failed += bool(bad)
        else:
            progress.end_line()
            kept = store.path_for(name).exists()        # a read-only cache keeps it (nothing will load it)
            print("%s: FAILED verification; the file %s (fetch it again: python -m model_fetch fetch %s)"
                  % (name, "could not be deleted" if kept else "was deleted", name))
            failed += 1
    return 1 if failed else 0


def _path(store, args, progress):
    print(store.installed_path(args.name))
    return 0


def _import(store, args, progress):
    path = store.import_file(args.name, args.file, progress)
    progress.end_line()
    print("%s: %s" % (args.name, path))
    return 0


def _remove(store, args, progress):
    if store.remove(args.name):
        print("%s: removed" % args.name)
    else:
        print("%s: was not installed" % args.name)
    return 0


_COMMANDS = {"list": _list, "fetch": _fetch, "verify": _verify, "path": _path, "import": _import, "remove": _remove}
