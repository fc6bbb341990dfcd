"""Sanitize a dataset with a scan's decisions: remove or relabel the flagged samples.

``poisonguard sanitize SRC --scores SCAN_DIR --action remove|relabel --out DST`` reads the
scan's ``scores.csv`` (one row per sample of SRC, in order), checks that it belongs to SRC (same
number of samples, same ids, same labels), and writes into ``DST``:

* ``DST/<SRC name>``: a cleaned copy of SRC in SRC's own format (:mod:`poisonguard.writers`),
  for image, array, table and text datasets alike: kept samples as stored (a CSV, TSV or JSON
  Lines record or a ``.txt`` file byte for byte), relabelled ones with the label as SRC writes it;
* ``DST/quarantine.csv``: every removed or relabelled sample with its score and reason
  (``index,id,label,score,finding,action,new_label,reason,decided_by,note``; ``index`` and
  ``id`` are SRC's), and, with ``--decisions``, every flagged sample a reviewer kept (action
  ``kept``), so that each flag is answered. ``decided_by`` is ``scan`` or ``reviewer``, ``note``
  the reviewer's note.

Both CSV files are spreadsheet-safe (:mod:`poisonguard.csv_safety`): ``scores.csv`` is read back
through :func:`poisonguard.csv_safety.reader`, so ids match SRC's exactly.

Actions:

``remove``
    every flagged sample is left out.
``relabel``
    a flagged sample judged mislabelled (finding ``label-noise``) gets the label a model predicts
    for it (``predicted_label``, out of sample) when that model gives the label a probability of
    at least ``min_confidence`` (0.9 by default); every other flagged sample (backdoor, or a
    mislabelled one whose right label is uncertain or is its own label) is left out. Relabelling a
    backdoor sample would keep its trigger in the data. The confidence bar matters: on
    Fashion-MNIST with 10 % random flips, relabelling every flagged sample put 898 wrong labels
    back (F1 0.92 of the flags, and 357 flips predicted as a third class) and the retrained model
    recovered a third of the accuracy the flips cost; with the bar at 0.9 it recovered 79 %
    (docs/benchmarks.md).

``repair`` (text datasets)
    as ``relabel``, and a flagged backdoor text of a class the trigger-words test called, in
    which the trigger is found as written, is kept *repaired*
    (:mod:`poisonguard.text_repair`): the trigger deleted (the scan's ``report.json`` names its
    core words, :func:`read_scan_triggers`), and the label restored. In a two-class task that is
    the other class: the test called the trigger because, deleted, the texts read as another
    class, and a dirty-label poison is a text of another class given the target's label. With
    more classes it is ``predicted_label`` when that differs from the given label with
    probability at least ``min_confidence``; other flagged texts are left out. Why not remove
    them: on 4,000 real reviews, removing exactly the 40-120 poisons of one class still left
    models up to 8 points of attack success from the clean corpus's, a training set short of
    that many texts of the other class (docs/benchmarks.md). A clean text flagged because it
    holds the trigger word is repaired too, and its label turned: the quarantine lists every
    repair with the deleted trigger, for review.

``--decisions FILE`` (:mod:`poisonguard.reviewer_decisions`) applies a reviewer's decisions
(``id,decision,note``) over the scan's: ``keep`` keeps a sample with its own label even if the
scan flagged it (under either action), ``remove`` leaves a sample out even if the scan did not
flag it (or would have relabelled it); samples the file does not name follow the scan. The file
is checked against SRC like ``scores.csv``, before anything is written.

SRC is only read. ``DST`` may not be SRC, lie inside it or contain it; it is built under a
temporary name and swapped in, so a failed run leaves nothing half-written.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from poisonguard import csv_safety
from poisonguard.atomic import atomic_directory, atomic_path
from poisonguard.dataset import Dataset
from poisonguard.errors import DatasetError
from poisonguard.reviewer_decisions import ReviewerDecisions
from poisonguard.text_repair import without_triggers, written_triggers

__all__ = [
    "ACTIONS",
    "QUARANTINE_COLUMNS",
    "ScanDecisions",
    "SanitizePlan",
    "read_scan_decisions",
    "read_scan_triggers",
    "plan_sanitize",
    "quarantine_csv_text",
    "write_sanitized",
]

logger = logging.getLogger(__name__)

ACTIONS = ("remove", "relabel", "repair")
QUARANTINE_COLUMNS = (
    "index",
    "id",
    "label",
    "score",
    "finding",
    "action",
    "new_label",
    "reason",
    "decided_by",
    "note",
)
_REQUIRED_COLUMNS = (
    "index",
    "id",
    "label",
    "score",
    "flagged",
    "finding",
    "predicted_label",
    "predicted_probability",
)
MIN_CONFIDENCE = 0.9
"""Default least out-of-sample probability of the predicted label for ``relabel`` to use it."""
_FINDINGS = ("", "backdoor", "label-noise")


@dataclass(frozen=True)
class ScanDecisions:
    """What a scan decided about each sample, read back from its ``scores.csv``.

    ``predicted`` holds class codes of the dataset (``-1`` where the scan gave none) and
    ``confidence`` the model's probability of that class (0 where none).
    """

    path: Path
    score: np.ndarray
    flagged: np.ndarray
    finding: np.ndarray
    predicted: np.ndarray
    confidence: np.ndarray


@dataclass(frozen=True)
class SanitizePlan:
    """Which source rows the cleaned copy keeps and with which labels, and the quarantine.

    ``rows`` are indices into the source, ascending; ``labels`` the class code of each kept row;
    ``texts`` the repaired text of each source row ``repair`` changed (by source index).
    ``quarantine`` has one entry per removed, relabelled or repaired sample and per flagged
    sample a reviewer kept (columns :data:`QUARANTINE_COLUMNS`).
    """

    action: str
    rows: np.ndarray
    labels: np.ndarray
    quarantine: list[dict[str, str]]
    texts: dict[int, str] = field(default_factory=dict)

    @property
    def n_removed(self) -> int:
        return sum(entry["action"] == "removed" for entry in self.quarantine)

    @property
    def n_relabelled(self) -> int:
        return sum(entry["action"] == "relabelled" for entry in self.quarantine)

    @property
    def n_repaired(self) -> int:
        return sum(entry["action"] == "repaired" for entry in self.quarantine)

    @property
    def n_kept(self) -> int:
        """Flagged samples a reviewer kept (``--decisions``)."""
        return sum(entry["action"] == "kept" for entry in self.quarantine)

    @property
    def n_reviewed(self) -> int:
        """Quarantine entries a reviewer decided (``--decisions``): flags kept, samples removed."""
        return sum(entry["decided_by"] == "reviewer" for entry in self.quarantine)


def read_scan_decisions(scan_dir: str | Path, dataset: Dataset) -> ScanDecisions:
    """Read ``scan_dir/scores.csv`` (or a ``scores.csv`` path) and check it belongs to ``dataset``.

    Raises
    ------
    DatasetError
        Naming the scores file: missing, unreadable, a column missing, a malformed cell, or rows
        that do not match the dataset (count, order of ids, labels).
    """
    path = Path(scan_dir)
    if path.is_dir():
        path = path / "scores.csv"
    if not path.is_file():
        raise DatasetError(path, "no scores.csv here; pass the folder a scan wrote (--out)")
    try:
        # newline="": a carriage return inside a quoted id is text, not a line end
        with path.open(encoding="utf-8", newline="") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(path, f"cannot read the scores ({exc})") from exc
    reader = _scores_rows(path, text)
    header = next(reader, None)
    if not header:
        raise DatasetError(path, "is empty; expected the scores.csv a scan writes")
    missing = [name for name in _REQUIRED_COLUMNS if name not in header]
    if missing:
        raise DatasetError(
            path,
            f"lacks the column(s) {', '.join(missing)}; it must come from `poisonguard scan` "
            "of this PoisonGuard version",
        )
    column = {name: header.index(name) for name in _REQUIRED_COLUMNS}
    n = dataset.n_samples
    names = dataset.class_names
    codes = {name: code for code, name in enumerate(names)}
    score = np.zeros(n)
    flagged = np.zeros(n, dtype=bool)
    finding = np.full(n, "", dtype=object)
    predicted = np.full(n, -1, dtype=np.int64)
    confidence = np.zeros(n)
    count = 0
    for line, row in enumerate(reader, start=2):
        if not row:
            continue
        if len(row) != len(header):
            raise DatasetError(path, f"line {line} has {len(row)} fields, the header {len(header)}")
        if count >= n:
            raise DatasetError(path, f"has more rows than the dataset's {n} samples")
        cell = {name: row[i] for name, i in column.items()}
        if cell["index"] != str(count):
            raise DatasetError(path, f"line {line}: index {cell['index']!r}, expected {count}")
        if cell["id"] != dataset.ids[count]:
            raise DatasetError(
                path,
                f"line {line}: id {cell['id']!r} but sample {count} of {dataset.path} is "
                f"{dataset.ids[count]!r}; these scores belong to another dataset",
            )
        if cell["label"] != names[int(dataset.labels[count])]:
            raise DatasetError(
                path,
                f"line {line}: label {cell['label']!r} but sample {count} of {dataset.path} is "
                f"labelled {names[int(dataset.labels[count])]!r}; these scores belong to another "
                "version of the dataset",
            )
        try:
            score[count] = float(cell["score"])
        except ValueError:
            raise DatasetError(
                path, f"line {line}: score {cell['score']!r} is not a number"
            ) from None
        if cell["flagged"] not in ("0", "1"):
            raise DatasetError(path, f"line {line}: flagged is {cell['flagged']!r}, not 0 or 1")
        flagged[count] = cell["flagged"] == "1"
        if cell["finding"] not in _FINDINGS:
            raise DatasetError(
                path,
                f"line {line}: finding {cell['finding']!r} is not one of backdoor, label-noise",
            )
        finding[count] = cell["finding"]
        if cell["predicted_label"]:
            if cell["predicted_label"] not in codes:
                raise DatasetError(
                    path,
                    f"line {line}: predicted_label {cell['predicted_label']!r} is not a class of "
                    "the dataset",
                )
            predicted[count] = codes[cell["predicted_label"]]
        if cell["predicted_probability"]:
            try:
                confidence[count] = float(cell["predicted_probability"])
            except ValueError:
                problem = f"line {line}: predicted_probability is not a number"
                raise DatasetError(path, problem) from None
        count += 1
    if count != n:
        raise DatasetError(path, f"has {count} rows, the dataset {dataset.path} {n} samples")
    return ScanDecisions(path, score, flagged, finding, predicted, confidence)


def _scores_rows(path: Path, text: str) -> Iterator[list[str]]:
    """The rows of ``scores.csv`` text, every cell unescaped (a scan writes ids and class names
    spreadsheet-safe, :mod:`poisonguard.csv_safety`); a malformed file is a DatasetError."""
    try:
        yield from csv_safety.reader(io.StringIO(text, newline=""))
    except csv.Error as exc:
        raise DatasetError(path, f"is not a readable CSV file ({exc})") from exc


def read_scan_triggers(scan_dir: str | Path, dataset: Dataset) -> dict[int, list[list[str]]]:
    """The trigger words the scan found, by class code, from ``report.json`` beside the
    ``scores.csv`` of ``scan_dir`` (``findings.per_class[].trigger_words``: each trigger's core
    words); an empty mapping when no class was called by the trigger-words test.

    Raises
    ------
    DatasetError
        Naming ``report.json``: missing, not JSON, of another dataset (sample count or class
        names), or a ``trigger_words`` entry that is not a list of lists of words.
    """
    path = Path(scan_dir)
    path = (path if path.is_dir() else path.parent) / "report.json"
    if not path.is_file():
        raise DatasetError(path, "no report.json here; repair needs the folder a scan wrote")
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DatasetError(path, f"cannot read the scan's report ({exc})") from exc
    try:
        n_samples = report["dataset"]["n_samples"]
        per_class = report["findings"]["per_class"]
    except (KeyError, TypeError):
        raise DatasetError(
            path,
            "lacks dataset.n_samples or findings.per_class; it must come from "
            "`poisonguard scan` of this PoisonGuard version",
        ) from None
    if n_samples != dataset.n_samples:
        raise DatasetError(
            path, f"is a report of {n_samples} samples, {dataset.path} has {dataset.n_samples}"
        )
    codes = {name: code for code, name in enumerate(dataset.class_names)}
    triggers: dict[int, list[list[str]]] = {}
    for entry in per_class if isinstance(per_class, list) else [None]:
        name = entry.get("name") if isinstance(entry, dict) else None
        words = entry.get("trigger_words", []) if isinstance(entry, dict) else None
        if name not in codes:
            raise DatasetError(path, f"names a class {name!r} that {dataset.path} does not have")
        if not (
            isinstance(words, list)
            and all(
                isinstance(core, list) and core and all(isinstance(w, str) and w for w in core)
                for core in words
            )
        ):
            raise DatasetError(path, f"class {name!r}: trigger_words is not a list of word lists")
        if words:
            triggers[codes[name]] = words
    return triggers


def plan_sanitize(
    dataset: Dataset,
    decisions: ScanDecisions,
    action: str,
    *,
    min_confidence: float = MIN_CONFIDENCE,
    reviewer: ReviewerDecisions | None = None,
    triggers: Mapping[int, Sequence[Sequence[str]]] | None = None,
) -> SanitizePlan:
    """Decide the kept rows, their labels and the quarantine entries (see the module docstring).

    ``reviewer`` (``--decisions``) overrules the scan for the samples it names: ``keep`` keeps
    a sample with its own label, ``remove`` leaves it out, whatever the scan and ``action`` say.
    ``triggers`` (``repair``: :func:`read_scan_triggers`) holds the core words of each trigger
    the scan found, by class code.
    """
    if reviewer is not None and reviewer.keep.size != dataset.n_samples:
        raise ValueError("the reviewer's decisions are for another dataset")
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}; valid: {', '.join(ACTIONS)}")
    if action == "repair" and dataset.kind != "text":
        raise ValueError(
            f"repair takes text triggers out of texts; {dataset.path} holds {dataset.kind} "
            "samples: use remove or relabel"
        )
    if not 0.0 <= min_confidence <= 1.0:
        raise ValueError(f"min_confidence must be in [0, 1], got {min_confidence}")
    names = dataset.class_names
    labels = dataset.labels.copy()
    keep = np.ones(dataset.n_samples, dtype=bool)
    quarantine: list[dict[str, str]] = []
    considered = decisions.flagged if reviewer is None else decisions.flagged | reviewer.decided
    written = _written_triggers(dataset, decisions, triggers) if action == "repair" else {}
    texts: dict[int, str] = {}
    for i in np.flatnonzero(considered):
        label = names[int(dataset.labels[i])]
        finding = str(decisions.finding[i])
        predicted = int(decisions.predicted[i])
        entry = {
            "index": str(i),
            "id": dataset.ids[i],
            "label": label,
            "score": format(float(decisions.score[i]), ".6g"),
            "finding": finding,
            "decided_by": "scan",
            "note": "",
        }
        if reviewer is not None and reviewer.decided[i]:
            entry.update(decided_by="reviewer", note=str(reviewer.note[i]))
            if reviewer.keep[i]:
                if decisions.flagged[i]:  # a flag overruled: said, so that every flag is answered
                    entry.update(
                        action="kept",
                        new_label="",
                        reason=f"{_removal_reason(finding, label)}; a reviewer kept it with "
                        "its label",
                    )
                    quarantine.append(entry)
                continue
            keep[i] = False
            reason = (
                f"{_removal_reason(finding, label)}; a reviewer removed it"
                if decisions.flagged[i]
                else "removed by a reviewer (the scan did not flag it)"
            )
            entry.update(action="removed", new_label="", reason=reason)
        elif (
            finding == "backdoor"
            and int(dataset.labels[i]) in written
            and (
                repair := _repaired(
                    dataset, decisions, i, written[int(dataset.labels[i])], min_confidence
                )
            )
        ):
            text, new_label, reason = repair
            texts[int(i)], labels[i] = text, new_label
            entry.update(action="repaired", new_label=names[new_label], reason=reason)
        elif (
            action in ("relabel", "repair")
            and finding == "label-noise"
            and predicted >= 0
            and predicted != dataset.labels[i]
            and decisions.confidence[i] >= min_confidence
        ):
            labels[i] = predicted
            entry.update(
                action="relabelled",
                new_label=names[predicted],
                reason=f"judged mislabelled: labelled {label!r}, a model that never saw it "
                f"predicts {names[predicted]!r} (probability {decisions.confidence[i]:.2f})",
            )
        else:
            keep[i] = False
            reason = _removal_reason(finding, label)
            if action in ("relabel", "repair") and finding == "label-noise":
                if predicted < 0 or predicted == dataset.labels[i]:
                    reason += "; no other class is predicted for it"
                else:
                    reason += (
                        f"; the predicted class {names[predicted]!r} has probability "
                        f"{decisions.confidence[i]:.2f}, below {min_confidence:g}"
                    )
            entry.update(action="removed", new_label="", reason=reason)
        quarantine.append(entry)
    rows = np.flatnonzero(keep)
    return SanitizePlan(action, rows, labels[rows], quarantine, texts)


def _written_triggers(
    dataset: Dataset,
    decisions: ScanDecisions,
    triggers: Mapping[int, Sequence[Sequence[str]]] | None,
) -> dict[int, list[str]]:
    """By class code, the triggers as written in the class's flagged backdoor texts."""
    written: dict[int, list[str]] = {}
    for code, cores in (triggers or {}).items():
        rows = np.flatnonzero(
            decisions.flagged & (decisions.finding == "backdoor") & (dataset.labels == code)
        )
        words = [word for core in cores for word in core]
        phrases = written_triggers([str(dataset.x[i]) for i in rows], words)
        if phrases:
            written[int(code)] = phrases
    return written


