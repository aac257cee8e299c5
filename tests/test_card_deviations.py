"""Every paper card's deviations page is generated from its config and up to date; the cards run the released
code's settings wherever the switch exists and say where they do not."""
from __future__ import annotations

from pathlib import Path

import pytest

from vismech.deviations import page, paper_cards, render, switch_rows
from vismech.errors import VismechError

FOLDER = Path(__file__).resolve().parent.parent / "docs" / "cards"


@pytest.mark.parametrize("card", paper_cards())
def test_deviation_pages_are_fresh(card):
    assert page(FOLDER, card).read_text() == render(card), \
        f"docs/cards/{card}_deviations.md is stale: run scripts/card_deviations.py"


def test_the_cards_run_the_reference_switches_except_the_stated_ones():
    deviating = {card: sorted(f"{r.method}.{r.key}" for r in switch_rows(card)[0] if r.deviates)
                 for card in paper_cards()}
    # P2's all-classes betas are not a per-sample mixture: that card calibrates (its deviations list says why)
    assert deviating == {"paper_cad_objects": [], "paper_difflens_ddpm": ["difflens.calibration_strengths",
                                                                          "difflens.class_strengths"],
                         "paper_difflens_sd": [], "paper_neuron_path": [], "paper_pruning": [],
                         "paper_unlearndiffatk_objects": []}
    rows = {(r.method, r.key): r for r in switch_rows("paper_pruning")[0]}
    assert rows["neuron_path", "topk_accumulate"].card == "reference" != rows["neuron_path", "topk_accumulate"].default
    assert "**deviation**" in render("paper_difflens_ddpm") and "`method=cad_amplify_reference`" in \
        render("paper_cad_objects")


def test_reference_settings_must_name_exactly_the_switches(monkeypatch):
    from vismech.methods.neuron_path import NeuronPathConfig

    monkeypatch.setattr(NeuronPathConfig, "SWITCHES", {**NeuronPathConfig.SWITCHES, "m": "Riemann steps"})
    with pytest.raises(VismechError, match="card 'paper_pruning' reference_settings.neuron_path must name exactly "
                                           "the switches of method 'neuron_path'"):
        switch_rows("paper_pruning")
