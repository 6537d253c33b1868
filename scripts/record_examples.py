"""Record the example sessions in notebooks/ with kernelagent itself.

    python scripts/record_examples.py                       # scripted demo model (deterministic)
    python scripts/record_examples.py --base-url URL --model NAME [--api chat]   # a real model

The scripted turns are what a careful analyst would do; they run for real in the
Docker sandbox and the outputs are the kernel's. With --base-url a real model decides.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import kernelagent.api as api
from kernelagent.testing import ScriptedModelServer, ScriptedTurn

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
WORKSPACE = NOTEBOOKS / "workspace"
SALES = ROOT / "examples" / "sales.csv"

EXAMPLES = {
    "sales-summary": (
        "Summarise sales.csv: summary statistics of units and revenue, total revenue per region, "
        "and a bar chart of monthly revenue. Answer with the region with the highest total "
        "revenue.",
        [
            ScriptedTurn.python(
                "import pandas as pd\n"
                "sales = pd.read_csv('sales.csv', parse_dates=['date'])\n"
                "print(sales.shape)\nprint(sales.dtypes)\nsales.head()",
                text="I'll load the data and look at its shape and types first.",
            ),
            ScriptedTurn.python("sales[['units', 'revenue']].describe().round(2)"),
            ScriptedTurn.python(
                "by_region = "
                "sales.groupby('region')['revenue'].sum().sort_values(ascending=False)\n"
                "by_region.round(2)"
            ),
            ScriptedTurn.python(
                "import matplotlib.pyplot as plt\n"
                "monthly = sales.set_index('date')['revenue'].resample('MS').sum()\n"
                "ax = monthly.plot.bar(figsize=(8, 3), title='Revenue by month')\n"
                "ax.set_xticklabels([d.strftime('%b') for d in monthly.index], rotation=0)\n"
                "ax.set_ylabel('revenue')\nplt.tight_layout()\nplt.show()"
            ),
            ScriptedTurn.final(
                "West has the highest total revenue (28,600.62), ahead of South (25,123.50).",
                text="West leads; the monthly chart shows revenue spread across the year.",
            ),
        ],
    ),
    "growth-question": (
        "Which product grew its revenue the most from the first half of 2024 to the second half, "
        "and by what percentage? Answer as 'PRODUCT: N%' with one decimal.",
        [
            ScriptedTurn.python(
                "import pandas as pd\nsales = pd.read_csv('sales.csv', parse_dates=['date'])\n"
                "sales['half'] = (sales['date'].dt.month > 6).map({False: 'H1', True: 'H2'})\n"
                "halves = sales.pivot_table(index='product', columns='half', values='revenue', "
                "aggfunc='sum')\n"
                "halves"
            ),
            ScriptedTurn.python(
                "halves['growth_%'] = (halves['H2'] / halves['H1'] - 1) * 100\nhalves.round(1)"
            ),
            ScriptedTurn.python(
                "best = halves['growth_%'].idxmax()\nprint(best, round(halves.loc[best, "
                "'growth_%'], 1))"
            ),
            ScriptedTurn.shell(
                "wc -l sales.csv && head -3 sales.csv", text="A quick look at the raw file."
            ),
            ScriptedTurn.final("ANSWER_PLACEHOLDER"),
        ],
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base-url")
    parser.add_argument("--model", default="scripted-demo")
    parser.add_argument("--api", default="responses")
    args = parser.parse_args()
    WORKSPACE.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(SALES, WORKSPACE / "sales.csv")
    for name, (task, turns) in EXAMPLES.items():
        notebook = NOTEBOOKS / f"{name}.ipynb"
        if args.base_url:
            result = api.run(
                task,
                data=[SALES],
                workspace=WORKSPACE,
                notebook=notebook,
                base_url=args.base_url,
                model=args.model,
                api=args.api,
            )
        else:
            with ScriptedModelServer(_with_answer(turns)) as server:
                result = api.run(
                    task,
                    data=[SALES],
                    workspace=WORKSPACE,
                    notebook=notebook,
                    base_url=server.base_url,
                    model=args.model,
                )
        print(f"{notebook.name}: {result.status} · {result.answer}")


def _with_answer(turns: list[ScriptedTurn]) -> list[ScriptedTurn]:
    """The growth answer is computed here, so the script never states a number it did not check."""
    if turns[-1].text != "" or "ANSWER_PLACEHOLDER" not in turns[-1].tool_calls[0].arguments_json():
        return turns
    import pandas as pd

    sales = pd.read_csv(SALES, parse_dates=["date"])
    half = (sales["date"].dt.month > 6).map({False: "H1", True: "H2"})
    halves = sales.pivot_table(index="product", columns=half, values="revenue", aggfunc="sum")
    growth = (halves["H2"] / halves["H1"] - 1) * 100
    best = growth.idxmax()
    return [*turns[:-1], ScriptedTurn.final(f"{best}: {growth[best]:.1f}%")]


if __name__ == "__main__":
    main()
