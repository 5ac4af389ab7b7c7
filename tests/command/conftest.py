"""Fixtures of the command's tests."""

import pytest

from remove_background.command import cli


@pytest.fixture
def run(red_mask_onnx, capsys):
    """Runs the command in this process with the red-channel model; returns (exit status, stderr)."""
    def run_command(*args):
        status = cli.main([str(arg) for arg in args]
                          + ["--model", "isnet", "--model-file", str(red_mask_onnx), "--threads", "1"])
        return status, capsys.readouterr().err
    return run_command
