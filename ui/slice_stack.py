"""Scrolling in the browser: the whole rendered stack travels once, then a slice step is an image swap.

A server round trip per slice (Gradio queue, SSE, file fetch) cost ~400 ms a step on this machine. So
after a study is opened, or its window, zoom, layers or comparison change, every slice is rendered with
the same settings as the shown one and sent to the page as JPEG data URIs in one hidden HTML component.
Its script swaps the shown ``<img>`` while the slider moves. The lossless PNG the server renders for
the slice the slider stops on then replaces the preview (a frame for an older slice that arrives late
is ignored), and clicks keep mapping through the server's own ``View``.

Studies above ``MAX_STACK_SLICES`` (or a stack above ``MAX_STACK_BYTES``) are not sent: they scroll
through the server as before.
"""

from __future__ import annotations

import base64
import io
import json
import logging
from typing import Any

import numpy as np

from dokuei.ui import viewer

log = logging.getLogger(__name__)

MAX_STACK_SLICES = 600
MAX_STACK_BYTES = 48 * 1024 * 1024
JPEG_QUALITY = 90
EMPTY = json.dumps({"frames": [], "compare": []})


def _jpeg_data_uri(image: np.ndarray) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", quality=JPEG_QUALITY)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def build_stack(shown: viewer.LoadedStudy, preset: str, layers: list[str], zoom: float,
                centre_rc: tuple[int, int] | None, other: viewer.LoadedStudy | None = None) -> str:
    """JSON for the page: ``frames[k]`` is slice k as shown; ``compare[k]`` the other study at k's height."""
    if shown.n_slices > MAX_STACK_SLICES:
        log.info("stack not sent: %d slices > %d (the viewer scrolls through the server)",
                 shown.n_slices, MAX_STACK_SLICES)
        return EMPTY
    frames, compare, total = [], [], 0
    rendered: dict[int, str] = {}
    for k in range(shown.n_slices):
        frames.append(_jpeg_data_uri(viewer.render_view(shown, k, preset, layers, zoom, centre_rc).image))
        total += len(frames[-1])
        if other is not None:
            k_other = other.slice_at_z(shown.z_mm(k))
            if k_other not in rendered:
                rendered[k_other] = _jpeg_data_uri(
                    viewer.render_view(other, k_other, preset, layers, zoom, centre_rc).image)
                total += len(rendered[k_other])
            compare.append(rendered[k_other])
        if total > MAX_STACK_BYTES:
            log.info("stack not sent: over %d bytes at slice %d", MAX_STACK_BYTES, k)
            return EMPTY
    return json.dumps({"frames": frames, "compare": compare})


def frame_index(file_name: str) -> int | None:
    """The slice a server frame file shows (``<ns>-k<index>.png``), as the page's script reads it."""
    stem = file_name.rsplit("/", 1)[-1].split(".")[0]
    _, sep, index = stem.rpartition("-k")
    return int(index) if sep and index.isdigit() else None


#: Runs once when the hidden component mounts. ``props.value`` is the JSON above; ``watch`` re-reads it.
JS_ON_LOAD = r"""
const stack = {frames: [], compare: [], images: []};
const SERVER_FRAME = /-k(\d+)\.png/;
function sliderValue() {
  const box = document.querySelector('#ct-slice input[type=number]');
  return box ? Number(box.value) : NaN;
}
function setSrc(id, src) {
  const img = document.querySelector('#' + id + ' img');
  if (img && src && img.getAttribute('src') !== src) img.setAttribute('src', src);
}
function show(k, t0) {
  if (!stack.frames.length || !(k >= 0 && k < stack.frames.length)) return false;
  setSrc('ct-view', stack.frames[k]);
  if (stack.compare.length) setSrc('compare-view', stack.compare[k]);
  element.dataset.shown = String(k);
  // frame time as the page sees it: the input event to the decoded frame's next paint (bench/bench_ui.py)
  const img = document.querySelector('#ct-view img');
  if (t0 !== undefined && img && img.decode) {
    img.decode().then(() => requestAnimationFrame(() => {
      element.dataset.frameMs = (performance.now() - t0).toFixed(1);
      element.dataset.frames = String(Number(element.dataset.frames || 0) + 1);
    })).catch(() => {});
  }
  return true;
}
function load() {
  let data = {};
  try { data = props.value ? JSON.parse(props.value) : {}; } catch (e) { data = {}; }
  stack.frames = data.frames || [];
  stack.compare = data.compare || [];
  // decode ahead, so a step is a swap of an image the browser already holds
  stack.images = stack.frames.concat(stack.compare).map((src) => { const im = new Image(); im.src = src; return im; });
  element.dataset.slices = String(stack.frames.length);
}
document.addEventListener('input', (event) => {
  const target = event.target;
  if (target && target.closest && target.closest('#ct-slice')) show(Number(target.value), event.timeStamp);
}, true);
// a lossless frame the server rendered for an older slice must not replace the slice the slider is on
new MutationObserver((records) => {
  for (const record of records) {
    const img = record.target;
    if (!(img instanceof HTMLImageElement) || !img.closest('#ct-view, #compare-view')) continue;
    const match = SERVER_FRAME.exec(img.getAttribute('src') || '');
    const k = sliderValue();
    if (match && Number(match[1]) !== k) show(k);
  }
}).observe(document.body, {subtree: true, attributes: true, attributeFilter: ['src']});
load();
watch('value', load);
"""


def stack_component() -> Any:
    """The hidden carrier of the stack (an HTML component with no visible content)."""
    import gradio as gr

    return gr.HTML(EMPTY, html_template="<div class='dk-stack' hidden></div>", js_on_load=JS_ON_LOAD,
                   elem_id="ct-stack", padding=False, container=False)