def _repaired(
    dataset: Dataset, decisions: ScanDecisions, i: int, phrases: list[str], min_confidence: float
) -> tuple[str, int, str] | None:
    """Text ``i`` without its trigger, its restored label and the reason; None where the trigger
    is not in it as written, nothing would be left, or no other label is sure enough."""
    text, deleted = without_triggers(str(dataset.x[i]), phrases)
    if not deleted or not text.strip():
        return None
    label = int(dataset.labels[i])
    names = dataset.class_names
    if dataset.n_classes == 2:
        new_label = 1 - label
        why = "the other class of this two-class task"
    elif (
        decisions.predicted[i] >= 0
        and decisions.predicted[i] != label
        and decisions.confidence[i] >= min_confidence
    ):
        new_label = int(decisions.predicted[i])
        why = (
            f"the class a model that never saw it predicts (probability "
            f"{decisions.confidence[i]:.2f})"
        )
    else:
        return None
    # only the triggers this text held, for the reviewer (purple/monkey: one or both)
    shown = " and ".join(repr(p) for p in phrases if without_triggers(str(dataset.x[i]), [p])[1])
    reason = (
        f"suspected backdoor sample in class {names[label]!r}: its trigger {shown} deleted "
        f"({deleted} time{'s' if deleted > 1 else ''}) and the label set to "
        f"{names[new_label]!r}, {why}"
    )
    return text, new_label, reason


