"""Normalisation, per-cell output comparison and replay cell policy."""

from __future__ import annotations

import base64
import io
from typing import Any

import pytest
from PIL import Image, ImageDraw
from pydantic import ValidationError

from kernelagent.notebook.cell_policy import comparison_opt_out, is_side_effect
from kernelagent.notebook.compare import CompareOptions, compare_outputs, texts_match
from kernelagent.notebook.normalize import (
    NormalizeOptions,
    normalize_output,
    normalize_text,
)

# --- output builders ------------------------------------------------------------------------


def stream(text: str, name: str = "stdout") -> dict[str, Any]:
    return {"output_type": "stream", "name": name, "text": text}


def result(data: dict[str, Any], count: int | None = 1) -> dict[str, Any]:
    return {"output_type": "execute_result", "data": data, "metadata": {}, "execution_count": count}


def display(data: dict[str, Any]) -> dict[str, Any]:
    return {"output_type": "display_data", "data": data, "metadata": {}}


def plain(text: str, count: int | None = 1) -> dict[str, Any]:
    return result({"text/plain": text}, count)


def error(ename: str, evalue: str, traceback: list[str] | None = None) -> dict[str, Any]:
    return {"output_type": "error", "ename": ename, "evalue": evalue, "traceback": traceback or []}


def ipython_traceback(execution_count: int, pid: int, cell_file: int) -> list[str]:
    """What ipykernel 7 / IPython 8 sends for a ZeroDivisionError, colours included."""
    return [
        "\x1b[0;31m----------------------------------------------------------------\x1b[0m",
        "\x1b[0;31mZeroDivisionError\x1b[0m                         Traceback (most recent call "
        "last)",
        (
            f"Cell \x1b[0;32mIn[{execution_count}], line 3\x1b[0m\n"
            "\x1b[1;32m      1\x1b[0m \x1b[38;5;28;01mdef\x1b[39;00m \x1b[38;5;21mf\x1b[39m():\n"
            "\x1b[0;32m----> 3\x1b[0m \x1b[43mf\x1b[49m\x1b[43m(\x1b[49m\x1b[43m)\x1b[49m\n"
        ),
        (
            f"File \x1b[0;32m/tmp/ipykernel_{pid}/{cell_file}.py:2\x1b[0m, in "
            f"\x1b[0;36mf\x1b[0;34m()"
            "\x1b[0m\n\x1b[0;32m----> 2\x1b[0m     \x1b[38;5;28;01mreturn\x1b[39;00m "
            "\x1b[38;5;241;43m1"
            "\x1b[39;49m\n"
        ),
        "\x1b[0;31mZeroDivisionError\x1b[0m: division by zero",
    ]


def png(image: Image.Image, **save_options: Any) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **save_options)
    return base64.b64encode(buffer.getvalue()).decode()


def jpeg(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=95)
    return base64.b64encode(buffer.getvalue()).decode()


def plot(points: list[tuple[float, float]], size: tuple[int, int] = (320, 240)) -> Image.Image:
    """A line plot on white with axes, like a tiny matplotlib figure."""
    width, height = size
    image = Image.new("RGBA", size, (255, 255, 255, 0))
    draw = ImageDraw.Draw(image)
    draw.line([(30, 10), (30, height - 30), (width - 10, height - 30)], fill="black", width=2)
    scaled = [(30 + x * (width - 40), height - 30 - y * (height - 40)) for x, y in points]
    draw.line(scaled, fill=(31, 119, 180, 255), width=3)
    return image


def figure(image_b64: str, mime: str = "image/png") -> dict[str, Any]:
    return display({"text/plain": "<Figure size 320x240 with 1 Axes>", mime: image_b64})


RISING = [(i / 10, (i / 10) ** 2) for i in range(11)]
FALLING = [(i / 10, 1 - (i / 10) ** 0.5) for i in range(11)]


