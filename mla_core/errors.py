"""The one exception type for bad input from a user.

Anything that a user can get wrong (a bad flag value, a missing file, a checkpoint
with the wrong shapes) raises `UserError` with a one-line message that names the bad
value and says what is allowed. The command-line front ends turn it into that one
line on stderr and exit code 2; library callers can catch it like any exception.
"""


class UserError(ValueError):
    """Bad input from the user: the message is shown as is, the exit code is 2."""

    exit_code = 2
