"""install.py end to end in a temporary home: first run, second run, --check, a changed checkout,
--uninstall.

One home is installed once for the module (venv + pip is the slow part) and the tests run in file
order on it; the --uninstall tests come last because they take it apart.  install.py runs from a
snapshot of the checkout, so that work going on in the checkout meanwhile does not change what
it installs between two runs.
"""

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from install_support import MODEL, Home, load_install_module, run_install, snapshot_checkout
from needs import FIXTURES, need

GIMP_VERSIONS = ("3.0", "3.2")
# Where each file of the installed plug-in folder comes from in the checkout.
PLUGIN_FILES = {
    "remove-background.py": "plugin/gimp/remove-background.py",
    "remove_background/__init__.py": "plugin/remove_background/__init__.py",
    "remove_background/wire/__init__.py": "plugin/remove_background/wire/__init__.py",
    "remove_background/wire/protocol.py": "plugin/remove_background/wire/protocol.py",
    "remove_background/wire/client.py": "plugin/remove_background/wire/client.py",
    "remove_background/wire/warm.py": "plugin/remove_background/wire/warm.py",
}


@pytest.fixture(scope="module")
def first(tmp_path_factory, seeded_models):
    """A home with GIMP 3.0, 3.2 and the Flatpak's 3.0, before and after one full install."""
    need(seeded_models is not None, "the real model %s is not in the model cache (python -m model_fetch fetch %s)"
         % (MODEL, MODEL))
    checkout = snapshot_checkout(tmp_path_factory.mktemp("snapshot") / "checkout")
    home = Home(tmp_path_factory.mktemp("first"), gimp_versions=GIMP_VERSIONS, flatpak_versions=("3.0",),
                models=seeded_models, checkout=checkout)
    home.before = home.tree()
    home.first = home.run()
    print("first run: %.1f s" % home.first.seconds)
    return home


@pytest.fixture(scope="module")
def second(first):
    first.after_first = first.tree()
    first.second = first.run()
    print("second run: %.1f s" % first.second.seconds)
    return first


def plugin_targets(home):
    return [(home.plugin_dir(version), False) for version in GIMP_VERSIONS] + \
           [(home.plugin_dir("3.0", flatpak=True), True)]


def test_first_run_makes_a_working_venv(first):
    assert first.first.code == 0, first.first
    assert "Successfully installed" in first.first.stdout
    done = subprocess.run([str(first.python), "-c", "import remove_background, model_fetch, onnxruntime, "
                           "numpy, PIL, remove_background.helper; print(remove_background.helper.version())"],
                          stdout=subprocess.PIPE, universal_newlines=True, cwd=str(first.root))
    assert done.returncode == 0
    assert done.stdout.strip() == load_install_module().project_version()
    # Installed, not linked to the checkout: the venv's packages live in the venv.
    done = subprocess.run([str(first.python), "-c", "import model_fetch; print(model_fetch.__file__)"],
                          stdout=subprocess.PIPE, universal_newlines=True, cwd=str(first.root))
    assert Path(done.stdout.strip()).is_relative_to(first.venv)
    assert (first.venv / "bin" / "remove-background").is_file()


def test_first_run_copies_the_plugin_into_every_gimp_folder(first):
    for target, flatpak in plugin_targets(first):
        for name, source in PLUGIN_FILES.items():
            assert (target / name).read_bytes() == (first.checkout / source).read_bytes(), target / name
        mode = (target / "remove-background.py").stat().st_mode
        assert mode & stat.S_IXUSR and mode & stat.S_IXOTH
        config = json.loads((target / "helper.json").read_text())
        assert config["python"] == str(first.python)
        assert Path(config["python"]).is_absolute() and os.access(config["python"], os.X_OK)
        assert config["version"] == load_install_module().project_version()
        assert config.get("host_spawn", False) is flatpak
        # GIMP does not inherit the installing shell's model folder, so helper.json carries it.
        assert config["env"] == {"REMOVE_BACKGROUND_MODELS": str(first.models)}
        assert sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file()) == \
            sorted(list(PLUGIN_FILES) + ["helper.json"])


