"""The one exception type for bad input that the user can fix.

Everything the user gives traintop (files, options, checkpoints, recordings)
is checked where it is read; a problem raises InputError with a one-line
message naming the file, line or option. The command line prints that line
and exits non-zero; anything else is a bug and may show a traceback.
"""


class InputError(Exception):
    """Bad input, explained in one line fit for stderr."""
