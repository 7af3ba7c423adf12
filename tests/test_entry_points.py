"""A tool from a separate, pip-installed package appears in `dokuei tools` through the entry point
group `dokuei.tools`, without any change to dokuei's code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

PLUGIN_PYPROJECT = """
[build-system]
requires = ["setuptools"]
build-backend = "setuptools.build_meta"

[project]
name = "dokuei-plugin-example"
version = "0.1.0"

[project.entry-points."dokuei.tools"]
estimate_body_surface_area = "dokuei_plugin_example:EstimateBodySurfaceArea"
"""

PLUGIN_CODE = '''
from pydantic import BaseModel, Field

from dokuei.tools.base import Outcome, Requirements, Tool


class BsaInput(BaseModel):
    height_cm: float = Field(gt=0, description="body height")
    weight_kg: float = Field(gt=0, description="body weight")


class BsaOutput(BaseModel):
    bsa_m2: float = Field(description="body surface area, Du Bois formula")


class EstimateBodySurfaceArea(Tool[BsaInput]):
    name = "estimate_body_surface_area"
    version = "0.1.0"
    description_ja = "身長と体重から体表面積（Du Bois 式）を計算する。薬剤量の計算補助に使う。画像には使わない。"
    description_en = "Body surface area from height and weight (Du Bois). Not for images or reports."
    Input = BsaInput
    Output = BsaOutput
    requires = Requirements(device="cpu", licence="MIT")

    def run(self, inp: BsaInput) -> Outcome:
        bsa = 0.007184 * inp.height_cm ** 0.725 * inp.weight_kg ** 0.425
        return Outcome(output=BsaOutput(bsa_m2=round(bsa, 3)), summary_ja=f"体表面積 {bsa:.3f} m2")
'''


def test_installed_plugin_package_is_listed_and_runs(tmp_path: Path) -> None:
    src = tmp_path / "plugin"
    (src / "dokuei_plugin_example").mkdir(parents=True)
    (src / "pyproject.toml").write_text(textwrap.dedent(PLUGIN_PYPROJECT))
    (src / "dokuei_plugin_example" / "__init__.py").write_text(PLUGIN_CODE)
    site = tmp_path / "site"
    # a real pip install of the separate package into its own target folder (no network: no deps)
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--no-index", "--target", str(site), str(src)], check=True)
    env = {**os.environ, "PYTHONPATH": str(site), "DOKUEI_HOME": str(tmp_path / "home")}
    listing = subprocess.run([sys.executable, "-m", "dokuei.cli", "tools", "--json"], env=env,
                             capture_output=True, text=True, check=True)
    rows = {row["name"]: row for row in json.loads(listing.stdout)}
    assert rows["estimate_body_surface_area"]["origin"] == "dokuei-plugin-example"
    assert rows["estimate_body_surface_area"]["status"] == "ok"
    assert "judge_checkup" in rows

    run = subprocess.run([sys.executable, "-m", "dokuei.cli", "tools", "run", "estimate_body_surface_area",
                          "--json-input", '{"height_cm": 170, "weight_kg": 60}'], env=env,
                         capture_output=True, text=True, check=True)
    result = json.loads(run.stdout)
    # Du Bois by hand: 170^0.725 = e^(0.725 × 5.1358) = 41.41; 60^0.425 = e^(0.425 × 4.0943) = 5.698;
    # 0.007184 × 41.41 × 5.698 = 1.695 m²
    assert abs(result["output"]["bsa_m2"] - 1.695) < 0.002
    assert result["provenance"]["tool"] == "estimate_body_surface_area"