def test_the_installed_plugin_reaches_the_helper(first):
    """What GIMP's side does: the plug-in folder's own client starts the helper named in helper.json."""
    target = first.plugin_dir("3.2")
    code = ("import json, sys; sys.dont_write_bytecode = True; sys.path.insert(0, sys.argv[1]);"
            "from remove_background.wire import client;"
            "helper = client.HelperClient.from_config(sys.argv[1]);"
            "print(json.dumps([helper.hello(), helper.models()])); helper.close()")
    done = subprocess.run([sys.executable, "-c", code, str(target)], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, timeout=120,
                          env={k: v for k, v in os.environ.items() if k != "REMOVE_BACKGROUND_MODELS"})
    assert done.returncode == 0, done.stderr
    hello, models = json.loads(done.stdout)
    assert hello["helper"] == load_install_module().project_version()
    assert "CPUExecutionProvider" in hello["providers"]
    # The model folder reached the helper through helper.json, not through this environment.
    assert {"name": MODEL, "installed": True}.items() <= \
        next(m for m in models["models"] if m["name"] == MODEL).items()


def test_first_run_proves_it_with_a_real_cutout(first):
    cutout = first.data / "chelsea.nobg.png"
    out = first.first.stdout
    assert "The cut-out of the sample photo is at %s (took " % cutout in out
    assert "Filters > Remove Background" in out and "restart GIMP" in out
    with Image.open(str(cutout)) as image, Image.open(str(FIXTURES / "chelsea.png")) as photo:
        assert image.size == photo.size
        assert image.mode == "RGBA"
        alpha = image.getchannel("A")
        histogram = alpha.histogram()
    total = sum(histogram)
    # A cat on a plain background: a good part of the photo is kept, a good part is cut away.
    assert 0.1 < sum(histogram[:16]) / total < 0.9
    assert 0.1 < sum(histogram[240:]) / total < 0.9


def test_first_run_names_the_command_line_tool(first):
    line = [text for text in first.first.stdout.splitlines() if text.strip().startswith("command:")]
    assert len(line) == 1
    command = line[0].split("command:", 1)[1].strip()
    done = subprocess.run([command, "--help"], stdout=subprocess.PIPE, universal_newlines=True)
    assert done.returncode == 0 and "--mask-only" in done.stdout


def test_second_run_skips_pip_and_duplicates_nothing(second):
    run = second.second
    assert run.code == 0, run
    assert "sources are unchanged: skipping pip" in run.stdout
    assert "Successfully installed" not in run.stdout and "Collecting" not in run.stdout
    assert run.stdout.count("already up to date") == 3
    after = second.tree()
    assert sorted(after) == sorted(second.after_first)
    for target, _ in plugin_targets(second):
        for name in list(PLUGIN_FILES) + ["helper.json"]:
            assert after[str(target / name)] == second.after_first[str(target / name)], "rewritten: " + name
    manifest = json.loads((second.data / "install-manifest.json").read_text())
    for entries in manifest.values():
        assert len(entries) == len(set(entries))
    assert "The cut-out of the sample photo is at" in run.stdout


def test_check_reports_a_good_install(second):
    run = second.run("--check")
    assert run.code == 0, run
    out = run.stdout
    for target, flatpak in plugin_targets(second):
        assert "%s: installed; helper %s" % (target, second.python) in out
        assert str(target.parent.parent) in out   # the GIMP folder itself
    assert "(Flatpak)" in out
    assert "helper %s" % load_install_module().project_version() in out
    assert "CPUExecutionProvider" in out
    assert "%-22s installed, verified" % MODEL in out
    assert "Everything is in place." in out


