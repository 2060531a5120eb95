"""Targets: built-in files validate; malformed files are rejected naming file and field."""

from __future__ import annotations

import pytest

from scbp_edge.errors import BackendUnavailable, TargetError
from scbp_edge.runtimes import get_runtime, resolve_target
from scbp_edge.targets import list_targets, load_target


def test_builtin_targets_validate():
    names = list_targets()
    for want in ("cpu", "raspberry-pi-5", "jetson-nano", "jetson-orin-nano", "desktop-gpu"):
        assert want in names
        t = resolve_target(want)
        assert t.name == want and t.round_to >= 1 and t.measure.rounds >= 1


def test_jetson_backend_says_unavailable_in_one_line():
    t = load_target("jetson-nano")
    with pytest.raises(BackendUnavailable, match="trtexec") as exc:
        get_runtime(t.backend)
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ('name = "x"\nbackend = "onnxruntime"\ncolour = "red"\n', "unknown field 'colour'"),
        ('name = "x"\nbackend = "onnxruntim"\n', "field 'backend' names unknown runtime 'onnxruntim'"),
        ('name = "x"\nbackend = "onnxruntime"\nthreads = "four"\n', "field 'threads' must be an integer"),
        ('name = "x"\nbackend = "onnxruntime"\nprecision = "fp8"\n', "field 'precisions'"),
        ('name = 123\nbackend = "onnxruntime"\n', "field 'name' must be a string"),
        ('name = "x"\nbackend = "onnxruntime"\nbatch_sizes = [true]\n', "field 'batch_sizes' must be a list of int"),
        ('name = "x"\nbackend = "onnxruntime"\n[measure]\ntimeout_s = nan\n', "'measure.timeout_s' must be a finite"),
        # what the runtime cannot do is refused before any work (issue 11.2)
        ('name = "x"\nbackend = "onnxruntime"\nprecision = "fp16"\n', "'precisions' asks for fp16, which runtime"),
        ('name = "x"\nbackend = "trtexec"\nlocation = "ssh"\nbatch_sizes = [1, 8]\n', "'batch_sizes' asks for 8"),
        ('name = "x"\nbackend = "onnxruntime"\nenergy = "nvml"\n', "'energy' asks for nvml"),
        ('name = "x"\nbackend = "onnxruntime"\n[measure]\nrounds = 0\n', "measure.rounds"),
        ('name = "x"\nbackend = "onnxruntime"\n[measure]\nspeed = 1\n', "unknown field 'measure.speed'"),
        ('backend = "onnxruntime"\n', "required field 'name'"),
        ('name = "x"\nbackend = [\n', "not valid TOML"),
        ('name = "x"\nbackend = "onnxruntime"\nbatch_sizes = []\n', "batch_sizes"),
        # run_args reach `docker run`: nothing that widens the container's privileges
        ('name = "x"\nbackend = "onnxruntime"\nrun_args = ["--privileged"]\n', "'--privileged' is not allowed"),
        ('name = "x"\nbackend = "onnxruntime"\nrun_args = ["-v", "/:/host"]\n', "named volume"),
        ('name = "x"\nbackend = "onnxruntime"\nrun_args = ["--volume=./x:/x"]\n', "named volume"),
        ('name = "x"\nbackend = "onnxruntime"\nrun_args = ["--gpus"]\n', "'--gpus' needs a value"),
        ('name = "x"\nbackend = "onnxruntime"\nrun_args = ["--gpus", "--privileged"]\n', "needs a value"),
        ('name = "x"\nbackend = "onnxruntime"\nrun_args = "--gpus all"\n', "must be a list of strings"),
    ],
)
def test_malformed_target_files(tmp_path, body, match):
    path = tmp_path / "bad.toml"
    path.write_text(body)
    with pytest.raises(TargetError, match=match) as exc:
        resolve_target(str(path))
    assert str(path) in str(exc.value)


def test_unknown_target_name_lists_builtins():
    with pytest.raises(TargetError, match="built-in: cpu, desktop-gpu"):
        load_target("toaster")
