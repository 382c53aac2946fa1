"""The one exception type for a user's mistake: the CLI prints its message on one line and exits non-zero."""


class PixelsegError(Exception):
    """A user-facing error: the message names the file or key at fault and the fix.

    When it is raised inside a DataLoader worker, torch re-raises it in the main process as
    ``PixelsegError(<worker traceback text>)``; we keep only our own message so the user still
    sees one line.
    """

    def __init__(self, message: str):
        marker = "PixelsegError: "
        if "Original Traceback" in message and marker in message:
            message = message.rsplit(marker, 1)[1].strip()
        super().__init__(message)


class PixelsegWarning(UserWarning):
    """Something the user should know that is not an error: e.g. an input far from the training scale."""
