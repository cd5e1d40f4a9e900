"""The sample pair and plan files the experiment benches run (``import plans`` from bench/)."""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONTENT = ROOT / "samples/content/coffee.png"
STYLE = ROOT / "samples/style/cozens_grotto-in-the-campagna_watercolor.jpg"


def plan_toml(axes: dict, fixed: dict, pairs=((CONTENT, STYLE),)) -> str:
    """A plan file's text: ``pairs`` of (content, style) paths, ``[axes]`` and ``[fixed]`` (JSON values are TOML's).

    >>> print(plan_toml({"alpha": [0.25, 0.75]}, {"size": 64}, pairs=[("c.png", "s.png")]))
    [[pair]]
    content = "c.png"
    style = "s.png"
    <BLANKLINE>
    [axes]
    alpha = [0.25, 0.75]
    <BLANKLINE>
    [fixed]
    size = 64
    <BLANKLINE>
    """
    text = "".join(f'[[pair]]\ncontent = "{content}"\nstyle = "{style}"\n\n' for content, style in pairs)
    for table, values in (("axes", axes), ("fixed", fixed)):
        text += f"[{table}]\n" + "".join(f"{key} = {json.dumps(value)}\n" for key, value in values.items()) + "\n"
    return text.rstrip("\n") + "\n"


def schedule(size: int, steps: int, out_size: int | None = None) -> dict:
    """``[fixed]`` of a bench plan: NNST ``size`` with ``steps`` steps per scale and of splitting, a poster."""
    fixed = {"size": size, "steps": steps, "split_steps": steps}
    return fixed if out_size is None else {**fixed, "out_size": out_size}
