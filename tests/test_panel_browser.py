"""The JupyterLab panel end to end, in a real browser.

A real ``jupyter lab`` (the kernelagent server extension enabled, the prebuilt
labextension from ``kernelagent/labextension/`` found on an extra labextensions path),
headless Debian Chromium driven by Playwright, the scripted model server, and real
kernels in the Docker sandbox. The person's path through the panel: open it from the
command palette, type a task, give a CSV as data, Run; watch cells, outputs and a plot
appear; approve, edit and reject shell commands; read the answer; follow up; reload the
session from the list; open the recorded notebook; replay it.

Screenshots go to ``$KERNELAGENT_ARTIFACTS`` (default ``tests/artifacts/``, not
committed): ``panel.png`` and ``panel-dark.png`` (at the first approval),
``panel-running.png``, ``panel-completed.png``, ``panel-replay.png``, and ``failure.png``
when a step fails.
Needs: ``pip install playwright`` (no ``playwright install``: Debian's ``chromium``),
``cd labextension && npm install && npm run build``. With CI=true a missing browser,
build or Docker fails the test instead of skipping it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from kernelagent.testing import ScriptedModelServer, ScriptedTurn

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

REPO = Path(__file__).resolve().parent.parent
BUILT_EXTENSION = REPO / "kernelagent" / "labextension"
SALES = REPO / "examples" / "sales.csv"
ARTIFACTS = Path(os.environ.get("KERNELAGENT_ARTIFACTS") or Path(__file__).parent / "artifacts")
"""Screenshots (CI keeps them as artifacts; never committed)."""
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

PANEL = "#kernelagent-panel"
ANSWER = "West has the highest total revenue."
FOLLOW_UP_ANSWER = "North has the lowest."
SCRIPT = [
    ScriptedTurn.python(
        "import time\nimport pandas as pd\ndf = pd.read_csv('sales.csv')\ntime.sleep(2)\n"
        "totals = df.groupby('region')['revenue'].sum()\ntotals.sort_values()",
        text="First I'll load the **sales** data and total it by region.",
    ),
    ScriptedTurn.python(
        "import matplotlib.pyplot as plt\ntotals.plot.bar(title='Revenue by region')\nplt.show()",
        text="Now a plot.",
    ),
    ScriptedTurn.shell("wc -l sales.csv", text="Let me count the rows."),  # approved
    ScriptedTurn.shell("head -n 5 sales.csv"),  # edited to head -n 2, then approved
    ScriptedTurn.shell("rm sales.csv"),  # rejected
    # (the loop wants a successful cell in the current run before it takes an answer)
    ScriptedTurn.python("print(totals.idxmax())", text="I'll keep the file."),
    ScriptedTurn.final(ANSWER),
    ScriptedTurn.python("print(totals.idxmin())"),  # the follow-up
    ScriptedTurn.final(FOLLOW_UP_ANSWER),
    ScriptedTurn.python("import time\ntime.sleep(120)"),  # a second session, stopped
]


def unavailable(problem: str) -> None:
    if IN_CI:
        pytest.fail(f"CI=true but the browser test cannot run: {problem}")
    pytest.skip(problem)


@pytest.fixture(scope="module")
def built_extension() -> Path:
    """The output of `npm run build` in labextension/ (gitignored)."""
    static = BUILT_EXTENSION / "static"
    if not (BUILT_EXTENSION / "package.json").is_file() or not static.is_dir():
        unavailable("the panel is not built: cd labextension && npm install && npm run build")
    return BUILT_EXTENSION


@pytest.fixture(scope="module")
def chromium_path(built_extension: Path) -> Path:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        unavailable("Playwright is not installed: pip install playwright")
    if not CHROMIUM.exists():
        unavailable("Chromium is missing: apt-get install -y chromium")
    return CHROMIUM


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Lab:
    def __init__(self, url: str, token: str, root: Path, log: Path) -> None:
        self.url, self.token, self.root, self.log = url, token, root, log


@pytest.fixture
def lab(
    tmp_path: Path, docker_available: None, chromium_path: Path
) -> Iterator[tuple[Lab, ScriptedModelServer]]:
    """``jupyter lab`` with the server extension and the built panel, in a sandboxed home."""
    with running_lab(tmp_path, SCRIPT) as started:
        yield started


@contextmanager
def running_lab(
    tmp_path: Path,
    script: list[ScriptedTurn],
    *,
    starts_kernel: bool = False,
    env_extra: dict[str, str] | None = None,
) -> Iterator[tuple[Lab, ScriptedModelServer]]:
    """Start ``jupyter lab`` (and the scripted model server); stop both and remove the
    sandboxes it left after."""
    root = tmp_path / "root"
    root.mkdir()
    labextensions = tmp_path / "labextensions"
    # The directory must be named like the package: JupyterLab serves its files by name.
    shutil.copytree(BUILT_EXTENSION, labextensions / "kernelagent-panel")
    # The sandbox's ZMQ ipc socket paths must fit in 107 bytes: a short runtime dir.
    runtime = Path(tempfile.mkdtemp(prefix="ka-rt-"))
    port, token = free_port(), "panel-test-token"
    env = {
        **os.environ,
        "KERNELAGENT_HOME": str(tmp_path / "kernelagent-home"),
        "JUPYTER_RUNTIME_DIR": str(runtime),
        "JUPYTER_CONFIG_DIR": str(tmp_path / "jupyter-config"),
        "JUPYTER_PLATFORM_DIRS": "1",
        **(env_extra or {}),
    }
    env.pop("OPENAI_BASE_URL", None)
    # No "get notified about Jupyter news?" toast over the panel in the screenshots.
    settings = tmp_path / "lab-settings" / "@jupyterlab" / "apputils-extension"
    notification = settings / "notification.jupyterlab-settings"
    notification.parent.mkdir(parents=True)
    notification.write_text(json.dumps({"fetchNews": "false"}))
    log = tmp_path / "jupyter-lab.log"
    server = ScriptedModelServer(script).start()
    with log.open("w") as log_file:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "jupyterlab",
                "--no-browser",
                "--allow-root",
                "--ip=127.0.0.1",
                f"--port={port}",
                f"--IdentityProvider.token={token}",
                f"--ServerApp.root_dir={root}",
                '--ServerApp.jpserver_extensions={"kernelagent.server": True}',
                f"--LabApp.extra_labextensions_path={labextensions}",
                f"--LabApp.user_settings_dir={tmp_path / 'lab-settings'}",
                f"--LabApp.workspaces_dir={tmp_path / 'lab-workspaces'}",
                "--LabApp.expose_app_in_browser=True",
                # no fetching from the internet, no kernel for the notebook we open
                "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
                "--LabApp.extension_manager=readonly",
                f"--LabApp.notebook_starts_kernel={starts_kernel}",
            ],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise AssertionError(f"jupyter lab exited:\n{log.read_text()[-4000:]}")
            try:
                with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"jupyter lab did not start:\n{log.read_text()[-4000:]}")
            time.sleep(0.3)
        yield Lab(url, token, root, log), server
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        server.stop()
        leftovers = remove_sandboxes_of(process.pid)
        if leftovers:  # the server extension should have shut them down when it stopped
            print(f"removed sandboxes jupyter lab left running: {leftovers}")
        shutil.rmtree(runtime, ignore_errors=True)


def remove_sandboxes_of(owner_pid: int) -> list[str]:
    """Remove the sandbox containers a (stopped) process started; their names."""
    from kernelagent.sandbox.docker_provisioner import LABEL_OWNER_PID, docker_client

    owned = {"label": f"{LABEL_OWNER_PID}={owner_pid}"}
    containers = docker_client().containers.list(all=True, filters=owned)
    for container in containers:
        container.remove(force=True)
    return [container.name for container in containers]


def api_get(lab: Lab, path: str) -> Any:
    url = f"{lab.url}/kernelagent/api/{path}?token={lab.token}"
    with urllib.request.urlopen(url, timeout=10) as reply:
        return json.loads(reply.read())


@contextmanager
def browser_page(lab: Lab, failure: str, width: int = 1500) -> Iterator[tuple[Page, list[str]]]:
    """A page of Debian's Chromium and the page errors it raises; when the test fails in
    it, a screenshot ``<failure>.png`` and the end of the lab's log."""
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page_errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": width, "height": 1000})
        page.set_default_timeout(60_000)
        page.on("pageerror", lambda error: page_errors.append(str(error)))
        try:
            yield page, page_errors
        except Exception:
            page.screenshot(path=str(ARTIFACTS / f"{failure}.png"))
            print(f"jupyter lab log (end):\n{lab.log.read_text()[-5000:]}")
            raise
        finally:
            browser.close()


