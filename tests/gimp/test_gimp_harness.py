"""The harness that builds the GIMP roots: a step's output goes to the log, a failing step names it."""

import gimp3


def test_a_build_step_logs_its_output_and_a_failure_names_the_log(tmp_path, capsys):
    log = tmp_path / "gimp3.2-root.log"
    gimp3.run_step(1, 2, "a step that talks", ["sh", "-c", "echo I: Retrieving base; echo /proc/ is not mounted >&2"],
                   log)
    try:
        gimp3.run_step(2, 2, "a step that fails", ["sh", "-c", "echo E: Unable to locate package; exit 100"], log)
    except gimp3.Unavailable as error:
        message = str(error)
    else:
        raise AssertionError("the failing step did not raise")
    shown = capsys.readouterr()
    # One line per step here, nothing of what the steps printed.
    assert shown.out == ""
    assert shown.err.splitlines() == ["gimp3:   [1/2] a step that talks", "gimp3:   [2/2] a step that fails"]
    text = log.read_text()
    assert "I: Retrieving base" in text and "/proc/ is not mounted" in text and "Unable to locate" in text
    assert '"a step that fails" (exit status 100)' in message
    assert "E: Unable to locate package" in message and str(log) in message