def test_check_reports_a_folder_without_the_plugin(second, tmp_path):
    run = second.run("--check", "--plugins-dir", tmp_path)
    assert run.code == 1, run
    assert "%s: NOT installed" % (tmp_path / "remove-background") in run.stdout
    assert "the plug-in is missing from %s" % (tmp_path / "remove-background") in run.stdout


def test_plugins_dir_installs_there_only(second, tmp_path):
    before = second.tree()
    run = second.run("--plugins-dir", tmp_path / "plug-ins", "--quiet")
    assert run.code == 0, run
    target = tmp_path / "plug-ins" / "remove-background"
    second.extra_plugin_dir = target
    assert (target / "remove-background.py").read_bytes() == \
        (second.checkout / PLUGIN_FILES["remove-background.py"]).read_bytes()
    assert json.loads((target / "helper.json").read_text())["python"] == str(second.python)
    for target, _ in plugin_targets(second):
        assert "Plug-in in %s" % target not in run.stdout
    # Only the sample cut-out (written again) and the manifest (which now lists the new folder) changed.
    changed = {path for path, info in second.tree().items() if before.get(path, "new") != info}
    assert changed <= {str(second.data / "chelsea.nobg.png"), str(second.data / "install-manifest.json")}


def test_changed_sources_are_installed_again(second, tmp_path):
    """The checkout changes (a pull): the next run reinstalls, and the later tests go on with it."""
    changed = second.checkout / "model_fetch" / "__init__.py"
    with open(str(changed), "a") as handle:
        handle.write("\n# changed by test_changed_sources_are_installed_again\n")
    installed = subprocess.run([str(second.python), "-c", "import model_fetch; print(model_fetch.__file__)"],
                               stdout=subprocess.PIPE, universal_newlines=True, cwd=str(tmp_path)).stdout.strip()
    assert Path(installed).is_relative_to(second.venv)
    assert Path(installed).read_bytes() != changed.read_bytes()
    run = second.run("--no-model", "--quiet")
    assert run.code == 0, run
    assert Path(installed).read_bytes() == changed.read_bytes()
    run = second.run("--no-model")
    assert run.code == 0, run
    assert "sources are unchanged: skipping pip" in run.stdout


def test_no_gimp_folder_still_installs_the_helper_and_says_where_the_plugin_goes(second, tmp_path):
    home = Home(tmp_path, checkout=second.checkout)   # no GIMP folder at all, and an empty model folder
    run = home.run("--venv", second.venv, "--no-model")
    assert run.code == 3, run
    out = run.stdout
    assert "sources are unchanged: skipping pip" in out   # the helper is there (the shared venv)
    assert "no GIMP 3 user folder was found, so the plug-in is NOT installed" in out
    assert str(home.home / ".config" / "GIMP" / "3.x") in out
    assert str(home.home / ".var" / "app" / "org.gimp.GIMP" / "config" / "GIMP" / "3.x") in out
    assert "python3 install.py --plugins-dir DIR" in out
    assert "DIR/remove-background/remove-background.py" in out
    # Where the command is, and how to run it, even without a GIMP.
    assert "  command: %s" % (second.venv / "bin" / "remove-background") in out
    assert "%s -m remove_background photo.jpg" % second.python in out
    assert "Skipped the proof: --no-model was given and no model is installed" in out
    assert not list(home.home.rglob("plug-ins"))


FIRST_START_FOLDERS = {"brushes", "dynamics", "fonts", "gradients", "palettes", "patterns", "tool-presets",
                       "plug-ins", "modules", "interpreters", "environ", "scripts", "templates", "themes", "icons",
                       "tmp", "curves", "levels", "filters", "fractalexplorer", "gfig", "gflare", "gimpressionist"}


