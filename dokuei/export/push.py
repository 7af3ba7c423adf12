"""Optional push of a turn's exports into hospital systems: DICOM C-STORE to a PACS node, STOW-RS to a
DICOMweb endpoint, and the FHIR transaction ``Bundle`` to a FHIR server.

The policy is what a hospital IT team expects of a machine on its clinical network:

- **Nothing leaves by default.** Only destinations named in the settings (``pacs_host``, ``stow_url``,
  ``fhir_url``) are ever contacted, and only when a clinician asks (``dokuei export --push``). No
  discovery, no default server, no background retry.
- **Hospital LAN only.** A destination must resolve to loopback or a private address (RFC 1918, RFC 4193,
  link-local). A public address is refused before any connection unless ``push_allow_public`` is set, so a
  mistyped URL cannot send patient data to the internet. http(s) only; https is verified against the system
  store or ``push_ca_file`` (the hospital's own CA).
- **A failed push loses nothing.** The exported files stay where they were written; the Japanese message
  names the destination, what went wrong and where the files are, so they can be sent again.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import socket
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from dokuei.export import ExportError
from dokuei.settings import Settings

log = logging.getLogger(__name__)

TARGETS = ("pacs", "stow", "fhir")

#: C-STORE statuses that mean "stored" (success, and the warnings: coercion, elements discarded)
_STORED = frozenset({0x0000, 0xB000, 0xB006, 0xB007})
_UNCOMPRESSED = ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2")  # explicit, implicit VR little endian


class PushError(ExportError):
    """A push that did not happen or failed; the message is Japanese and names the destination."""


@dataclass(frozen=True)
class PushOutcome:
    """What one push did: ``sent`` holds SOP Instance UIDs (DICOM) or resource locations (FHIR)."""

    target: str
    destination: str
    ok: bool
    message_ja: str
    sent: list[str] = field(default_factory=list)


# --- destination policy ----------------------------------------------------------------------------

def check_host(host: str, settings: Settings) -> None:
    """Refuse a host that does not resolve, or that resolves to a public address without permission."""
    try:
        infos = socket.getaddrinfo(host, None)
    except socket.gaierror as exc:
        raise PushError(f"送信先のホスト名 {host} を解決できません（{exc.strerror}）。"
                        "設定を確認してください。") from exc
    for addr in sorted({str(info[4][0]) for info in infos}):
        ip = ipaddress.ip_address(addr.split("%")[0])
        if not (ip.is_loopback or ip.is_private or ip.is_link_local) and not settings.push_allow_public:
            raise PushError(f"送信先 {host}（{addr}）は院内ネットワーク（プライベートアドレス）ではないため"
                            "送信しません。院外へ送る場合は管理者が push_allow_public を有効にしてください。")


def _check_url(url: str, settings: Settings) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PushError(f"送信先 URL {url} は http(s) の URL ではありません。設定を確認してください。")
    check_host(parts.hostname, settings)
    return url


def _kept(files: list[Path]) -> str:
    folders = sorted({str(p.parent) for p in files})
    return f"書き出したファイルは {', '.join(folders)} に残っています（再送できます）。"


# --- DICOM C-STORE ---------------------------------------------------------------------------------

def _read_dicom(files: list[Path]) -> list[tuple[Path, Any]]:
    from pydicom import dcmread
    from pydicom.errors import InvalidDicomError

    datasets = []
    for path in files:
        try:
            datasets.append((path, dcmread(path)))
        except (InvalidDicomError, OSError) as exc:
            log.warning("not a DICOM file %s: %s", path, exc)
            raise PushError(f"{path.name} は DICOM ファイルとして読めないため送信しません。") from exc
    return datasets


def push_cstore(files: list[Path], settings: Settings) -> PushOutcome:
    """Send DICOM files to the configured PACS node in one association (C-STORE SCU)."""
    from pynetdicom import AE

    host, port = str(settings.pacs_host or ""), settings.pacs_port
    destination = f"{settings.pacs_ae_title}@{host}:{port}"
    check_host(host, settings)
    datasets = _read_dicom(files)
    ae = AE(ae_title=settings.calling_ae_title)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = settings.push_timeout_s
    contexts: dict[str, list[str]] = {}
    for _, ds in datasets:
        syntaxes = contexts.setdefault(str(ds.SOPClassUID), [])
        for ts in (str(ds.file_meta.TransferSyntaxUID), *_UNCOMPRESSED):
            if ts not in syntaxes:
                syntaxes.append(ts)
    for sop_class, syntaxes in contexts.items():
        ae.add_requested_context(sop_class, syntaxes)
    assoc = ae.associate(host, port, ae_title=settings.pacs_ae_title)
    if not assoc.is_established:
        why = ("接続を拒否されました（AE タイトルまたは対応する SOP クラスを PACS 側で確認してください）"
               if assoc.is_rejected
               else "接続できませんでした（PACS が起動しているか、ホストとポートを確認してください）")
        log.warning("C-STORE association to %s failed (rejected=%s aborted=%s)", destination, assoc.is_rejected,
                    assoc.is_aborted)
        return PushOutcome("pacs", destination, False, f"PACS {destination} に{why}。{_kept(files)}")
    sent: list[str] = []
    failed: list[str] = []
    try:
        for path, ds in datasets:
            try:
                status = assoc.send_c_store(ds)
            except (ValueError, RuntimeError) as exc:  # no accepted context for this SOP class / syntax
                log.warning("C-STORE of %s to %s not sent: %s", path, destination, exc)
                failed.append(f"{path.name}（PACS がこの種類を受け付けません）")
                continue
            code = int(status.Status) if status and "Status" in status else None
            if code in _STORED:
                sent.append(str(ds.SOPInstanceUID))
            else:
                log.warning("C-STORE of %s to %s: status %s", path, destination, code)
                failed.append(f"{path.name}（状態 0x{code:04X}）" if code is not None else f"{path.name}（応答なし）")
    finally:
        if assoc.is_established:
            assoc.release()
    if failed:
        return PushOutcome("pacs", destination, False,
                           f"PACS {destination} への送信に失敗しました: {', '.join(failed)}。{_kept(files)}", sent)
    return PushOutcome("pacs", destination, True, f"PACS {destination} に {len(sent)} 件送信しました。", sent)


# --- HTTP (STOW-RS, FHIR) --------------------------------------------------------------------------

def _post(url: str, body: bytes, headers: dict[str, str], token: str | None, settings: Settings) -> httpx.Response:
    if token:
        headers = {**headers, "Authorization": f"Bearer {token}"}
    verify: Any = str(settings.push_ca_file) if settings.push_ca_file else True
    try:
        return httpx.post(url, content=body, headers=headers, timeout=settings.push_timeout_s, verify=verify,
                          follow_redirects=False, trust_env=False)
    except httpx.ConnectError as exc:
        log.warning("POST %s: %s", url, exc)
        raise PushError(f"{url} に接続できませんでした（サーバーが起動しているか、URL を確認してください）。") from exc
    except httpx.TimeoutException as exc:
        log.warning("POST %s: %s", url, exc)
        raise PushError(f"{url} が {settings.push_timeout_s:g} 秒以内に応答しませんでした。") from exc
    except httpx.HTTPError as exc:
        log.warning("POST %s: %s", url, exc)
        raise PushError(f"{url} への送信中に通信エラーが起きました（{type(exc).__name__}）。") from exc


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def multipart_related(parts: list[bytes], boundary: str) -> bytes:
    """A ``multipart/related; type="application/dicom"`` body (PS3.18 §8.6.1)."""
    chunks = [b"--" + boundary.encode() + b"\r\nContent-Type: application/dicom\r\n\r\n" + data + b"\r\n"
              for data in parts]
    return b"".join(chunks) + b"--" + boundary.encode() + b"--\r\n"


def _uids(dataset_json: Any, tag: str) -> list[str]:
    """SOP Instance UIDs (0008,1155) in a DICOM JSON sequence of a STOW-RS response."""
    if not isinstance(dataset_json, dict):
        return []
    items = (dataset_json.get(tag) or {}).get("Value") or []
    return [str(v) for item in items for v in (item.get("00081155") or {}).get("Value") or []]


def push_stow(files: list[Path], settings: Settings) -> PushOutcome:
    """Store DICOM files with one STOW-RS request to the configured DICOMweb endpoint."""
    url = _check_url(str(settings.stow_url or ""), settings)
    datasets = _read_dicom(files)  # refuse a non-DICOM file before sending anything
    boundary = uuid.uuid4().hex
    body = multipart_related([path.read_bytes() for path, _ in datasets], boundary)
    headers = {"Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
               "Accept": "application/dicom+json"}
    try:
        response = _post(url, body, headers, settings.stow_token, settings)
    except PushError as exc:
        return PushOutcome("stow", url, False, f"STOW-RS: {exc}{_kept(files)}")
    reply = _json(response)
    stored, failed = _uids(reply, "00081199"), _uids(reply, "00081198")
    expected = [str(ds.SOPInstanceUID) for _, ds in datasets]
    if response.status_code == 200 and not failed:
        return PushOutcome("stow", url, True, f"STOW-RS {url} に {len(expected)} 件保存しました。", stored or expected)
    log.warning("STOW-RS %s: HTTP %s %s", url, response.status_code, response.text[:500])
    detail = f"{len(failed)} 件が保存されませんでした" if failed else "保存されませんでした"
    return PushOutcome("stow", url, False, f"STOW-RS {url} が HTTP {response.status_code} を返し、{detail}。"
                                           f"{_kept(files)}", stored)


def _outcome_text(reply: Any) -> str:
    """The diagnostics of a FHIR OperationOutcome, if the server sent one."""
    if isinstance(reply, dict) and reply.get("resourceType") == "OperationOutcome":
        texts = [str(i.get("diagnostics") or (i.get("details") or {}).get("text") or "") for i in
                 reply.get("issue") or []]
        return "; ".join(t for t in texts if t)[:300]
    return ""


def push_fhir(bundle_file: Path, settings: Settings) -> PushOutcome:
    """POST the transaction Bundle to the FHIR server's base URL (FHIR R4 §3.1.0.11 transaction)."""
    url = _check_url(str(settings.fhir_url or ""), settings)
    body = bundle_file.read_bytes()
    headers = {"Content-Type": "application/fhir+json; charset=utf-8", "Accept": "application/fhir+json"}
    try:
        response = _post(url, body, headers, settings.fhir_token, settings)
    except PushError as exc:
        return PushOutcome("fhir", url, False, f"FHIR: {exc}{_kept([bundle_file])}")
    reply = _json(response)
    if not response.is_success:
        log.warning("FHIR %s: HTTP %s %s", url, response.status_code, response.text[:500])
        why = _outcome_text(reply)
        return PushOutcome("fhir", url, False, f"FHIR サーバー {url} が HTTP {response.status_code} を返しました"
                                               f"{f'（{why}）' if why else ''}。{_kept([bundle_file])}")
    entries = reply.get("entry", []) if isinstance(reply, dict) else []
    statuses = [str((e.get("response") or {}).get("status", "")) for e in entries]
    bad = [s for s in statuses if not s.startswith("2")]
    if bad:
        return PushOutcome("fhir", url, False, f"FHIR サーバー {url} が一部のリソースを受け付けませんでした"
                                               f"（{', '.join(bad)}）。{_kept([bundle_file])}")
    locations = [str((e.get("response") or {}).get("location", "")) for e in entries]
    return PushOutcome("fhir", url, True, f"FHIR サーバー {url} に Bundle を送信しました（{len(entries)} 件）。",
                       [loc for loc in locations if loc])


