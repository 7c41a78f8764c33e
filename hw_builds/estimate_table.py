"""The README's FINN estimate table: one model built for several boards, side by side.

Builds the model's FINN front end once (under ``out_root``/frontend), then the emulation build
(every step verified, as the pipeline does) for each board from it, times each board,
and collects FINN's estimates from each summary into one JSON file plus a Markdown table, next
to finn-examples' measured tfc-w1a1 figure (837,019 images/s at 100 MHz on a Pynq board), which
is a reference for scale, not something these estimates claim to reproduce.

    python -m hw_builds.estimate_table results/tfc_w1a1/export results/bench/finn_estimates.json
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from host.atomic import write_json_atomic
from hw_builds.compile import compile_finn
from hw_builds.frontend import build_frontend

DEFAULT_BOARDS = ("Pynq-Z1", "Pynq-Z2", "Ultra96", "ZCU104")
FINN_EXAMPLES_TFC_W1A1_FPS = 837_019  # finn-examples, measured on board at 100 MHz (reference only)


def estimate_table(export_dir: Path, out_root: Path, boards=DEFAULT_BOARDS, **build_kwargs) -> list[dict]:
    """Build ``export_dir``/model.onnx's front end, then each board under ``out_root``/<board>; one row per board.

    ``build_seconds_wall`` is the board's own build; the front end's seconds are in each row too (run once).
    """
    rows = []
    name = export_dir.parent.name
    frontend = build_frontend(export_dir / "model.onnx", export_dir / "golden.npz", out_root / "frontend",
                              model_name=name, verify_samples=build_kwargs.get("verify_samples", 100), progress=False)
    for board in boards:
        t0 = time.perf_counter()
        s = compile_finn(out_root / "frontend", export_dir / "golden.npz", out_root / board, board,
                         model_name=name, progress=False, **build_kwargs)
        rows.append({
            "board": board,
            "fpga_part": s["fpga_part"],
            "clock_mhz": s["clock"]["mhz"],
            "target_fps": s["target_fps"],
            "estimated_fps": s["estimate"]["throughput_fps"],
            "latency_cycles": s["estimate"]["latency_cycles"],
            "latency_us": s["estimate"]["latency_us"],
            "LUT": s["resources_total"]["LUT"],
            "BRAM_18K": s["resources_total"]["BRAM_18K"],
            "URAM": s["resources_total"]["URAM"],
            "DSP": s["resources_total"]["DSP"],
            "LUT_utilization_pct": 100 * s["utilization"]["LUT"],
            "BRAM_18K_utilization_pct": 100 * s["utilization"]["BRAM_18K"],
            "fits": s["fits"],
            "steps_verified": len(s["verified_steps"]),
            "golden_samples_checked": s["golden_samples_checked"],
            "build_seconds_wall": round(time.perf_counter() - t0, 2),
            "frontend_seconds": frontend["frontend_seconds"],
        })
    return rows


def markdown(rows: list[dict]) -> str:
    """The table as Markdown, with finn-examples' measured figure as the last row."""
    lines = [
        "| Board | Part | Clock | Est. images/s | Latency (cycles / us) | LUT | BRAM_18K | DSP | Build (s) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['board']} | {r['fpga_part']} | {r['clock_mhz']:.0f} MHz | {r['estimated_fps']:,.0f} | "
            f"{r['latency_cycles']:,} / {r['latency_us']:.1f} | {r['LUT']:,.0f} ({r['LUT_utilization_pct']:.1f}%) | "
            f"{r['BRAM_18K']:.0f} ({r['BRAM_18K_utilization_pct']:.1f}%) | {r['DSP']:.0f} | {r['build_seconds_wall']:.1f} |"
        )
    lines.append(f"| finn-examples tfc-w1a1 (measured on board) | xc7z020 | 100 MHz | {FINN_EXAMPLES_TFC_W1A1_FPS:,} | | | | | |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export_dir", type=Path, help="results/<model>/export (model.onnx + golden.npz)")
    parser.add_argument("out_json", type=Path, help="where to write the rows, e.g. results/bench/finn_estimates.json")
    parser.add_argument("--build-root", type=Path, default=None, help="build folders (default hw_builds/<model>)")
    parser.add_argument("--target-fps", type=int, default=100_000)
    parser.add_argument("--clk-period-ns", type=float, default=10.0)
    args = parser.parse_args()
    root = args.build_root or Path("hw_builds") / args.export_dir.parent.name
    rows = estimate_table(args.export_dir, root, target_fps=args.target_fps, clk_period_ns=args.clk_period_ns)
    write_json_atomic(args.out_json, {"rows": rows, "finn_examples_tfc_w1a1_measured_fps": FINN_EXAMPLES_TFC_W1A1_FPS,
                                      "note": "FINN analytical estimates (emulation target), not measurements"})
    print(markdown(rows))


if __name__ == "__main__":
    main()