# --- normalisation rules --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # object reprs: plain repr and IPython's pretty form
        ("<__main__.Foo object at 0x7f2b1c3d4e50>", "<__main__.Foo object at 0x…>"),
        ("<__main__.Foo at 0x7f88502fa8d0>", "<__main__.Foo at 0x…>"),
        ("<function f at 0x104a2b>", "<function f at 0x…>"),
        # pandas Timestamp.now(), printed and as a result
        ("2026-11-21 11:14:20.372549\n", "<timestamp>\n"),
        ("Timestamp('2026-11-21 11:14:20.372926')", "Timestamp('<timestamp>')"),
        ("2026-11-21T11:07:16.5+01:00 done", "<timestamp> done"),
        ("2026-11-21 11:07:16,123 - INFO - started", "<timestamp> - INFO - started"),
        ("datetime.datetime(2026, 11, 21, 11, 14, 20, 406032)", "datetime.datetime(<timestamp>)"),
        (
            "datetime.datetime(2026, 11, 21, 11, 7, 16, tzinfo=datetime.timezone.utc)",
            "datetime.datetime(<timestamp>)",
        ),
        ("started at 11:07:16.250", "started at <timestamp>"),
        ("Sat Nov 21 11:07:16 2026", "<timestamp>"),
        ("Sat Nov  1 11:07:16 UTC 2026", "<timestamp>"),
        ("Date: Sat, 21 Nov 2026 11:07:16 GMT", "Date: <timestamp>"),
        # %time / %timeit
        (
            "CPU times: user 13 µs, sys: 1 µs, total: 14 µs\nWall time: 17.2 µs\n",
            "CPU times: <duration>\nWall time: <duration>\n",
        ),
        (
            "672 ns ± 13.3 ns per loop (mean ± std. dev. of 7 runs, 1,000,000 loops each)\n",
            "<duration>\n",
        ),
        (
            (
                "The slowest run took 5.12 times longer than the fastest. This could mean that an "
                "intermediate result is being cached.\n10.2 µs ± 3 µs per loop (mean ± std. dev. "
                "of "
                "7 runs, 100,000 loops each)\n"
            ),
            "<duration>\n",
        ),
        ("1000 loops, best of 3: 2.5 ms per loop", "<duration>"),
        (
            "fit took 1.23 s (12.5 ms per batch, 3 µs per row)",
            "fit took <duration> (<duration> per batch, <duration> per row)",
        ),
        ("100%|██████████| 10/10 [1.5s/it]", "100%|██████████| 10/10 [<duration>/it]"),
        # traceback paths
        (
            "/tmp/ipykernel_1234/1234567.py:1: UserWarning: careful\n",
            "<ipykernel-cell>:1: UserWarning: careful\n",
        ),
        (
            "File /usr/lib/python3/dist-packages/pandas/core/frame.py:3761, in "
            "DataFrame.__getitem__",
            "File <path>/frame.py:3761, in DataFrame.__getitem__",
        ),
        (
            "File ~/.pyenv/versions/3.11.7/lib/python3.11/site-packages/pandas/core/"
            "generic.py:4291, in xs",
            "File <path>/generic.py:4291, in xs",
        ),
        (
            '  File "/usr/lib/python3.11/json/decoder.py", line 355, in raw_decode',
            '  File "<path>/decoder.py", line 355, in raw_decode',
        ),
        ('  File "<stdin>", line 1, in <module>', '  File "<stdin>", line 1, in <module>'),
        (
            "/opt/venv/lib/python3.11/site-packages/sklearn/base.py:12: FutureWarning: old\n",
            "<path>/base.py:12: FutureWarning: old\n",
        ),
        ("Cell In[12], line 3", "Cell In[N], line 3"),
        ("Input In [5], in <cell line: 1>()", "Input In [N], in <cell line: 1>()"),
        ("<ipython-input-5-9a1b2c3d4e5f> in <module>", "<ipython-input-N> in <module>"),
        # ANSI, carriage returns, trailing whitespace
        (
            "\x1b[0;31mZeroDivisionError\x1b[0m: division by zero",
            "ZeroDivisionError: division by zero",
        ),
        ("\x1b]8;;https://example.com\x07link\x1b]8;;\x07", "link"),
        ("downloading  10%\rdownloading 100%\r\ndone\n", "downloading 100%\ndone\n"),
        ("a = 1   \nb\t\n", "a = 1\nb\n"),
    ],
)
def test_normalisation_rules(raw: str, expected: str) -> None:
    assert normalize_text(raw) == expected