def with_gimp_programs(home, versions, flatpak=False):
    """GIMP 3.N installed but never started: its program, and no user folder."""
    if flatpak:
        folder = home.home / ".local/share/flatpak/app/org.gimp.GIMP/current/active/files/bin"
    else:
        folder = home.root / "bin"
        home.env["PATH"] = str(folder) + os.pathsep + home.env["PATH"]
    folder.mkdir(parents=True, exist_ok=True)
    for version in versions:
        program = folder / ("gimp-%s" % version)
        program.write_text("#!/bin/sh\nexit 0\n")
        program.chmod(0o755)
    return folder


@pytest.mark.parametrize("versions", [("3.0",), ("3.2",), ("3.0", "3.2")], ids=["3.0", "3.2", "both"])
def test_a_gimp_never_started_gets_its_folder_made_and_the_plugin(second, tmp_path, versions):
    home = Home(tmp_path, checkout=second.checkout, models=second.models)
    programs = with_gimp_programs(home, versions)
    run = home.run("--venv", second.venv, "--no-model")
    assert run.code == 0, run
    for version in versions:
        folder = home.home / ".config" / "GIMP" / version
        assert "GIMP %s is installed but has not been started yet: made its folder %s" % (version, folder) \
            in run.stdout
        # What GIMP's own first start makes (GIMP skips it when its folder exists), and the plug-in.
        assert {path.name for path in folder.iterdir()} == FIRST_START_FOLDERS
        plugin = home.plugin_dir(version)
        assert (plugin / "remove-background.py").read_bytes() == \
            (second.checkout / PLUGIN_FILES["remove-background.py"]).read_bytes()
        assert "plug-in: %s" % plugin in run.stdout
    assert not (home.home / ".config" / "GIMP" / ({"3.0", "3.2"} - set(versions) or {"3.4"}).pop()).exists()
    check = home.run("--venv", second.venv, "--check")
    assert check.code == 0, check
    for version in versions:
        assert "GIMP %s: %s" % (version, programs / ("gimp-" + version)) in check.stdout
        assert "%s: installed; helper %s" % (home.plugin_dir(version), second.python) in check.stdout
    # --uninstall takes the plug-in away and leaves GIMP's folders, as GIMP would have made them.
    run = home.run("--venv", second.venv, "--uninstall")
    assert run.code == 0, run
    for version in versions:
        assert {path.name for path in (home.home / ".config" / "GIMP" / version).iterdir()} == FIRST_START_FOLDERS
        assert not home.plugin_dir(version).exists()


def test_a_gimp_never_started_beside_an_older_folder_is_left_to_copy_it(second, tmp_path):
    """GIMP 3.2's first start copies GIMP 3.0's folder (the plug-in with it): making 3.2's folder
    would stop it from bringing the user's settings over."""
    home = Home(tmp_path, gimp_versions=("3.0",), checkout=second.checkout, models=second.models)
    with_gimp_programs(home, ("3.0", "3.2"))
    run = home.run("--venv", second.venv, "--no-model")
    assert run.code == 0, run
    older = home.home / ".config" / "GIMP" / "3.0"
    assert "GIMP 3.2 is installed but has not been started yet: its first start copies %s, the plug-in with " \
        "it." % older in run.stdout
    assert (home.plugin_dir("3.0") / "helper.json").is_file()
    assert not (home.home / ".config" / "GIMP" / "3.2").exists()
    check = home.run("--venv", second.venv, "--check")
    assert check.code == 0, check
    assert "GIMP 3.2: not started yet, so no %s; its first start copies %s" % (
        home.home / ".config" / "GIMP" / "3.2", older) in check.stdout


