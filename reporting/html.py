"""One self-contained HTML page: every image embedded as base64 PNG, no scripts, no external files.

Self-contained so that results/report.html can be mailed, attached to a CI run or opened from a
USB stick and still show everything; the PNGs also stay under results/plots/ for slides.
"""

from __future__ import annotations

import base64
import html
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from reporting.inputs import ReportInputs, pick
from reporting.references import REFERENCES
from reporting.summary import COLUMNS, NA, format_value

CSS = """
body { font-family: system-ui, sans-serif; margin: 24px auto; max-width: 1320px; color: #222; }
h1 { margin-bottom: 0; } h2 { border-bottom: 1px solid #ccc; padding-bottom: 4px; margin-top: 36px; }
.meta { color: #555; font-size: 0.9em; }
.table-wrap { overflow-x: auto; }
table { border-collapse: collapse; font-size: 0.82em; margin: 8px 0; }
th, td { border: 1px solid #ccc; padding: 3px 6px; text-align: right; white-space: nowrap; }
th { background: #f0f0f0; white-space: normal; vertical-align: bottom; min-width: 48px; } td.text { text-align: left; }
td.note { text-align: left; white-space: normal; min-width: 140px; font-size: 0.9em; }
td.na { color: #999; } td.pass { background: #dff0d8; } td.fail { background: #f2dede; font-weight: bold; }
td.not_measured { background: #fcf8e3; }
figure { margin: 12px 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.85em; }
.row { display: flex; flex-wrap: wrap; gap: 16px; align-items: flex-start; }
"""


