"""The warm helper inside a real GIMP 3 (one GIMP start, watched from outside until after it
quits): runs reuse one helper and give a private helper's masks, it survives being killed,
Cancel and other users, and it goes after its idle time and when GIMP quits."""

import json

import pytest

from gimp_runs import run_gimp_script
from needs import need

OUTLIVE = "/tests/gimp/in_gimp/outlive.py"
GONE_AFTER_GIMP_WITHIN = 5.0
FALLBACK_NOTE = "Going on with a helper of this run's own"


@pytest.fixture(scope="module")
def run(gimp, model):
    need(gimp.has_proc(), "no /proc to watch the helpers in (needs unshare)")
    report = gimp.work + "/outlive.json"
    gimp.host_path(report).unlink(missing_ok=True)
    plain_run = gimp.run

    def through_outlive(argv, **options):
        # GIMP as a child of outlive.py, which then watches for helpers outliving it.
        return plain_run(["python3", gimp.src + OUTLIVE, report] + list(argv), **options)

    gimp.run = through_outlive
    try:
        results, run_dir, output = run_gimp_script(gimp, "warm_cases.py")
    finally:
        del gimp.run
    return results, json.loads(gimp.host_path(report).read_text()), output


def succeeded(results, name):
    case = results[name]
    assert case["status"] == "success", "%s: %s" % (name, case["message"])
    return case


def only_helper(case):
    assert len(case["warm"]) == 1, case["warm"]
    return case["warm"][0]


def test_two_runs_reuse_one_helper_and_give_a_cold_runs_mask(run):
    results, _quit, output = run
    cold = succeeded(results, "cold")
    assert cold["warm"] == []               # warm_idle_seconds 0: no helper stays
    first, second = succeeded(results, "first"), succeeded(results, "second")
    assert first["mask_digest"] == cold["mask_digest"] == second["mask_digest"]
    assert only_helper(first)["pid"] == only_helper(second)["pid"]
    assert only_helper(second)["model"] == "isnet"
    # Only the run whose warm helper was killed under it went on with a private one.
    assert output.count(FALLBACK_NOTE) == 1


def test_a_batch_uses_the_same_helper(run):
    results, _quit, _output = run
    batch = results["batch"]
    assert batch["status"] == "success" and batch["done"] == 2 and batch["masked"] == [True, True]
    assert only_helper(batch)["pid"] == only_helper(results["second"])["pid"]


def test_a_helper_killed_between_runs_is_replaced_without_an_error(run):
    results, _quit, _output = run
    case = succeeded(results, "killed_between")
    assert case["killed_gone_after"] is not None
    assert case["socket_left"], "the killed helper's socket should have been left behind"
    assert only_helper(case)["pid"] != case["killed"]
    assert case["mask_digest"] == results["cold"]["mask_digest"]


def test_cancel_mid_inference_leaves_the_helper_serving_the_next_run(run):
    results, _quit, _output = run
    cancelled = results["cancelled"]
    killer = cancelled["killer"]
    assert killer["killed"], killer
    assert cancelled["status"] != "success"
    assert killer["helper_alive"]
    # The model's run was stopped, not finished in vain (it takes seconds of CPU here).
    assert killer["helper_cpu_in_the_second_after"] < 0.3, killer
    after = succeeded(results, "after_cancel")
    assert only_helper(after)["pid"] == cancelled["warm_pid"]
    assert after["mask_digest"] == results["cold"]["mask_digest"]


def test_a_busy_helper_is_not_waited_for(run):
    results, _quit, output = run
    case = succeeded(results, "while_busy")
    assert case["mask_digest"] == results["cold"]["mask_digest"]
    assert "the warm helper is serving another run" in output      # said on stderr only
    assert [helper["pid"] for helper in case["warm"]] == [case["held"]]


def test_a_helper_killed_mid_run_is_replaced_by_a_private_one(run):
    results, _quit, output = run
    case = succeeded(results, "helper_killed")
    assert case["killer"]["killed"] == [case["warm_pid"]], case["killer"]
    assert case["mask_digest"] == results["cold"]["mask_digest"]
    assert FALLBACK_NOTE in output                                  # said on stderr only
    assert case["message"] == ""
    after = succeeded(results, "after_helper_killed")
    assert only_helper(after)["pid"] != case["warm_pid"]


def test_another_users_connection_is_refused(run):
    results, _quit, _output = run
    seen = results["other_user"]["refused"]
    assert seen["folder_closed"] == "connect: PermissionError"
    assert seen["folder_open"] in ("reply: b''", "reply: ConnectionResetError", "reply: BrokenPipeError")
    assert "refused a connection" in seen["log"] and "uid 65534" in seen["log"]
    succeeded(results, "other_user")        # and it still serves its own user


def test_no_helper_is_left_after_the_idle_time(run):
    results, _quit, _output = run
    case = succeeded(results, "idle")
    assert case["pid"] and case["warm"][0]["idle_timeout"] == 3
    assert case["gone_after_run"] is not None and case["gone_after_run"] < 3 + 5, case
    assert not case["socket_left"]


def test_no_helper_is_left_after_gimp_quits(run):
    results, quit, _output = run
    assert only_helper(succeeded(results, "at_quit"))["pid"]
    assert quit["gone_after"] is not None and quit["gone_after"] < GONE_AFTER_GIMP_WITHIN, quit
    assert quit["still_running"] == []
