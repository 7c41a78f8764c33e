"""The design-space sweep in one table and two plots: the Pareto front per board and the SetFolding comparison.

summary.csv has one row per model x board: the search's best design (FINN's estimated images/s, the
bound it hits, LUT / BRAM_18K / URAM / DSP), its I/O bound, the host-thresholded alternative,
SetFolding's result when asked for the same throughput, the model's test accuracy, and whether the
design was built with every step verified. A built design whose FINN estimate differs from what the
search claimed stops the summary (the search must agree with the build).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from host.atomic import write_bytes_atomic, write_json_atomic
from reporting.references import throughput_references

RES = ("LUT", "BRAM_18K", "URAM", "DSP")


class BuildDisagreesError(RuntimeError):
    """A built design's FINN estimate is not what the search claimed for it."""


def _load(path) -> dict:
    return json.loads(Path(path).read_text())


def _check_build(search: dict, build: dict, path) -> None:
    best = search["best"]
    claimed = (best["max_cycles"], *(best["resources_total"][r] for r in RES))
    built = (build["estimate"]["max_cycles_per_frame"], *(build["resources_total"][r] for r in RES))
    if claimed != built:
        raise BuildDisagreesError(f"{path}: the build estimates (cycles, LUT, BRAM_18K, URAM, DSP) = {built}, "
                                  f"the search claimed {claimed} for {search['model']} on {search['board']}")


def summary_rows(searches: list, builds: list, metrics: list) -> list[dict]:
    """One row per search (model x board), with the build's verification and the model's accuracy."""
    acc = {}
    for path in metrics:
        m = _load(path)
        acc[m["model"]] = 100.0 * float(m["test_accuracy"])
    built = {}
    for path in builds:
        b = _load(path)
        built[(b["model"], b["board"])] = (b, path)
    rows = []
    for path in searches:
        s = _load(path)
        row = {"model": s["model"], "board": s["board"], "status": s["status"],
               "test_accuracy_pct": acc.get(s["model"]), "io_bound_images_per_s": s["io_bound"]["images_per_s"],
               "io_bytes_per_image": s["io_bound"]["bytes_per_image"], "dma_width_bits": s["io_bound"]["dma_width_bits"]}
        if s["status"] == "fits":
            best = s["best"]
            row.update({"bound": best["bound"] + (":" + "+".join(best.get("resources", best.get("layers", [])))
                                                  if best["bound"] != "io" else ""),
                        "images_per_s": best["images_per_s"], "fabric_images_per_s": best["fabric_images_per_s"],
                        **{r: best["resources_total"][r] for r in RES},
                        "LUT_pct": 100.0 * best["resources_total"]["LUT"] / s["capacity"]["LUT"],
                        "BRAM_18K_pct": 100.0 * best["resources_total"]["BRAM_18K"] / s["capacity"]["BRAM_18K"]})
            sf = (s.get("setfolding_at_best") or [None])[0]
            if sf:
                row.update({"setfolding_target_fps": sf["target_fps"], "setfolding_images_per_s": sf["throughput_fps"],
                            "setfolding_LUT": sf["resources_total"]["LUT"],
                            "setfolding_BRAM_18K": sf["resources_total"]["BRAM_18K"]})
            if (s["model"], s["board"]) in built:
                b, bpath = built[(s["model"], s["board"])]
                _check_build(s, b, bpath)
                row.update({"built": True, "verified_steps": len(b["verified_steps"])})
            else:
                row["built"] = False
        else:
            row.update({"bound": "does_not_fit", "built": False})
        host = (s.get("host_thresholded") or {}).get("best")
        if host:
            row.update({"host_thresholded_images_per_s": host["images_per_s"], "host_thresholded_LUT": host["resources_total"]["LUT"],
                        "host_thresholded_BRAM_18K": host["resources_total"]["BRAM_18K"],
                        "host_thresholded_io_bytes_per_image": s["host_thresholded"]["io_bound"]["bytes_per_image"]})
        rows.append(row)
    return rows


