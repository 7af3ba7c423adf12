"""Gradio workstation on this machine: patient banner, studies, question → cited answer with the tool
trace as a table and the images beside it. The UI reads ``TurnResult`` objects, never strings parsed back.

Safety rules kept here (issue #10): no default sex; a fact the question and the form disagree on is
unknown and named; a removed or replaced study is never used again (a new server thread is started
whenever the attachments or patient facts shrink, because the agent's session memory only adds);
「新しいセッション」 and the chat's clear icon reset chat, studies, patient fields and server memory.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
import unicodedata
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dokuei import studies as st
from dokuei.cancel import STOPPED_JA, TurnCancelled
from dokuei.patient import resolve_patient
from dokuei.settings import Settings
from dokuei.tools.registry import tool_title_ja
from dokuei.ui import access, present, slice_stack, viewer
from dokuei.ui import stream as ui_stream
from dokuei.ui.downloads import build_downloads
from dokuei.ui.turns import TurnQueue

log = logging.getLogger(__name__)

TITLE = "dokuei（読影）臨床支援アシスタント"
EXAMPLES = [
    "55歳男性、HbA1c 6.8%、空腹時血糖 130 mg/dL は要受診ですか？",
    "60歳女性、腹囲 88 cm、血色素量 12.5 g/dL の判定は？",
    "過去のレポートで心拡大の記載があるものは？",
    "この心電図の所見は？",
    "この CT で L3 の骨格筋量とサルコペニアの判定は？",
    "前回と比べてリンパ節は？RECIST で評価して",
]
SEX_CHOICES = ["不明", "男性", "女性"]
CLICK_MODES = ["拡大の中心にする", "リンパ節を計測する（クリック位置）"]
ZOOM_CHOICES = ["1×", "1.5×", "2×", "3×"]
ROLE_CHOICES = [("（なし）", ""), *((ja, role) for role, ja in st.ROLE_JA.items())]
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
#: how long a session's uploads are kept when the browser never says goodbye
DEFAULT_RETENTION_HOURS = 24.0
#: turns computed at once (the rest wait in line, with their position shown); DOKUEI_UI_WORKERS overrides
DEFAULT_WORKERS = 2
#: Gradio handlers that may wait at once: far above the workers, so a waiting turn can show its place
_MAX_WAITING_TURNS = 32
_POLL_S = 0.5
RUNNING_JA = "ツールを選んで実行しています…"
#: tools whose answer opens the CT viewer on the study they measured, at the slice they measured
_VIEWER_SLICE_FIELD = {"measure_body_composition": "l3_slice_index", "measure_lymph_nodes": None,
                       "assess_recist_response": None}


def _number(text: Any) -> float | None:
    """A form number typed by a person: empty → None (unknown), full-width digits accepted, junk → None."""
    raw = unicodedata.normalize("NFKC", str(text or "")).strip().removesuffix("歳").removesuffix("cm")
    raw = raw.removesuffix("kg").strip()
    if not raw:
        return None
    try:
        return float(raw)
    except ValueError:
        return None


def _form_patient(age: Any, sex: str | None, height: Any, weight: Any) -> dict[str, Any]:
    """Form fields are text boxes, not gr.Number: Number shows 0 when empty, and 0 歳 is not 'unknown'."""
    age_years = _number(age)
    values = {"age_years": int(age_years) if age_years is not None else None,
              "sex": {"男性": "M", "女性": "F"}.get(sex or ""),
              "height_cm": _number(height), "weight_kg": _number(weight)}
    return {k: v for k, v in values.items() if v is not None}


def _form_problems(age: Any, height: Any, weight: Any) -> list[str]:
    """Form entries that are not numbers: named in the answer, not silently dropped."""
    entries = (("年齢", age), ("身長", height), ("体重", weight))
    return [f"入力欄の{label}「{raw}」は数値として読めないため使いませんでした"
            for label, raw in entries if str(raw or "").strip() and _number(raw) is None]


def new_session_state() -> dict[str, Any]:
    session_id = uuid.uuid4().hex
    return {"id": session_id, "thread": session_id, "generation": 0, "studies": [],
            "sent_attachments": [], "sent_patient": {}, "problems": [], "last_turn": None, "view_request": None}


def _forget_session(home: Path, state: dict[str, Any] | None) -> None:
    """A closed tab or an expired session: its uploads and its rendered viewer frames are deleted."""
    if state:
        st.remove_session(home, state["id"])
        shutil.rmtree(_viewer_dir(state["id"]), ignore_errors=True)


def waiting_text(position: int) -> str:
    """The line shown while a turn waits for a worker (other clinicians' questions are running)."""
    return f"順番待ちです（前に {position - 1} 件）。前の質問が終わりしだい実行します。" if position > 1 else \
        "順番待ちです（次に実行します）。"


def _study_of(studies: list[st.Study], path: str | None) -> st.Study | None:
    """The study a tool input path lies in (the tool was given one of its series or its NIfTI folder)."""
    if not path:
        return None
    target = Path(path)
    return next((s for s in studies if s.folder == target or s.folder in target.parents), None)


def viewer_request(turn: Any, studies: list[st.Study]) -> tuple[str, int | None, str | None] | None:
    """(study to show, slice or None for the middle, study beside it or None) after a CT answer."""
    for result in turn.results:
        if result.tool not in _VIEWER_SLICE_FIELD or not result.ok:
            continue
        inputs = result.input or {}
        paths = [inputs.get("study_path"), *(inputs.get("study_paths") or [])]
        found = [s for s in (_study_of(studies, p) for p in paths if p) if s is not None and s.ct_folder]
        if not found:
            continue
        field_name = _VIEWER_SLICE_FIELD[result.tool]
        index = (result.output or {}).get(field_name) if field_name else None
        shown, beside = found[-1], (found[0] if len(found) > 1 else None)
        return shown.study_id, int(index) if index is not None else None, beside.study_id if beside else None
    return None


def _header_patient(studies: list[st.Study]) -> dict[str, Any]:
    """Header facts of the current study (else the newest): what the DICOM says about this patient."""
    ranked = sorted(studies, key=lambda s: (s.role == "current", s.uploaded_at))
    return dict(ranked[-1].header_patient) if ranked else {}


def _thread_for(state: dict[str, Any], attachments: list[str], patient: dict[str, Any]) -> str:
    """The server memory only accumulates: when a study or a patient fact was dropped, start a new thread."""
    kept_files = set(state["sent_attachments"]) <= set(attachments)
    kept_facts = all(patient.get(k) == v for k, v in state["sent_patient"].items())
    if not (kept_files and kept_facts):
        state["generation"] += 1
        state["thread"] = f"{state['id']}-{state['generation']}"
        log.info("new server thread %s: studies or patient facts changed", state["thread"])
    state["sent_attachments"] = list(attachments)
    state["sent_patient"] = dict(patient)
    return str(state["thread"])


def _progress_rows(agent: Any, thread: str, before: str | None) -> list[list[Any]]:
    """Planned tools and their state, read from the checkpoint the graph writes after each node."""
    try:
        snapshot = agent.graph.get_state({"configurable": {"thread_id": thread}})
    except Exception:  # progress is a nicety: never let it break the turn
        log.debug("no progress snapshot", exc_info=True)
        return [["（計画中）", "実行中", "", ""]]
    checkpoint = (snapshot.config or {}).get("configurable", {}).get("checkpoint_id")
    if checkpoint == before:
        return [["（計画中）", "待機中", "", ""]]
    values = snapshot.values or {}
    done = {r.tool: r for r in values.get("results", [])}
    rows = []
    for call in values.get("plan", []):
        result = done.get(call["name"])
        if result is None:
            rows.append([tool_title_ja(call["name"]), "実行中", "", ""])
    rows += [[tool_title_ja(name), present.STATUS_JA.get(r.status.value, r.status.value),
              round(r.provenance.runtime_s, 2), ""] for name, r in done.items()]
    return rows or [["（計画中）", "実行中", "", ""]]


def _checkpoint_id(agent: Any, thread: str) -> str | None:
    try:
        snapshot = agent.graph.get_state({"configurable": {"thread_id": thread}})
        return (snapshot.config or {}).get("configurable", {}).get("checkpoint_id")
    except Exception:
        return None


def _doctor_text(settings: Settings) -> str:
    """The administrator view: what ``dokuei doctor`` reports (weights paths, devices), never shown in the chat."""
    from dokuei.doctor import doctor_report

    try:
        return json.dumps(doctor_report(settings), ensure_ascii=False, indent=2, default=str)
    except Exception as exc:
        log.exception("doctor failed in the UI")
        return f"診断を実行できませんでした（{type(exc).__name__}）。詳細はログにあります。"


def _viewer_dir(session_id: str) -> Path:
    return Path(tempfile.gettempdir()) / "dokuei-viewer" / session_id


def _frame_file(state: dict[str, Any], image: Any, index: int, keep: int = 6) -> str:
    """A rendered slice as a lossless PNG at zlib level 1: ~4x faster to encode than Gradio's default
    (level 6 PNG, or lossy WebP). The name carries the slice (``-k<index>``) for the page's script
    (ui/slice_stack.py). Old frames are pruned."""
    from PIL import Image

    folder = _viewer_dir(state["id"])
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = folder / f"{time.monotonic_ns()}-k{index}.png"
    Image.fromarray(image).save(path, "PNG", compress_level=1)
    for old in sorted(folder.glob("*.png"))[:-keep]:
        old.unlink(missing_ok=True)
    return str(path)


def _full_report(settings: Settings, report_id: str) -> str | None:
    """The archived report behind a [n] report citation, in full; None when the archive cannot say."""
    try:
        from dokuei.knowledge.archive import archive_root
        from dokuei.knowledge.store import ReportStore

        store = ReportStore(archive_root(settings, settings.chroma_url) / "reports.sqlite")
        try:
            record = store.reports([report_id]).get(report_id)
        finally:
            store.close()
        return record.full_text() if record else None
    except Exception:
        log.warning("full report %s unreadable", report_id, exc_info=True)
        return None


def build_app(settings: Settings | None = None, agent: Any = None, workers: int | None = None) -> Any:
    settings = settings or Settings.load()
    access.private_cache(settings.home)  # before any component exists: they copy files into this cache
    import gradio as gr

    if agent is None:
        from dokuei.agent.graph import Agent, sqlite_checkpointer

        agent = Agent(settings, checkpointer=sqlite_checkpointer(settings.checkpoint_db))
    uploads = st.uploads_root(settings.home)
    retention_h = float(os.environ.get("DOKUEI_UPLOAD_RETENTION_HOURS", DEFAULT_RETENTION_HOURS))
    st.purge_expired(settings.home, retention_h)
    turns = TurnQueue(workers or int(os.environ.get("DOKUEI_UI_WORKERS", DEFAULT_WORKERS)))
    #: each browser session's turn in flight, for 停止 (the ticket cannot live in gr.State: it is copied)
    in_flight: dict[str, Any] = {}

    def study_choices(state: dict[str, Any]) -> Any:
        rows = present.study_rows(state["studies"])
        return gr.update(choices=[(f"{r[0]} {r[2]} {r[3]}（{r[7]}）", r[7]) for r in rows], value=None)

    def ct_choices(state: dict[str, Any]) -> Any:
        cts = [s for s in state["studies"] if s.ct_folder is not None]
        return gr.update(choices=[(f"{s.summary_row()[0]} {s.description}（{s.study_id}）", s.study_id) for s in cts],
                         value=None)

    def studies_view(state: dict[str, Any], message: str) -> tuple[Any, ...]:
        return (present.study_rows(state["studies"]), message, study_choices(state), study_choices(state),
                ct_choices(state), ct_choices(state))

    views = viewer.ViewerCache()

    def loaded_study(study_id: str | None, state: dict[str, Any]) -> viewer.LoadedStudy | None:
        study = next((s for s in state["studies"] if s.study_id == study_id), None)
        if study is None or study.ct_folder is None:
            return None
        try:
            return views.get(study.ct_folder)
        except Exception as exc:  # a CT the viewer cannot read is said so, the page stays
            log.exception("viewer could not load %s", study.ct_folder)
            raise gr.Error(f"この検査の画像を表示できません（{type(exc).__name__}）") from exc

    def render(study_id: str | None, compare_id: str | None, index: float, preset: str, zoom: str,
               layers: list[str], state: dict[str, Any]) -> tuple[Any, Any]:
        """The chosen study at ``index`` and, beside it, the comparison study at the same height."""
        shown = loaded_study(study_id, state)
        if shown is None:
            return None, None
        keys = [viewer.LAYERS_JA[name] for name in layers or [] if name in viewer.LAYERS_JA]
        factor = float(str(zoom or "1").rstrip("×倍"))
        view = viewer.render_view(shown, int(index or 0), preset or "縦隔", keys, factor, state.get("zoom_centre"))
        state["view"] = view
        other = loaded_study(compare_id, state) if compare_id and compare_id != study_id else None
        beside = None
        if other is not None:
            k = other.slice_at_z(shown.z_mm(view.index))
            beside = _frame_file(state, viewer.render_view(other, k, preset or "縦隔", keys, factor,
                                                           state.get("zoom_centre")).image, view.index)
        return _frame_file(state, view.image, view.index), beside

    def restyle(study_id: str | None, compare_id: str | None, index: float, preset: str, zoom: str,
                layers: list[str], state: dict[str, Any]) -> tuple[Any, ...]:
        """A settings change: the shown slice at once, and the old stack dropped until the new one comes."""
        return (*render(study_id, compare_id, index, preset, zoom, layers, state), slice_stack.EMPTY)

    def stack(study_id: str | None, compare_id: str | None, preset: str, zoom: str, layers: list[str],
              state: dict[str, Any]) -> Any:
        """Every slice with the shown settings, for scrolling in the browser (ui/slice_stack.py)."""
        shown = loaded_study(study_id, state)
        if shown is None:
            return slice_stack.EMPTY
        keys = [viewer.LAYERS_JA[name] for name in layers or [] if name in viewer.LAYERS_JA]
        other = loaded_study(compare_id, state) if compare_id and compare_id != study_id else None
        factor = float(str(zoom or "1").rstrip("×倍"))
        return slice_stack.build_stack(shown, preset or "縦隔", keys, factor, state.get("zoom_centre"), other)

    def open_ct(study_id: str | None, compare_id: str | None, preset: str, zoom: str, layers: list[str],
                state: dict[str, Any]) -> tuple[Any, ...]:
        shown = loaded_study(study_id, state)
        if shown is None:
            return gr.update(maximum=1, value=0), None, None, slice_stack.EMPTY
        request = state.pop("view_request", None) or (None, None, None)
        index = request[1] if request[0] == study_id and request[1] is not None else shown.n_slices // 2
        state["zoom_centre"] = None
        return (gr.update(minimum=0, maximum=max(shown.n_slices - 1, 1), value=index),
                *restyle(study_id, compare_id, index, preset, zoom, layers, state))

    def on_view_click(evt: gr.SelectData, mode: str, study_id: str | None, compare_id: str | None, index: float,
                      preset: str, zoom: str, layers: list[str], state: dict[str, Any]) -> tuple[Any, ...]:
        """Zoom mode: the click becomes the zoom centre. Node mode: the click seeds measure_lymph_nodes."""
        view: viewer.View | None = state.get("view")
        if view is None or evt.index is None:
            return gr.update(), gr.update(), gr.update(), "", gr.update()
        x, y = int(evt.index[0]), int(evt.index[1])
        if mode == CLICK_MODES[1]:
            i, j, k = viewer.voxel_of_click(view, x, y)
            question_text = f"クリックした位置 ({i}, {j}, {k}) のリンパ節を計測して"
            note = f"計測する位置を質問欄に入れました（ボクセル {i}, {j}, {k}）。送信してください。"
            return gr.update(), gr.update(), question_text, note, gr.update()
        state["zoom_centre"] = (view.row0 + y, view.col0 + x)
        return (*render(study_id, compare_id, index, preset, zoom, layers, state), gr.update(), "",
                slice_stack.EMPTY)

    def on_upload(files: list[str] | None, state: dict[str, Any]) -> tuple[Any, ...]:
        if not files:
            return (None, state, *studies_view(state, ""))
        picked = [(Path(f), getattr(f, "orig_name", None) or Path(f).name) for f in files]
        try:
            study = st.ingest_upload(picked, uploads / state["id"])
        except st.UploadError as exc:
            return (None, state, *studies_view(state, f"⚠ {exc}"))
        except Exception as exc:  # an upload must never take the page down
            log.exception("upload failed")
            return (None, state, *studies_view(state, f"⚠ 取り込みに失敗しました（{type(exc).__name__}）"))
        state["studies"].append(study)
        st.assign_roles(state["studies"])
        note = f"検査を取り込みました: {study.modality}、シリーズ {len(study.series)}、スライス {study.n_slices}" \
            if study.series else f"検査を取り込みました: {study.modality}"
        if study.segmentations:
            note += f"（セグメンテーション: {'、'.join(study.segmentations)}）"
        if study.problems:
            note += "\n\n" + "\n\n".join(f"⚠ {p}" for p in study.problems)
        return (None, state, *studies_view(state, note))

    def on_remove(study_id: str | None, state: dict[str, Any]) -> tuple[Any, ...]:
        kept = [s for s in state["studies"] if s.study_id != study_id]
        for study in state["studies"]:
            if study.study_id == study_id:
                st.remove_study(study)
        state["studies"] = kept
        st.assign_roles(kept)
        return (state, *studies_view(state, "検査を削除しました。この検査は今後の質問に使われません。"
                                     if study_id else "削除する検査を選んでください"))

    def on_role(study_id: str | None, role: str | None, state: dict[str, Any]) -> tuple[Any, ...]:
        for study in state["studies"]:
            if study.study_id == study_id:
                st.set_role(study, role or None)  # type: ignore[arg-type]
        return (state, *studies_view(state, "役割を変更しました" if study_id else "検査を選んでください"))

    def banner(question: str, state: dict[str, Any], age: Any, sex: Any, height: Any, weight: Any) -> str:
        resolution = resolve_patient(question or "", _form_patient(age, sex, height, weight),
                                     _header_patient(state["studies"]))
        return resolution.banner_markdown()

    ui: dict[str, Any] = {}  # the page's components by name, filled in below; handlers answer {component: value}

    def respond(message: str, history: list[dict[str, Any]], state: dict[str, Any], age: str | None,
                sex: str | None, height: str | None, weight: str | None) -> Iterator[dict[Any, Any]]:
        locked = {ui["question"]: gr.update(interactive=False), ui["send"]: gr.update(interactive=False)}
        unlocked = {ui["question"]: gr.update(interactive=True, value=""), ui["send"]: gr.update(interactive=True)}
        if not (message or "").strip():
            yield unlocked
            return
        resolution = resolve_patient(message, _form_patient(age, sex, height, weight),
                                     _header_patient(state["studies"]))
        attachments = st.attachments_in_role_order(state["studies"])
        thread = _thread_for(state, attachments, resolution.values)
        history = [*history, {"role": "user", "content": present.escape_markdown(message)}]
        before = _checkpoint_id(agent, thread)
        streamed_ask, draft = ui_stream.bound(agent.ask)  # llm: verified sentences shown while it runs
        ticket = turns.submit(streamed_ask, message, attachments=attachments, patient=resolution.values,
                              session_id=thread)
        in_flight[state["id"]] = ticket
        waiting = [["（計画中）", "待機中", "", ""]]
        shown = ""
        while True:
            position = ticket.position()
            line = waiting_text(position) if position else ui_stream.pending_markdown(draft, RUNNING_JA)
            if line != shown or not position:
                rows = waiting if position else _progress_rows(agent, thread, before)
                yield {ui["chat"]: [*history, {"role": "assistant", "content": line}], ui["state"]: state,
                       ui["banner"]: resolution.banner_markdown(), ui["trace"]: rows, **locked}
                shown = line
            if ticket.done():
                break
            time.sleep(_POLL_S)
        if in_flight.get(state["id"]) is ticket:
            in_flight.pop(state["id"], None)
        try:
            turn = ticket.result()
        except TurnCancelled:  # stopped while it waited in line: it never ran
            yield {ui["chat"]: [*history, {"role": "assistant", "content": STOPPED_JA}], **unlocked}
            return
        except Exception as exc:  # the session must survive any bad input
            log.exception("UI turn failed")
            answer = f"エラーが発生しました（{type(exc).__name__}）。入力を確認してください。詳細はログにあります。"
            yield {ui["chat"]: [*history, {"role": "assistant", "content": answer}], ui["sources"]: "",
                   ui["trace"]: [], ui["raw"]: "", ui["gallery"]: [], **unlocked}
            return
        if getattr(turn, "stopped", False):
            yield {ui["chat"]: [*history, {"role": "assistant", "content": STOPPED_JA}], ui["trace"]: [],
                   **unlocked}
            return
        state["last_turn"] = turn
        from dokuei.export.turns import store_turn

        # kept de-identified for `dokuei export TURN_ID` (hospital IT); its id is shown below the sources
        turn_id = store_turn(settings, turn.to_json(), message, [r.sha256() for r in turn.results])
        answer = present.answer_markdown(turn, resolution.conflict_message_ja(), _form_problems(age, height, weight))
        update = {ui["chat"]: [*history, {"role": "assistant", "content": answer}], ui["state"]: state,
                  ui["banner"]: resolution.banner_markdown(),
                  ui["sources"]: present.sources_markdown(turn.citations) + present.record_line(turn_id),
                  ui["trace"]: present.trace_rows(turn), ui["raw"]: present.raw_trace_json(turn),
                  ui["gallery"]: present.gallery_items(turn),
                  ui["source_pick"]: gr.update(choices=present.source_choices(turn.citations), value=None),
                  **unlocked}
        request = viewer_request(turn, state["studies"])
        if request is not None:  # the CT answer opens its study in the viewer, at the measured slice
            state["view_request"] = request
            update[ui["ct_pick"]] = gr.update(value=request[0])
            if request[2]:
                update[ui["compare_pick"]] = gr.update(value=request[2])
        yield update

    # Gradio finds the event argument by its type; under postponed annotations it needs the class itself
    on_view_click.__annotations__["evt"] = gr.SelectData

    def stop_turn(state: dict[str, Any]) -> None:
        """停止: the session's turn stops (its worker tool is killed). The turn's own handler then shows
        「停止しました」 and unlocks the input, so a question typed next is never overwritten by it."""
        ticket = in_flight.pop((state or {}).get("id", ""), None)
        if ticket is not None:
            ticket.stop()

    def open_source(number: int | None, state: dict[str, Any]) -> tuple[Any, ...]:
        turn = state.get("last_turn")
        if turn is None:
            return "まだ回答がありません。", [], []
        return present.source_detail(turn, number, lambda rid: _full_report(settings, rid))

    def new_session(state: dict[str, Any]) -> tuple[Any, ...]:
        old = state or {}
        running = in_flight.pop(old.get("id", ""), None)
        if running is not None:  # the old patient's turn stops; nothing of it reaches the new session
            running.stop()
        if old.get("id"):
            shutil.rmtree(uploads / old["id"], ignore_errors=True)
            shutil.rmtree(_viewer_dir(old["id"]), ignore_errors=True)
            reset = getattr(agent, "reset_session", None)
            if callable(reset):
                for thread in {old["id"], old.get("thread", old["id"])}:
                    try:
                        reset(thread)
                    except Exception:
                        log.exception("reset_session failed for %s", thread)
        fresh = new_session_state()
        empty_banner = resolve_patient("", {}).banner_markdown()
        return ([], fresh, empty_banner, "", [], "", [], "", None, "", "", "", [],
                "新しいセッションを開始しました", study_choices(fresh), study_choices(fresh), ct_choices(fresh),
                ct_choices(fresh), None, None, gr.update(choices=[], value=None), "", [], [], slice_stack.EMPTY)

    with gr.Blocks(title=TITLE, analytics_enabled=False) as app:
        gr.Markdown(f"## {TITLE}\n院内でのみ動作します。回答の各記述には根拠の番号 [n] が付きます。")
        # a closed tab (or a session idle past the retention time) takes its uploads with it
        state = gr.State(new_session_state, time_to_live=retention_h * 3600,
                         delete_callback=lambda s: _forget_session(settings.home, s))
        patient_banner = gr.Markdown(resolve_patient("", {}).banner_markdown(), elem_id="patient-banner")
        with gr.Tab("診療"):
            with gr.Row():
                with gr.Column(scale=3):
                    chat = gr.Chatbot(label="対話", height=480, buttons=["copy"], feedback_options=None,
                                      elem_id="chat")
                    question = gr.Textbox(label="質問", placeholder=EXAMPLES[0], lines=2, elem_id="question")
                    with gr.Row():
                        send = gr.Button("送信", variant="primary", elem_id="send")
                        stop = gr.Button("停止", variant="stop", elem_id="stop")
                        clear = gr.Button("新しいセッション", elem_id="new-session")
                    gr.Examples(EXAMPLES, inputs=question, label="質問の例")
                    with gr.Row():
                        age = gr.Textbox(label="年齢", placeholder="不明", elem_id="age")
                        sex = gr.Dropdown(SEX_CHOICES, label="性別", value=None, elem_id="sex")
                        height = gr.Textbox(label="身長 (cm)", placeholder="不明", elem_id="height")
                        weight = gr.Textbox(label="体重 (kg)", placeholder="不明", elem_id="weight")
                with gr.Column(scale=2):
                    with gr.Row():
                        files = gr.File(label="ファイルを追加（複数可・zip 可）", file_count="multiple",
                                        type="filepath",
                                        elem_id="upload-files")
                        folder = gr.File(label="フォルダを追加（DICOM フォルダ）", file_count="directory",
                                         type="filepath", elem_id="upload-folder")
                    upload_note = gr.Markdown("", elem_id="upload-note")
                    study_table = gr.Dataframe(headers=present.STUDY_HEADERS, value=[], label="この患者の検査",
                                               interactive=False, elem_id="studies")
                    with gr.Row():
                        remove_pick = gr.Dropdown([], label="削除する検査", value=None, elem_id="remove-pick")
                        remove = gr.Button("削除", elem_id="remove-study")
                    with gr.Row():
                        role_pick = gr.Dropdown([], label="役割を変える検査", value=None)
                        role = gr.Dropdown(ROLE_CHOICES, label="役割", value=None)
                        set_role = gr.Button("役割を設定")
                    sources = gr.Markdown(label="出典", elem_id="sources")
                    with gr.Accordion("出典 [n] を開く（全文・ツール出力の表・画像）", open=True):
                        source_pick = gr.Dropdown([], label="出典", value=None, elem_id="source-pick")
                        source_text = gr.Markdown("", elem_id="source-text")
                        source_table = gr.Dataframe(headers=present.SOURCE_TABLE_HEADERS, value=[],
                                                    label="ツール出力", interactive=False, elem_id="source-table")
                        source_images = gr.Gallery(label="出典の画像", height=360, object_fit="contain", columns=1,
                                                   elem_id="source-images")
                    trace = gr.Dataframe(headers=present.TRACE_HEADERS, value=[], label="ツールの実行状況",
                                         interactive=False, elem_id="trace")
                    with gr.Accordion("実行記録（JSON）", open=False):
                        raw = gr.Code(language="json", label="tool_calls")
            # full width under the chat: a 12-lead ECG stays readable and is never cropped (object-fit contain)
            gallery = gr.Gallery(label="画像（オーバーレイ・波形）", height=640, object_fit="contain",
                                 columns=1, buttons=["download", "fullscreen"], elem_id="gallery")
            with gr.Accordion("CT ビューア", open=True, elem_id="ct-viewer"):
                with gr.Row():
                    ct_pick = gr.Dropdown([], label="表示する CT", value=None, elem_id="ct-pick")
                    compare_pick = gr.Dropdown([], label="並べて表示する CT（同じ高さ）", value=None,
                                               elem_id="compare-pick")
                with gr.Row():
                    preset = gr.Radio(list(viewer.WINDOWS_HU), value="縦隔", label="ウィンドウ", elem_id="ct-window")
                    zoom = gr.Radio(ZOOM_CHOICES, value="1×", label="拡大", elem_id="ct-zoom")
                    layers = gr.CheckboxGroup(list(viewer.LAYERS_JA), value=list(viewer.LAYERS_JA),
                                              label="重ねて表示", elem_id="ct-layers")
                    click_mode = gr.Radio(CLICK_MODES, value=CLICK_MODES[0], label="画像をクリックすると",
                                          elem_id="ct-click-mode")
                slice_index = gr.Slider(0, 1, value=0, step=1, label="スライス", elem_id="ct-slice")
                click_note = gr.Markdown("", elem_id="ct-click-note")
                with gr.Row():
                    ct_view = gr.Image(label="CT", height=560, interactive=False, elem_id="ct-view",
                                       buttons=["fullscreen"])
                    compare_view = gr.Image(label="比較", height=560, interactive=False, elem_id="compare-view",
                                            buttons=["fullscreen"])
                ct_stack = slice_stack.stack_component()
            downloads = build_downloads(settings, agent)  # this turn's FHIR/PDF/text/SR/SEG (ui/downloads.py)
        from dokuei.ui.worklist import build_worklist_tab  # the reports helper's tab (ui/worklist.py)

        build_worklist_tab(settings)
        with gr.Tab("管理者"):
            gr.Markdown("インストールと設定の状態（医師向けの画面には表示しません）。")
            doctor_button = gr.Button("診断を実行")
            doctor_out = gr.Code(language="json", label="dokuei doctor")
            doctor_button.click(lambda: _doctor_text(settings), None, doctor_out)

        ui.update(chat=chat, state=state, banner=patient_banner, sources=sources, trace=trace, raw=raw,
                  gallery=gallery, question=question, send=send, ct_pick=ct_pick, compare_pick=compare_pick,
                  source_pick=source_pick)
        study_outputs = [study_table, upload_note, remove_pick, role_pick, ct_pick, compare_pick]
        view_settings = [preset, zoom, layers, state]
        stack_inputs = [ct_pick, compare_pick, *view_settings]
        ct_pick.change(open_ct, stack_inputs, [slice_index, ct_view, compare_view, ct_stack]).then(
            stack, stack_inputs, ct_stack)
        view_inputs = [ct_pick, compare_pick, slice_index, *view_settings]
        # the page swaps preloaded frames while the slider moves; the server's lossless frame follows
        # no progress overlay: it would cover the preview the page already shows (seen in Chromium)
        slice_index.change(render, view_inputs, [ct_view, compare_view], trigger_mode="always_last",
                           concurrency_limit=None, show_progress="hidden")
        for control in (compare_pick, preset, zoom, layers):
            control.change(restyle, view_inputs, [ct_view, compare_view, ct_stack]).then(stack, stack_inputs, ct_stack)
        ct_view.select(on_view_click, [click_mode, *view_inputs],
                       [ct_view, compare_view, question, click_note, ct_stack]).then(
            lambda mode, *rest: stack(*rest) if mode != CLICK_MODES[1] else gr.update(),
            [click_mode, *stack_inputs], ct_stack)
        source_pick.change(open_source, [source_pick, state], [source_text, source_table, source_images])
        for picker in (files, folder):
            picker.upload(on_upload, [picker, state], [picker, state, *study_outputs])
        remove.click(on_remove, [remove_pick, state], [state, *study_outputs])
        set_role.click(on_role, [role_pick, role, state], [state, *study_outputs])
        for field in (age, sex, height, weight):
            field.change(banner, [question, state, age, sex, height, weight], patient_banner)
        inputs = [question, chat, state, age, sex, height, weight]
        outputs = list(ui.values())
        # handlers far above the workers: a waiting turn runs its handler and shows its place in line
        ask_send = send.click(respond, inputs, outputs, api_name="respond", concurrency_limit=_MAX_WAITING_TURNS)
        ask_submit = question.submit(respond, inputs, outputs, concurrency_limit=_MAX_WAITING_TURNS)
        # no Gradio `cancels` here: the turn itself stops (its answer says so), and a late cancel could hit
        # the next question instead (seen in Chromium under load)
        stop.click(stop_turn, [state], None)
        reset_outputs = [chat, state, patient_banner, sources, trace, raw, gallery, age, sex, height, weight,
                         question, study_table, upload_note, remove_pick, role_pick, ct_pick, compare_pick,
                         ct_view, compare_view, source_pick, source_text, source_table, source_images, ct_stack]
        clear.click(new_session, [state], reset_outputs, cancels=[ask_send, ask_submit])
        chat.clear(new_session, [state], reset_outputs, cancels=[ask_send, ask_submit])
        chat.change(downloads.refresh, [state, chat], downloads.files)
    return app


def check_access(host: str) -> tuple[str, str] | None:
    """Loopback needs no login; any other address needs DOKUEI_UI_USERNAME / DOKUEI_UI_PASSWORD or we refuse."""
    user = os.environ.get("DOKUEI_UI_USERNAME", "")
    password = os.environ.get("DOKUEI_UI_PASSWORD", "")
    if user and password:
        return (user, password)
    if host in LOOPBACK:
        return None
    raise SystemExit(f"--host {host} はこの PC 以外からも接続できるため、ログインが必要です。"
                     "DOKUEI_UI_USERNAME と DOKUEI_UI_PASSWORD を設定してから起動してください。")


def launch_options(settings: Settings, host: str) -> dict[str, Any]:
    """What ``launch`` is given: no share link, no footer links, files served from the artifacts folder only."""
    return {"server_name": host, "share": False, "inbrowser": False, "footer_links": [],
            "auth": check_access(host), "auth_message": "dokuei にログインしてください",
            "allowed_paths": [str(settings.artifacts_dir)],
            **access.launch_options(settings.home)}  # files only to the browser that owns them; no run history


def launch(settings: Settings | None = None, host: str = "127.0.0.1", port: int = 7860,
           block: bool = True) -> Any:
    """Serve the UI; with ``block=False`` return at once (the caller later calls ``block_thread()``)."""
    settings = settings or Settings.load()
    options = launch_options(settings, host)  # refuses before anything is built
    app = build_app(settings)
    # the queue serialises turns per worker: a second question waits in line instead of being dropped
    app.queue(default_concurrency_limit=2).launch(server_port=port, prevent_thread_lock=not block, **options)
    return app