def _removal_reason(finding: str, label: str) -> str:
    if finding == "backdoor":
        return f"suspected backdoor sample in class {label!r} (the trigger would stay if kept)"
    if finding == "label-noise":
        return f"judged mislabelled (labelled {label!r})"
    return "flagged by the scan"


def quarantine_csv_text(entries: Sequence[dict[str, str]]) -> str:
    """``quarantine.csv`` text: one row per removed or relabelled sample, every cell made
    spreadsheet-safe (:mod:`poisonguard.csv_safety`)."""
    buffer = io.StringIO()
    writer = csv_safety.writer(buffer, lineterminator="\n")
    writer.writerow(QUARANTINE_COLUMNS)
    for entry in entries:
        writer.writerow([entry.get(column, "") for column in QUARANTINE_COLUMNS])
    return buffer.getvalue()


def write_sanitized(
    dataset: Dataset,
    plan: SanitizePlan,
    out_dir: str | Path,
    *,
    loader_options: dict | None = None,
) -> Path:
    """Write the cleaned copy and ``quarantine.csv`` into ``out_dir``; return the copy's path.

    ``out_dir`` is checked against the source first (:func:`poisonguard.writers.prepare_output_dir`)
    and replaced as a whole only if it holds nothing but an earlier run's outputs.
    """
    from poisonguard.writers import prepare_output_dir, write_like

    out_dir = prepare_output_dir(dataset.path, Path(out_dir))
    name = dataset.path.name
    x = x_changed = None
    if plan.texts:
        x_changed = np.isin(plan.rows, np.fromiter(plan.texts, dtype=np.int64))
        x = np.array([plan.texts.get(int(i), "") for i in plan.rows], dtype=object)
    with atomic_directory(out_dir, replaceable={name, "quarantine.csv"}) as tmp:
        write_like(
            dataset,
            tmp / name,
            rows=plan.rows,
            labels=plan.labels,
            x=x,
            x_changed=x_changed,
            loader_options=loader_options,
        )
        with atomic_path(tmp / "quarantine.csv") as part:
            part.write_text(quarantine_csv_text(plan.quarantine), encoding="utf-8")
    logger.info(
        "wrote %s: kept %d of %d samples (%d removed, %d relabelled, %d repaired)",
        out_dir / name,
        plan.rows.size,
        dataset.n_samples,
        plan.n_removed,
        plan.n_relabelled,
        plan.n_repaired,
    )
    return out_dir / name
