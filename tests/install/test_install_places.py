"""Where install.py puts things on each platform, worked out from real (temporary) folders."""

from pathlib import Path

import pytest

from install_support import load_install_module

install = load_install_module()


def test_data_folder_per_platform(tmp_path):
    home = tmp_path
    assert install.data_dir("Linux", {}, home) == home / ".local/share/gimp-remove-background"
    assert install.data_dir("Linux", {"XDG_DATA_HOME": "/srv/data"}, home) == Path("/srv/data/gimp-remove-background")
    # A relative XDG path is invalid by the XDG spec and ignored.
    assert install.data_dir("Linux", {"XDG_DATA_HOME": "data"}, home) == home / ".local/share/gimp-remove-background"
    assert install.data_dir("Darwin", {}, home) == home / "Library/Application Support/gimp-remove-background"
    assert install.data_dir("Windows", {"LOCALAPPDATA": str(tmp_path / "Local")}, home) == \
        tmp_path / "Local" / "gimp-remove-background"
    assert install.data_dir("Windows", {}, home) == home / "AppData" / "Local" / "gimp-remove-background"


def test_venv_paths_per_platform(tmp_path):
    assert install.venv_python(tmp_path, "Windows") == tmp_path / "Scripts" / "python.exe"
    assert install.venv_script(tmp_path, "remove-background", "Windows") == \
        tmp_path / "Scripts" / "remove-background.exe"
    assert install.venv_python(tmp_path, "Linux") == tmp_path / "bin" / "python"
    assert install.venv_python(tmp_path, "Darwin") == tmp_path / "bin" / "python"


def make(*paths):
    for path in paths:
        path.mkdir(parents=True)


def test_linux_finds_every_gimp3_folder_and_the_flatpak(tmp_path):
    config = tmp_path / ".config" / "GIMP"
    flatpak = tmp_path / ".var" / "app" / "org.gimp.GIMP" / "config" / "GIMP"
    make(config / "2.10", config / "3.0", config / "3.2", config / "3.10", flatpak / "3.0")
    (config / "3.4").write_text("a file, not a folder")
    found = install.find_gimp_dirs("Linux", {}, tmp_path)
    assert found == [(config / "3.0", False), (config / "3.2", False), (config / "3.10", False),
                     (flatpak / "3.0", True)]


def test_linux_respects_xdg_config_home(tmp_path):
    make(tmp_path / "home" / ".config" / "GIMP" / "3.0", tmp_path / "xdg" / "GIMP" / "3.0")
    found = install.find_gimp_dirs("Linux", {"XDG_CONFIG_HOME": str(tmp_path / "xdg")}, tmp_path / "home")
    assert found == [(tmp_path / "xdg" / "GIMP" / "3.0", False)]


def test_macos_and_windows_folders(tmp_path):
    mac = tmp_path / "Library" / "Application Support" / "GIMP" / "3.0"
    windows = tmp_path / "Roaming" / "GIMP" / "3.0"
    make(mac, windows)
    assert install.find_gimp_dirs("Darwin", {}, tmp_path) == [(mac, False)]
    assert install.find_gimp_dirs("Windows", {"APPDATA": str(tmp_path / "Roaming")}, tmp_path) == [(windows, False)]
    assert install.find_gimp_dirs("Windows", {}, tmp_path / "nobody") == []


def test_a_plugins_dir_inside_the_flatpak_is_recognised(tmp_path):
    assert install.is_flatpak_path(tmp_path / ".var" / "app" / "org.gimp.GIMP" / "config" / "GIMP" / "3.0" / "plug-ins")
    assert not install.is_flatpak_path(tmp_path / ".config" / "GIMP" / "3.0" / "plug-ins")


def test_pyproject_reads_the_same_without_tomllib():
    """Before Python 3.11 install.py parses pyproject.toml itself: it must find what tomllib finds."""
    tomllib = pytest.importorskip("tomllib", reason="tomllib is Python 3.11's: nothing to compare with")
    text = (install.CHECKOUT / "pyproject.toml").read_text(encoding="utf-8")
    parsed, simple = tomllib.loads(text), install.simple_toml(text)
    assert simple["project"]["version"] == parsed["project"]["version"] == install.project_version()
    package_dir = parsed["tool"]["setuptools"]["package-dir"]
    assert simple["tool"]["setuptools"]["package-dir"] == package_dir
    assert set(package_dir) == {"remove_background", "model_fetch"}
