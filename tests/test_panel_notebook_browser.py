"""End to end in a real browser: "Ask kernelagent in this notebook".

A real ``jupyter lab`` with the server extension and the built panel, headless Debian
Chromium through Playwright, the scripted model server, and the notebook's own kernel on
the kernelagent sandbox kernelspec (Docker). The person's path: open a notebook on the
sandbox kernel that defines ``df`` and run it; invoke the command (it is in the palette,
the notebook toolbar and the cell context menu); ask about ``df``; see the agent's cell
appear in that notebook below the active cell with output computed from ``df``; reload the
page and find the pending cell's Approve / Edit / Reject bar again; edit the cell and
approve it inline; save, and find the agent's cells with ``metadata.kernelagent`` in the
file; open the finished session in the main area; check the dark theme; on the host's
kernel, the command offers the sandbox kernel instead.

Screenshots go to ``$KERNELAGENT_ARTIFACTS`` (default ``tests/artifacts/``, not committed):
``notebook-agent.png``, ``notebook-approval.png``, ``notebook-agent-dark.png``,
``notebook-session-main.png``, and ``notebook-failure.png`` when a step fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nbformat
import pytest

from kernelagent.testing import ScriptedModelServer, ScriptedTurn
from tests.test_panel_browser import (
    ARTIFACTS,
    PANEL,
    Lab,
    browser_page,
    built_extension,
    change_theme,
    chromium_path,
    header_badge,
    run_from_palette,
    running_lab,
    widen_right_sidebar,
)

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

__all__ = ["built_extension", "chromium_path"]  # the browser test's fixtures, used here too

ASK = "Ask kernelagent in this notebook"
ASK_COMMAND = "kernelagent:ask-in-notebook"
QUESTION = "Which region in df has the highest revenue?"
ANSWER = "west has the highest revenue (505)."
SCRIPT = [
    ScriptedTurn.python(
        "best = df.groupby('region')['revenue'].sum().idxmax()\nprint(best, df['revenue'].max())",
        text="I'll group **df** by region.",
    ),
    ScriptedTurn.shell("wc -l analysis.ipynb", text="And check the notebook file."),  # approved
    ScriptedTurn.final(ANSWER),
]
USER_CELL = (
    "import pandas as pd\n"
    "df = pd.DataFrame({'region': ['north', 'south', 'east', 'west'],\n"
    "                   'revenue': [120, 340, 210, 505]})\n"
    "df.shape"
)


@pytest.fixture
def notebook_lab(
    tmp_path: Path, docker_available: None, chromium_path: Path
) -> Iterator[tuple[Lab, ScriptedModelServer]]:
    """JupyterLab whose kernelspecs include the sandbox one (in a data dir of its own)."""
    data_dir = tmp_path / "jupyter-data"
    env = {**os.environ, "JUPYTER_DATA_DIR": str(data_dir)}
    subprocess.run(
        [sys.executable, "-m", "kernelagent.cli", "kernelspec", "install"],
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    with running_lab(
        tmp_path, SCRIPT, starts_kernel=True, env_extra={"JUPYTER_DATA_DIR": str(data_dir)}
    ) as (lab, model):
        notebook = nbformat.v4.new_notebook()
        notebook.metadata["kernelspec"] = {
            "name": "kernelagent",
            "display_name": "Python 3 (kernelagent sandbox)",
            "language": "python",
        }
        notebook.cells = [
            nbformat.v4.new_markdown_cell("# Sales"),
            nbformat.v4.new_code_cell(USER_CELL),
        ]
        nbformat.write(notebook, lab.root / "analysis.ipynb")
        other = nbformat.v4.new_notebook()
        other.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)"}
        other.cells = [nbformat.v4.new_code_cell("x = 1")]
        nbformat.write(other, lab.root / "on-the-host.ipynb")
        yield lab, model


def test_the_agent_works_in_the_open_notebook(
    notebook_lab: tuple[Lab, ScriptedModelServer],
) -> None:
    from playwright.sync_api import expect

    lab, model = notebook_lab
    expect.set_options(timeout=60_000)
    with browser_page(lab, "notebook-failure", width=1600) as (page, page_errors):
        notebook = open_and_run_the_notebook(page, lab)
        the_command_is_in_the_toolbar_and_the_context_menu(page, notebook)
        panel = ask_about_df(page, lab, model, notebook)
        see_the_agents_cell_with_output_from_df(page, notebook)
        approve_the_pending_cell_inline(page, notebook)
        read_the_answer(page, panel, notebook)
        save_and_check_the_file(page, lab)
        open_the_finished_session_in_the_main_area(page, panel)
        a_notebook_on_another_kernel_is_offered_the_sandbox(page)
    assert model.turns_served == len(SCRIPT)
    told = json.dumps(model.completion_requests()[0].body)
    assert "analysis.ipynb" in told and "df: DataFrame; shape 4 x 2" in told, told[:3000]
    assert "revenue (int64)" in told
    assert not page_errors, page_errors


# --- the steps ---------------------------------------------------------------------------


def open_and_run_the_notebook(page: Page, lab: Lab) -> Locator:
    """The person's notebook on the sandbox kernel; running it defines ``df``."""
    from playwright.sync_api import expect

    page.goto(f"{lab.url}/lab?token={lab.token}")
    page.wait_for_function("() => !!window.jupyterapp")
    page.evaluate("async () => { await window.jupyterapp.restored; }")
    page.evaluate(
        "() => window.jupyterapp.commands.execute('docmanager:open', {path: 'analysis.ipynb'})"
    )
    notebook = page.locator(".jp-NotebookPanel:visible")
    expect(notebook.locator(".jp-Cell").nth(1)).to_be_visible()
    # the sandbox kernel is up (a container starts in a few seconds)
    page.wait_for_function(
        "() => window.jupyterapp.shell.currentWidget?.sessionContext?.session?.kernel?.status"
        " === 'idle'",
        timeout=120_000,
    )
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
    expect(notebook.locator(".jp-Cell").nth(1).locator(".jp-OutputArea-output")).to_contain_text(
        "(4, 2)"
    )
    notebook.locator(".jp-Cell").nth(1).locator(".jp-InputPrompt").click()  # the active cell
    return notebook


