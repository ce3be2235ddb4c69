"""End-to-end: the FineTunePanel in a real JupyterLab, driven by headless Chromium.

Starts JupyterLab on a free localhost port with a token, in a temporary folder,
with a "python3" kernelspec that runs this interpreter (so the kernel sees the
same venv). Then, in Debian's Chromium through Playwright (never a downloaded
browser), once in JupyterLab 4 and once in Notebook 7 (served by the same
server), on a copy of tests/assets/widgets_e2e.ipynb: run all cells, click
Train, wait until the live view and the RunBoard show a finished run, click a
LayerMap block, run the state cell again and check in the kernel's own output
file that the freeze state changed. Screenshots go to tests/artifacts/
(widgets_e2e.png for JupyterLab, widgets_e2e_notebook7.png).

Skipped, loudly, only when /usr/bin/chromium is missing (`.ci/run` installs it).
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import warnings
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

CHROMIUM = os.environ.get("FTKIT_TEST_CHROMIUM", "/usr/bin/chromium")  # another binary, or a missing one to check the skip
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
HERE = Path(__file__).parent
NOTEBOOK = HERE / "assets" / "widgets_e2e.ipynb"
ARTIFACTS = HERE / "artifacts"
MS = 1000  # Playwright timeouts are in milliseconds


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def chromium():
    if not os.path.exists(CHROMIUM):
        reason = (f"BROWSER TEST SKIPPED: {CHROMIUM} is missing, so the widgets were NOT tested in a real browser. "
                  "Install it with `apt-get install -y chromium` (.ci/run does).")
        warnings.warn(reason)
        print("\n" + "!" * 100 + f"\n{reason}\n" + "!" * 100, file=sys.stderr)
        pytest.skip(reason)
    pytest.importorskip("playwright.sync_api")
    return CHROMIUM


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server in a temporary root folder; yields (url, token, root). Killed afterwards."""
    root = tmp_path_factory.mktemp("lab")
    work = root / "work"  # the server's root folder; each test copies the notebook into it
    work.mkdir()
    # a "python3" kernelspec for this interpreter, found first through JUPYTER_PATH
    spec_dir = root / "jupyter_path" / "kernels" / "python3"
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (ftkit test venv)", "language": "python",
        "env": {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TF_CPP_MIN_LOG_LEVEL": "2"},
    }))
    # user settings: no news or update checks (no network, and no toasts over the screenshot)
    settings = root / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    env = {**os.environ, "JUPYTER_PATH": str(root / "jupyter_path"), "JUPYTER_CONFIG_DIR": str(root / "config"),
           "JUPYTER_DATA_DIR": str(root / "data"), "JUPYTER_RUNTIME_DIR": str(root / "runtime"),
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    port, token = _free_port(), os.urandom(16).hex()
    log = open(root / "server.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--allow-root", f"--port={port}",
         "--ip=127.0.0.1", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
         f"--ServerApp.root_dir={work}", f"--LabApp.user_settings_dir={root / 'settings'}",
         f"--LabApp.workspaces_dir={root / 'workspaces'}", "--LabApp.news_url=", "--LabApp.check_for_updates_class="
         "jupyterlab.NeverCheckForUpdate"],
        cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("JupyterLab did not start:\n" + (root / "server.log").read_text()[-3000:])
            time.sleep(0.3)
        yield url, token, work, root / "server.log"
    finally:
        server.send_signal(signal.SIGINT)  # Jupyter shuts its kernels down on SIGINT (asks twice)
        time.sleep(0.2)
        server.send_signal(signal.SIGINT)
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)  # our own process group: the server and its kernels
            server.wait(10)
        log.close()


