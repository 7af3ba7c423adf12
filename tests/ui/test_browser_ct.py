"""The CT workflows of the README's "Asking" section, done in Debian's Chromium as a clinician would, with
the same numbers as the CLI (tests/test_acceptance.py asks the same questions of the same phantoms):

- a zipped CT study folder (ct.nii.gz + segmentations/) → L3 answer, SMI 34.63 cm²/m² for the 152 cm
  woman (80.01 cm² / 1.52², the phantom's analytic muscle area, tests/test_ct_layouts.py), and the viewer
  opens that study at the measured L3 slice with the muscle overlay drawn;
- two lymph-node studies uploaded follow-up first → roles ベースライン / 今回 from their study dates, and
  RECIST PD (the right paratracheal node grows 16 → 24 mm short axis), shown side by side;
- three clinicians asking while the one worker is busy: the others see their place in line and every
  question is answered.

The server runs with ONE worker here so the queue is observable; the agent is the real one, held at a gate
only in the queue test. Screenshots of failures go to the test's tmp folder.
"""

from __future__ import annotations

import base64
import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.ui.conftest import CHROMIUM, RecordingAgent, open_page, serve
from tests.ui.pages import ask, choose, fill, start_ask, upload, wait_answer

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium: run scripts/setup.sh as root "
                       "(apt-get install chromium fonts-noto-cjk)"),
]
CT_QUESTION = "この CT で L3 の骨格筋量とサルコペニアの判定は？"
RECIST_QUESTION = "前回と比べてリンパ節は？RECIST で評価して"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, RecordingAgent, Path]]:
    yield from serve(tmp_path_factory.mktemp("home"), workers=1)


def _zip_folder(folder: Path, out: Path, top: str) -> Path:
    """The study folder zipped as a PACS export or a colleague would: everything under one top folder."""
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, f"{top}/{path.relative_to(folder).as_posix()}")
    return out


def _shown_image(page: Any, elem_id: str) -> np.ndarray:
    """The pixels the page shows in a gr.Image, fetched through the page's own session."""
    from PIL import Image

    page.locator(f"#{elem_id}").scroll_into_view_if_needed()  # the viewer is below the fold; its img is lazy
    img = page.locator(f"#{elem_id} img").first
    img.wait_for(timeout=60_000)
    src = img.get_attribute("src") or ""
    if src.startswith("data:"):  # a preview frame of the browser-side stack (ui/slice_stack.py)
        return np.asarray(Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).convert("RGB"))
    response = page.request.get(src)
    assert response.ok, response.status
    return np.asarray(Image.open(io.BytesIO(response.body())).convert("RGB"))


def _slider_value(page: Any) -> int:
    return int(page.locator("#ct-slice input[type=number]").input_value())


def test_zipped_ct_study_gives_the_cli_smi_and_opens_the_l3_overlay(
        page: Any, served: tuple[str, RecordingAgent, Path], tmp_path: Path) -> None:
    from dokuei.phantoms.ct import L3_SLICE, write_study
    from dokuei.ui.viewer import TISSUE_RGB

    _, agent, _home = served
    study_zip = _zip_folder(write_study(tmp_path / "ct"), tmp_path / "腹部CT.zip", "case01")
    note = upload(page, study_zip)
    assert "取り込みました" in note and "CT" in note
    studies = page.locator("#studies").inner_text()
    assert "tissue_types" in studies and "total" in studies  # segmentations/ survived the upload
    fill(page, "age", "72")
    choose(page, "sex", "女性")
    fill(page, "height", "152")
    answer = ask(page, CT_QUESTION)
    call = agent.calls[-1]
    assert call["patient"] == {"age_years": 72, "sex": "F", "height_cm": 152.0}
    assert len(call["attachments"]) == 1 and Path(call["attachments"][0]).name == "case01"
    assert "34.63" in answer, answer  # the CLI's SMI for the same study and patient (test_acceptance)
    assert "筋肉量低下" in answer and "女性" in answer  # the sex whose cut-off was used is named
    assert "/" not in answer.split("出典")[0].replace("cm²/m²", "").replace("mg/dL", "")  # no server path
    # the viewer opened the study at the measured L3 slice, muscle drawn red (TotalSegmentator tissue_types)
    page.wait_for_function(f"() => document.querySelector('#ct-slice input[type=number]')?.value == '{L3_SLICE}'",
                           timeout=60_000)
    pixels = _shown_image(page, "ct-view")
    # muscle (~45 HU → grey 130 in 縦隔) blended 40 % with (220, 40, 40) is ≈ (166, 94, 94); no grey is that red
    r, g, _ = TISSUE_RGB["skeletal_muscle"]
    assert (round(0.6 * 130 + 0.4 * r), round(0.6 * 130 + 0.4 * g)) == (166, 94)
    reddish = (pixels[..., 0] > 150) & (pixels[..., 1] < 120) & (pixels[..., 2] < 120)
    assert reddish.sum() > 500, "no muscle overlay on the L3 slice"
    # [1] opens the tool output as a table with the same SMI
    # scrolling: the stack reaches the page, a key step swaps in its preview at once, and the server's
    # lossless frame of the same slice follows (ui/slice_stack.py); preview and frame agree within JPEG error
    n_slices = int(page.locator("#ct-slice input[type=number]").get_attribute("max") or 0) + 1
    page.wait_for_function(f"() => document.querySelector('#ct-stack [data-slices]')?.dataset.slices == '{n_slices}'",
                           timeout=120_000)
    page.locator("#ct-slice input[type=range]").focus()
    page.keyboard.press("ArrowUp")
    assert _slider_value(page) == L3_SLICE + 1
    src = page.locator("#ct-view img").first.get_attribute("src") or ""
    assert src.startswith("data:image/jpeg"), src[:60]  # shown without waiting for the server
    # and not hidden under Gradio's progress overlay while the server's frame is pending (seen in Chromium)
    assert page.evaluate("() => [...document.querySelectorAll('#ct-view [data-testid=status-tracker]')]"
                         ".every(e => e.classList.contains('hide'))")
    preview = _shown_image(page, "ct-view").astype(int)
    page.wait_for_function(f"() => /-k{L3_SLICE + 1}\\.png/.test(document.querySelector('#ct-view img')?.src || '')",
                           timeout=60_000)
    lossless = _shown_image(page, "ct-view").astype(int)
    assert preview.shape == lossless.shape and np.abs(preview - lossless).mean() < 3.0
    choose(page, "source-pick", "[1]")
    page.wait_for_function("() => (document.querySelector('#source-table')?.innerText || '').includes('骨格筋指数')",
                           timeout=30_000)
    table = page.locator("#source-table").inner_text()
    assert "骨格筋指数（SMI）" in table and "34.63 cm²/m²" in table  # labelled in Japanese, unit beside
    page.locator("#source-images img").first.wait_for(state="attached", timeout=30_000)  # and its overlay
    # turning the muscle/fat layer off leaves a grey slice (the overlay is the layer, not burned in)
    page.locator("#ct-layers").get_by_text("筋・脂肪（L3）").click()
    page.locator("#ct-layers").get_by_text("臓器").click()
    page.wait_for_timeout(1500)
    grey = _shown_image(page, "ct-view")
    assert ((grey[..., 0] > 150) & (grey[..., 1] < 120) & (grey[..., 2] < 120)).sum() == 0