def test_short_hex_literals_are_not_addresses() -> None:
    assert normalize_text("flags 0xff 0xdeadbeef") == "flags 0xff 0xdeadbeef"


def test_epoch_floats_only_when_asked() -> None:
    assert normalize_text("t = 1763723236.52") == "t = 1763723236.52"
    options = NormalizeOptions(mask_epoch_timestamps=True)
    assert normalize_text("t = 1763723236.52", options) == "t = <timestamp>"
    assert normalize_text("n = 42.5", options) == "n = 42.5"


def test_ipython_traceback_normalises_across_runs() -> None:
    first = normalize_text("\n".join(ipython_traceback(12, 1234, 1234567)))
    second = normalize_text("\n".join(ipython_traceback(3, 98765, 7654321)))
    assert first == second
    assert "\x1b" not in first
    assert "Cell In[N], line 3" in first
    assert "File <ipykernel-cell>:2, in f()" in first


@pytest.mark.parametrize(
    ("option", "raw"),
    [
        ("strip_ansi", "\x1b[0;31mred\x1b[0m"),
        ("collapse_carriage_returns", "10%\r100%"),
        ("mask_traceback_paths", "Cell In[12], line 3"),
        ("mask_timestamps", "2026-11-21 11:07:16"),
        ("mask_durations", "Wall time: 2.5 ms"),
        ("mask_memory_addresses", "<Foo object at 0x7f2b1c3d4e50>"),
        ("strip_trailing_whitespace", "x   "),
    ],
)
def test_every_rule_can_be_switched_off(option: str, raw: str) -> None:
    assert normalize_text(raw, NormalizeOptions(**{option: False})) == raw
    assert normalize_text(raw) != raw


def test_extra_replacements_run_after_the_built_in_rules() -> None:
    options = NormalizeOptions(
        extra_replacements=[(r"run-[0-9a-f]{8}", "run-<id>"), (r"<timestamp>", "T")]
    )
    assert normalize_text("run-deadbeef at 11:07:16", options) == "run-<id> at T"
    with pytest.raises(ValidationError):
        NormalizeOptions(extra_replacements=[("(unclosed", "x")])


def test_normalize_output_keeps_the_best_text_and_images_apart() -> None:
    rich = normalize_output(
        display(
            {
                "text/html": ["<b>x</b>\n"],
                "text/plain": ["x at 0x7f2b1c3d4e50\n"],
                "image/png": "AAAA",
            }
        )
    )
    assert (rich.kind, rich.text_mime, rich.text) == ("rich", "text/plain", "x at 0x…\n")
    assert rich.html == "<b>x</b>\n"
    assert [image.mime for image in rich.images] == ["image/png"]

    html_only = normalize_output(display({"text/html": "<table></table>"}))
    assert (html_only.text_mime, html_only.text) == ("text/html", "<table></table>")

    as_json = normalize_output(display({"application/json": ["a", "b"]}))
    assert as_json.text_mime == "application/json" and '"a"' in as_json.text

    failure = normalize_output(error("KeyError", "5", ipython_traceback(1, 2, 3)))
    assert (failure.kind, failure.text) == ("error", "KeyError: 5")
    assert "<ipykernel-cell>" in (failure.traceback or "")

    out = normalize_output(stream(["a\n", "b   \n"], "stderr"))
    assert (out.kind, out.stream_name, out.text) == ("stream", "stderr", "a\nb\n")


# --- text comparison ------------------------------------------------------------------------


def test_float_noise_matches_and_real_differences_diverge() -> None:
    assert compare_outputs([plain("0.30000000000000004")], [plain("0.3")]).status == "matched"
    assert compare_outputs([plain("mean=1e-10")], [plain("mean=0")]).status == "matched"
    assert (
        compare_outputs([plain("[1.0000001, -2.5e+03]")], [plain("[1.0, -2500.0]")]).status
        == "matched"
    )

    diverged = compare_outputs([plain("0.3")], [plain("0.31")])
    assert diverged.status == "diverged"
    assert diverged.reasons == ["output 1: text/plain differs"]


def test_integers_compare_exactly_and_words_compare_exactly() -> None:
    assert not texts_match("rows: 12345678", "rows: 12345679")
    assert not texts_match("status: ok", "status: OK")
    assert not texts_match("a 1 2", "a 12")