def _read_state(path, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if path.exists():
            try:
                return json.loads(path.read_text())
            except json.JSONDecodeError:
                pass  # being written
        time.sleep(0.2)
    raise AssertionError(f"the notebook did not write {path} within {timeout} s")


def _wait_for_kernel(url, token, notebook, timeout=90):
    """Until the notebook's kernel is idle and the page's websocket is connected to it."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with urllib.request.urlopen(f"{url}/api/sessions?token={token}", timeout=5) as r:
            sessions = [s for s in json.load(r) if s["path"] == notebook]
        if sessions:
            kernel = sessions[0]["kernel"]
            if kernel["execution_state"] == "idle" and kernel.get("connections", 0) >= 1:
                return
        time.sleep(0.3)
    raise AssertionError(f"the kernel of {notebook} was not ready within {timeout} s")


# (which front end, its URL for a notebook path, the screenshot it leaves)
UIS = [("jupyterlab", "lab/tree/{}", "widgets_e2e.png"), ("notebook7", "notebooks/{}", "widgets_e2e_notebook7.png")]


@pytest.mark.parametrize("ui,url_path,screenshot", UIS, ids=[u[0] for u in UIS])
def test_panel_trains_and_layermap_freezes_in_a_real_browser(chromium, lab, ui, url_path, screenshot):
    from playwright.sync_api import expect, sync_playwright

    url, token, work, server_log = lab
    notebook = f"{ui}/{NOTEBOOK.name}"  # each front end gets its own copy, folder and kernel
    (work / ui).mkdir()
    shutil.copy(NOTEBOOK, work / notebook)
    state_file = work / ui / "kernel_state.json"
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / screenshot
    t0 = time.monotonic()
    with sync_playwright() as p, tempfile.TemporaryDirectory() as profile:
        browser = p.chromium.launch_persistent_context(
            profile, executable_path=chromium, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1500, "height": 2300})
        page = browser.new_page()
        console = []
        page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
        try:
            page.goto(f"{url}/{url_path.format(notebook)}?token={token}", timeout=60 * MS)
            page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=60 * MS)
            _wait_for_kernel(url, token, notebook)
            expect(page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").first).to_be_attached(
                timeout=30 * MS)

            # Run > Run All Cells
            page.get_by_role("menuitem", name="Run", exact=True).click()
            page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
            state = _read_state(state_file, timeout=120)
            assert Path(state["python"]).resolve() == Path(sys.executable).resolve(), state["python"]
            assert state["trainable_mask"] == [False, False, False, False, True] and state["runs"] == []
            state_file.unlink()
            panel = page.locator(".ftkit-panel")
            expect(panel).to_be_visible(timeout=30 * MS)
            expect(panel.locator(".ftkit-block")).to_have_count(5)
            t_ready = time.monotonic() - t0

            # Train, and wait for the live view and the RunBoard to show a finished run
            train = panel.locator(".ftkit-train")
            plot = panel.locator(".ftkit-live-plot")
            plot_before = plot.get_attribute("src")
            expect(train).to_be_enabled()
            train.click()
            expect(panel.locator(".ftkit-stop")).to_be_enabled(timeout=10 * MS)  # running: Stop is live ...
            expect(train).to_be_disabled()                                     # ... and Train is not
            done = panel.locator(".ftkit-live-status[data-status='finished'], .ftkit-status [data-kind='error']")
            expect(done.first).to_be_visible(timeout=120 * MS)
            error = panel.locator(".ftkit-status [data-kind='error']")
            assert not error.count(), f"the panel reported: {error.inner_text()}"
            expect(panel.locator(".ftkit-runboard-table tr[data-status='finished']")).to_have_count(
                1, timeout=30 * MS)
            expect(train).to_be_enabled(timeout=30 * MS)
            assert plot.get_attribute("src") != plot_before  # redrawn during the run ...
            assert plot.evaluate("img => img.complete && img.naturalWidth") > 500  # ... into a real picture
            assert "samples/s" in panel.locator(".ftkit-live-stats").inner_text()
            t_trained = time.monotonic() - t0

            # click LayerMap block 2 (frozen under head_only): it and the groups after it unfreeze
            block = panel.locator(".ftkit-block[data-index='2']")
            expect(block).to_have_attribute("data-state", "frozen")
            block.click()
            expect(block).to_have_attribute("data-state", "trainable", timeout=15 * MS)
            expect(panel.locator(".ftkit-status")).to_contain_text("Unfroze blocks_7_13")

            # run the state cell again: the kernel's model and config changed
            cells = page.locator(".jp-Notebook .jp-CodeCell")
            cells.nth(1).locator(".jp-InputArea-editor").click()
            page.keyboard.press("Control+Enter")  # run this cell
            state = _read_state(state_file, timeout=60)
            assert state["trainable_mask"] == [False, False, True, True, True], state
            assert (state["strategy"], state["trainable_groups"]) == ("partial", 3)
            assert [r["status"] for r in state["runs"]] == ["finished"]
            assert state["runs"][0]["epochs"] == 2
            expect(cells.nth(1).locator(".jp-OutputArea-output")).to_contain_text("KERNEL STATE")

            panel.locator(".ftkit-train").scroll_into_view_if_needed()
            page.screenshot(path=str(shot))
        except Exception:
            page.screenshot(path=str(ARTIFACTS / f"failure_{shot.name}"))
            print(server_log.read_text()[-4000:], file=sys.stderr)
            print("browser console:\n" + "\n".join(console[-40:]), file=sys.stderr)
            raise
        finally:
            browser.close()
    print(f"\nbrowser e2e ({ui}): notebook ready {t_ready:.0f} s, run finished {t_trained:.0f} s, "
          f"total {time.monotonic() - t0:.0f} s; screenshot {shot}")
    assert shot.stat().st_size > 10_000
