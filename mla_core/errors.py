"""The one exception type for bad input from a user.

Anything that a user can get wrong (a bad flag value, a missing file, a checkpoint
with the wrong shapes) raises `UserError` with a one-line message that names the bad
value and says what is allowed. The command-line front ends turn it into that one
line on stderr and exit code 2; library callers can catch it like any exception.
"""


class UserError(ValueError):
    """Bad input from the user: the message is shown as is, the exit code is 2."""

    exit_code = 2


def check_layer_head(
    layer: int, head: int | None, n_layers: int, n_heads: int, prefix: str = "--"
) -> None:
    """UserError unless 0 <= layer < n_layers and (head is None or 0 <= head < n_heads).

    The one range check for a layer and head index, named as the user typed them:
    `prefix` "--" gives "--layer 7 is out of range; this model has layers 0..5".
    """
    if not 0 <= layer < n_layers:
        raise UserError(
            f"{prefix}layer {layer} is out of range; this model has layers 0..{n_layers - 1}"
        )
    if head is not None and not 0 <= head < n_heads:
        raise UserError(
            f"{prefix}head {head} is out of range; this model has heads 0..{n_heads - 1}"
        )


DEVICE_NAMES = ("cpu", "cuda")


def check_device_name(device: str | None) -> None:
    """UserError unless `device` is "cpu", "cuda", or empty/None (auto). Whether cuda is
    actually available is `mla_core.loading.weights.check_device`'s job (it needs torch)."""
    if device and device not in DEVICE_NAMES:
        raise UserError(
            f"device {device!r} is not allowed; use cpu or cuda (or none: cuda when available)"
        )