def test_a_gimp_3_never_started_beside_a_gimp_2_folder_is_left_to_bring_the_settings_over(second, tmp_path):
    """GIMP 3's first start copies GIMP 2.10's settings, unless its own folder exists."""
    home = Home(tmp_path, gimp_versions=("2.10",), checkout=second.checkout, models=second.models)
    with_gimp_programs(home, ("3.2",))
    run = home.run("--venv", second.venv, "--no-model")
    assert run.code == 3, run
    assert "GIMP 3.2 is installed but has not been started yet; its first start brings your settings over " \
        "from %s" % (home.home / ".config" / "GIMP" / "2.10") in run.stdout
    assert "Start GIMP 3.2 once, then run install.py again" in run.stdout
    assert not (home.home / ".config" / "GIMP" / "3.2").exists()
    check = home.run("--venv", second.venv, "--check")
    assert check.code == 1, check
    assert "GIMP 3.2 has not been started yet: start it once, then run install.py" in check.stdout


def test_a_flatpak_gimp_never_started_gets_its_folder_and_host_spawn(second, tmp_path):
    home = Home(tmp_path, checkout=second.checkout, models=second.models)
    with_gimp_programs(home, ("3.2",), flatpak=True)
    run = home.run("--venv", second.venv, "--no-model")
    assert run.code == 0, run
    plugin = home.plugin_dir("3.2", flatpak=True)
    assert json.loads((plugin / "helper.json").read_text())["host_spawn"] is True
    assert "GIMP 3.2 (Flatpak) is installed but has not been started yet: made its folder" in run.stdout
    assert "flatpak override --user --talk-name=org.freedesktop.Flatpak org.gimp.GIMP" in run.stdout
    assert not (home.home / ".config" / "GIMP").exists()


def test_check_after_a_plugins_dir_install_sees_no_problem_in_no_gimp_folder(second, tmp_path):
    home = Home(tmp_path, checkout=second.checkout, models=second.models)
    plugins = tmp_path / "plug-ins"
    run = home.run("--venv", second.venv, "--plugins-dir", plugins, "--no-model", "--quiet")
    assert run.code == 0, run
    check = home.run("--venv", second.venv, "--check")
    assert check.code == 0, check
    assert "%s: installed; helper %s" % (plugins / "remove-background", second.python) in check.stdout
    assert "no GIMP 3 folder found:" not in check.stdout
    assert "Python ?" not in check.stdout
    assert "Python %d.%d." % sys.version_info[:2] in check.stdout


def test_check_with_nothing_installed_says_so_under_each_heading(tmp_path):
    home = Home(tmp_path)
    home.env["PATH"] = os.path.dirname(sys.executable)   # no GIMP of this machine's
    check = home.run("--check")
    assert check.code == 1, check
    lines = check.stdout.splitlines()
    for heading, first in (("GIMP 3 installed:", "  none found by its programs"),
                           ("Plug-in:", "  not installed anywhere"), ("Helper:", "  no working venv at")):
        assert lines[lines.index(heading) + 1].startswith(first), check.stdout
    assert "no GIMP 3 folder found: install GIMP 3 (or start it once)" in check.stdout


def test_uninstall_names_the_test_caches_and_removes_them_when_asked(tmp_path):
    home = Home(tmp_path)
    caches = tmp_path / "cache" / "gimp-remove-background"
    home.env["XDG_CACHE_HOME"] = str(caches.parent)
    for folder in ("gimp3-root/usr/bin", "gimp3.2-root/usr/bin", "test-venv/bin", "models"):
        (caches / folder).mkdir(parents=True)
    (caches / "gimp3.2-root.log").write_text("apt output")
    (caches / "models" / "isnet.onnx").write_bytes(b"a model")
    onnxruntime_files = home.home / ".cache" / "Microsoft" / "DeveloperTools"
    onnxruntime_files.mkdir(parents=True)
    run = home.run("--uninstall")
    assert run.code == 0, run
    assert "The test command's caches were kept in %s: gimp3-root, gimp3.2-root, gimp3.2-root.log, test-venv" \
        % caches in run.stdout
    assert "--purge-test-caches" in run.stdout
    assert str(onnxruntime_files) in run.stdout
    assert sorted(path.name for path in caches.iterdir()) == \
        ["gimp3-root", "gimp3.2-root", "gimp3.2-root.log", "models", "test-venv"]
    run = home.run("--uninstall", "--purge-test-caches")
    assert run.code == 0, run
    assert "Removed the test command's caches from %s" % caches in run.stdout
    assert [path.name for path in caches.iterdir()] == ["models"]
    assert (caches / "models" / "isnet.onnx").read_bytes() == b"a model"
    assert onnxruntime_files.is_dir()   # not ours to delete