def the_command_is_in_the_toolbar_and_the_context_menu(page: Page, notebook: Locator) -> None:
    from playwright.sync_api import expect

    toolbar_button = notebook.locator(
        '.jp-NotebookPanel-toolbar [data-command="kernelagent:ask-in-notebook"]'
    )
    expect(toolbar_button).to_be_visible()
    notebook.locator(".jp-Cell").nth(1).locator(".jp-InputPrompt").click(button="right")
    item = page.locator(".lm-Menu-item", has_text=ASK)
    expect(item).to_be_visible()
    page.keyboard.press("Escape")
    expect(item).to_be_hidden()


def ask_about_df(page: Page, lab: Lab, model: ScriptedModelServer, notebook: Locator) -> Locator:
    """The command binds the panel to the notebook; the question goes to the agent."""
    from playwright.sync_api import expect

    run_from_palette(page, ASK)
    panel = page.locator(PANEL)
    expect(panel).to_be_visible()
    expect(panel.locator(".jp-KernelAgent-binding")).to_contain_text("Working in analysis.ipynb")
    widen_right_sidebar(page, 560)
    panel.get_by_role("button", name="Settings").click()
    panel.locator("input[name=model]").fill("scripted-model")
    panel.locator("input[name=base_url]").fill(model.base_url)
    panel.locator("select[name=approve]").select_option("shell")
    panel.get_by_role("textbox", name="Task").fill(QUESTION)
    panel.get_by_role("button", name="Ask", exact=True).click()
    return panel


