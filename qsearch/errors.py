class QsearchError(Exception):
    """A user error: bad input, a missing or foreign file. The CLI prints it as one line and exits 2."""
