"""Every error model_fetch raises; all are FetchError, so callers can catch one class."""

import sys


class FetchError(Exception):
    """Base class of every model_fetch error."""


class RegistryError(FetchError):
    """The registry file is missing a field or has an unsafe value."""


class UnknownModel(FetchError):
    def __init__(self, name, known):
        super().__init__("unknown model %r; known models: %s" % (name, ", ".join(known)))
        self.name = name


class ModelNotInstalled(FetchError):
    def __init__(self, name):
        super().__init__(
            "model %r is not installed (or its file failed verification). "
            "Fetch it with:\n  %s -m model_fetch fetch %s" % (name, sys.executable, name))
        self.name = name


class ModelDamaged(ModelNotInstalled):
    """The installed file no longer matches its pin: it has been deleted, never loaded."""

    def __init__(self, name, file):
        FetchError.__init__(
            self, "model %r: %s has changed since it was verified and no longer matches its pin, so it was "
            "deleted and will not be used. Fetch it again with:\n  %s -m model_fetch fetch %s"
            % (name, file, sys.executable, name))
        self.name = name


class LicenseNotAccepted(FetchError):
    pass


class IntegrityError(FetchError):
    """Downloaded or imported data does not match its pin; the data has been deleted."""

    def __init__(self, what, algorithm, expected, actual):
        super().__init__("%s failed verification: expected %s %s, got %s" % (what, algorithm, expected, actual))
        self.algorithm = algorithm
        self.expected = expected
        self.actual = actual


class DownloadError(FetchError):
    """A download failed; ``urls`` lists every address tried."""

    def __init__(self, message, urls=(), tried=()):
        super().__init__(message)
        self.urls = list(urls)
        self.tried = list(tried)  # "URL: what went wrong", one per address


class NoNetwork(DownloadError):
    """No source could even be connected to (DNS failure, connection refused, no route)."""


class DiskFull(FetchError):
    """Writing failed for lack of space; what was written stays in the .part file for a later resume."""


class UnsafeArchive(FetchError):
    """An archive (npm tarball, wheel) holds an entry that could escape its folder (absolute path, .., link, device)."""


class NpmRegistryNotFound(FetchError):
    pass


class PipIndexNotFound(FetchError):
    pass