# --- choosing what to send -------------------------------------------------------------------------

def is_dicom_file(path: Path) -> bool:
    """A DICOM Part 10 file: 128-byte preamble, then ``DICM``."""
    try:
        with path.open("rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def _configured(target: str, settings: Settings) -> str:
    return {"pacs": settings.pacs_host, "stow": settings.stow_url, "fhir": settings.fhir_url}[target] or ""


_SETTING_NAME = {"pacs": "DOKUEI_PACS_HOST", "stow": "DOKUEI_STOW_URL", "fhir": "DOKUEI_FHIR_URL"}


def push_exports(targets: list[str], written: list[Path], settings: Settings) -> list[PushOutcome]:
    """Send the written exports to each requested destination; one outcome per target, never an exception."""
    unknown = sorted(set(targets) - set(TARGETS))
    if unknown:
        raise ValueError(f"未対応の送信先: {', '.join(unknown)}（対応: {', '.join(TARGETS)}）")
    dicom = [p for p in written if is_dicom_file(p)]
    bundles = [p for p in written if p.name.endswith(".fhir.json")]
    outcomes = []
    for target in dict.fromkeys(targets):
        if not _configured(target, settings):
            outcomes.append(PushOutcome(target, "", False, f"送信先 {target} が設定されていないため送信しませんでした"
                                                           f"（{_SETTING_NAME[target]} または config.toml）。"))
            continue
        try:
            if target == "fhir":
                if not bundles:
                    raise PushError("送る FHIR Bundle がありません（--formats に fhir を加えてください）。")
                outcomes.extend(push_fhir(b, settings) for b in bundles)
            else:
                if not dicom:
                    raise PushError("送る DICOM ファイルがありません（--formats に sr または seg を加えてください）。")
                outcomes.append(push_cstore(dicom, settings) if target == "pacs" else push_stow(dicom, settings))
        except PushError as exc:
            outcomes.append(PushOutcome(target, _configured(target, settings), False, f"{exc}{_kept(written)}"
                                        if written else str(exc)))
    for outcome in outcomes:
        log.info("push %s %s ok=%s sent=%d", outcome.target, outcome.destination, outcome.ok, len(outcome.sent))
    return outcomes


# --- the command line (``dokuei export … --push``) ------------------------------------------------

def add_push_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--push", default="", metavar="pacs,stow,fhir",
                        help="after writing, send to the configured PACS (C-STORE), DICOMweb (STOW-RS) or FHIR "
                             "server; nothing is sent without this flag and a configured destination")


def push_written(targets_text: str, paths: list[Path], settings: Settings) -> int:
    """Send written exports where ``--push`` asks; 0 when all arrived, 3 when any did not (files stay)."""
    targets = [t.strip() for t in (targets_text or "").split(",") if t.strip()]
    if not targets:
        return 0
    try:
        outcomes = push_exports(targets, paths, settings)
    except ValueError as exc:
        sys.stdout.write(f"エラー: {exc}\n")
        return 2
    for outcome in outcomes:
        sys.stdout.write(f"{'送信' if outcome.ok else '送信失敗'}: {outcome.message_ja}\n")
    return 0 if all(o.ok for o in outcomes) else 3