def test_model_without_network_names_the_offline_route(second, tmp_path):
    home = Home(tmp_path, checkout=second.checkout)   # an empty model folder
    env = dict(home.env, NPM_CONFIG_REGISTRY="http://127.0.0.1:9/", HTTPS_PROXY="http://127.0.0.1:9",
               https_proxy="http://127.0.0.1:9")
    plugins = tmp_path / "plug-ins"
    run = run_install(["--venv", second.venv, "--plugins-dir", plugins, "--model", "isnet-small"], env,
                      script=second.checkout / "install.py")
    assert run.code == 1, run
    assert "could not fetch the model isnet-small" in run.stderr
    assert "%s -m model_fetch import isnet-small FILE" % second.python in run.stderr
    assert "Traceback" not in run.output
    # Everything but the model is in place.
    assert (plugins / "remove-background" / "helper.json").is_file()
    assert not (home.data / "chelsea.nobg.png").exists()


def test_a_derived_model_is_taken_and_its_failure_says_how_to_make_it(second, tmp_path):
    home = Home(tmp_path, checkout=second.checkout)   # an empty model folder, no network: no isnet to derive from
    env = dict(home.env, NPM_CONFIG_REGISTRY="http://127.0.0.1:9/", HTTPS_PROXY="http://127.0.0.1:9",
               https_proxy="http://127.0.0.1:9")
    run = run_install(["--venv", second.venv, "--plugins-dir", tmp_path / "plug-ins", "--model", "isnet-int8"],
                      env, script=second.checkout / "install.py")
    assert run.code == 1, run
    assert "could not make the model isnet-int8 from isnet" in run.stderr
    assert "%s -m model_fetch fetch isnet-int8" % second.python in run.stderr
    assert "Traceback" not in run.output


def test_uninstall_leaves_nothing_behind(second):
    models_before = {path: info for path, info in second.tree().items() if path.startswith(str(second.models))}
    # GIMP's Python leaves bytecode beside the modules it imports from the plug-in folder.
    for target, _ in plugin_targets(second):
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]); "
                        "import remove_background.wire.client", str(target)], env=env, check=True)
        assert (target / "remove_background" / "__pycache__").is_dir()
    # A file of the user's own in a plug-in folder install.py made.
    notes = second.extra_plugin_dir / "my-notes.txt"
    notes.write_text("mine")
    run = second.run("--uninstall")
    print("uninstall: %.1f s" % run.seconds)
    assert run.code == 0, run
    assert sorted(p.name for p in second.extra_plugin_dir.iterdir()) == ["my-notes.txt"]
    assert "Kept %s: it holds files install.py did not put there." % second.extra_plugin_dir in run.stdout
    assert "Removed the helper's venv %s" % second.venv in run.stdout
    assert "The models were kept" in run.stdout
    after = second.tree()
    # Exactly the home as it was before the first install, and the models untouched.
    assert {p: i for p, i in after.items() if p.startswith(str(second.home))} == \
        {p: i for p, i in second.before.items() if p.startswith(str(second.home))}
    assert {p: i for p, i in after.items() if p.startswith(str(second.models))} == models_before


def test_uninstall_purge_models_removes_the_models(second):
    assert any(second.models.iterdir())
    run = second.run("--uninstall", "--purge-models")
    assert run.code == 0, run
    assert "Removed the models from %s" % second.models in run.stdout
    assert "Nothing to uninstall" in run.stdout
    assert not second.models.exists() or not any(second.models.iterdir())
