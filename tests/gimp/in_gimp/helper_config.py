"""Inside GIMP: changes the installed plug-in's helper.json for a while, and puts it back.

The plug-in reads helper.json each time it runs, so a test can point it at a missing
interpreter, an empty model folder, or a wrapper that logs each helper start.
"""

import contextlib
import json
import os
import stat

from support import PARAMS

WRAPPER_GREETING = "helper wrapper: starting the helper"


def path():
    return os.path.join(PARAMS["plugin_dir"], "helper.json")


def installed():
    with open(path()) as handle:
        return json.load(handle)


@contextlib.contextmanager
def replaced(config):
    """helper.json holds ``config`` (None: there is none) inside the with block."""
    with open(path(), "rb") as handle:
        original = handle.read()
    try:
        if config is None:
            os.remove(path())
        else:
            with open(path(), "w") as handle:
                json.dump(config, handle)
        yield
    finally:
        with open(path(), "wb") as handle:
            handle.write(original)


class Starts:
    def __init__(self, log):
        self.log = log

    def count(self):
        if not os.path.exists(self.log):
            return 0
        with open(self.log) as handle:
            return len(handle.read().splitlines())


@contextlib.contextmanager
def logging_wrapper():
    """The helper runs through a shell script that logs each start (and says so on stderr)."""
    config = installed()
    wrapper = os.path.join(PARAMS["out"], "helper-wrapper.sh")
    log = os.path.join(PARAMS["out"], "helper-starts.log")
    with open(wrapper, "w") as handle:
        handle.write('#!/bin/sh\necho "$$ $*" >> "%s"\necho "%s" >&2\nexec "%s" "$@"\n'
                     % (log, WRAPPER_GREETING, config["python"]))
    os.chmod(wrapper, os.stat(wrapper).st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    with replaced(dict(config, python=wrapper)):
        yield Starts(log)