def test_padding_around_numbers_does_not_matter() -> None:
    recorded = "array([0.30000001, 0.1       ])"
    replayed = "array([0.3, 0.1])"
    assert compare_outputs([plain(recorded)], [plain(replayed)]).status == "matched"
    assert not texts_match("hello world", "helloworld")
    assert not texts_match("1\n2", "1 2")


def test_custom_tolerances() -> None:
    loose = CompareOptions(float_rel_tol=0.05)
    assert compare_outputs([plain("0.3")], [plain("0.31")], loose).status == "matched"


# --- streams --------------------------------------------------------------------------------


def test_stream_chunking_does_not_matter() -> None:
    recorded = [
        stream("epoch 1 loss=0.5\nepoch 2 "),
        stream("loss=0.25\n"),
        stream("warn\n", "stderr"),
    ]
    replayed = [
        stream("epoch 1 "),
        stream("warn\n", "stderr"),
        stream("loss=0.5\nepoch 2 loss=0.25\n"),
    ]
    assert compare_outputs(recorded, replayed).status == "matched"


def test_whitespace_split_across_chunks_survives_normalisation() -> None:
    assert compare_outputs([stream("a "), stream("b\n")], [stream("a b\n")]).status == "matched"
    assert compare_outputs([stream("a "), stream("b\n")], [stream("ab\n")]).status == "diverged"


def test_stream_differences() -> None:
    changed = compare_outputs([stream("total: 10\n")], [stream("total: 11\n")])
    assert changed.reasons == ["stdout differs"]
    missing = compare_outputs([stream("hi\n"), stream("oops\n", "stderr")], [stream("hi\n")])
    assert missing.reasons == ["stderr only in recorded"]
    assert compare_outputs(
        [stream("hi\n"), stream("oops\n", "stderr")],
        [stream("hi\n")],
        CompareOptions(ignore_stderr=True),
    ).matched


def test_a_realistic_cell_matches_across_runs() -> None:
    recorded = [
        stream("CPU times: user 13 µs, sys: 1 µs, total: 14 µs\nWall time: 17.2 µs\n"),
        stream("2026-11-21 11:14:20.372549\n"),
        stream("/tmp/ipykernel_20790/334241408.py:4: UserWarning: careful\n", "stderr"),
        plain(
            "(<__main__.Foo object at 0x7f2b1c3d4e50>, Timestamp('2026-11-21 11:14:20.372926'))", 7
        ),
    ]
    replayed = [
        stream("CPU times: user 9 µs, sys: 0 ns, total: 9 µs\n"),
        stream("Wall time: 11 µs\n2026-12-01 08:00:01.000002\n"),
        stream("/tmp/ipykernel_42/334241408.py:4: UserWarning: careful\n", "stderr"),
        plain(
            "(<__main__.Foo object at 0x7f99aa001122>, Timestamp('2026-12-01 08:00:01.000104'))", 1
        ),
    ]
    assert compare_outputs(recorded, replayed).status == "matched"


# --- rich outputs ---------------------------------------------------------------------------


def test_display_data_and_execute_result_of_the_same_content_match() -> None:
    assert compare_outputs([plain("42")], [display({"text/plain": "42"})]).matched


def test_execution_count_is_ignored_unless_asked() -> None:
    assert compare_outputs([plain("42", 3)], [plain("42", 5)]).matched
    strict = compare_outputs(
        [plain("42", 3)], [plain("42", 5)], CompareOptions(ignore_execution_count=False)
    )
    assert strict.reasons == ["output 1: execution count 3 vs 5"]


def test_html_is_compared_only_without_text_plain_unless_asked() -> None:
    frame = "   a\n0  1"
    recorded = [result({"text/plain": frame, "text/html": '<table id="T_1a2b">…</table>'})]
    replayed = [result({"text/plain": frame, "text/html": '<table id="T_9z8y">…</table>'})]
    assert compare_outputs(recorded, replayed).matched
    assert compare_outputs(recorded, replayed, CompareOptions(compare_html=True)).reasons == [
        "output 1: text/html differs"
    ]
    html_only = compare_outputs(
        [display({"text/html": "<p>1</p>"})], [display({"text/html": "<p>2</p>"})]
    )
    assert html_only.reasons == ["output 1: text/html differs"]