def see_the_agents_cell_with_output_from_df(page: Page, notebook: Locator) -> None:
    """Below the active cell: the agent's text (markdown), then its cell and output."""
    from playwright.sync_api import expect

    cells = notebook.locator(".jp-Cell")
    expect(cells.nth(2)).to_contain_text("I'll group df by region.")
    expect(cells.nth(2)).to_have_class(has("jp-MarkdownCell"))
    agent_cell = cells.nth(3)
    expect(agent_cell).to_contain_text("idxmax")
    expect(agent_cell.locator(".jp-OutputArea-output")).to_contain_text("west 505")
    expect(agent_cell.locator(".jp-InputPrompt")).to_contain_text("[2]")  # the notebook's kernel
    page.screenshot(path=str(ARTIFACTS / "notebook-agent.png"))


def approve_the_pending_cell_inline(page: Page, notebook: Locator) -> None:
    """The shell command waits in the notebook, not yet run, with Approve / Edit / Reject."""
    from playwright.sync_api import expect

    bar = notebook.locator(".jp-KernelAgent-cellApproval")
    expect(bar).to_be_visible()
    pending = notebook.locator(".jp-Cell.jp-KernelAgent-pendingCell")
    expect(pending).to_contain_text("wc -l analysis.ipynb")
    expect(pending.locator(".jp-OutputArea-output")).to_have_count(0)
    for name in ("Approve", "Edit", "Reject"):
        expect(bar.get_by_role("button", name=name)).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "notebook-approval.png"))
    change_theme(page, "JupyterLab Dark", light=False)
    assert page.evaluate("() => document.body.dataset.jpThemeLight") == "false"
    background = bar.evaluate("node => getComputedStyle(node).backgroundColor")
    page.screenshot(path=str(ARTIFACTS / "notebook-agent-dark.png"))
    change_theme(page, "JupyterLab Light", light=True)
    assert bar.evaluate("node => getComputedStyle(node).backgroundColor") != background

    # The person saves and reloads the page: the panel takes the session up again and
    # the pending cell gets its bar back.
    save(page)
    page.reload()
    page.wait_for_function("() => !!window.jupyterapp")
    page.evaluate("async () => { await window.jupyterapp.restored; }")
    expect(bar).to_be_visible()
    expect(page.locator(".jp-KernelAgent-bindingText")).to_contain_text("analysis.ipynb")
    expect(bar).to_have_count(1)

    # Edit: the person changes the pending cell in the notebook's own editor, then approves.
    bar.get_by_role("button", name="Edit").click()
    editor = pending.locator(".cm-content")
    expect(editor).to_be_focused()
    page.keyboard.press("End")
    page.keyboard.press("Control+End")
    for _ in range(len("-l analysis.ipynb")):
        page.keyboard.press("Backspace")
    page.keyboard.type("-c analysis.ipynb")
    expect(editor).to_contain_text("wc -c analysis.ipynb")
    page.keyboard.press("Escape")
    bar.get_by_role("button", name="Approve").click()
    expect(bar).to_have_count(0)
    shell_cell = notebook.locator(".jp-Cell", has_text="wc -c analysis.ipynb")
    expect(shell_cell.locator(".jp-OutputArea-output")).to_contain_text("analysis.ipynb")
    assert notebook.locator(".jp-Cell", has_text="wc -l").count() == 0


def read_the_answer(page: Page, panel: Locator, notebook: Locator) -> None:
    from playwright.sync_api import expect

    expect(header_badge(panel)).to_have_text("completed")
    expect(panel.locator(".jp-KernelAgent-final")).to_contain_text(ANSWER)
    expect(notebook.locator(".jp-MarkdownCell", has_text=ANSWER)).to_be_visible()
    selected = panel.locator(".jp-KernelAgent-sessionItem.jp-mod-selected")
    expect(selected).to_contain_text("in analysis.ipynb")


def save_and_check_the_file(page: Page, lab: Lab) -> None:
    """JupyterLab saves the notebook: the file holds the agent's cells and metadata."""
    path = lab.root / "analysis.ipynb"
    save(page)
    saved = nbformat.read(path, as_version=4)
    nbformat.validate(saved)
    agent = [cell for cell in saved.cells if "kernelagent" in cell.metadata]
    code = [cell for cell in agent if cell.cell_type == "code"]
    assert [cell.metadata.kernelagent["status"] for cell in code] == ["ok", "ok"], code
    assert "idxmax" in code[0].source and "west 505" in json.dumps(code[0].outputs)
    assert code[1].source == "%%bash\nwc -c analysis.ipynb"  # as the person edited it
    assert code[1].metadata.kernelagent["kind"] == "shell"
    session_ids = {cell.metadata.kernelagent["session_id"] for cell in agent}
    assert len(session_ids) == 1
    # the person's cells are where they were, the agent's below the active one
    assert saved.cells[1].source == USER_CELL
    assert saved.cells.index(code[0]) == 3


