import json
import subprocess
import sys

import pytest

from afsearch.cli import main


def test_show_reference_prints_all_fields(capsys):
    assert main(["show", "--ref", "swish"]) == 0
    out = capsys.readouterr().out
    for label in ("formula", "canonical", "latex", "fingerprint", "screen", "gain"):
        assert label in out


def test_show_json(capsys):
    assert main(["show", "--expr", "x - 1", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["screen"]["passed"] is False and "linear" in info["screen"]["reason"]


def test_export_writes_files(tmp_path, capsys):
    assert main(["export", "--ref", "gelu", "--format", "python,torchscript", "-o", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gelu.py", "gelu.torchscript.pt"]


@pytest.mark.parametrize(
    "argv",
    [
        ["show", "--expr", "__import__('os').system('touch PWNED')"],
        ["show", "--expr", "x.__class__"],
        ["show", "--expr", "lambda x: x"],
        ["show", "--expr", "(" * 10_000 + "x" + ")" * 10_000],
        ["show", "--expr", ""],
        ["show", "--expr", "nan"],
        ["show", "--expr", "x * NaN"],
        ["show", "--ref", "nope"],
        ["show"],
        ["export", "--ref", "gelu", "--format", "onnx", "-o", "out"],
    ],
)
def test_bad_formulas_exit_2_with_one_line_and_no_traceback(tmp_path, argv):
    proc = subprocess.run([sys.executable, "-m", "afsearch.cli", *argv], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "PWNED").exists()
    assert not (tmp_path / "out").exists()
