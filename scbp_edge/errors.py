"""One exception hierarchy for everything scbp-edge raises on purpose.

Every message says what was asked, what exists, and how to fix it; the CLI
prints ``str(err)`` as one line and exits non-zero, without a traceback.
"""

from __future__ import annotations


class ScbpError(Exception):
    """Base class of all scbp-edge errors that users can act upon."""

    exit_code = 2


class SeedError(ScbpError):
    """Unknown seed name or a seed that cannot be built."""


class WeightsError(ScbpError):
    """Unreadable, mismatched or unavailable checkpoint."""


class SegmentError(ScbpError):
    """Bad segmentation request (out of range, unknown mode)."""


class SpaceError(ScbpError):
    """Bad ratio set or an empty candidate set after constraints."""


class DeriveError(ScbpError):
    """A derived model could not be produced (unsupported layers, bad widths)."""


class ExportError(ScbpError):
    """ONNX export or its validation failed."""


class TargetError(ScbpError):
    """Unknown target, malformed target file, or unavailable backend."""


class BackendUnavailable(TargetError):
    """The runtime a target needs is not installed or has no device here."""


class ModelFileError(ScbpError):
    """A model file (ONNX or derived .pt) is unreadable or not what it claims."""


class CompileError(ScbpError):
    """A runtime could not compile a model (TensorRT engine build, unsupported shapes)."""


class ProfileError(ScbpError):
    """Measurement failed (worker crashed, timed out, lost connection)."""


class DataError(ScbpError):
    """Dataset missing, malformed, or not matching the seed."""


class RunError(ScbpError):
    """Run directory missing, corrupt, or not resumable."""


class BuildInterrupted(ScbpError):
    """Ctrl-C or SIGTERM: finished work is saved; the message says how to continue."""

    exit_code = 130

    def __init__(self, run_dir: object | None) -> None:
        where = f"; continue with: scbp-edge build --resume {run_dir}" if run_dir else " (no run folder was made yet)"
        super().__init__(f"interrupted: finished work is saved{where}")


class RecordError(ScbpError):
    """A stored or exchanged value does not fit its record (a field missing, unknown, or of the wrong type)."""
