"""One CNI call through skel, as a front door runs it: the one-shot process and the daemon's workers both come here.

One engine, two front doors: `run_call` is the only place either of them calls skel.
"""

from __future__ import annotations

import io

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import TextIO

    from multiplane.frontdoor import FrontDoor

__all__ = ["run_call"]


def _print_traceback(stderr: TextIO | None) -> None:
    """The current exception's traceback on stderr, if there is one (never on stdout)."""
    import traceback

    if stderr is None:
        return
    try:
        stderr.write(traceback.format_exc())
        stderr.flush()
    except (OSError, ValueError):
        pass


def run_call(
    personality: str, env: dict[str, str], stdin: bytes, stderr: TextIO | None, front: FrontDoor
) -> tuple[int, bytes]:
    """(exit status, stdout bytes) of one call of `personality` with this environment and stdin. Never raises.

    skel writes the answer (one JSON object, or nothing for DEL and friends); `stderr` gets
    what the call says on stderr; `front` is installed for the call (multiplane.frontdoor).
    """
    from multiplane import frontdoor, skel
    from multiplane.errors import CniError
    from multiplane.plugins import REGISTRY

    out = io.StringIO()
    try:
        with frontdoor.serving(front):
            status = skel.run(REGISTRY[personality], env, stdin, out, stderr, name=personality)
    except Exception:  # noqa: BLE001 - skel answers for everything; this is the net under it
        _print_traceback(stderr)
        out = io.StringIO(CniError("internal error: the plugin failed without an answer (see stderr)").to_json("1.1.0"))
        status = 1
    try:
        data = out.getvalue().encode()
    except UnicodeEncodeError:
        # skel only writes encodable text; should that ever break, the runtime still gets JSON.
        _print_traceback(stderr)
        data = CniError("internal error: the answer could not be encoded (see stderr)").to_json("1.1.0").encode()
        status = 1
    return status, data
