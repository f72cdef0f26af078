"""Errors a command raises to report user mistakes without a traceback.

``UsageError``   bad options or arguments: the session prints the message (if any), then the
                 command's usage line and where to find its help page, as crash does.
``CommandError`` anything else the user should read as one message (``cat: /proc/nope: No
                 such file or directory``, ``No symbol "foo" in current context.``).

Any other exception escaping a command is a bug in mmdbg: the session reports it in one line
(``set debug on`` shows the traceback) and the shell goes on.
"""

from __future__ import annotations


class ShellError(Exception):
    """Base of the errors commands raise on purpose."""


class UsageError(ShellError):
    """Bad arguments: print ``msg`` (optional) and the command's usage."""

    def __init__(self, msg: str = "") -> None:
        super().__init__(msg)
        self.msg = msg


class CommandError(ShellError):
    """A user-facing error message, printed as is (no prefix added).

    An empty message marks the command as failed without printing anything more (for
    commands that already reported their errors in order with ``ctx.error``).
    """

    def __init__(self, msg: str) -> None:
        super().__init__(msg)
        self.msg = msg
