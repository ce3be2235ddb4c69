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

A second test opens tests/assets/panel_layout.ipynb at a laptop's 1366x768 and checks the panel's first screen,
its width, a tooltip on every control, that a Stop in epoch 2 leaves every figure agreeing, and that switching
the framework shows no error; its screenshots are panel_1366_before/during/after.png.

Skipped, loudly, only when /usr/bin/chromium is missing (`.ci/run` installs it).
"""
import contextlib
import json
import os
import re
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

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300), pytest.mark.xdist_group("browser")]

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


@contextlib.contextmanager
def _page(chromium, width, height):
    """A page of headless Chromium (a fresh profile) at ``width`` x ``height``; yields (page, console lines)."""
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p, tempfile.TemporaryDirectory() as profile:
        browser = p.chromium.launch_persistent_context(
            profile, executable_path=chromium, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": width, "height": height})
        page = browser.new_page()
        console = []
        page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
        try:
            yield page, console
        finally:
            browser.close()


# (which front end, its URL for a notebook path, the screenshot it leaves)
UIS = [("jupyterlab", "lab/tree/{}", "widgets_e2e.png"), ("notebook7", "notebooks/{}", "widgets_e2e_notebook7.png")]


@pytest.mark.parametrize("ui,url_path,screenshot", UIS, ids=[u[0] for u in UIS])
def test_panel_trains_and_layermap_freezes_in_a_real_browser(chromium, lab, ui, url_path, screenshot):
    from playwright.sync_api import expect

    url, token, work, server_log = lab
    notebook = f"{ui}/{NOTEBOOK.name}"  # each front end gets its own copy, folder and kernel
    (work / ui).mkdir()
    shutil.copy(NOTEBOOK, work / notebook)
    state_file = work / ui / "kernel_state.json"
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / screenshot
    t0 = time.monotonic()
    with _page(chromium, 1500, 2300) as (page, console):
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
    print(f"\nbrowser e2e ({ui}): notebook ready {t_ready:.0f} s, run finished {t_trained:.0f} s, "
          f"total {time.monotonic() - t0:.0f} s; screenshot {shot}")
    assert shot.stat().st_size > 10_000


# what every control exposes, checked in the page: each input, select, button, slider and text area of the panel
_TOOLTIPS_JS = """panel => {
  const bad = [];
  for (const el of panel.querySelectorAll('input, select, button, textarea, .widget-slider')) {
    const box = el.getBoundingClientRect();
    if (box.width === 0 && box.height === 0) continue;   // inside a closed tab: checked when shown
    // ipywidgets puts a tooltip on the element itself, on the widget, or (described widgets) on its label;
    // ftkit's labelled() widgets carry it on the label beside them (.ftkit-label)
    const root = el.closest('.widget-inline-hbox') || el.closest('.jupyter-widgets') || el;
    const label = root.querySelector('.widget-label');
    const beside = root.parentElement && root.parentElement.querySelector(':scope > .ftkit-label span[title]');
    const title = (el.getAttribute('title') || root.getAttribute('title') ||
                   (label && label.style.display !== 'none' && label.getAttribute('title')) ||
                   (beside && beside.getAttribute('title')) || '').trim();
    const text = (el.innerText || '').trim();
    if (!title || title === 'null' || title === 'undefined' || title === text)
      bad.push((el.innerText || el.value || el.className || el.tagName).toString().slice(0, 60)
               + (bad.length ? '' : ' ' + (root.parentElement || root).outerHTML.slice(0, 700)));
  }
  return bad;
}"""

_WIDER_JS = """([panel, limit]) => {
  const out = [];
  const right = Math.min(limit, panel.getBoundingClientRect().right);
  for (const el of panel.querySelectorAll('*')) {
    const box = el.getBoundingClientRect();
    if (box.width > 0 && box.right > right + 1 && !el.closest('.ftkit-runboard-scroll'))
      out.push(el.className.toString().slice(0, 80) + ' ' + Math.round(box.right) + ' > ' + Math.round(right));
  }
  if (panel.scrollWidth > panel.clientWidth + 1)
    out.push('panel scrolls sideways: ' + panel.scrollWidth + ' > ' + panel.clientWidth);
  return out.slice(0, 12);
}"""


def _figures(panel):
    """The run figures the status line, the live stats line and the RunBoard row each show (data attributes)."""
    def attrs(locator):
        return {k: locator.get_attribute(f"data-{k}") for k in ("epochs", "steps", "best-accuracy")}
    return {"status": attrs(panel.locator(".ftkit-status [data-kind]").first),
            "stats": attrs(panel.locator(".ftkit-live-stats [data-epochs]").first),
            "runboard": attrs(panel.locator(".ftkit-runboard-table tr[data-epochs]").last)}


def test_panel_first_screen_tooltips_and_one_truth_at_1366x768(chromium, lab):
    """At a laptop's 1366x768: Train, the status line and the live plot on the first screen; nothing wider than
    the notebook; a tooltip on every control; a Stop in epoch 2 leaves every figure agreeing; switching the
    framework shows no error. Screenshots before, during and after a run go to tests/artifacts/."""
    from playwright.sync_api import expect

    url, token, work, server_log = lab
    asset = HERE / "assets" / "panel_layout.ipynb"
    notebook = f"layout/{asset.name}"
    (work / "layout").mkdir()
    shutil.copy(asset, work / notebook)
    ARTIFACTS.mkdir(exist_ok=True)
    with _page(chromium, 1366, 768) as (page, console):
        try:
            # ?reset: a fresh workspace, so the notebooks other tests opened on this server stay closed
            page.goto(f"{url}/lab/tree/{notebook}?reset&token={token}", timeout=60 * MS)
            page.locator(".jp-Notebook:visible .jp-Cell").first.wait_for(timeout=60 * MS)
            _wait_for_kernel(url, token, notebook)
            page.locator(".jp-Notebook:visible .jp-CodeCell").first.locator(".jp-InputArea-editor").click()
            page.keyboard.press("Control+Enter")   # run the panel cell, as a learner does
            panel = page.locator(".ftkit-panel")
            expect(panel.locator(".ftkit-block")).to_have_count(5, timeout=120 * MS)
            expect(panel.locator(".ftkit-status [data-kind='ok']")).to_contain_text("Press Train", timeout=60 * MS)

            # the first screen: the panel's top at the top of the window, then Train, status and live plot inside it
            panel.evaluate("el => el.scrollIntoView({block: 'start'})")
            height = page.viewport_size["height"]
            for name, sel in (("Train", ".ftkit-train"), ("status line", ".ftkit-status"),
                              ("live plot", ".ftkit-live-plot")):
                box = panel.locator(sel).first.bounding_box()
                edge = box["y"] if name == "live plot" else box["y"] + box["height"]
                assert 0 <= edge <= height, f"{name} is at y={edge:.0f}, outside the first {height} px"
            notebook_right = page.locator(".jp-Notebook:visible .jp-Cell").first.bounding_box()
            notebook_right = notebook_right["x"] + notebook_right["width"]
            wider = page.evaluate(_WIDER_JS, [panel.element_handle(), notebook_right])
            assert wider == [], f"wider than the notebook: {wider}"
            # a tooltip on every control, in every tab
            missing = panel.evaluate(_TOOLTIPS_JS)
            tabs = panel.locator(".ftkit-tabs .lm-TabBar-tab")
            for i in range(tabs.count()):
                tabs.nth(i).click()
                missing += panel.evaluate(_TOOLTIPS_JS)
            assert not missing, f"controls without a tooltip: {sorted(set(missing))}"
            tabs.nth(0).click()
            panel.evaluate("el => el.scrollIntoView({block: 'start'})")
            page.screenshot(path=str(ARTIFACTS / "panel_1366_before.png"))

            # Train, then Stop during epoch 2
            panel.locator(".ftkit-train").click()
            expect(panel.locator(".ftkit-status")).to_contain_text("epoch 1 of 6 done", timeout=120 * MS)
            # a step of epoch 2 has run (steps 26-50 of 150): Stop now lands inside epoch 2
            expect(panel.locator(".ftkit-live")).to_contain_text(re.compile(r"step (2[6-9]|3\d|4\d)/150"),
                                                                 timeout=60 * MS)
            page.screenshot(path=str(ARTIFACTS / "panel_1366_during.png"))
            panel.locator(".ftkit-stop").click()
            expect(panel.locator(".ftkit-live-status[data-status='stopped']")).to_be_visible(timeout=60 * MS)
            expect(panel.locator(".ftkit-runboard-table tr[data-status='stopped']")).to_have_count(1, timeout=30 * MS)
            expect(panel.locator(".ftkit-train")).to_be_enabled(timeout=30 * MS)
            figures = _figures(panel)
            assert figures["status"] == figures["stats"] == figures["runboard"], figures
            epochs, steps = int(figures["status"]["epochs"]), int(figures["status"]["steps"])
            assert epochs >= 2 and steps <= epochs * 25, figures   # stopped after the first epoch
            expect(panel.locator(".ftkit-status")).to_contain_text("kept the last weights")
            page.screenshot(path=str(ARTIFACTS / "panel_1366_after.png"))

            # switching the framework before the model loads shows no error
            panel.get_by_role("button", name="TensorFlow / Keras").click()
            page.wait_for_timeout(1500)
            assert not panel.locator(".ftkit-status [data-kind='error']").count()
            assert not panel.locator(".ftkit-field-error [data-kind='error']").count()
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "failure_panel_1366.png"))
            print(server_log.read_text()[-4000:], file=sys.stderr)
            print("browser console:\n" + "\n".join(console[-40:]), file=sys.stderr)
            raise