def embed_png(path: str | Path) -> str:
    """A data: URI of the PNG at ``path``."""
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def figure(path: str | Path, alt: str, caption: str) -> str:
    return (f'<figure><img src="{embed_png(path)}" alt="{html.escape(alt)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def summary_table(frame: pd.DataFrame) -> str:
    """The summary as an HTML table; n/a greyed, budget statuses coloured."""
    head = "".join(f'<th title="{html.escape(c.name)}">{html.escape(c.header)}</th>' for c in COLUMNS)
    body = []
    for _, row in frame.iterrows():
        cells = []
        for c in COLUMNS:
            text = format_value(row[c.name], c.kind)
            cls = "na" if text == NA else (str(row[c.name]) if c.kind == "status" else (c.kind if c.kind in ("text", "note") else ""))
            cells.append(f'<td class="{html.escape(cls)}">{html.escape(text)}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (f'<div class="table-wrap"><table id="summary-table"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table></div>")


def _cell(value: Any) -> str:
    if value is None:
        return NA
    if isinstance(value, float):
        return f"{value:,.4g}"
    if isinstance(value, (list, dict)):
        return json.dumps(value)[:200]
    return str(value)


def _interval(value: Any) -> str:
    return f"[{value[0]}, {value[1]}]" if isinstance(value, list) and len(value) == 2 else NA


def range_proof_table(proof: dict[str, Any]) -> str:
    """summary.json's ``range_proof`` (hw_builds/range_proof.py) as a table: one row per dataflow node."""
    head = ("node", "op", "mode", "K", "SIMD x PE", "accumulator", "held in", "output", "type", "thresholds", "fits")
    body = []
    for r in proof.get("nodes", []):
        thr = r.get("thresholds") or {}
        same = thr.get("equivalent_to_reference")
        thr_text = NA if not thr else (f"{thr.get('count')} per neuron in {thr.get('type')}"
                                       + ("" if same is None else ", as the reference" if same else ", CHANGED"))
        folding = f"{r['SIMD']} x {r['PE']}" if "SIMD" in r else NA
        cells = [r.get("node"), r.get("op_type"), r.get("mode"), r.get("K"), folding,
                 _interval(r.get("accumulator_interval")), r.get("accumulator_type"),
                 _interval(r.get("output_interval")), r.get("output_type"), thr_text,
                 "yes" if r.get("fits") else "NO: " + "; ".join(r.get("problems", []))]
        body.append("<tr>" + "".join(f"<td>{html.escape(_cell(c))}</td>" for c in cells) + "</tr>")
    verdict = "every node fits" if proof.get("all_fit") else "NOT every node fits"
    nodes = {r.get("node") for r in proof.get("nodes", [])}
    mended = sorted({m["node"] for m in proof.get("type_mends") or [] if m.get("node") in nodes})
    note = (f"Static range proof ({verdict}; {html.escape(str(proof.get('scope', '')))}): the exact interval of "
            "every accumulator and output against the type the generated code uses. XNOR layers whose types "
            f"bnnflow widened from FINN's: {html.escape(', '.join(mended) or 'none')} "
            "(<code>range_proof.type_mends</code> in summary.json).")
    return (f"<p class='meta'>{note}</p><div class='table-wrap'><table class='range-proof'><thead><tr>"
            + "".join(f"<th>{h}</th>" for h in head) + f"</tr></thead><tbody>{''.join(body)}</tbody></table></div>")


def bench_tables(data: dict[str, Any], name: str) -> str:
    """A benchmark JSON as people read it: its scalars (dotted keys) in one table, each list of records
    (e.g. xnor.json's ``results``, training.json's ``runs``) as a table of its own."""
    scalars: list[tuple[str, str]] = []
    record_lists: list[tuple[str, list[dict]]] = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            record_lists.append((prefix, value))
        else:
            scalars.append((prefix, _cell(value)))

    walk("", data)
    out = ['<table class="kv" id="bench-{0}"><tbody>'.format(html.escape(name))]
    out += [f'<tr><td class="text">{html.escape(k)}</td><td class="note">{html.escape(v)}</td></tr>' for k, v in scalars[:200]]
    out.append("</tbody></table>")
    for key, records in record_lists:
        columns = list(dict.fromkeys(k for r in records for k in r))
        head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
        rows = "".join("<tr>" + "".join(f"<td>{html.escape(_cell(r.get(c)))}</td>" for c in columns) + "</tr>"
                       for r in records[:500])
        out.append(f'<p class="meta">{html.escape(key)} ({len(records)} records)</p>'
                   f'<div class="table-wrap"><table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></div>')
    return "\n".join(out)


DSE_COLUMNS = (  # (summary.json key, header, format) of the design-space table
    ("model", "model", "text"), ("board", "board", "text"), ("test_accuracy_pct", "test accuracy (%)", ".2f"),
    ("images_per_s", "best design: images/s (FINN estimate)", ",.0f"), ("bound", "bound it hits", "text"),
    ("LUT", "LUT", ",.0f"), ("LUT_pct", "LUT (% of board)", ".1f"), ("BRAM_18K", "BRAM_18K", ",.0f"),
    ("io_bound_images_per_s", "I/O bound: images/s", ",.0f"),
    ("setfolding_images_per_s", "SetFolding asked for it: images/s", ",.0f"),
    ("setfolding_LUT", "SetFolding: LUT", ",.0f"), ("built", "built and verified", "text"),
)


def dse_table(designs: list[dict[str, Any]]) -> str:
    """The design-space sweep's best design per model x board (results/dse/summary.json) as an HTML table."""
    head = "".join(f"<th>{html.escape(h)}</th>" for _, h, _ in DSE_COLUMNS)
    body = []
    for row in designs:
        cells = []
        for key, _, fmt in DSE_COLUMNS:
            value = row.get(key)
            if key == "bound" and row.get("status") == "does_not_fit":
                value = "does not fit the board"
            if value is None or (isinstance(value, float) and value != value):
                cells.append(f'<td class="na">{NA}</td>')
            elif fmt == "text":
                cells.append(f'<td class="text">{html.escape(str(value))}</td>')
            else:
                cells.append(f"<td>{format(float(value), fmt)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (f'<div class="table-wrap"><table id="dse-table"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table></div>")


def dse_section(inputs: ReportInputs) -> list[str]:
    """The design-space exploration's plots and table, when the report was given results/dse/ (report.dse)."""
    if inputs.dse is None and not inputs.dse_plots:
        return []
    out = ["<h2 id='dse'>Design-space exploration: fastest design per model x board</h2>",
           "<p class='meta'>From <code>snakemake dse</code> (results/dse/): for every model x board the fastest "
           "folding within the board's fabric budget and its DMA's I/O bound, by FINN's analytical estimates; "
           "SetFolding is FINN's own folding asked for the same throughput. Stars in the plot are published "
           "on-board measurements.</p>"]
    if "pareto" in inputs.dse_plots:
        out.append(figure(inputs.dse_plots["pareto"], "design-space Pareto front",
                          "Accuracy vs estimated images/s per board, colour = LUT; dotted: the I/O bound; "
                          "dashed: the Pareto front of the sweep (results/dse/pareto.png)."))
    if inputs.dse is not None:
        out.append(dse_table(inputs.dse["designs"]))
    if "setfolding" in inputs.dse_plots:
        out.append(figure(inputs.dse_plots["setfolding"], "SetFolding vs the search",
                          "LUT of SetFolding at each target_fps and of the search at the same throughput "
                          "(results/dse/setfolding.png, table in results/dse/setfolding.csv)."))
    return out


def _verify_line(verify: dict | None) -> str:
    if not verify:
        return "XNOR verification: n/a (not run for this model)."
    agree = pick(verify, "top1_agree_with_xnor", {})
    parts = [f"{name} {v.get('agree')}/{v.get('of')}" for name, v in agree.items() if isinstance(v, dict)]
    status = "passed" if verify.get("passed") else "FAILED"
    return f"XNOR verification {status}: top-1 equal to the XNOR reference for " + ", ".join(parts) + "."


def render_html(inputs: ReportInputs, frame: pd.DataFrame, plots: dict[str, str], notes: dict[str, str]) -> str:
    """The whole page. ``plots`` maps plot keys (reporting.layout) to PNG files; ``notes`` captions."""
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    out = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<title>bnnflow report</title>",
        f"<style>{CSS}</style></head><body>",
        "<h1>bnnflow report</h1>",
        f"<p class='meta'>Generated {now}. Models: {html.escape(', '.join(inputs.models))}. "
        f"Boards: {html.escape(', '.join(inputs.boards))}. {len(inputs.files)} stage outputs read.</p>",
        "<h2 id='summary'>Summary</h2>",
        summary_table(frame),
        "<p class='meta'>Throughput, latency and resources are FINN's analytical estimates at the build clock "
        "(dataflow layers only, no DMA or interconnect) unless the validation backend is <code>board</code>. "
        "Published figures are from the sources listed below, trained far longer and measured on boards: "
        "marks to aim at, not like-for-like comparisons. <code>n/a</code>: the stage did not run for that row. "
        "Also saved as <code>results/summary.csv</code>.</p>",
        "<h2 id='pareto'>Accuracy vs throughput vs LUT</h2>",
        figure(plots["pareto"], "accuracy vs throughput vs LUT", notes.get("pareto", "")),
        "<h2 id='latency'>Latency: accelerator vs XNOR reference</h2>",
        figure(plots["latency"], "latency accelerator vs XNOR reference", notes.get("latency", "")),
        "<h2 id='xnor-speed'>XNOR reference speed: bnnflow vs Larq Compute Engine vs PyTorch</h2>",
        figure(plots["xnor_speed"], "XNOR reference vs LCE vs PyTorch", notes.get("xnor_speed", "")),
        figure(plots["xnor_roofline"], "binary MAC rate vs ceiling", notes.get("xnor_roofline", "")),
        *dse_section(inputs),
    ]
    for model in inputs.models:
        data = inputs.model_data[model]
        out.append(f"<h2 id='model-{html.escape(model)}'>{html.escape(model)}</h2>")
        out.append(f"<p>{html.escape(_verify_line(data.verify))}</p>")
        out.append("<div class='row'>")
        out.append(figure(plots[f"training_curves/{model}"], f"training curves {model}", notes.get(f"training_curves/{model}", "")))
        out.append(figure(plots[f"confusion_matrix/{model}"], f"confusion matrix {model}", notes.get(f"confusion_matrix/{model}", "")))
        out.append("</div>")
        for board in inputs.boards:
            key = f"layers/{model}/{board}"
            out.append(f"<h3>{html.escape(model)} on {html.escape(board)}</h3>")
            out.append(figure(plots[key], f"per-layer estimates {model} {board}", notes.get(key, "")))
            build = inputs.builds.get((model, board))
            proof = pick(build.summary, "range_proof") if build is not None else None
            if proof:
                out.append(range_proof_table(proof))
    if inputs.benches:
        out.append("<h2 id='benchmarks'>Benchmarks</h2>")
        for name, data in sorted(inputs.benches.items()):
            out.append(f"<h3>results/bench/{html.escape(name)}.json</h3>")

            out.append(bench_tables(data, name))
    out.append("<h2 id='references'>Published reference figures</h2><ul>")
    for r in REFERENCES:
        figs = [f"{r.accuracy_pct:.2f} %" if r.accuracy_pct else "", f"{r.throughput_fps:,.0f} images/s" if r.throughput_fps else "",
                f"{r.latency_us:g} us" if r.latency_us else ""]
        out.append(f"<li>{html.escape(r.model)} ({html.escape(r.dataset)}): {html.escape(', '.join(f for f in figs if f))}"
                   f" &mdash; {html.escape(r.source)}{', ' + html.escape(r.board) if r.board else ''}</li>")
    out.append("</ul><details><summary>Stage outputs read</summary><ul>")
    out += [f"<li><code>{html.escape(f)}</code></li>" for f in inputs.files]
    out.append("</ul></details></body></html>\n")
    return "\n".join(out)
