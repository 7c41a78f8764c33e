"""The board table against FINN's own part map and its platform resource tables."""

from __future__ import annotations

import pytest

from hw_builds.boards import BOARDS, UnknownBoardError, get_board
from hw_builds.finn_env import prepare_finn_environment

REQUIRED = ("Pynq-Z1", "Pynq-Z2", "Ultra96", "ZCU104")


def test_required_boards_are_known():
    assert set(REQUIRED) <= set(BOARDS)


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_part_is_finns(name):
    prepare_finn_environment()
    from finn.util.basic import pynq_part_map

    assert get_board(name).part == pynq_part_map[name]


def test_capacity_agrees_with_finn_platform_tables():
    """FINN's platforms.py (its floorplanning guide) rounds some figures; DSPs and LUTs agree within 1%."""
    prepare_finn_environment()
    from finn.util.platforms import platforms

    compared = [name for name in BOARDS if name in platforms]  # finn-plus has no KV260 table
    assert set(REQUIRED) <= set(compared)
    for name in compared:
        lut, _ff, bram, uram, dsp = platforms[name]().compute_resources[0]
        cap = get_board(name).capacity()
        assert abs(cap["LUT"] - lut) <= 0.01 * cap["LUT"], name
        assert cap["DSP"] == dsp, name
        assert cap["BRAM_18K"] >= bram and cap["URAM"] >= uram, name  # FINN keeps a few back


def test_zynq_7020_figures_are_exact():
    assert get_board("Pynq-Z1").capacity() == {"LUT": 53200, "FF": 106400, "BRAM_18K": 280, "URAM": 0, "DSP": 220}
    assert get_board("Pynq-Z2").capacity() == get_board("Pynq-Z1").capacity()


def test_unknown_board_names_the_known_ones():
    with pytest.raises(UnknownBoardError, match=r"'pynq-z1'.*Pynq-Z1, Pynq-Z2, Ultra96, ZCU104"):
        get_board("pynq-z1")
