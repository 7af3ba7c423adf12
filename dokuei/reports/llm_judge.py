"""The LLM judge for :func:`dokuei.reports.critical.detect` (its ``Judge`` slot), used when an LLM is configured.

The seed programme's best input was 所見 + 依頼科. For every category the rules flagged, the model reads
that text with the rule's evidence sentence and answers あり / 疑い / なし. Recall comes first (見落とし防止):
a judge never removes a rule's flag. Agreement keeps the rule's score; 疑い lowers a present to the
suspected score; なし halves the score, so the worklist shows it lower and the radiologist sees the
disagreement. A reply the judge cannot read leaves the rule result as it was. Categories the rules did not
find are not added: every flag must quote its evidence from the report, and the model gives none.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass

from dokuei.reports.critical import Detection, load_categories

log = logging.getLogger(__name__)

#: OpenAI-style messages in, the model's text out (``dokuei.llm_hook`` hands over the agent's backend)
Generate = Callable[[list[dict[str, str]]], str]

SYSTEM_JA = ("あなたは放射線科の読影補助です。レポートの所見に、指定された重大所見が今回の所見として記載されているかを"
             "判定します。「あり」「疑い」「なし」のいずれか1語だけで答えてください。")
USER_JA = "依頼科: {department}\n所見: {findings}\n\n重大所見: {name}\n根拠候補の文: 「{evidence}」\n判定:"
_ANSWER = re.compile(r"(あり|疑い|なし|否定)")
_STATUS = {"あり": "present", "疑い": "suspected", "なし": "absent", "否定": "absent"}
MAX_FINDINGS_CHARS = 3000  # the 1.5B model's prompt budget: a long report is cut, the evidence is always given


@dataclass
class LlmJudge:
    name: str
    generate: Generate

    def rescore(self, findings: str, department: str, rules: Detection) -> Detection:
        for result in rules.flagged:
            prompt = USER_JA.format(department=department or "不明", findings=findings[:MAX_FINDINGS_CHARS],
                                    name=result.category.name_ja, evidence=result.evidence.sentence)
            try:
                reply = self.generate([{"role": "system", "content": SYSTEM_JA}, {"role": "user", "content": prompt}])
            except Exception as exc:  # the judge is optional: the rule result stands
                log.warning("LLM judge (%s) failed on %s: %s", self.name, result.category.id, exc)
                continue
            match = _ANSWER.search(reply or "")
            if match is None:
                log.info("LLM judge (%s): unreadable reply for %s: %r", self.name, result.category.id, reply[:80])
                continue
            result.judge_status = _STATUS[match.group(1)]
            if result.judge_status == "absent":
                result.score = round(result.score / 2, 4)
                rules.notes_ja.append(f"{result.category.name_ja}: LLM 判定は「なし」（規則の判定を残しています）。")
            elif result.judge_status == "suspected" and result.status == "present":
                result.score = min(result.score, load_categories()[1]["suspected"])
        rules.categories.sort(key=lambda r: -r.score)
        return rules