def open_the_finished_session_in_the_main_area(page: Page, panel: Locator) -> None:
    from playwright.sync_api import expect

    panel.locator(".jp-KernelAgent-openSession").click()
    main = page.locator("#jp-main-dock-panel .jp-KernelAgent-mainSession")
    expect(main).to_be_visible()
    expect(main.locator(".jp-KernelAgent-final")).to_contain_text(ANSWER)
    expect(main.get_by_role("button", name="Stop")).to_be_hidden()  # it has finished
    expect(main.locator(".jp-KernelAgent-cell")).to_have_count(2)
    expect(
        main.locator(".jp-KernelAgent-cell").first.locator(".jp-OutputArea-output")
    ).to_contain_text("west 505")
    tab = page.locator("#jp-main-dock-panel .lm-TabBar-tab", has_text="kernelagent:")
    expect(tab).to_be_visible()
    # next to its notebook, in the main area (the sidebars fold away; it stays)
    page.evaluate(
        "() => { window.jupyterapp.shell.collapseLeft(); window.jupyterapp.shell.collapseRight(); }"
    )
    expect(page.locator(PANEL)).to_be_hidden()
    expect(page.locator(".jp-NotebookPanel:visible")).to_have_count(1)
    page.wait_for_timeout(300)
    box = main.bounding_box()
    assert box is not None and box["width"] > 600, box
    page.screenshot(path=str(ARTIFACTS / "notebook-session-main.png"))


def a_notebook_on_another_kernel_is_offered_the_sandbox(page: Page) -> None:
    """On the host's kernel the command does not bind: it offers the sandbox kernel, saying why."""
    from playwright.sync_api import expect

    page.evaluate(
        "() => window.jupyterapp.commands.execute('docmanager:open', {path: 'on-the-host.ipynb'})"
    )
    page.wait_for_function(
        "() => window.jupyterapp.shell.currentWidget?.context?.path === 'on-the-host.ipynb'"
        " && window.jupyterapp.shell.currentWidget.sessionContext?.session?.kernel?.status"
        " === 'idle'",
        timeout=120_000,
    )
    host_notebook = page.locator(".jp-NotebookPanel", has_text="x = 1")
    host_notebook.locator(".jp-InputPrompt").first.click()  # it is the active notebook
    page.wait_for_function(
        "() => window.jupyterapp.shell.currentWidget?.context?.path === 'on-the-host.ipynb'"
    )
    # (not awaited: the command waits for the person's answer to its dialog)
    page.evaluate(f"() => {{ void window.jupyterapp.commands.execute('{ASK_COMMAND}'); }}")
    dialog = page.locator(".jp-Dialog")
    expect(dialog).to_contain_text("Switch to the kernelagent sandbox kernel?")
    expect(dialog).to_contain_text("This notebook runs on Python 3 (ipykernel)")
    expect(dialog).to_contain_text("Docker container with no network")
    page.screenshot(path=str(ARTIFACTS / "notebook-switch-kernel.png"))
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_have_count(0)
    kernel = page.evaluate(
        "() => window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.name"
    )
    assert kernel == "python3"
    expect(page.locator(".jp-KernelAgent-bindingText")).not_to_contain_text("on-the-host")


def save(page: Page) -> None:
    page.evaluate("() => window.jupyterapp.commands.execute('docmanager:save')")
    page.wait_for_function(
        "() => !window.jupyterapp.shell.currentWidget?.context?.model?.dirty", timeout=30_000
    )


def has(class_name: str) -> Any:
    import re

    return re.compile(rf"(^|\s){re.escape(class_name)}(\s|$)")