def setfolding_rows(searches: list) -> list[dict]:
    """SetFolding vs the search at the same cycles per image, for every target_fps and mvau_wwidth_max tried."""
    rows = []
    for path in searches:
        s = _load(path)
        for c in s.get("setfolding_comparison", []):
            rows.append({"model": s["model"], "board": s["board"], "target_fps": c["target_fps"],
                         "mvau_wwidth_max": c["mvau_wwidth_max"],
                         "setfolding_images_per_s": c["setfolding"]["throughput_fps"],
                         "search_images_per_s": c["search"]["throughput_fps"],
                         "setfolding_LUT": c["setfolding"]["resources_total"]["LUT"],
                         "search_LUT": c["search"]["resources_total"]["LUT"],
                         "setfolding_BRAM_18K": c["setfolding"]["resources_total"]["BRAM_18K"],
                         "search_BRAM_18K": c["search"]["resources_total"]["BRAM_18K"],
                         "setfolding_DSP": c["setfolding"]["resources_total"]["DSP"],
                         "search_DSP": c["search"]["resources_total"]["DSP"],
                         "setfolding_fits_budget": c["setfolding_fits_budget"],
                         # the search's LUT is compared at no more BRAM / URAM / DSP than SetFolding's (else n/a)
                         "search_within_setfolding_bram_uram_dsp": c.get("search_within_setfolding_bram_uram_dsp")})
    return rows


def _csv_bytes(rows: list[dict]) -> bytes:
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys)
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue().encode()


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The (images/s, accuracy) points no other point beats in both, sorted by images/s."""
    front = [p for p in points if not any(q[0] >= p[0] and q[1] >= p[1] and q != p for q in points)]
    return sorted(set(front))


def plot_pareto(rows: list[dict]):
    """Accuracy vs FINN-estimated images/s per board, LUT as colour, I/O bound and published points drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    boards = list(dict.fromkeys(r["board"] for r in rows))
    fig, axes = plt.subplots(1, len(boards), figsize=(5.2 * len(boards), 4.4), squeeze=False, sharey=True)
    fits = [r for r in rows if r["status"] == "fits" and r.get("test_accuracy_pct") is not None]
    vmax = max((r["LUT"] for r in fits), default=1)
    for ax, board in zip(axes[0], boards):
        mine = [r for r in fits if r["board"] == board]
        sc = None
        if mine:
            sc = ax.scatter([r["images_per_s"] for r in mine], [r["test_accuracy_pct"] for r in mine],
                            c=[r["LUT"] for r in mine], cmap="viridis", vmin=0, vmax=vmax, s=60, zorder=3)
            for r in mine:
                ax.annotate(r["model"], (r["images_per_s"], r["test_accuracy_pct"]), fontsize=7,
                            xytext=(4, 3), textcoords="offset points")
            front = pareto_front([(r["images_per_s"], r["test_accuracy_pct"]) for r in mine])
            ax.plot(*zip(*front), "--", color="grey", lw=1, label="Pareto front (ours)")
        ios = sorted({r["io_bound_images_per_s"] for r in rows if r["board"] == board})
        for i, fps in enumerate(ios):
            ax.axvline(fps, color="crimson", lw=1, ls=":", label="I/O bound (DMA)" if i == 0 else None)
        for ref in throughput_references():  # published, measured on boards (reporting/references.py)
            if ref.dataset != "mnist":
                continue
            ax.scatter([ref.throughput_fps], [ref.accuracy_pct], marker="*", s=90, facecolors="none",
                       edgecolors="black", zorder=4)
            ax.annotate(f"{ref.model} ({ref.source})", (ref.throughput_fps, ref.accuracy_pct), fontsize=6,
                        xytext=(4, -9), textcoords="offset points")
        ax.set_xscale("log")
        ax.set_title(f"{board}: accuracy vs images/s (FINN estimate)")
        ax.set_xlabel("images/s (estimated; stars: published, measured)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower left")
        if sc is not None and ax is axes[0][-1]:
            fig.colorbar(sc, ax=ax, label="LUT (FINN estimate)")
    axes[0][0].set_ylabel("MNIST test accuracy (%)")
    fig.tight_layout()
    return fig


