"""The boards bnnflow builds for: FINN's board name, its FPGA part and the part's resources.

Capacities are the device totals from the Xilinx product tables (each row cites its data sheet),
not FINN's floorplanning guides in ``finn.util.platforms``, which subtract or round some of them
(e.g. 412 BRAM_18K for the ZU3EG, 610 BRAM_18K and 92 URAM for the ZU7EV). The part names must
equal ``finn.util.basic.pynq_part_map``; a test checks that, so a finn-plus upgrade that renames
a board fails loudly instead of building for the wrong part.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from host.refusal import RefusedInput

RESOURCES = ("LUT", "FF", "BRAM_18K", "URAM", "DSP")

DS190 = "Xilinx DS190 Zynq-7000 SoC Data Sheet: Overview, Table 1 (Z-7020)"
DS891 = "Xilinx DS891 Zynq UltraScale+ MPSoC Data Sheet: Overview, Table 1"
DS987 = "Xilinx DS987 Kria K26 SOM Data Sheet, Table 1 (XCK26 programmable logic)"


class UnknownBoardError(RefusedInput):
    """The board name is not one bnnflow knows; the message lists the supported names."""


@dataclass(frozen=True)
class Board:
    """One PYNQ board: FINN's name for it, its FPGA part and that part's resource totals."""

    name: str  # FINN's board name (key of finn.util.basic.pynq_part_map)
    part: str  # Xilinx part the board carries
    lut: int  # CLB LUTs
    ff: int  # CLB flip-flops
    bram_18k: int  # block RAM in 18 Kb halves (2 per 36 Kb block)
    uram: int  # UltraRAM blocks (288 Kb each)
    dsp: int  # DSP slices
    source: str  # where the figures come from

    def capacity(self) -> dict[str, int]:
        """Resource totals keyed like FINN's estimate reports (LUT, FF, BRAM_18K, URAM, DSP)."""
        return dict(zip(RESOURCES, (self.lut, self.ff, self.bram_18k, self.uram, self.dsp)))

    def as_dict(self) -> dict:
        return asdict(self)


BOARDS: dict[str, Board] = {
    b.name: b
    for b in (
        # Zynq-7020: 53,200 LUTs, 106,400 FFs, 140 x 36 Kb BRAM, 220 DSP48E1.
        Board("Pynq-Z1", "xc7z020clg400-1", 53_200, 106_400, 280, 0, 220, f"{DS190}, XC7Z020"),
        Board("Pynq-Z2", "xc7z020clg400-1", 53_200, 106_400, 280, 0, 220, f"{DS190}, XC7Z020"),
        # ZU3EG: 70,560 LUTs, 141,120 FFs, 216 x 36 Kb BRAM, no URAM, 360 DSP48E2.
        Board("Ultra96", "xczu3eg-sbva484-1-e", 70_560, 141_120, 432, 0, 360, f"{DS891}, ZU3EG"),
        # ZU7EV: 230,400 LUTs, 460,800 FFs, 312 x 36 Kb BRAM, 96 URAM, 1,728 DSP48E2.
        Board("ZCU104", "xczu7ev-ffvc1156-2-e", 230_400, 460_800, 624, 96, 1_728, f"{DS891}, ZU7EV"),
        # ZU9EG: 274,080 LUTs, 548,160 FFs, 912 x 36 Kb BRAM, no URAM, 2,520 DSP48E2.
        Board("ZCU102", "xczu9eg-ffvb1156-2-e", 274_080, 548_160, 1_824, 0, 2_520, f"{DS891}, ZU9EG"),
        # XCK26 (ZU5EV-class): 117,120 LUTs, 234,240 FFs, 144 x 36 Kb BRAM, 64 URAM, 1,248 DSP.
        Board("KV260_SOM", "xck26-sfvc784-2LV-c", 117_120, 234_240, 288, 64, 1_248, DS987),
    )
}


def get_board(name: str) -> Board:
    """The Board called ``name`` (FINN's spelling); a one-line error lists the known ones."""
    try:
        return BOARDS[name]
    except KeyError:
        raise UnknownBoardError(
            f"unknown board {name!r}: bnnflow builds for {', '.join(BOARDS)} (FINN's names, case-sensitive)"
        ) from None
