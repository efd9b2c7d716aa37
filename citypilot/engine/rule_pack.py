"""The built-in rule pack: YAML rules shipped with CityPilot (``engine/rulepack/``).

Loaded at start when the ``rule_pack`` setting is on (the demo turns it on); each
rule is added when no rule of its id is stored, so an operator's edits stay.
"""

from __future__ import annotations

from pathlib import Path

RULE_PACK_DIR = Path(__file__).with_name("rulepack")
