"""Errors that vosbench reports to the user as one clear line (no traceback)."""


class InputError(Exception):
    """Bad input data: a missing, unreadable or inconsistent file or folder.

    The message names the file (or sequence and file) and what was expected.
    """