def plot_setfolding(rows: list[dict]):
    """LUT vs images/s: SetFolding at each target_fps, and the search at the same throughput, per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    first_board = {}
    for r in rows:
        first_board.setdefault(r["model"], r["board"])  # the comparison does not depend on the board's size
    models = list(first_board)
    cols = min(3, max(1, len(models)))
    nrows = (len(models) + cols - 1) // cols if models else 1
    fig, axes = plt.subplots(nrows, cols, figsize=(4.6 * cols, 3.6 * nrows), squeeze=False)
    for ax, model in zip(axes.flat, models):
        mine = [r for r in rows if r["model"] == model and r["board"] == first_board[model]]
        for wwidth, marker in zip(sorted({r["mvau_wwidth_max"] for r in mine}), ("o", "s", "^", "D")):
            sub = sorted((r for r in mine if r["mvau_wwidth_max"] == wwidth), key=lambda r: r["setfolding_images_per_s"])
            ax.plot([r["setfolding_images_per_s"] for r in sub], [r["setfolding_LUT"] for r in sub], marker=marker,
                    ls="-", color="tab:orange", alpha=0.8, label=f"SetFolding (mvau_wwidth_max {wwidth})")
        sub = sorted(mine, key=lambda r: r["search_images_per_s"])
        ax.plot([r["search_images_per_s"] for r in sub], [r["search_LUT"] for r in sub], "x", color="tab:blue",
                ms=8, label="search, same throughput")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(model, fontsize=9)
        ax.set_xlabel("images/s (FINN estimate)")
        ax.set_ylabel("LUT (FINN estimate)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(models):]:
        ax.axis("off")
    fig.tight_layout()
    return fig


def _html_table(rows: list[dict]) -> str:
    import html

    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]

    def cell(v):
        if isinstance(v, float):
            return f"{v:,.1f}" if abs(v) < 1e4 else f"{v:,.0f}"
        return html.escape("" if v is None else str(v))

    head = "".join(f"<th>{html.escape(k)}</th>" for k in keys)
    body = "".join("<tr>" + "".join(f"<td>{cell(r.get(k))}</td>" for k in keys) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def html_page(rows: list[dict], sf_rows: list[dict], pngs: dict[str, bytes]) -> str:
    """One self-contained page: both plots (embedded) and both tables."""
    import base64

    imgs = "".join(f'<h2>{title}</h2><img alt="{title}" src="data:image/png;base64,{base64.b64encode(data).decode()}">'
                   for title, data in pngs.items())
    style = "body{font-family:sans-serif;margin:1em}table{border-collapse:collapse;font-size:11px}" \
            "td,th{border:1px solid #ccc;padding:2px 4px}img{max-width:100%}"
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>bnnflow design-space exploration</title>"
            f"<style>{style}</style></head><body><h1>Design-space exploration</h1>"
            "<p>FINN's analytical estimates (images/s = clock / slowest layer's cycles, capped by the DMA's I/O bound; "
            "LUT / BRAM_18K of the dataflow layers). Stars are published on-board measurements, not estimates.</p>"
            f"{imgs}<h2>Best design per model x board</h2>{_html_table(rows)}"
            f"<h2>SetFolding vs the search at the same throughput</h2>{_html_table(sf_rows)}</body></html>")


def summarize(searches: list, builds: list, metrics: list, csv_path, json_path, pareto_png, setfolding_png,
              setfolding_csv, html_path=None) -> list[dict]:
    """Write summary.csv / .json, the Pareto plot, the SetFolding table and plot (and an HTML page of all
    of it at ``html_path``); return the summary rows."""
    import matplotlib.pyplot as plt

    rows = summary_rows(searches, builds, metrics)
    sf_rows = setfolding_rows(searches)
    pngs = {}
    for title, fig_fn, data, out in (("Accuracy vs images/s vs LUT (Pareto front)", plot_pareto, rows, pareto_png),
                                     ("LUT of SetFolding and of the search", plot_setfolding, sf_rows, setfolding_png)):
        fig = fig_fn(data)
        pngs[title] = _png(fig)
        write_bytes_atomic(Path(out), pngs[title])
        plt.close(fig)
    if html_path is not None:
        write_bytes_atomic(Path(html_path), html_page(rows, sf_rows, pngs).encode())
    write_bytes_atomic(Path(setfolding_csv), _csv_bytes(sf_rows))
    write_json_atomic(Path(json_path), {"designs": rows, "setfolding": sf_rows})
    write_bytes_atomic(Path(csv_path), _csv_bytes(rows))
    return rows