def test_labextension_is_listed_enabled_and_ok(built_extension: Path, tmp_path: Path) -> None:
    """A prebuilt copy on a labextensions path is what `jupyter labextension list` sees."""
    shutil.copytree(built_extension, tmp_path / "labextensions" / "kernelagent-panel")
    listing = subprocess.run(
        [sys.executable, "-c", "from jupyterlab.labextensions import main; main()", "list"],
        env={**os.environ, "JUPYTER_PATH": str(tmp_path), "NO_COLOR": "1"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = listing.stdout + listing.stderr
    line = next((line for line in output.splitlines() if "kernelagent-panel" in line), "")
    assert "enabled" in line and "OK" in line, output


def test_panel_runs_a_session_end_to_end(lab: tuple[Lab, ScriptedModelServer]) -> None:
    from playwright.sync_api import expect

    server_lab, model = lab
    expect.set_options(timeout=60_000)  # sandboxes start and sessions resume in seconds
    shutil.copy(SALES, server_lab.root / "sales.csv")
    with browser_page(server_lab, "failure") as (page, page_errors):
        socket_urls = drop_the_event_socket_once(page)
        panel = open_panel(page, server_lab)
        start_session(panel, model)
        watch_cells_run(page, panel)
        take_screenshots_at_the_approval(page, panel)
        approve_edit_and_reject(panel, server_lab)
        read_the_answer_and_follow_up(page, panel, model)
        # The socket was dropped mid-session; the panel came back with since=<last seq>
        # and showed every event once.
        assert len(socket_urls) >= 2 and int(socket_urls[1].split("since=")[1]) > 0
        expect(panel.locator(".jp-KernelAgent-cell")).to_have_count(6)
        reload_from_the_list(panel)
        open_the_notebook(page, panel, server_lab)
        replay(page, panel)
        stop_a_running_session(panel)

    assert model.turns_served == len(SCRIPT)
    assert not page_errors, page_errors


def test_panel_lists_searches_and_deletes_memories(
    tmp_path: Path, docker_available: None, chromium_path: Path
) -> None:
    """Memories written through the store (as sessions and the CLI write them) show in the
    panel's Memory section; a search narrows them; delete asks, then removes one."""
    from playwright.sync_api import expect

    from kernelagent.memory import open_memory_store

    store = open_memory_store(tmp_path / "kernelagent-home")  # the lab's home and store
    sha = "5" * 64
    card = store.remember(
        "sales.csv: 4 rows x 5 columns; read with pd.read_csv('sales.csv', parse_dates=['date'])",
        "dataset",
        key=f"dataset:{sha}",
        dataset_sha256=sha,
        dataset_name="sales.csv",
        session_id="0123456789ab",
    )
    fact = store.remember("the revenue figures are in cents", session_id="0123456789ab")
    weather = store.remember("temperatures in weather.csv are in Fahrenheit", "preference")
    with (
        running_lab(tmp_path, []) as (server_lab, _),
        browser_page(server_lab, "failure-memory") as (page, page_errors),
    ):
        panel = open_panel(page, server_lab)
        panel.get_by_role("button", name="Memory", exact=True).click()
        items = panel.locator(".jp-KernelAgent-memoryItem")
        expect(items).to_have_count(3)
        shown_card = items.and_(panel.locator(f'[data-memory-id="{card.id}"]'))
        for text in ("dataset card", "sales.csv", "parse_dates", "from session 0123456789ab"):
            expect(shown_card).to_contain_text(text)
        page.screenshot(path=str(ARTIFACTS / "panel-memory.png"))

        search = panel.get_by_label("Search memories")
        search.fill("fahrenheit temperature")  # stemmed: matches "temperatures"
        search.press("Enter")
        expect(items).to_have_count(1)
        expect(items.first).to_contain_text(weather.text)
        search.fill("")
        search.press("Enter")
        expect(items).to_have_count(3)

        panel.get_by_role("button", name=f"Delete memory {fact.id}").click()
        dialog = page.locator(".jp-Dialog")
        expect(dialog).to_contain_text("Delete this memory?")
        expect(dialog).to_contain_text(fact.text)
        dialog.get_by_role("button", name="Delete", exact=True).click()
        expect(items).to_have_count(2)
        expect(panel.locator(f'[data-memory-id="{fact.id}"]')).to_have_count(0)
        listed = api_get(server_lab, "memories")["memories"]
        assert {memory["id"] for memory in listed} == {card.id, weather.id}
    assert {memory.id for memory in store.list()} == {card.id, weather.id}
    assert not page_errors, page_errors


# --- the steps ---------------------------------------------------------------------------


def open_panel(page: Page, server_lab: Lab) -> Locator:
    """Load JupyterLab; open the panel from the command palette; give it room."""
    from playwright.sync_api import expect

    page.goto(f"{server_lab.url}/lab?token={server_lab.token}")
    page.wait_for_function("() => !!window.jupyterapp")
    page.evaluate("async () => { await window.jupyterapp.restored; }")
    sidebar_tab = '.jp-SideBar.jp-mod-right .lm-TabBar-tab[data-id="kernelagent-panel"]'
    expect(page.locator(sidebar_tab)).to_be_visible()  # the panel's icon
    run_from_palette(page, "Open kernelagent panel")
    panel = page.locator(PANEL)
    expect(panel).to_be_visible()
    page.evaluate("() => window.jupyterapp.shell.collapseLeft()")
    widen_right_sidebar(page, 620)
    return panel


def start_session(panel: Locator, model: ScriptedModelServer) -> None:
    """The task, a CSV as data, the settings (the scripted model; approve shell commands)."""
    panel.get_by_label("Task").fill("Which region has the highest total revenue? Plot it.")
    panel.get_by_label("Data files").fill("sales.csv")
    panel.get_by_role("button", name="Settings").click()
    panel.locator("input[name=model]").fill("scripted-model")
    panel.locator("input[name=base_url]").fill(model.base_url)
    panel.locator("select[name=approve]").select_option("shell")
    panel.get_by_role("button", name="Run").click()


def watch_cells_run(page: Page, panel: Locator) -> None:
    """A highlighted cell runs under a spinner, then shows its output; then a plot."""
    from playwright.sync_api import expect

    running = panel.locator(".jp-KernelAgent-cell.jp-mod-running").first
    expect(running).to_be_visible()
    expect(running.locator(".jp-KernelAgent-spinner")).to_be_visible()
    # CodeMirror's highlighter wraps the tokens in classed spans
    expect(running.locator(".jp-KernelAgent-code code span[class]").first).to_be_attached()
    expect(header_badge(panel)).to_have_text("running")
    expect(panel.get_by_role("button", name="Stop")).to_be_visible()
    panel.evaluate("node => { node.scrollTop = 0; }")
    page.screenshot(path=str(ARTIFACTS / "panel-running.png"))

    first_cell = panel.locator(".jp-KernelAgent-cell").first
    expect(first_cell).to_have_class(has_class("jp-mod-ok"))
    expect(first_cell.locator(".jp-OutputArea-output")).to_contain_text("West")
    expect(panel.locator(".jp-KernelAgent-assistant").first).to_contain_text("sales")

    image = panel.locator(".jp-KernelAgent-outputs img").first  # the matplotlib figure
    expect(image).to_be_visible()
    assert image.evaluate("img => img.naturalWidth") > 100


def take_screenshots_at_the_approval(page: Page, panel: Locator) -> None:
    """The shell command waits for approval: screenshots in the light and dark themes."""
    from playwright.sync_api import expect

    card = panel.locator(".jp-KernelAgent-approval").first
    expect(card).to_be_visible()
    expect(card).to_contain_text("wc -l sales.csv")
    expect(header_badge(panel)).to_have_text("awaiting approval")
    card.scroll_into_view_if_needed()
    page.wait_for_timeout(300)
    page.screenshot(path=str(ARTIFACTS / "panel.png"))

    change_theme(page, "JupyterLab Dark", light=False)
    page.screenshot(path=str(ARTIFACTS / "panel-dark.png"))
    change_theme(page, "JupyterLab Light", light=True)


def approve_edit_and_reject(panel: Locator, server_lab: Lab) -> None:
    from playwright.sync_api import expect

    cards = panel.locator(".jp-KernelAgent-approval")
    cells = panel.locator(".jp-KernelAgent-cell")

    card = cards.nth(0)
    card.get_by_role("button", name="Approve").click()
    expect(card).to_have_class(has_class("jp-mod-decided"))
    expect(card).to_contain_text("Approved by")
    expect(cells.nth(2)).to_contain_text("%%bash")
    expect(cells.nth(2).locator(".jp-OutputArea-output")).to_contain_text("sales.csv")

    # Edit: the person changes the command, then approves the edited code.
    card = cards.nth(1)
    expect(card).to_contain_text("head -n 5 sales.csv")
    card.get_by_role("button", name="Edit").click()
    card.get_by_label("Edited code").fill("%%bash\nhead -n 2 sales.csv")
    card.get_by_role("button", name="Approve edited").click()
    expect(card).to_contain_text("Approved with edits")
    expect(cells.nth(3)).to_contain_text("head -n 2 sales.csv")
    expect(cells.nth(3).locator(".jp-OutputArea-output")).to_contain_text("region")

    # Reject, with a reason the model reads.
    card = cards.nth(2)
    expect(card).to_contain_text("rm sales.csv")
    card.get_by_role("button", name="Reject").click()
    card.get_by_label("Reason for rejecting").fill("keep the data")
    card.get_by_role("button", name="Reject").click()
    expect(card).to_contain_text("Rejected")
    expect(card).to_contain_text("keep the data")
    assert (server_lab.root / "sales.csv").exists()


def read_the_answer_and_follow_up(page: Page, panel: Locator, model: ScriptedModelServer) -> None:
    from playwright.sync_api import expect

    final = panel.locator(".jp-KernelAgent-final")
    expect(final).to_contain_text(ANSWER)
    expect(header_badge(panel)).to_have_text("completed")
    selected = panel.locator(".jp-KernelAgent-sessionItem.jp-mod-selected .jp-KernelAgent-badge")
    expect(selected).to_have_text("completed")
    expect(panel.get_by_role("button", name="Stop")).to_be_hidden()
    page.screenshot(path=str(ARTIFACTS / "panel-completed.png"))
    assert "keep the data" in json.dumps(model.completion_requests()[5].body)

    panel.get_by_label("Follow-up instruction").fill("Which region is lowest?")
    panel.get_by_role("button", name="Send").click()
    expect(panel.locator(".jp-KernelAgent-user").last).to_have_text("Which region is lowest?")
    expect(final.last).to_contain_text(FOLLOW_UP_ANSWER)
    expect(header_badge(panel)).to_have_text("completed")


def reload_from_the_list(panel: Locator) -> None:
    """Choosing the session in the list loads it again (GET its events, then the socket)."""
    from playwright.sync_api import expect

    panel.locator(".jp-KernelAgent-sessionItem").first.click()
    expect(panel.locator(".jp-KernelAgent-final")).to_have_count(2)
    expect(panel.locator(".jp-KernelAgent-approval")).to_have_count(3)
    expect(panel.locator(".jp-KernelAgent-cell")).to_have_count(6)
    expect(panel.locator(".jp-KernelAgent-outputs img")).to_have_count(1)


def open_the_notebook(page: Page, panel: Locator, server_lab: Lab) -> None:
    """The recorded notebook opens in the main area, next to the panel."""
    from playwright.sync_api import expect

    sessions = api_get(server_lab, "sessions")["sessions"]
    assert len(sessions) == 1 and sessions[0]["status"] == "completed"
    notebook = sessions[0]["notebook"]
    assert not notebook.startswith("/") and (server_lab.root / notebook).is_file()
    panel.get_by_role("button", name="Open notebook").click()
    tab = page.locator("#jp-main-dock-panel .lm-TabBar-tab", has_text=Path(notebook).name)
    expect(tab).to_be_visible()
    expect(page.locator(".jp-NotebookPanel:visible .jp-Cell").first).to_be_visible()
    expect(page.locator(".jp-NotebookPanel:visible")).to_contain_text("wc -l sales.csv")


def replay(page: Page, panel: Locator) -> None:
    """Replay the notebook in a fresh sandbox: one report row per code cell."""
    from playwright.sync_api import expect

    panel.get_by_role("button", name="Replay").click()
    table = panel.locator(".jp-KernelAgent-replayTable")
    expect(table).to_be_visible(timeout=150_000)
    outcomes = table.locator("tbody tr td:nth-child(2)").all_inner_texts()
    assert len(outcomes) >= 4, outcomes
    assert "diverged" not in outcomes and "error" not in outcomes, outcomes
    expect(panel.locator(".jp-KernelAgent-replayTitle")).to_contain_text("matched")
    page.screenshot(path=str(ARTIFACTS / "panel-replay.png"))


def stop_a_running_session(panel: Locator) -> None:
    """A second session (the settings are remembered); Stop interrupts its long cell."""
    from playwright.sync_api import expect

    panel.get_by_label("Task").fill("Wait for two minutes.")
    panel.get_by_label("Data files").fill("")
    panel.get_by_role("button", name="Run").click()
    expect(panel.locator(".jp-KernelAgent-sessionItem")).to_have_count(2)
    running = panel.locator(".jp-KernelAgent-cell.jp-mod-running")
    expect(running).to_have_count(1)
    panel.get_by_role("button", name="Stop").click()
    expect(header_badge(panel)).to_have_text("interrupted")
    expect(running).to_have_count(0)
    expect(panel.get_by_role("button", name="Stop")).to_be_hidden()
    expect(panel.locator(".jp-KernelAgent-sessionItem.jp-mod-selected")).to_contain_text(
        "interrupted"
    )


# --- helpers ---------------------------------------------------------------------------


def drop_the_event_socket_once(page: Page) -> list[str]:
    """Pass the events WebSocket through, but close the first one after the first
    cell_finished, as a network blip would. Returns the URLs the page connected to."""
    urls: list[str] = []

    def route(ws: Any) -> None:
        urls.append(ws.url)
        server = ws.connect_to_server()
        first = len(urls) == 1

        def forward(message: str | bytes) -> None:
            ws.send(message)
            if first and '"type": "cell_finished"' in str(message):
                ws.close()
                server.close()

        server.on_message(forward)

    page.route_web_socket(re.compile(r"/kernelagent/api/sessions/[^/]+/events"), route)
    return urls


def header_badge(panel: Locator) -> Locator:
    return panel.locator(".jp-KernelAgent-sessionHeader .jp-KernelAgent-badge")


def has_class(class_name: str) -> re.Pattern[str]:
    """For ``to_have_class``: the element has this class (among others)."""
    return re.compile(rf"(^|\s){re.escape(class_name)}(\s|$)")


def change_theme(page: Page, theme: str, *, light: bool) -> None:
    page.evaluate(
        "theme => window.jupyterapp.commands.execute('apputils:change-theme', {theme})", theme
    )
    page.wait_for_function(
        "light => document.body.dataset.jpThemeLight === String(light)", arg=light
    )
    page.wait_for_timeout(800)  # the theme's CSS applies


def run_from_palette(page: Page, label: str) -> None:
    """Open the command palette, search for `label`, click it.

    The modal palette closes when it loses focus, and JupyterLab may still move the
    focus around just after it starts, so this tries again a few times.
    """
    palette_input = page.locator(".lm-CommandPalette-input")
    for _ in range(5):
        page.locator("#jp-main-dock-panel").click(position={"x": 5, "y": 5})
        page.keyboard.press("Control+Shift+C")
        try:
            palette_input.wait_for(state="visible", timeout=3000)
            palette_input.fill(label, timeout=3000)
            page.locator(".lm-CommandPalette-item", has_text=label).first.click(timeout=3000)
            return
        except Exception:
            page.keyboard.press("Escape")
    raise AssertionError(f"could not run {label!r} from the command palette")


def widen_right_sidebar(page: Page, width: int) -> None:
    """Drag the handle between the main area and the right sidebar to give it `width` px."""
    handle = page.locator("#jp-main-split-panel > .lm-SplitPanel-handle:visible").last
    box = handle.bounding_box()
    viewport = page.viewport_size
    if box is None or viewport is None:
        return
    target_x = viewport["width"] - width - 33  # the right sidebar's tab bar is ~33 px wide
    middle_y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] / 2, middle_y)
    page.mouse.down()
    page.mouse.move(target_x, middle_y, steps=5)
    page.mouse.up()
