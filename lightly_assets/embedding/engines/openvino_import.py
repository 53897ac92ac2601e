"""OpenVINO and NNCF, imported with their usage telemetry off unless the user opted in.

`import openvino` sends an event to Google Analytics, and its converter several per conversion, each from a process
forked for it (a copy of a process of a few GB: ~17 forks per conversion), unless the user ran OpenVINO's
`opt_in_out --opt_out`: for a library that imports it, OpenVINO takes "never asked" as consent. Our users never
agreed to that. When `openvino_telemetry` cannot be imported, OpenVINO and NNCF use their own stand-ins, which send
nothing: it is made unimportable (`sys.modules[name] = None`, Python's own switch) while they are first imported,
unless the user's answer to `opt_in_out` is yes.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from types import ModuleType

TELEMETRY = "openvino_telemetry"


def import_openvino() -> ModuleType:
    """`import openvino`, its telemetry off (see the module's docstring)."""
    with _telemetry_off_while_imported("openvino"):
        import openvino  # optional heavy package: loaded only where a graph is converted, cached or run

    return openvino


def import_nncf() -> ModuleType:
    """`import nncf` (int8 only), its telemetry off like OpenVINO's."""
    import_openvino()
    with _telemetry_off_while_imported("nncf"):
        import nncf  # optional and slow to import: only for precision int8

    return nncf


def opted_in() -> bool:
    """Whether the user said yes to OpenVINO's telemetry (`opt_in_out --opt_in`); never asked is no."""
    try:
        from openvino_telemetry.utils.opt_in_checker import ConsentCheckResult, OptInChecker  # comes with OpenVINO
    except ImportError:
        return False
    return OptInChecker().check(enable_opt_in_dialog=False) == ConsentCheckResult.ACCEPTED


@contextlib.contextmanager
def _telemetry_off_while_imported(package: str) -> Iterator[None]:
    """Within: `import openvino_telemetry` fails, so `package`, imported for the first time, takes its stand-in."""
    if package in sys.modules or opted_in():
        yield
        return
    real = sys.modules.get(TELEMETRY)
    sys.modules[TELEMETRY] = None  # pyright: ignore[reportArgumentType]  # None: "this import fails", by design
    try:
        yield
    finally:
        if real is None:
            del sys.modules[TELEMETRY]
        else:
            sys.modules[TELEMETRY] = real