def test_recist_roles_come_from_the_study_dates_not_the_upload_order(
        page: Any, served: tuple[str, RecordingAgent, Path], tmp_path: Path) -> None:
    from dokuei.phantoms.nodes import write_pair

    _, agent, _home = served
    baseline, followup = write_pair(tmp_path / "nodes")
    dates = {name: json.loads((folder / "study.json").read_text())["study_date"]
             for name, folder in (("baseline", baseline), ("followup", followup))}
    assert dates["baseline"] < dates["followup"]
    # neutral names, follow-up first: only the dates can tell them apart
    assert "取り込みました" in upload(page, _zip_folder(followup, tmp_path / "検査A.zip", "A"))
    assert "取り込みました" in upload(page, _zip_folder(baseline, tmp_path / "検査B.zip", "B"))
    page.wait_for_function("dates => dates.every(d => (document.querySelector('#studies')?.innerText || '')"
                           ".includes(d))", arg=list(dates.values()), timeout=30_000)
    cells = page.locator("#studies").inner_text().split()  # 検査日 then 役割, cell by cell
    role_of = {cells[i]: cells[i + 1] for i in range(len(cells) - 1) if cells[i] in dates.values()}
    assert role_of == {dates["baseline"]: "ベースライン", dates["followup"]: "今回"}, cells
    answer = ask(page, RECIST_QUESTION)
    assert "RECIST 1.1: PD" in answer, answer  # the CLI's response for the same pair (test_acceptance)
    used = [Path(p).name for p in agent.calls[-1]["attachments"]]
    assert used == ["B", "A"]  # baseline first although it was uploaded second
    # the follow-up is shown with the baseline beside it
    assert _shown_image(page, "ct-view").shape == _shown_image(page, "compare-view").shape
    # a click on the image in node mode seeds measure_lymph_nodes with that voxel of the shown slice
    page.locator("#ct-click-mode").get_by_text("リンパ節を計測する").click()
    page.locator("#ct-view img").first.click()
    page.wait_for_function("() => /\\(\\d+, \\d+, \\d+\\)/.test("
                           "document.querySelector('#question textarea')?.value || '')", timeout=30_000)
    seeded = page.locator("#question textarea").input_value()
    k = int(seeded.split("(")[1].split(")")[0].split(",")[2])
    assert k == _slider_value(page) and "リンパ節を計測" in seeded


def test_questions_asked_while_the_worker_is_busy_wait_visibly_and_are_all_answered(
        browser: Any, served: tuple[str, RecordingAgent, Path], tmp_path: Path) -> None:
    url, agent, _home = served
    tabs = [open_page(browser, url) for _ in range(3)]
    try:
        agent.gate.clear()  # the first question holds the only worker
        first = tabs[0][1]
        start_ask(first, "55歳男性、HbA1c 6.8%、空腹時血糖 130 mg/dL は要受診ですか？")
        assert first.locator("#send").is_disabled()  # the input is locked while its turn runs
        second, third = tabs[1][1], tabs[2][1]
        start_ask(second, "60歳女性、腹囲 88 cm、血色素量 12.5 g/dL の判定は？")
        second.get_by_text("順番待ちです（次に実行します）").wait_for(timeout=30_000)
        start_ask(third, "50歳男性、血色素量 12.5 g/dL の判定は？")
        third.get_by_text("順番待ちです（前に 1 件）").wait_for(timeout=30_000)
        agent.gate.set()
        answers = [wait_answer(tab) for _, tab in tabs]
    except Exception:
        for i, (_, tab) in enumerate(tabs):
            tab.screenshot(path=str(tmp_path / f"queue-tab{i}.png"), full_page=True)
        raise
    finally:
        agent.gate.set()
        for context, _ in tabs:
            context.close()
    assert "HbA1c" in answers[0] and "血色素量 12.5 g/dL: A 判定" in answers[1]
    assert "血色素量 12.5 g/dL: C 判定" in answers[2]  # a man's cut-off (13.1): same value, another grade