def test_missing_and_extra_outputs_diverge() -> None:
    extra = compare_outputs([plain("1")], [plain("1"), display({"text/plain": "2"})])
    assert extra.reasons == ["output 2 (text/plain) only in replayed"]
    assert compare_outputs([plain("1")], []).reasons == ["output 1 (text/plain) only in recorded"]


# --- errors ---------------------------------------------------------------------------------


def test_errors_compare_name_and_message_not_traceback() -> None:
    recorded = [
        error("ZeroDivisionError", "division by zero", ipython_traceback(12, 1234, 1234567))
    ]
    other_traceback = [
        error("ZeroDivisionError", "division by zero", ["\x1b[0;31mSomething else\x1b[0m"])
    ]
    assert compare_outputs(recorded, other_traceback).matched
    assert compare_outputs(
        recorded, other_traceback, CompareOptions(compare_traceback=True)
    ).reasons == ["output 1: traceback differs"]


def test_errors_with_noise_in_the_message_match() -> None:
    recorded = [error("ValueError", "bad object <Foo object at 0x7f2b1c3d4e50> at 11:07:16")]
    replayed = [error("ValueError", "bad object <Foo object at 0x7f0000aa1234> at 12:00:00")]
    assert compare_outputs(recorded, replayed).matched


def test_different_errors_diverge() -> None:
    recorded = [error("KeyError", "'price'")]
    assert compare_outputs(recorded, [error("KeyError", "'cost'")]).reasons == [
        "output 1: KeyError message differs"
    ]
    assert compare_outputs(recorded, [error("IndexError", "'price'")]).reasons == [
        "output 1: KeyError vs IndexError"
    ]
    assert compare_outputs(recorded, [plain("3.5")]).reasons == [
        "output 1: error KeyError vs text/plain"
    ]


# --- images ---------------------------------------------------------------------------------


def test_the_same_image_re_encoded_matches() -> None:
    image = plot(RISING)
    recorded = [figure(png(image, compress_level=9))]
    assert png(image, compress_level=9) != png(image, compress_level=1)
    assert compare_outputs(recorded, [figure(png(image, compress_level=1))]).matched
    assert compare_outputs(recorded, [figure(png(image.convert("P"), optimize=True))]).matched
    assert compare_outputs(recorded, [figure(jpeg(image), "image/jpeg")]).matched


def test_a_nearly_identical_size_matches() -> None:
    recorded = [figure(png(plot(RISING, (320, 240))))]
    assert compare_outputs(recorded, [figure(png(plot(RISING, (321, 240))))]).matched


def test_a_tight_bounding_box_one_pixel_wider_matches() -> None:
    image = plot(RISING)
    wider = Image.new("RGBA", (image.width + 1, image.height), (255, 255, 255, 0))
    wider.paste(image, (1, 0))
    assert compare_outputs([figure(png(image))], [figure(png(wider))]).matched


def matplotlib_png(function: str, **rc: Any) -> str:
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    with plt.rc_context(rc):
        fig, axes = plt.subplots()
        x = np.linspace(0, 6, 100)
        axes.plot(x, getattr(np, function)(x))
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", bbox_inches="tight")
        plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def test_matplotlib_line_plots() -> None:
    """A different curve changes ~1% of a plot's pixels: it must still diverge."""
    sine = [figure(matplotlib_png("sin"))]
    assert compare_outputs(sine, [figure(matplotlib_png("sin"))]).matched
    assert compare_outputs(
        sine, [figure(matplotlib_png("sin", **{"text.antialiased": False}))]
    ).matched
    assert compare_outputs(sine, [figure(matplotlib_png("cos"))]).status == "diverged"


def test_a_different_plot_diverges() -> None:
    result_ = compare_outputs([figure(png(plot(RISING)))], [figure(png(plot(FALLING)))])
    assert result_.status == "diverged"
    assert result_.reasons[0].startswith("output 1: image 1: pixels differ by")
    assert "pixels differ by" in result_.diff


