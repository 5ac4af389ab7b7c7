"""Network knobs, apart from the network code itself (which only fetching imports)."""


class Settings:
    """Network knobs; tests shrink them so faults show up in seconds, not minutes."""

    def __init__(self, timeout=30.0, attempts=4, backoff=1.0):
        self.timeout = timeout
        self.attempts = attempts
        self.backoff = backoff