def test_a_different_size_diverges() -> None:
    result_ = compare_outputs(
        [figure(png(plot(RISING, (640, 480))))], [figure(png(plot(RISING, (800, 600))))]
    )
    assert result_.reasons == ["output 1: image 1: 640x480 vs 800x600"]
    assert "image 1: 640x480 vs 800x600" in result_.diff


def test_an_image_on_one_side_only_diverges() -> None:
    recorded = [figure(png(plot(RISING)))]
    replayed = [display({"text/plain": "<Figure size 320x240 with 1 Axes>"})]
    assert compare_outputs(recorded, replayed).reasons == [
        "output 1: 1 image(s) recorded vs 0 replayed"
    ]


def test_an_undecodable_image_diverges() -> None:
    broken = base64.b64encode(b"not a png").decode()
    result_ = compare_outputs([figure(png(plot(RISING)))], [figure(broken)])
    assert "replayed image/png cannot be decoded" in result_.reasons[0]


# --- diff -----------------------------------------------------------------------------------


def test_diff_is_a_short_readable_unified_diff() -> None:
    recorded = [stream("loading\nrows: 100\n"), plain("0.3")]
    replayed = [stream("loading\nrows: 100\n"), plain("0.31")]
    diff = compare_outputs(recorded, replayed).diff
    lines = diff.splitlines()
    assert lines[:2] == ["--- recorded", "+++ replayed"]
    assert "-0.3" in lines and "+0.31" in lines
    assert "[output 1: text/plain]" in diff


def test_diff_hides_changes_within_tolerance() -> None:
    recorded = [plain("mean 0.30000000000000004\nstd 1.0\ncount 10")]
    replayed = [plain("mean 0.3\nstd 1.5\ncount 10")]
    lines = compare_outputs(recorded, replayed).diff.splitlines()
    assert "-std 1.0" in lines and "+std 1.5" in lines
    assert not any(line.startswith(("-mean", "+mean")) for line in lines)


def test_diff_is_truncated() -> None:
    recorded = [stream("".join(f"line {i}\n" for i in range(500)))]
    replayed = [stream("".join(f"line {i + 1000}\n" for i in range(500)))]
    diff = compare_outputs(recorded, replayed, CompareOptions(max_diff_lines=20)).diff
    assert len(diff.splitlines()) == 21
    assert diff.splitlines()[-1].endswith("more diff lines)")


def test_matched_cells_have_no_diff() -> None:
    comparison = compare_outputs([plain("1")], [plain("1")])
    assert (comparison.status, comparison.reasons, comparison.diff) == ("matched", [], "")


# --- cell policy ----------------------------------------------------------------------------


def code_cell(
    source: str = "x = 1", tags: list[str] | None = None, **kernelagent: Any
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"kernelagent": kernelagent}
    if tags is not None:
        metadata["tags"] = tags
    return {"cell_type": "code", "source": source, "metadata": metadata, "outputs": []}


@pytest.mark.parametrize(
    "tag", ["kernelagent:no-compare", "nondeterministic", "nbval-ignore-output", "nbval-skip"]
)
def test_opt_out_tags(tag: str) -> None:
    assert comparison_opt_out(code_cell(tags=["slow", tag])) == f"tagged {tag}"


def test_opt_out_by_metadata_and_nbval_markers() -> None:
    assert comparison_opt_out(code_cell(compare=False)) == "metadata.kernelagent.compare is false"
    marked = code_cell(["import random\n", "# NBVAL_IGNORE_OUTPUT\n", "random.random()"])
    assert comparison_opt_out(marked) == "marked # NBVAL_IGNORE_OUTPUT"


def test_cells_are_compared_by_default() -> None:
    assert comparison_opt_out(code_cell()) is None
    assert comparison_opt_out(code_cell(compare=True, tags=["slow"])) is None
    assert comparison_opt_out({"cell_type": "code", "source": "1"}) is None
    assert comparison_opt_out(code_cell("print('# NBVAL_SKIP')")) is None


def test_side_effect_cells() -> None:
    assert is_side_effect(code_cell(tags=["kernelagent:side-effect"]))
    assert is_side_effect(code_cell(side_effect=True))
    assert not is_side_effect(code_cell())
    assert not is_side_effect(code_cell(side_effect="yes"))
    assert not is_side_effect({"cell_type": "code", "source": "", "metadata": {"tags": None}})
